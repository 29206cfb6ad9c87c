package fitbit

import (
	"errors"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/providers"
	"github.com/openhealthexchange/ohx/providers/fitbit/fitbittest"
	"github.com/openhealthexchange/ohx/providers/providertest"
)

// TestHappyPathWindow reads every kind of the fixture window through fitbittest.Routes: the
// profile and devices once (cached), one request per endpoint, both ECG pages.
func TestHappyPathWindow(t *testing.T) {
	f := newFixture(t, fitbittest.Routes(), opts{})
	samples, pages := fetchAll(t, f.c, testWindowQ)
	got := map[fhir.SampleKind]int{}
	for _, s := range samples {
		got[s.Kind]++
		o, err := fhir.MapSample(s, testPatient)
		if err != nil {
			t.Fatalf("%s %s: MapSample: %v", s.Kind, s.RecordID, err)
		}
		b := checkResource(t, o, "Observation", fhir.R4Options{})
		// One golden per kind of the fixtures' window (the second ECG numbered).
		name := string(s.Kind)
		if got[s.Kind] > 1 {
			name += "-" + strconv.Itoa(got[s.Kind])
		}
		compareGolden(t, filepath.Join("fitbit", name+".json"), b)
	}
	want := map[fhir.SampleKind]int{
		fhir.KindSteps: 1, fhir.KindDistance: 1, fhir.KindCalories: 1, fhir.KindRestingHeartRate: 1,
		fhir.KindWeight: 1, fhir.KindBMI: 1, fhir.KindFatRatio: 1, fhir.KindSleep: 1, fhir.KindSpO2: 1,
		fhir.KindHRVRMSSD: 1, fhir.KindRespiratoryRate: 1, fhir.KindSkinTemperatureVariation: 1, fhir.KindECG: 2,
	}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("%s: %d samples, want %d", k, got[k], n)
		}
	}
	// Floors are 0 on both days: on 2024-01-15 (the day of the last sync) a real zero, on the
	// 16th no data.
	if got[fhir.KindElevation] != 1 {
		t.Errorf("floors: %d samples, want the synced day's zero only", got[fhir.KindElevation])
	}
	if len(pages) != 14 {
		t.Errorf("%d pages, want one per endpoint (13) plus the second ECG page", len(pages))
	}
	for _, key := range []string{"GET /1/user/-/profile.json", "GET /1/user/-/devices.json"} {
		if n := f.srv.Hits(key); n != 1 {
			t.Errorf("%s: %d requests, want 1 (cached per user)", key, n)
		}
	}
	if !pages[0].SyncedUntil.Equal(fitbittest.Now.Add(-clockSkew)) || !pages[len(pages)-1].SyncedUntil.Equal(pages[0].SyncedUntil) {
		t.Errorf("SyncedUntil %v … %v, want the first page's clock minus skew on every page", pages[0].SyncedUntil, pages[len(pages)-1].SyncedUntil)
	}
}

// TestChunking: a range is split at the endpoint's documented maximum (vector F5: 66 days of HRV
// are 30 + 30 + 6).
func TestChunking(t *testing.T) {
	f := newFixture(t, base(map[string]providertest.Route{
		"GET /1/user/-/hrv/date/2023-08-01/2023-08-30.json": {Body: `{"hrv":[]}`},
		"GET /1/user/-/hrv/date/2023-08-31/2023-09-29.json": {Body: `{"hrv":[]}`},
		"GET /1/user/-/hrv/date/2023-09-30/2023-10-05.json": {Body: `{"hrv":[]}`},
	}), opts{})
	start := time.Date(2023, 8, 1, 0, 0, 0, 0, berlin)
	_, pages := fetchAll(t, f.c, providers.Query{Kinds: []fhir.SampleKind{fhir.KindHRVRMSSD}, Start: start, End: start.AddDate(0, 0, 66)})
	if len(pages) != 3 {
		t.Errorf("%d pages, want 3", len(pages))
	}
	var hrv int
	for _, c := range f.rec.calls() {
		if c.Endpoint == "hrv" {
			hrv++
			if c.User != testUser {
				t.Errorf("HRV call charged to %q, want the user's hourly budget", c.User)
			}
		}
	}
	if hrv != 3 {
		t.Errorf("%d HRV requests, want 3", hrv)
	}
}

