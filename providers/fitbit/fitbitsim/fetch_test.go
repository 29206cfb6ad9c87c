package fitbitsim

import (
	"math"
	"slices"
	"strconv"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/providers"
	"github.com/openhealthexchange/ohx/providers/sim"
)

// TestConnect drives the consent page and the adapter's code exchange: the connection is the
// chosen account's.
func TestConnect(t *testing.T) {
	e := newEnv(t, envOpts{})
	for _, p := range e.people {
		g := e.connect(t, p)
		if g.UserID != e.sim.UserID(p) {
			t.Errorf("%s: user id %q, want %q", p.Key, g.UserID, e.sim.UserID(p))
		}
		if g.Token.AccessToken == "" || g.Token.RefreshToken == "" || !slices.Contains(g.Scopes, "profile") {
			t.Errorf("%s: grant %+v", p.Key, g)
		}
	}
}

// worldCounts are the sample counts computed from the world directly, for the kinds sim
// measures: one weigh-in a day gives a weight, a BMI and a fat ratio; every history day has
// steps, distance and calories (full days have at least 300 steps; the Epoch's day is the
// tracker's last sync day, where zeros count).
func worldCounts(w *sim.World, p *sim.Person) map[fhir.SampleKind]int {
	out := map[fhir.SampleKind]int{}
	for _, d := range w.DaysOf(p) {
		if _, ok := w.Weight(p, d); ok {
			out[fhir.KindWeight]++
			out[fhir.KindBMI]++
			out[fhir.KindFatRatio]++
		}
		out[fhir.KindSteps]++
		out[fhir.KindDistance]++
		out[fhir.KindCalories]++
		if _, ok := w.RestingHeartRate(p, d); ok {
			out[fhir.KindRestingHeartRate]++
		}
		if _, ok := w.Sleep(p, d); ok {
			out[fhir.KindSleep]++
		}
		if _, ok := w.SpO2(p, d); ok {
			out[fhir.KindSpO2]++
		}
	}
	out[fhir.KindECG] = len(w.ECGs(p))
	return out
}

// TestFetch: the adapter reads each person's whole history; per kind it yields what Served
// counts and what the world holds, with the world's values.
func TestFetch(t *testing.T) {
	e := newEnv(t, envOpts{})
	for _, p := range e.people {
		t.Run(p.Key, func(t *testing.T) {
			g := e.connect(t, p)
			samples := e.fetchAll(t, g.UserID, tokenSource(g), providers.Query{Start: e.w.Start(p), End: e.clock.Now()})
			got := countKinds(samples)
			served := e.sim.Served(p)
			if diff := cmp.Diff(served, got); diff != "" {
				t.Errorf("Served vs the adapter's samples (-served +adapter):\n%s", diff)
			}
			for k := range served {
				if !slices.Contains(e.adapter.Kinds(), k) {
					t.Errorf("Served counts %s, which the adapter does not read by default", k)
				}
			}
			for k, want := range worldCounts(e.w, p) {
				if got[k] != want {
					t.Errorf("%s: %d samples, the world has %d", k, got[k], want)
				}
			}
			for _, k := range []fhir.SampleKind{fhir.KindHRVRMSSD, fhir.KindRespiratoryRate, fhir.KindSkinTemperatureVariation, fhir.KindElevation} {
				if got[k] < testDays/2 {
					t.Errorf("%s: only %d samples in %d days", k, got[k], testDays)
				}
			}
			spotCheck(t, e.w, p, samples)
		})
	}
}

func byKind(samples []fhir.Sample, k fhir.SampleKind) []fhir.Sample {
	var out []fhir.Sample
	for _, s := range samples {
		if s.Kind == k {
			out = append(out, s)
		}
	}
	return out
}

func decimal(t testing.TB, d fhir.Decimal) float64 {
	t.Helper()
	f, err := strconv.ParseFloat(string(d), 64)
	if err != nil {
		t.Fatalf("value %q: %v", d, err)
	}
	return f
}

