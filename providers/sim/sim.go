// Package sim generates the synthetic patient-generated health data that the vendor simulators of
// `ohx demo` serve: several people with months of history (weight trends, daily steps with a
// weekday pattern, resting heart rate, blood pressure, sleep sessions with stages, SpO2, a few
// ECGs) and devices whose batteries drain and recharge.
//
// Everything is a pure function of the seed, the person and the civil day (or instant), so a
// simulator can answer any window in any order and two runs with one seed serve the same values
// for the same calendar dates. History ends at the world's Epoch: a simulator reveals nothing at
// or after it except what it adds live (LiveWeight, LiveBloodPressure, LiveSteps), which is how
// a demo's webhook pushes bring new data that an EHR then reads.
//
// The package knows no vendor: each simulator renders these values in its vendor's JSON.
package sim

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"math"
	"time"
)

// World is a deterministic population of simulated people.
type World struct {
	// Seed makes the data: one seed, one data set.
	Seed int64
	// Epoch is the end of the recorded history (the demo's start): measurements at or after it
	// exist only when a simulator adds them live.
	Epoch time.Time
	// Days is the length of the history: each person's first day is the local civil day Days
	// days before the Epoch's.
	Days int
	// People are the simulated people, in a fixed order.
	People []*Person
}

// Person is one simulated patient with their baseline physiology.
type Person struct {
	// Index is the person's position in World.People (0-based).
	Index int
	// Key is a stable handle, "sim-1", "sim-2", …: simulators derive vendor user ids from it.
	Key string
	// Given and Family are the person's names; Gender is a FHIR administrative gender
	// ("female", "male"); BirthDate is YYYY-MM-DD.
	Given, Family, Gender, BirthDate string
	// Zone is the person's home time zone (vendors report it in profiles and settings).
	Zone *time.Location
	// HeightM is the height in metres.
	HeightM float64

	weight0, weightSwing, weightPhase float64 // mean kg, kg either side of it, phase of the cycle
	fat0                              float64 // body fat %
	steps0                            float64 // mean weekday steps
	rhr0                              float64 // resting heart rate, /min
	sys0, dia0                        float64 // blood pressure, mmHg
	spo20                             float64 // %
	afib                              bool    // some of their ECGs show atrial fibrillation
}

var (
	givens   = []string{"Ada", "Bruno", "Chiara", "Dmitri", "Elif", "Farid", "Grete", "Hiro", "Ines", "Jonas"}
	families = []string{"Lovelace", "Keller", "Rossi", "Volkov", "Yilmaz", "Haddad", "Nilsen", "Tanaka", "Moreau", "Berg"}
	zones    = []string{"Europe/Paris", "America/New_York", "Europe/Berlin", "America/Los_Angeles", "Europe/London"}
)

// New returns a world of n people (1 ≤ n ≤ 10) whose history spans days days (≥ 1) up to epoch.
func New(seed int64, n, days int, epoch time.Time) (*World, error) {
	if n < 1 || n > len(givens) {
		return nil, fmt.Errorf("sim: %d people: want 1 to %d", n, len(givens))
	}
	if days < 1 {
		return nil, fmt.Errorf("sim: %d days of history: want at least 1", days)
	}
	w := &World{Seed: seed, Epoch: epoch.Truncate(time.Second), Days: days}
	for i := range n {
		zone, err := time.LoadLocation(zones[i%len(zones)])
		if err != nil {
			return nil, fmt.Errorf("sim: time zone: %w", err)
		}
		r := w.stream("person", i, 0)
		female := i%2 == 0
		p := &Person{
			Index: i, Key: fmt.Sprintf("sim-%d", i+1),
			Given: givens[i], Family: families[(i+int(uint64(seed)%uint64(len(families))))%len(families)],
			Gender:    map[bool]string{true: "female", false: "male"}[female],
			BirthDate: time.Date(1950+int(r.between(0, 50)), time.Month(1+int(r.between(0, 12))), 1+int(r.between(0, 28)), 0, 0, 0, 0, time.UTC).Format(time.DateOnly),
			Zone:      zone,
		}
		if female {
			p.HeightM = round(r.between(1.55, 1.78), 2)
		} else {
			p.HeightM = round(r.between(1.66, 1.92), 2)
		}
		bmi := r.between(21, 31)
		p.weight0 = bmi * p.HeightM * p.HeightM
		p.weightSwing = r.between(1.5, 5) // up to about 0.7 kg a month at the steepest
		p.weightPhase = r.between(0, 2*math.Pi)
		p.fat0 = r.between(18, 32)
		p.steps0 = r.between(4500, 11000)
		p.rhr0 = r.between(54, 74)
		p.sys0, p.dia0 = r.between(112, 142), r.between(70, 90)
		p.spo20 = r.between(95.5, 97.8)
		p.afib = i%3 == 2
		w.People = append(w.People, p)
	}
	return w, nil
}