func TestCursorValidated(t *testing.T) {
	f := newFixture(t, fitbittest.Routes(), opts{})
	p, err := f.c.Fetch(t.Context(), testUser, bearer("a1"), providers.Query{Kinds: []fhir.SampleKind{fhir.KindSteps, fhir.KindWeight}, Start: fitbittest.WindowStart, End: fitbittest.WindowEnd})
	if err != nil || p.Next == "" {
		t.Fatalf("first page: %v, next %q", err, p.Next)
	}
	for name, q := range map[string]providers.Query{
		"garbage":     {Cursor: "not-a-cursor", Kinds: []fhir.SampleKind{fhir.KindSteps, fhir.KindWeight}},
		"other kinds": {Cursor: p.Next, Kinds: []fhir.SampleKind{fhir.KindSleep}},
	} {
		_, err := f.c.Fetch(t.Context(), testUser, bearer("a1"), q)
		if ue := upstreamErr(t, err); ue.Kind != providers.KindPermanent || !errors.Is(err, errCursor) {
			t.Errorf("%s cursor: %v, want a permanent invalid-cursor error", name, err)
		}
	}
}

func TestFreshBypassesCache(t *testing.T) {
	f := newFixture(t, base(map[string]providertest.Route{
		"GET /1/user/-/activities/steps/date/2024-01-15/2024-01-16.json": file("activities_steps.json"),
	}), opts{cacheTTL: time.Minute})
	q := providers.Query{Kinds: []fhir.SampleKind{fhir.KindSteps}, Start: fitbittest.WindowStart, End: fitbittest.WindowEnd}
	for _, fresh := range []bool{false, true} {
		q.Fresh = fresh
		if _, err := f.c.Fetch(t.Context(), testUser, bearer("a1"), q); err != nil {
			t.Fatal(err)
		}
	}
	var cacheable []bool
	for _, c := range f.rec.calls() {
		if c.Endpoint == "activities/steps" {
			cacheable = append(cacheable, c.Cacheable)
		}
	}
	if !slices.Equal(cacheable, []bool{true, false}) {
		t.Errorf("steps calls cacheable %v, want [true false]", cacheable)
	}
}

// TestTimeZones: a user in America/Los_Angeles. A weight logged at local 07:15:30 on a winter
// date is 15:15:30Z; a daily step total is the local day, the DST-change day 2024-03-10 being 23
// hours long there.
func TestTimeZones(t *testing.T) {
	routes := map[string]providertest.Route{
		"GET /1/user/-/profile.json":                                     file("profile_los_angeles.json"),
		"GET /1/user/-/devices.json":                                     file("devices.json"),
		"GET /1/user/-/body/log/weight/date/2024-01-15/2024-01-15.json":  file("body_weight_la.json"),
		"GET /1/user/-/activities/steps/date/2024-03-10/2024-03-10.json": {Body: `{"activities-steps":[{"dateTime":"2024-03-10","value":"5230"}]}`},
	}
	f := newFixture(t, routes, opts{})
	ws, _ := fetchAll(t, f.c, providers.Query{Kinds: []fhir.SampleKind{fhir.KindWeight}, Start: time.Date(2024, 1, 15, 0, 0, 0, 0, losAngeles), End: time.Date(2024, 1, 16, 0, 0, 0, 0, losAngeles)})
	if len(ws) != 1 || !ws[0].Start.Equal(time.Date(2024, 1, 15, 15, 15, 30, 0, time.UTC)) {
		t.Fatalf("weight samples %+v, want one at 2024-01-15T15:15:30Z", ws)
	}
	if !ws[0].Manual || ws[0].DeviceID != "" {
		t.Errorf("an API-logged weight: Manual %v device %q, want patient-reported without device", ws[0].Manual, ws[0].DeviceID)
	}
	ss, _ := fetchAll(t, f.c, providers.Query{Kinds: []fhir.SampleKind{fhir.KindSteps}, Start: time.Date(2024, 3, 10, 0, 0, 0, 0, losAngeles), End: time.Date(2024, 3, 11, 0, 0, 0, 0, losAngeles)})
	if len(ss) != 1 || !ss[0].Start.Equal(time.Date(2024, 3, 10, 8, 0, 0, 0, time.UTC)) {
		t.Fatalf("steps %+v, want one starting at local midnight 08:00Z", ss)
	}
	o, err := fhir.MapSample(ss[0], testPatient)
	if err != nil {
		t.Fatal(err)
	}
	start, err1 := time.Parse(time.RFC3339, o.EffectivePeriod.Start)
	end, err2 := time.Parse(time.RFC3339, o.EffectivePeriod.End)
	if err1 != nil || err2 != nil {
		t.Fatalf("period %+v", o.EffectivePeriod)
	}
	if got := end.Sub(start); got != 23*time.Hour-time.Second {
		t.Errorf("DST day period %v → %v is %v long, want 23 h minus the last second", start, end, got)
	}
	if !strings.HasSuffix(o.EffectivePeriod.Start, "-08:00") || !strings.HasSuffix(o.EffectivePeriod.End, "-07:00") {
		t.Errorf("period %s → %s, want the zone's offsets -08:00 → -07:00", o.EffectivePeriod.Start, o.EffectivePeriod.End)
	}
}

