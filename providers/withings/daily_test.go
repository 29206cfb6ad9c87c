package withings

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/providers"
	"github.com/openhealthexchange/ohx/providers/providertest"
)

var activityKinds = []fhir.SampleKind{fhir.KindSteps, fhir.KindDistance, fhir.KindElevation, fhir.KindCalories}

func TestActivity(t *testing.T) {
	f := newFixture(t, map[string]providertest.Route{
		"POST /v2/measure action=getactivity": file("getactivity.json"),
	}, fixtureOpts{kinds: activityKinds})
	got, pages := fetchAll(t, f.c, providers.Query{Since: time.Unix(1704000000, 0)})
	if len(pages) != 1 {
		t.Fatalf("%d pages, want 1", len(pages))
	}
	type row struct {
		Kind       fhir.SampleKind
		Value      fhir.Decimal
		Unit       string
		Start, End string
		Day        string
		Device     string
	}
	m := map[string]row{}
	for _, s := range got {
		r := row{Kind: s.Kind, Value: s.Value, Unit: s.Unit, Day: s.Day, Device: s.DeviceID}
		if !s.Start.IsZero() {
			r.Start, r.End = s.Start.Format(time.RFC3339), s.End.Format(time.RFC3339)
		}
		if s.System != "withings/activity" || s.Provider != "withings" || s.UserID != testUser || s.Manual {
			t.Errorf("%s: %+v", s.RecordID, s)
		}
		m[s.RecordID] = r
	}
	const jan15s, jan15e = "2024-01-15T00:00:00+01:00", "2024-01-15T23:59:59+01:00"
	// 2024-03-31 Paris: clocks go forward at 02:00 — a 23-hour day.
	const mar31s, mar31e = "2024-03-31T00:00:00+01:00", "2024-03-31T23:59:59+02:00"
	// 2024-10-27 Paris: clocks go back at 03:00 — a 25-hour day.
	const oct27s, oct27e = "2024-10-27T00:00:00+02:00", "2024-10-27T23:59:59+01:00"
	// 2024-03-10 New York: clocks go forward at 02:00.
	const mar10s, mar10e = "2024-03-10T00:00:00-05:00", "2024-03-10T23:59:59-04:00"
	want := map[string]row{
		// W11
		"12345/2024-01-15/steps":     {fhir.KindSteps, "10000", "/d", jan15s, jan15e, "", "device-123"},
		"12345/2024-01-15/distance":  {fhir.KindDistance, "8500", "m", jan15s, jan15e, "", "device-123"},
		"12345/2024-01-15/elevation": {fhir.KindElevation, "50", "{floors}", jan15s, jan15e, "", "device-123"},
		"12345/2024-01-15/calories":  {fhir.KindCalories, "350", "kcal/d", jan15s, jan15e, "", "device-123"},

		"12345/2024-03-31/steps":     {fhir.KindSteps, "6012", "/d", mar31s, mar31e, "", "device-123"},
		"12345/2024-03-31/distance":  {fhir.KindDistance, "4507.62", "m", mar31s, mar31e, "", "device-123"},
		"12345/2024-03-31/elevation": {fhir.KindElevation, "3", "{floors}", mar31s, mar31e, "", "device-123"},
		"12345/2024-03-31/calories":  {fhir.KindCalories, "212.84", "kcal/d", mar31s, mar31e, "", "device-123"},

		"12345/2024-10-27/steps":     {fhir.KindSteps, "8840", "/d", oct27s, oct27e, "", "device-123"},
		"12345/2024-10-27/distance":  {fhir.KindDistance, "6611.5", "m", oct27s, oct27e, "", "device-123"},
		"12345/2024-10-27/elevation": {fhir.KindElevation, "7", "{floors}", oct27s, oct27e, "", "device-123"},
		"12345/2024-10-27/calories":  {fhir.KindCalories, "301.05", "kcal/d", oct27s, oct27e, "", "device-123"},

		// An external source (Apple Health) aggregated by Withings: no device.
		"12345/2024-03-10/steps":     {fhir.KindSteps, "4321", "/d", mar10s, mar10e, "", ""},
		"12345/2024-03-10/distance":  {fhir.KindDistance, "3012.04", "m", mar10s, mar10e, "", ""},
		"12345/2024-03-10/elevation": {fhir.KindElevation, "0", "{floors}", mar10s, mar10e, "", ""},
		"12345/2024-03-10/calories":  {fhir.KindCalories, "150", "kcal/d", mar10s, mar10e, "", ""},

		// No time zone: a day-precision date, never T00:00:00Z; null fields are absent.
		"12345/2024-03-11/steps":    {fhir.KindSteps, "900", "/d", "", "", "2024-03-11", "device-123"},
		"12345/2024-03-11/calories": {fhir.KindCalories, "33.5", "kcal/d", "", "", "2024-03-11", "device-123"},
	}
	if diff := cmp.Diff(want, m); diff != "" {
		t.Errorf("samples (-want +got):\n%s", diff)
	}
	// Period lengths (inclusive ends).
	for id, h := range map[string]time.Duration{
		"12345/2024-03-31/steps": 23 * time.Hour, "12345/2024-10-27/steps": 25 * time.Hour,
		"12345/2024-01-15/steps": 24 * time.Hour, "12345/2024-03-10/steps": 23 * time.Hour,
	} {
		s := byRecord(got)[id]
		if d := s.End.Sub(s.Start) + time.Second; d != h {
			t.Errorf("%s covers %v, want %v", id, d, h)
		}
	}
	r := f.requests("/v2/measure")[0].Form
	if r.Get("data_fields") != "steps,distance,elevation,calories" || r.Get("lastupdate") != "1704000000" {
		t.Errorf("getactivity form %v", r)
	}
}

