package sim

import (
	"slices"
	"testing"
	"time"
)

var epoch = time.Date(2026, 12, 2, 9, 30, 0, 0, time.UTC)

func world(t *testing.T, seed int64) *World {
	t.Helper()
	w, err := New(seed, 5, 90, epoch)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// TestDeterministic: one seed, one data set, whatever order values are asked in and whatever the
// Epoch (a day later, the shared days hold the same values); another seed differs.
func TestDeterministic(t *testing.T) {
	a := world(t, 7)
	b, err := New(7, 5, 90, epoch.AddDate(0, 0, 1))
	if err != nil {
		t.Fatal(err)
	}
	p, q := a.People[2], b.People[2]
	days := a.DaysOf(p)[1 : len(a.DaysOf(p))-1] // the days both histories hold whole
	type day struct {
		kg    float64
		at    time.Time
		steps int
		bp    int
	}
	ask := func(w *World, x *Person, d time.Time) day {
		wt, _ := w.Weight(x, d)
		bp, _ := w.BloodPressure(x, d)
		return day{wt.Kg, wt.At, w.Activity(x, d).Steps, bp.Systolic}
	}
	forward := make([]day, len(days))
	for i, d := range days {
		forward[i] = ask(a, p, d)
	}
	for i := len(days) - 1; i >= 0; i-- { // b is asked in reverse
		got := ask(b, q, days[i])
		if got.kg != forward[i].kg || !got.at.Equal(forward[i].at) || got.steps != forward[i].steps || got.bp != forward[i].bp {
			t.Fatalf("%s: %+v with the later epoch, asked in reverse; %+v", days[i].Format(time.DateOnly), got, forward[i])
		}
	}
	ea, eb := a.ECGs(p), b.ECGs(q)
	if len(ea) == 0 || !ea[0].At.Equal(eb[0].At) || ea[0].Rhythm != eb[0].Rhythm || !slices.Equal(ea[0].Signal(300), eb[0].Signal(300)) {
		t.Error("ECGs differ on one seed")
	}
	c := world(t, 8)
	if a.Activity(p, days[10]).Steps == c.Activity(c.People[2], days[10]).Steps {
		t.Error("seeds 7 and 8 gave the same day")
	}
}

// TestHistoryEndsAtEpoch: nothing is revealed at or after the Epoch; the Epoch's own day has
// partial totals.
func TestHistoryEndsAtEpoch(t *testing.T) {
	w := world(t, 1)
	for _, p := range w.People {
		days := w.DaysOf(p)
		if len(days) != 91 || !days[0].Equal(w.Start(p)) {
			t.Fatalf("%s: %d days from %s", p.Key, len(days), days[0])
		}
		var weights, bps, sleeps int
		for _, d := range days {
			if x, ok := w.Weight(p, d); ok {
				weights++
				if !x.At.Before(epoch) || x.Kg < 35 || x.Kg > 160 || x.FatPct < 5 || x.FatPct > 50 {
					t.Errorf("%s weight %+v", p.Key, x)
				}
			}
			if x, ok := w.BloodPressure(p, d); ok {
				bps++
				if !x.At.Before(epoch) || x.Systolic <= x.Diastolic {
					t.Errorf("%s bp %+v", p.Key, x)
				}
			}
			if s, ok := w.Sleep(p, d); ok {
				sleeps++
				if !s.End.Before(epoch) || s.Stages[0].Start != s.Start || s.Stages[len(s.Stages)-1].End != s.End {
					t.Errorf("%s sleep %v–%v stages do not cover it", p.Key, s.Start, s.End)
				}
				for i := 1; i < len(s.Stages); i++ {
					if s.Stages[i].Start != s.Stages[i-1].End {
						t.Fatalf("%s sleep has a gap at %v", p.Key, s.Stages[i].Start)
					}
				}
				if h := s.End.Sub(s.Start).Hours(); h < 5.9 || h > 8.6 {
					t.Errorf("%s sleep of %.1f h", p.Key, h)
				}
			}
			for _, hr := range w.HeartRates(p, d) {
				if !hr.At.Before(epoch) {
					t.Errorf("%s heart rate after the epoch: %v", p.Key, hr.At)
				}
			}
		}
		// Most days have a weigh-in and a night, about half a cuff reading.
		if weights < 60 || sleeps < 85 || bps < 30 || bps > 60 {
			t.Errorf("%s: %d weights, %d cuff readings, %d nights in 91 days", p.Key, weights, bps, sleeps)
		}
		for _, e := range w.ECGs(p) {
			if !e.At.Before(epoch) || len(e.Signal(500)) != 15000 {
				t.Errorf("%s ECG %+v", p.Key, e)
			}
		}
		today := days[len(days)-1]
		if a := w.Activity(p, today.AddDate(0, 0, 1)); a.Steps != 0 {
			t.Errorf("%s steps tomorrow: %d", p.Key, a.Steps)
		}
		if _, ok := w.RestingHeartRate(p, today); ok {
			t.Errorf("%s: a resting heart rate for a day not over", p.Key)
		}
	}
}

// TestStepsGrowThroughTheDay: a live push later in the day reports a larger total for the same
// day; weekends differ from weekdays.
func TestStepsGrowThroughTheDay(t *testing.T) {
	w := world(t, 3)
	p := w.People[0]
	day := w.DaysOf(p)[40]
	noon, evening := w.ActivityUntil(p, day, at(day, 12, p.Zone)), w.ActivityUntil(p, day, at(day, 23, p.Zone))
	if noon.Steps <= 0 || evening.Steps <= noon.Steps || evening.Steps != w.Activity(p, day).Steps {
		t.Errorf("steps at noon %d, in the evening %d, whole day %d", noon.Steps, evening.Steps, w.Activity(p, day).Steps)
	}
	var sat, sun float64
	for _, d := range w.DaysOf(p)[:90] {
		switch d.Weekday() {
		case time.Saturday:
			sat += float64(w.Activity(p, d).Steps)
		case time.Sunday:
			sun += float64(w.Activity(p, d).Steps)
		}
	}
	if sat < sun*1.3 {
		t.Errorf("Saturdays %.0f steps, Sundays %.0f: want the weekday pattern", sat, sun)
	}
}

// TestLive: live values follow the person's trend and are keyed by the minute.
func TestLive(t *testing.T) {
	w := world(t, 5)
	p := w.People[1]
	t1 := epoch.Add(10 * time.Minute)
	a, b := w.LiveWeight(p, t1), w.LiveWeight(p, t1)
	if a.Kg != b.Kg || !a.At.Equal(t1) {
		t.Errorf("live weight %v / %v", a, b)
	}
	last, _ := w.Weight(p, w.DaysOf(p)[89])
	if d := a.Kg - last.Kg; d < -3 || d > 3 {
		t.Errorf("live weight %.2f far from the last %.2f", a.Kg, last.Kg)
	}
	if bp := w.LiveBloodPressure(p, t1); bp.Systolic <= bp.Diastolic || !bp.At.Equal(t1) {
		t.Errorf("live cuff %+v", bp)
	}
}

func TestBattery(t *testing.T) {
	w := world(t, 2)
	p := w.People[0]
	seen := map[bool]bool{}
	for h := range 24 * 6 {
		b := w.Battery(p, "tracker", epoch.Add(time.Duration(h)*time.Hour))
		if b < 5 || b > 100 {
			t.Fatalf("battery %d", b)
		}
		seen[b > 50] = true
	}
	if !seen[true] || !seen[false] {
		t.Error("a tracker's battery should drain and be recharged within six days")
	}
}

func TestNewRefuses(t *testing.T) {
	for _, c := range []struct{ n, days int }{{0, 10}, {11, 10}, {3, 0}} {
		if _, err := New(1, c.n, c.days, epoch); err == nil {
			t.Errorf("New(%d people, %d days) accepted", c.n, c.days)
		}
	}
}
