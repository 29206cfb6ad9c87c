package googlehealthsim

import (
	"math"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/providers"
	"github.com/openhealthexchange/ohx/providers/sim"
)

func itoa(n int) string { return strconv.Itoa(n) }

// worldCounts counts, straight from the world, what the simulator should serve for p's history.
func worldCounts(w *sim.World, p *sim.Person) map[fhir.SampleKind]int {
	c := map[fhir.SampleKind]int{}
	for _, day := range w.DaysOf(p) {
		if _, ok := w.Weight(p, day); ok {
			c[fhir.KindWeight]++
			c[fhir.KindFatRatio]++
		}
		c[fhir.KindHeartRate] += len(w.HeartRates(p, day))
		if _, ok := w.RestingHeartRate(p, day); ok {
			c[fhir.KindRestingHeartRate]++
		}
		if _, ok := w.SpO2(p, day); ok {
			c[fhir.KindSpO2]++
		}
		if _, ok := w.Sleep(p, day); ok {
			c[fhir.KindSleep]++
		}
		a := w.Activity(p, day)
		for k, v := range map[fhir.SampleKind]float64{fhir.KindSteps: float64(a.Steps), fhir.KindDistance: a.DistanceM,
			fhir.KindElevation: float64(a.Floors), fhir.KindCalories: a.TotalKcal} {
			if v > 0 {
				c[k]++
			}
		}
	}
	c[fhir.KindECG] = len(w.ECGs(p))
	return c
}

// TestFetch: the adapter reads each person's whole history; per kind it gets what Served says
// and what the world holds, with the world's values.
func TestFetch(t *testing.T) {
	h := newHarness(t, 42, "")
	for _, p := range h.world.People {
		t.Run(p.Key, func(t *testing.T) {
			g := h.connect(t, p)
			ss := fetchAll(t, h.gh, g, providers.Query{Start: h.world.Start(p), End: h.world.Epoch.Add(time.Hour)})
			got := countKinds(ss)
			if diff := cmp.Diff(h.sim.Served(p), got); diff != "" {
				t.Errorf("fetched vs Served (-served +fetched):\n%s", diff)
			}
			if diff := cmp.Diff(worldCounts(h.world, p), got); diff != "" {
				t.Errorf("fetched vs world (-world +fetched):\n%s", diff)
			}
			spotCheck(t, h.world, p, ss)
		})
	}
}

func spotCheck(t *testing.T, w *sim.World, p *sim.Person, ss []fhir.Sample) {
	t.Helper()
	by := map[fhir.SampleKind][]fhir.Sample{}
	for _, s := range ss {
		by[s.Kind] = append(by[s.Kind], s)
	}
	days := w.DaysOf(p)
	// A weigh-in: kg at its instant, in the person's offset.
	for _, day := range days {
		wt, ok := w.Weight(p, day)
		if !ok {
			continue
		}
		var found bool
		for _, s := range by[fhir.KindWeight] {
			if s.Start.Equal(wt.At) {
				found = true
				_, want := wt.At.In(p.Zone).Zone()
				if _, off := s.Start.Zone(); off != want || s.Unit != "kg" || math.Abs(num(t, s.Value)-wt.Kg) > 1e-9 {
					t.Errorf("weight %s: %s %s offset %d, want %v kg offset %d", wt.At, s.Value, s.Unit, off, wt.Kg, want)
				}
			}
		}
		if !found {
			t.Errorf("no weight sample at %s", wt.At)
		}
		break
	}
	// A day's steps, placed at the local midnight.
	day := days[len(days)/2]
	want := w.Activity(p, day).Steps
	var steps *fhir.Sample
	for i, s := range by[fhir.KindSteps] {
		if s.Start.Equal(day) {
			steps = &by[fhir.KindSteps][i]
		}
	}
	if steps == nil || steps.Value != fhir.Decimal(itoa(want)) || steps.Unit != "/d" {
		t.Errorf("steps on %s: %+v, want %d", day.Format(time.DateOnly), steps, want)
	}
	// A night's sleep: its interval and the minutes asleep, with stage components.
	sl, ok := w.Sleep(p, day)
	if !ok {
		t.Fatalf("no sleep on %s", day)
	}
	var found bool
	for _, s := range by[fhir.KindSleep] {
		if !s.Start.Equal(sl.Start) {
			continue
		}
		found = true
		asleep := sl.Minutes(sim.StageLight) + sl.Minutes(sim.StageDeep) + sl.Minutes(sim.StageREM)
		if !s.End.Equal(sl.End) || s.Value != fhir.Decimal(itoa(asleep)) || s.Unit != "min" {
			t.Errorf("sleep %s: %s–%s %s %s, want end %s, %d min", sl.Start, s.Start, s.End, s.Value, s.Unit, sl.End, asleep)
		}
		comp := map[fhir.SampleKind]fhir.Decimal{}
		for _, c := range s.Components {
			comp[c.Kind] = c.Value
		}
		if comp[fhir.KindSleepDeep] != fhir.Decimal(itoa(sl.Minutes(sim.StageDeep))) || comp[fhir.KindSleepTimeInBed] != fhir.Decimal(itoa(int(sl.End.Sub(sl.Start)/time.Minute))) {
			t.Errorf("sleep components %v", comp)
		}
	}
	if !found {
		t.Errorf("no sleep sample starting %s", sl.Start)
	}
	// ECGs: the rhythm as the adapter codes it, the world's heart rate and trace.
	rhythm := map[string]string{sim.RhythmNormal: fhir.RhythmSinus, sim.RhythmAFib: fhir.RhythmAtrialFibrillation, sim.RhythmInconclusive: fhir.RhythmInconclusive}
	ecgs := w.ECGs(p)
	for i, e := range ecgs {
		if i >= len(by[fhir.KindECG]) {
			break
		}
		s := by[fhir.KindECG][i]
		if !s.Start.Equal(e.At) || s.Code != rhythm[e.Rhythm] || s.Waveform == nil || len(s.Waveform.Samples) != e.Seconds*ecgHz ||
			len(s.Components) != 1 || s.Components[0].Value != fhir.Decimal(itoa(e.HeartRate)) {
			t.Errorf("ECG %s: start %s code %s, want %s", e.At, s.Start, s.Code, rhythm[e.Rhythm])
		}
	}
}