func TestActivityDefaultsAndWindow(t *testing.T) {
	// A kind the deployment did not enable (distance here) is never requested, even if asked for.
	f := newFixture(t, map[string]providertest.Route{
		"POST /v2/measure action=getactivity":          file("getactivity_page1.json"),
		"POST /v2/measure action=getactivity offset=1": file("getactivity_page2.json"),
	}, fixtureOpts{kinds: []fhir.SampleKind{fhir.KindSteps, fhir.KindCalories}})
	got, pages := fetchAll(t, f.c, providers.Query{
		Kinds: []fhir.SampleKind{fhir.KindSteps, fhir.KindCalories, fhir.KindDistance},
		Start: at("2024-01-15T00:00:00Z"), End: at("2024-01-17T00:00:00Z"),
	})
	if len(pages) != 2 {
		t.Fatalf("%d pages, want 2", len(pages))
	}
	wantIDs := []string{"12345/2024-01-15/calories", "12345/2024-01-15/steps", "12345/2024-01-16/calories", "12345/2024-01-16/steps"}
	if diff := cmp.Diff(wantIDs, recordIDs(got)); diff != "" {
		t.Errorf("records (-want +got):\n%s", diff)
	}
	if v := byRecord(got)["12345/2024-01-16/steps"].Value; v != "12345" {
		t.Errorf("steps = %s", v)
	}
	reqs := f.requests("/v2/measure")
	r := reqs[0].Form
	if r.Get("startdateymd") != "2024-01-15" || r.Get("enddateymd") != "2024-01-16" || r.Has("lastupdate") {
		t.Errorf("window form %v", r)
	}
	if r.Get("data_fields") != "steps,calories" {
		t.Errorf("data_fields = %q, want only enabled kinds", r.Get("data_fields"))
	}
	if reqs[1].Form.Get("offset") != "1" {
		t.Errorf("second page offset = %q", reqs[1].Form.Get("offset"))
	}
}