// spotCheck compares samples with the world: weights (kg, instant, BMI), a day's steps and
// distance, sleeps (session and minutes asleep), ECG rhythms and heart rates.
func spotCheck(t *testing.T, w *sim.World, p *sim.Person, samples []fhir.Sample) {
	t.Helper()
	days := w.DaysOf(p)
	weights := byKind(samples, fhir.KindWeight)
	checked := 0
	for _, d := range days {
		wt, ok := w.Weight(p, d)
		if !ok {
			continue
		}
		i := slices.IndexFunc(weights, func(s fhir.Sample) bool { return s.Start.Equal(wt.At) })
		if i < 0 {
			t.Fatalf("no weight sample at %v", wt.At)
		}
		if s := weights[i]; decimal(t, s.Value) != wt.Kg || s.Unit != "kg" || s.DeviceID == "" || s.Start.Location().String() != p.Zone.String() {
			t.Errorf("weight at %v: %s %s device %q zone %v, want %v kg from the scale", wt.At, s.Value, s.Unit, s.DeviceID, s.Start.Location(), wt.Kg)
		}
		checked++
	}
	if checked == 0 {
		t.Error("no weigh-in checked")
	}
	for _, s := range byKind(samples, fhir.KindBMI) {
		if b := decimal(t, s.Value); b < 15 || b > 40 {
			t.Errorf("BMI %v", b)
		}
	}
	day := days[10]
	a := w.Activity(p, day)
	steps := byKind(samples, fhir.KindSteps)
	i := slices.IndexFunc(steps, func(s fhir.Sample) bool { return s.Start.Equal(day) })
	if i < 0 || string(steps[i].Value) != strconv.Itoa(a.Steps) {
		t.Errorf("steps on %s: %v, want %d", day.Format(layoutDate), steps, a.Steps)
	}
	dist := byKind(samples, fhir.KindDistance)
	i = slices.IndexFunc(dist, func(s fhir.Sample) bool { return s.Start.Equal(day) })
	if i < 0 || math.Abs(decimal(t, dist[i].Value)*1000-a.DistanceM) > 0.05 || dist[i].Unit != "km" {
		t.Errorf("distance on %s: want %v m", day.Format(layoutDate), a.DistanceM)
	}
	sleeps := byKind(samples, fhir.KindSleep)
	nights := 0
	for _, d := range days {
		sl, ok := w.Sleep(p, d)
		if !ok {
			continue
		}
		i := slices.IndexFunc(sleeps, func(s fhir.Sample) bool { return s.Start.Equal(sl.Start) })
		if i < 0 {
			t.Fatalf("no sleep sample starting %v", sl.Start)
		}
		s := sleeps[i]
		asleep := sl.Minutes(sim.StageLight) + sl.Minutes(sim.StageDeep) + sl.Minutes(sim.StageREM)
		if !s.End.Equal(sl.End) || string(s.Value) != strconv.Itoa(asleep) || s.Unit != "min" || len(s.Components) < 4 {
			t.Errorf("sleep %v: end %v value %s components %d, want end %v and %d min", sl.Start, s.End, s.Value, len(s.Components), sl.End, asleep)
		}
		nights++
	}
	if nights == 0 {
		t.Error("no night checked")
	}
	code := map[string]string{sim.RhythmNormal: fhir.RhythmSinus, sim.RhythmAFib: fhir.RhythmAtrialFibrillation, sim.RhythmInconclusive: fhir.RhythmInconclusive}
	ecgs := byKind(samples, fhir.KindECG)
	for _, x := range w.ECGs(p) {
		i := slices.IndexFunc(ecgs, func(s fhir.Sample) bool { return s.Start.Equal(x.At) })
		if i < 0 {
			t.Fatalf("no ECG sample at %v", x.At)
		}
		s := ecgs[i]
		if s.Code != code[x.Rhythm] || s.Waveform == nil || len(s.Waveform.Samples) != x.Seconds*ecgHz ||
			len(s.Components) != 1 || string(s.Components[0].Value) != strconv.Itoa(x.HeartRate) || s.DeviceID == "" {
			t.Errorf("ECG at %v: code %q, want %q (rhythm %s, %d bpm)", x.At, s.Code, code[x.Rhythm], x.Rhythm, x.HeartRate)
		}
		// The waveform comes back in µV within the rounding of one count.
		uv := x.Signal(ecgHz)
		f := decimal(t, s.Waveform.Factor)
		for j := 0; j < len(uv); j += 500 {
			if got := float64(s.Waveform.Samples[j]) * f; math.Abs(got-float64(uv[j])) > f {
				t.Fatalf("ECG at %v sample %d: %v µV, want %d", x.At, j, got, uv[j])
			}
		}
	}
	rhr := byKind(samples, fhir.KindRestingHeartRate)
	for _, s := range rhr {
		want, ok := w.RestingHeartRate(p, s.Start)
		if !ok || string(s.Value) != strconv.Itoa(want) {
			t.Errorf("resting heart rate on %v: %s, want %d", s.Start, s.Value, want)
		}
	}
	spo2 := byKind(samples, fhir.KindSpO2)
	for _, s := range spo2 {
		want, ok := w.SpO2(p, s.Start)
		if !ok || decimal(t, s.Value) != want {
			t.Errorf("SpO2 on %v: %s, want %v", s.Start, s.Value, want)
		}
	}
}
