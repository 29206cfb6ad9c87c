package googlehealth

import (
	"net/http"
	"testing"
	"time"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/providers"
	"github.com/openhealthexchange/ohx/providers/providertest"
)

// TestWeightKeepsOffset: a weight at a physical time keeps the user's real UTC offset, before
// and after the clock change.
func TestWeightKeepsOffset(t *testing.T) {
	f := newFixture(t, map[string]providertest.Route{"GET /v4/users/me/dataTypes/weight/dataPoints": file("weight.json")}, fixtureOpts{})
	ss, _ := fetchAll(t, f.c, providers.Query{Kinds: []fhir.SampleKind{fhir.KindWeight}, Start: windowStart, End: windowEnd})
	want := map[string]string{
		"users/hu-7f3a9c/dataTypes/weight/dataPoints/w-20260307-0730":   "2026-03-07T07:30:12-08:00",
		"users/hu-7f3a9c/dataTypes/weight/dataPoints/w-20260309-manual": "2026-03-09T07:05:00-07:00",
	}
	got := byRecord(ss)
	for id, at := range want {
		s, ok := got[id]
		if !ok {
			t.Fatalf("no sample %s", id)
		}
		if f := fhir.FormatDateTime(s.Start); f != at {
			t.Errorf("%s: effective %s, want %s", id, f, at)
		}
	}
	if v := got["users/hu-7f3a9c/dataTypes/weight/dataPoints/w-20260307-0730"].Value; v != "70.250" {
		t.Errorf("70250 g: got %s kg, want 70.250", v)
	}
}

// TestRollupCivilDay: a daily rollup is the civil day in the user's zone as a period; the DST day
// 2026-03-08 in America/Los_Angeles is 23 hours. Without the settings scope (403) the day is
// kept as a date.
func TestRollupCivilDay(t *testing.T) {
	routes := map[string]providertest.Route{
		"POST /v4/users/me/dataTypes/steps/dataPoints:dailyRollUp": file("rollup_steps.json"),
		"GET /v4/users/me/settings":                                file("settings.json"),
	}
	f := newFixture(t, routes, fixtureOpts{})
	ss, _ := fetchAll(t, f.c, providers.Query{Kinds: []fhir.SampleKind{fhir.KindSteps}, Start: windowStart, End: windowEnd})
	s, ok := byRecord(ss)["hu-7f3a9c/2026-03-08/steps"]
	if !ok || len(ss) != 2 {
		t.Fatalf("samples %v: want the steps of 2026-03-07 and -08 (the day without a value skipped)", ss)
	}
	o, err := fhir.MapSample(s, "p1")
	if err != nil {
		t.Fatal(err)
	}
	p := o.EffectivePeriod
	if p == nil || p.Start != "2026-03-08T00:00:00-08:00" || p.End != "2026-03-08T23:59:59-07:00" {
		t.Fatalf("period %+v, want 2026-03-08T00:00:00-08:00 … 2026-03-08T23:59:59-07:00", p)
	}
	start, _ := time.Parse(time.RFC3339, p.Start)
	end, _ := time.Parse(time.RFC3339, p.End)
	if d := end.Add(time.Second).Sub(start); d != 23*time.Hour {
		t.Errorf("the DST day lasts %v, want 23h", d)
	}
	if s.Start.Location().String() != "America/Los_Angeles" {
		t.Errorf("zone %s, want America/Los_Angeles", s.Start.Location())
	}
	// The range sent: the window's civil days in the user's zone, [2026-03-07, 2026-03-10).
	reqs := f.requests("/v4/users/me/dataTypes/steps/dataPoints:dailyRollUp")
	if len(reqs) != 1 {
		t.Fatalf("%d dailyRollUp requests, want 1", len(reqs))
	}
	if got := string(reqs[0].Body); got != `{"range":{"start":{"date":{"year":2026,"month":3,"day":7}},"end":{"date":{"year":2026,"month":3,"day":10}}},"windowSizeDays":1}` {
		t.Errorf("dailyRollUp body %s", got)
	}

	routes["GET /v4/users/me/settings"] = providertest.Route{Status: http.StatusForbidden, File: "googlehealth/error_permission_denied.json"}
	f = newFixture(t, routes, fixtureOpts{})
	ss, _ = fetchAll(t, f.c, providers.Query{Kinds: []fhir.SampleKind{fhir.KindSteps}, Start: windowStart, End: windowEnd})
	if s := byRecord(ss)["hu-7f3a9c/2026-03-08/steps"]; s.Day != "2026-03-08" || !s.Start.IsZero() {
		t.Errorf("without the zone: Day %q Start %v, want the date alone", s.Day, s.Start)
	}
}

// TestRollupChunks: total-calories rolls up at most 14 days per request.
func TestRollupChunks(t *testing.T) {
	routes := map[string]providertest.Route{
		"POST /v4/users/me/dataTypes/total-calories/dataPoints:dailyRollUp": file("rollup_total_calories.json"),
		"GET /v4/users/me/settings":                                         file("settings.json"),
	}
	f := newFixture(t, routes, fixtureOpts{})
	start := time.Date(2026, 2, 1, 8, 0, 0, 0, time.UTC) // 2026-02-01 00:00 PST
	_, pages := fetchAll(t, f.c, providers.Query{Kinds: []fhir.SampleKind{fhir.KindCalories}, Start: start, End: start.AddDate(0, 0, 30)})
	reqs := f.requests("/v4/users/me/dataTypes/total-calories/dataPoints:dailyRollUp")
	if len(reqs) != 3 || len(pages) != 3 {
		t.Fatalf("%d requests over %d pages for 30 days, want 3 (14 + 14 + 2)", len(reqs), len(pages))
	}
	if n := len(f.requests("/v4/users/me/settings")); n != 1 {
		t.Errorf("%d settings reads for one query, want 1", n)
	}
	if got := string(reqs[2].Body); got != `{"range":{"start":{"date":{"year":2026,"month":3,"day":1}},"end":{"date":{"year":2026,"month":3,"day":3}}},"windowSizeDays":1}` {
		t.Errorf("last chunk %s", got)
	}
}