// Person returns the person with this key, nil if there is none.
func (w *World) Person(key string) *Person {
	for _, p := range w.People {
		if p.Key == key {
			return p
		}
	}
	return nil
}

// DaysOf returns the local midnights of a person's history, oldest first: from Days days before
// the Epoch's local date to the Epoch's local date itself (whose data stops at the Epoch).
func (w *World) DaysOf(p *Person) []time.Time {
	last := midnight(w.Epoch.In(p.Zone))
	out := make([]time.Time, 0, w.Days+1)
	for d := w.Days; d >= 0; d-- {
		out = append(out, last.AddDate(0, 0, -d))
	}
	return out
}

// Start is the first instant of a person's history (their first local midnight).
func (w *World) Start(p *Person) time.Time { return w.DaysOf(p)[0] }

// InHistory reports whether an instant lies in a person's recorded history [Start, Epoch).
func (w *World) InHistory(p *Person, at time.Time) bool {
	return !at.Before(w.Start(p)) && at.Before(w.Epoch)
}

// Days between 1970-01-01 and a local civil date: the day number that keys a day's values, so
// the same seed gives the same values for the same date whatever the Epoch.
func dayNumber(day time.Time) int {
	y, m, d := day.Date()
	return int(time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Unix() / 86400)
}

func midnight(t time.Time) time.Time {
	y, m, d := t.Date()
	return time.Date(y, m, d, 0, 0, 0, 0, t.Location())
}

// at is the instant of a local time of day (hours, fractional) on a person's civil day; across a
// daylight-saving change time.Date normalises as the zone does.
func at(day time.Time, hours float64, zone *time.Location) time.Time {
	y, m, d := day.Date()
	secs := int(hours * 3600)
	return time.Date(y, m, d, secs/3600, secs%3600/60, secs%60, 0, zone)
}

// elapsed is the part of a local day [day, day+1) before the Epoch: 1 for a past day, 0 for a
// future one.
func (w *World) elapsed(p *Person, day time.Time) float64 {
	start, end := midnight(day.In(p.Zone)), midnight(day.In(p.Zone)).AddDate(0, 0, 1)
	switch {
	case !w.Epoch.After(start):
		return 0
	case !w.Epoch.Before(end):
		return 1
	}
	return float64(w.Epoch.Sub(start)) / float64(end.Sub(start))
}

// rng is a small deterministic generator (SplitMix64, https://prng.di.unimi.it/splitmix64.c)
// seeded from the world's seed and a value's coordinates, so that no value depends on the order
// in which others were asked for.
type rng struct{ s uint64 }

func (w *World) stream(metric string, person, day int) *rng {
	h := fnv.New64a()
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], uint64(w.Seed))
	h.Write(b[:])
	h.Write([]byte(metric))
	binary.LittleEndian.PutUint64(b[:], uint64(person))
	h.Write(b[:])
	binary.LittleEndian.PutUint64(b[:], uint64(int64(day)))
	h.Write(b[:])
	return &rng{s: h.Sum64()}
}

func (r *rng) next() uint64 {
	r.s += 0x9e3779b97f4a7c15
	z := r.s
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// float is uniform in [0, 1).
func (r *rng) float() float64 { return float64(r.next()>>11) / (1 << 53) }

func (r *rng) between(lo, hi float64) float64 { return lo + (hi-lo)*r.float() }

// normal is a standard normal deviate (Box–Muller).
func (r *rng) normal() float64 {
	u1, u2 := r.float(), r.float()
	if u1 < 1e-12 {
		u1 = 1e-12
	}
	return math.Sqrt(-2*math.Log(u1)) * math.Cos(2*math.Pi*u2)
}

func round(v float64, places int) float64 {
	p := math.Pow(10, float64(places))
	return math.Round(v*p) / p
}
