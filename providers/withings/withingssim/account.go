package withingssim

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"sort"
	"strconv"
	"time"

	"github.com/openhealthexchange/ohx/providers/sim"
)

// Devices of every account, by the sim's device names (sim.World.Battery keys them).
const (
	devScale = "scale"
	devCuff  = "cuff"
	devWatch = "watch"
)

// deviceModel is how Withings lists a device model in getdevice and in measure groups
// (User v2 - Getdevice, https://developer.withings.com/api-reference/#tag/user/operation/userv2-getdevice).
type deviceModel struct {
	Type    string
	Model   string
	ModelID int
}

var deviceModels = map[string]deviceModel{
	devScale: {"Scale", "Body+", 5},
	devCuff:  {"Blood Pressure Monitor", "BPM Connect", 45},
	devWatch: {"Activity Tracker", "ScanWatch", 93},
}

// deviceOrder is the order getdevice lists them in.
var deviceOrder = []string{devScale, devCuff, devWatch}

// Measure types (Measure - Getmeas, https://developer.withings.com/api-reference/#tag/measure/operation/measure-getmeas).
const (
	typeWeight      = 1
	typeHeight      = 4
	typeFatFreeMass = 5
	typeFatRatio    = 6
	typeFatMass     = 8
	typeDiastolic   = 9
	typeSystolic    = 10
	typePulse       = 11
	typeSpO2        = 54
)

// Measure-group attrib values: 0 measured by a device and attributed to its owner, 2 entered by
// the user (height is typed in the profile).
const (
	attribDevice = 0
	attribManual = 2
)

// meas is one measure of a group: Value × 10^Unit.
type meas struct {
	Value int64
	Type  int
	Unit  int
}

// group is one getmeas measure group.
type group struct {
	ID       int64
	Attrib   int
	Date     int64 // unix seconds
	Modified int64
	Device   string // devScale, devCuff, devWatch or "" (entered by hand)
	Measures []meas
}

// day is one getactivity entry.
type day struct {
	Date                string // local YYYY-MM-DD
	Steps, Floors       int
	Distance            float64
	Calories, TotalKcal float64
	Modified            int64
}

// night is one getsummary entry; durations in seconds.
type night struct {
	ID                             int64
	Date                           string // local date of the morning
	Start, End, Modified           int64
	InBed, Light, Deep, REM, Awake int64
	Latency, WakeupCount           int64
	Efficiency                     float64
}

// ecg is one heart list entry.
type ecg struct {
	SignalID int64
	Afib     int
	rec      sim.ECG
}

// account is one Withings user: the person, the data the simulator serves and the
// notification subscriptions.
type account struct {
	p       *sim.Person
	userID  string
	zone    string
	devices map[string]string // device name → deviceid
	groups  []group           // history then live, by date
	days    []day
	nights  []night
	ecgs    []ecg
	nextGrp int64
	subs    []subscription
	pushes  int // Pushes that recorded a live measure for the account
}

// subscription is one notify subscribe: a category and a callback URL.
type subscription struct {
	Appli       int
	CallbackURL string
	Comment     string
}

// userID derives the numeric Withings userid from the person's index (stable, unlike a token).
func userID(p *sim.Person) string { return strconv.Itoa(31337001 + p.Index) }

// deviceID is a 40-hex-digit id like Withings', derived from the seed, the person and the device.
func deviceID(w *sim.World, p *sim.Person, dev string) string {
	h := sha256.Sum256(fmt.Appendf(nil, "withings-device/%d/%s/%s", w.Seed, p.Key, dev))
	return hex.EncodeToString(h[:20])
}