// TestZeroDays: a zero is kept only on the local date of the tracker's last sync (2024-01-15 in
// devices.json); zeros before it (a day not worn or not synced) and after it are no data; without
// any synced tracker every zero is dropped; non-zero values are kept.
func TestZeroDays(t *testing.T) {
	steps := `{"activities-steps":[{"dateTime":"2024-01-14","value":"0"},{"dateTime":"2024-01-15","value":"0"},{"dateTime":"2024-01-16","value":"0"},{"dateTime":"2024-01-17","value":"12"}]}`
	for name, tc := range map[string]struct {
		devices string
		want    []string
	}{
		"tracker synced 2024-01-15": {"fitbit/devices.json", []string{"ABC123/2024-01-15/steps", "ABC123/2024-01-17/steps"}},
		"no devices":                {"", []string{"ABC123/2024-01-17/steps"}},
	} {
		t.Run(name, func(t *testing.T) {
			dev := providertest.Route{File: tc.devices}
			if tc.devices == "" {
				dev = providertest.Route{Body: `[]`}
			}
			f := newFixture(t, map[string]providertest.Route{
				"GET /1/user/-/profile.json":                                     file("profile.json"),
				"GET /1/user/-/devices.json":                                     dev,
				"GET /1/user/-/activities/steps/date/2024-01-14/2024-01-17.json": {Body: steps},
			}, opts{})
			ss, _ := fetchAll(t, f.c, providers.Query{Kinds: []fhir.SampleKind{fhir.KindSteps},
				Start: time.Date(2024, 1, 14, 0, 0, 0, 0, berlin), End: time.Date(2024, 1, 18, 0, 0, 0, 0, berlin)})
			var ids []string
			for _, s := range ss {
				ids = append(ids, s.RecordID)
			}
			if !slices.Equal(ids, tc.want) {
				t.Errorf("records %v, want %v", ids, tc.want)
			}
		})
	}
}