// TestSleepSummary is W12, plus a summary whose durations are not whole minutes and an external
// source without stages.
func TestSleepSummary(t *testing.T) {
	f := newFixture(t, map[string]providertest.Route{
		"POST /v2/sleep action=getsummary": file("getsummary.json"),
	}, fixtureOpts{kinds: []fhir.SampleKind{fhir.KindSleep, fhir.KindRespiratoryRate, fhir.KindHeartRate}})
	got, _ := fetchAll(t, f.c, providers.Query{Kinds: []fhir.SampleKind{fhir.KindSleep, fhir.KindRespiratoryRate}, Since: time.Unix(1704000000, 0)})
	s0, s1 := time.Unix(1704067200, 0), time.Unix(1704096000, 0)
	base := fhir.Sample{Provider: "withings", UserID: testUser, System: "withings/sleep", Start: s0, End: s1, DeviceID: "device-123"}
	session := base
	session.Kind, session.RecordID, session.Value, session.Unit = fhir.KindSleep, "12345/987/duration", "420", "min"
	session.Components = []fhir.SampleComponent{
		{Kind: fhir.KindSleepLight, Value: "240", Unit: "min"},
		{Kind: fhir.KindSleepDeep, Value: "120", Unit: "min"},
		{Kind: fhir.KindSleepREM, Value: "60", Unit: "min"},
		{Kind: fhir.KindSleepAwake, Value: "26", Unit: "min"},
		{Kind: fhir.KindSleepTimeInBed, Value: "480", Unit: "min"},
		{Kind: fhir.KindSleepLatency, Value: "10", Unit: "min"},
		{Kind: fhir.KindSleepEfficiency, Value: "0.92", Unit: "1"},
		{Kind: fhir.KindSleepWakeupCount, Value: "2"},
		{Kind: fhir.KindSleepScore, Value: "85"},
	}
	rr := base
	rr.Kind, rr.RecordID, rr.Value, rr.Unit = fhir.KindRespiratoryRate, "12345/987/rr-average", "16", "/min"
	hr := base
	hr.Kind, hr.RecordID, hr.Value, hr.Unit = fhir.KindHeartRate, "12345/987/hr-average", "62", "/min"

	m := byRecord(got)
	for _, w := range []fhir.Sample{session, rr} {
		if diff := cmp.Diff(w, m[w.RecordID]); diff != "" {
			t.Errorf("%s (-want +got):\n%s", w.RecordID, diff)
		}
	}
	if _, ok := m[hr.RecordID]; ok {
		t.Error("heart rate from sleep emitted although the query did not ask for heart rate")
	}
	if g := m["12345/987/duration"].Start.Format(time.RFC3339); g != "2024-01-01T01:00:00+01:00" {
		t.Errorf("Start = %s, want the Paris offset", g)
	}

	// Durations that are not whole minutes stay exact where the decimal terminates.
	second := m["12345/988/duration"]
	if second.Value != "433.3333" {
		t.Errorf("26000 s = %s min, want 433.3333", second.Value)
	}
	wantComps := []fhir.SampleComponent{
		{Kind: fhir.KindSleepLight, Value: "250", Unit: "min"},
		{Kind: fhir.KindSleepDeep, Value: "90.3333", Unit: "min"},
		{Kind: fhir.KindSleepREM, Value: "93", Unit: "min"},
		{Kind: fhir.KindSleepAwake, Value: "16.6833", Unit: "min"},
	}
	if diff := cmp.Diff(wantComps, second.Components); diff != "" {
		t.Errorf("988 components (-want +got):\n%s", diff)
	}
	if g := second.End.Format(time.RFC3339); g != "2024-07-05T06:56:40-04:00" {
		t.Errorf("End = %s", g)
	}
	if m["12345/988/rr-average"].Value != "14.5" {
		t.Errorf("rr = %s, want 14.5", m["12345/988/rr-average"].Value)
	}
	// External source: asleepduration, no stages, no device.
	ext := m["12345/989/duration"]
	if ext.Value != "400" || len(ext.Components) != 0 || ext.DeviceID != "" {
		t.Errorf("external summary = %+v", ext)
	}

	r := f.requests("/v2/sleep")[0].Form
	if r.Get("lastupdate") != "1704000000" || r.Get("data_fields") == "" {
		t.Errorf("getsummary form %v", r)
	}

	// With heart rate asked for, hr_average becomes a heart-rate sample over the session.
	g := newFixture(t, map[string]providertest.Route{
		"POST /v2/sleep action=getsummary": file("getsummary.json"),
	}, fixtureOpts{kinds: []fhir.SampleKind{fhir.KindSleep, fhir.KindRespiratoryRate, fhir.KindHeartRate}})
	p, _, _, err := g.c.fetchSleep(t.Context(), testUser, bearer("a1"), window{since: true}, 0, g.c.wanted(nil))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(hr, byRecord(p)[hr.RecordID]); diff != "" {
		t.Errorf("hr-average (-want +got):\n%s", diff)
	}
}

func TestMinutes(t *testing.T) {
	for in, want := range map[string]fhir.Decimal{
		"25200": "420", "1560": "26", "90": "1.5", "1": "0.0167", "20": "0.3333", "0": "0", "45": "0.75",
	} {
		got, ok := minutes(jsonNumber(in))
		if !ok || got != want {
			t.Errorf("minutes(%s) = %s, want %s", in, got, want)
		}
	}
	if _, ok := minutes(""); ok {
		t.Error("minutes(\"\") ok")
	}
}