func newAccount(w *sim.World, p *sim.Person) *account {
	a := &account{p: p, userID: userID(p), zone: p.Zone.String(), devices: map[string]string{}}
	for _, d := range deviceOrder {
		a.devices[d] = deviceID(w, p, d)
	}
	days := w.DaysOf(p)
	// Height is typed into the profile once, on the first morning of the history.
	h := at(days[0], 9)
	a.groups = append(a.groups, group{Attrib: attribManual, Date: h.Unix(), Modified: h.Unix(),
		Measures: []meas{{int64(math.Round(p.HeightM * 100)), typeHeight, -2}}})
	for _, d := range days {
		if wt, ok := w.Weight(p, d); ok {
			a.groups = append(a.groups, weightGroup(wt))
		}
		if bp, ok := w.BloodPressure(p, d); ok {
			a.groups = append(a.groups, bpGroup(bp))
		}
		if sl, ok := w.Sleep(p, d); ok {
			if spo2, ok := w.SpO2(p, d); ok {
				// The ScanWatch reports the night's SpO2 as a measure when the night ends.
				a.groups = append(a.groups, group{Attrib: attribDevice, Date: sl.End.Unix(), Modified: sl.End.Unix(),
					Device: devWatch, Measures: []meas{{int64(math.Round(spo2 * 10)), typeSpO2, -1}}})
			}
			a.nights = append(a.nights, nightOf(p, d, sl))
		}
		if act := w.Activity(p, d); act.Steps > 0 {
			mod := d.AddDate(0, 0, 1)
			if w.Epoch.Before(mod) {
				mod = w.Epoch
			}
			mod = mod.Add(-time.Second)
			a.days = append(a.days, day{Date: d.Format(time.DateOnly), Steps: act.Steps, Floors: act.Floors,
				Distance: act.DistanceM, Calories: act.ActiveKcal, TotalKcal: act.TotalKcal, Modified: mod.Unix()})
		}
	}
	sort.SliceStable(a.groups, func(i, j int) bool { return a.groups[i].Date < a.groups[j].Date })
	base := 5_000_000_000 + int64(p.Index+1)*100_000_000
	for i := range a.groups {
		a.groups[i].ID = base + int64(i)
	}
	a.nextGrp = base + int64(len(a.groups))
	for i, e := range w.ECGs(p) {
		a.ecgs = append(a.ecgs, ecg{SignalID: int64(p.Index+1)*1_000_000 + int64(i+1), Afib: afibCode(e.Rhythm), rec: e})
	}
	return a
}

// at is a local hour of a day (the sim's days are local midnights).
func at(d time.Time, hour int) time.Time {
	return time.Date(d.Year(), d.Month(), d.Day(), hour, 0, 0, 0, d.Location())
}

// weightGroup is a Body+ weigh-in: weight, fat-free mass, fat ratio and fat mass, in the units a
// scale reports (g for masses, 0.1 % for the ratio).
func weightGroup(wt sim.Weight) group {
	kg := int64(math.Round(wt.Kg * 1000))
	fat := int64(math.Round(wt.FatMassKg() * 1000))
	t := wt.At.Unix()
	return group{Attrib: attribDevice, Date: t, Modified: t, Device: devScale, Measures: []meas{
		{kg, typeWeight, -3},
		{kg - fat, typeFatFreeMass, -3},
		{int64(math.Round(wt.FatPct * 10)), typeFatRatio, -1},
		{fat, typeFatMass, -3},
	}}
}

// bpGroup is a BPM Connect reading: diastolic, systolic and pulse.
func bpGroup(bp sim.BloodPressure) group {
	t := bp.At.Unix()
	return group{Attrib: attribDevice, Date: t, Modified: t, Device: devCuff, Measures: []meas{
		{int64(bp.Diastolic), typeDiastolic, 0},
		{int64(bp.Systolic), typeSystolic, 0},
		{int64(bp.Pulse), typePulse, 0},
	}}
}

// nightOf summarises a session: time to fall asleep is the leading awake stage (sleep_latency),
// the later awake stages are wakeupduration and wakeupcount.
func nightOf(p *sim.Person, d time.Time, sl sim.Sleep) night {
	n := night{
		ID:    int64(p.Index+1)*10_000_000 + time.Date(d.Year(), d.Month(), d.Day(), 0, 0, 0, 0, time.UTC).Unix()/86400,
		Date:  d.Format(time.DateOnly),
		Start: sl.Start.Unix(), End: sl.End.Unix(), Modified: sl.End.Unix(),
		InBed: int64(sl.End.Sub(sl.Start) / time.Second),
	}
	for i, st := range sl.Stages {
		secs := int64(st.End.Sub(st.Start) / time.Second)
		switch st.Kind {
		case sim.StageLight:
			n.Light += secs
		case sim.StageDeep:
			n.Deep += secs
		case sim.StageREM:
			n.REM += secs
		case sim.StageAwake:
			if i == 0 {
				n.Latency += secs
			} else {
				n.Awake += secs
				n.WakeupCount++
			}
		}
	}
	if n.InBed > 0 {
		n.Efficiency = math.Round(float64(n.Light+n.Deep+n.REM)/float64(n.InBed)*100) / 100
	}
	return n
}

// afibCode is the Heart v2 - List afib classification
// (https://developer.withings.com/api-reference/#tag/heart/operation/heartv2-list): 0 negative,
// 1 positive, 2 inconclusive.
func afibCode(rhythm string) int {
	switch rhythm {
	case sim.RhythmAFib:
		return 1
	case sim.RhythmInconclusive:
		return 2
	}
	return 0
}