// TestRateLimitHeaders is vector F15: a response with Remaining 0 and Reset 1800 stops further
// calls for that user for 1800 s, locally, without a request; other users are unaffected; a 429
// takes its delay from the reset header.
func TestRateLimitHeaders(t *testing.T) {
	spent := http.Header{"Fitbit-Rate-Limit-Limit": {"150"}, "Fitbit-Rate-Limit-Remaining": {"0"}, "Fitbit-Rate-Limit-Reset": {"1800"}}
	f := newFixture(t, map[string]providertest.Route{
		"GET /1/user/-/profile.json": {File: "fitbit/profile.json", Header: spent},
	}, opts{})
	if _, err := f.c.zone(t.Context(), testUser, bearer("a1")); err != nil {
		t.Fatalf("the answer that spent the quota is still an answer: %v", err)
	}
	before := len(f.srv.Requests())
	_, err := f.c.Fetch(t.Context(), testUser, bearer("a1"), providers.Query{Kinds: []fhir.SampleKind{fhir.KindSteps}, Start: fitbittest.WindowStart, End: fitbittest.WindowEnd})
	ue := upstreamErr(t, err)
	if ue.Kind != providers.KindThrottled || ue.RetryAfter != 1800*time.Second {
		t.Errorf("after Remaining 0: kind %q RetryAfter %v, want throttled 1800s", ue.Kind, ue.RetryAfter)
	}
	if n := len(f.srv.Requests()); n != before {
		t.Errorf("%d requests sent while the quota is spent", n-before)
	}
	// Another user is unaffected.
	if _, err := f.c.zone(t.Context(), "OTHER1", bearer("a2")); err != nil {
		t.Errorf("another user: %v", err)
	}
	// The window reset: the user may call again.
	f.c.now = func() time.Time { return fitbittest.Now.Add(1801 * time.Second) }
	if err := f.c.limits.check(testUser, f.c.now()); err != nil {
		t.Errorf("after the reset: %v", err)
	}

	g := newFixture(t, map[string]providertest.Route{
		"GET /1/user/-/profile.json": {Status: http.StatusTooManyRequests, Header: http.Header{"Fitbit-Rate-Limit-Remaining": {"0"}, "Fitbit-Rate-Limit-Reset": {"1800"}, "Retry-After": {"60"}}},
	}, opts{})
	_, err = g.c.zone(t.Context(), testUser, bearer("a1"))
	if ue := upstreamErr(t, err); ue.Kind != providers.KindThrottled || ue.RetryAfter != 1800*time.Second {
		t.Errorf("429: kind %q RetryAfter %v, want throttled 1800s (the reset header)", ue.Kind, ue.RetryAfter)
	}
	_, err = g.c.zone(t.Context(), testUser, bearer("a1"))
	if ue := upstreamErr(t, err); !errors.Is(err, errQuotaSpent) || ue.RetryAfter <= 0 {
		t.Errorf("after a 429: %v, want a local refusal", err)
	}
	if n := g.srv.Hits("GET /1/user/-/profile.json"); n != 1 {
		t.Errorf("%d requests after a 429, want 1", n)
	}
}

func TestAttribution(t *testing.T) {
	f := newFixture(t, map[string]providertest.Route{
		"GET /1/user/-/profile.json":                                     file("profile.json"),
		"GET /1/user/-/devices.json":                                     file("devices_two_trackers.json"),
		"GET /1/user/-/activities/steps/date/2024-01-15/2024-01-16.json": file("activities_steps.json"),
		"GET /1/user/-/body/log/weight/date/2024-01-15/2024-01-16.json":  file("body_weight.json"),
		"GET /1.2/user/-/sleep/date/2024-01-15/2024-01-16.json":          file("sleep_classic.json"),
	}, opts{})
	ss, _ := fetchAll(t, f.c, providers.Query{Kinds: []fhir.SampleKind{fhir.KindSteps, fhir.KindWeight, fhir.KindSleep}, Start: fitbittest.WindowStart, End: fitbittest.WindowEnd})
	for _, s := range ss {
		switch s.Kind {
		case fhir.KindSteps:
			if s.DeviceID != "" {
				t.Errorf("steps with two trackers attributed to %q", s.DeviceID)
			}
		case fhir.KindWeight:
			if s.DeviceID != "" {
				t.Errorf("Aria weight without a scale attributed to %q", s.DeviceID)
			}
		case fhir.KindSleep:
			if !s.Manual || len(s.Components) != 0 || s.Value != "340" {
				t.Errorf("classic manual sleep %+v: want the total only, patient-reported", s)
			}
		}
	}
	if len(ss) != 3 {
		t.Errorf("%d samples, want 3", len(ss))
	}
}
