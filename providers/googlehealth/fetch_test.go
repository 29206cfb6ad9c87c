package googlehealth

import (
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/providers"
	"github.com/openhealthexchange/ohx/providers/providertest"
)

// TestFilters: every filter uses the snake_case data type (a hyphen is a 400 at Google), >= and
// < joined with AND, and reaches Google URL-encoded.
func TestFilters(t *testing.T) {
	w := window{start: windowStart, end: windowEnd}
	field := regexp.MustCompile(`([a-z0-9_.]+) (>=|<) "`)
	for _, d := range dataTypes {
		if d.rec == recRollup {
			continue
		}
		f := filter(d, w, civilDate{2026, 3, 7}, civilDate{2026, 3, 10})
		ms := field.FindAllStringSubmatch(f, -1)
		if len(ms) == 0 {
			t.Errorf("%s: filter %q has no comparison", d.name, f)
		}
		for _, m := range ms {
			if strings.Contains(m[1], "-") || !strings.HasPrefix(m[1], d.filterName()+".") {
				t.Errorf("%s: field %q in %q", d.name, m[1], f)
			}
		}
		if len(ms) == 2 && !strings.Contains(f, `" AND `) {
			t.Errorf("%s: %q not joined with AND", d.name, f)
		}
	}
	if got := filter(dataTypes[0], w, civilDate{}, civilDate{}); got != `weight.sample_time.physical_time >= "2026-03-07T08:00:00Z" AND weight.sample_time.physical_time < "2026-03-10T07:00:00Z"` {
		t.Errorf("weight filter %q", got)
	}
	d, _ := typeByName("daily-resting-heart-rate")
	if got := filter(d, w, civilDate{2026, 3, 7}, civilDate{2026, 3, 10}); got != `daily_resting_heart_rate.date >= "2026-03-07" AND daily_resting_heart_rate.date < "2026-03-10"` {
		t.Errorf("daily filter %q", got)
	}
	f := newFixture(t, map[string]providertest.Route{"GET /v4/users/me/dataTypes/sleep/dataPoints": file("sleep.json")}, fixtureOpts{})
	fetchAll(t, f.c, providers.Query{Kinds: []fhir.SampleKind{fhir.KindSleep}, Start: windowStart, End: windowEnd})
	r := f.requests("/v4/users/me/dataTypes/sleep/dataPoints")
	if len(r) != 1 || r[0].Form.Get("pageSize") != "25" || !strings.HasPrefix(r[0].Form.Get("filter"), "sleep.interval.end_time >= ") {
		t.Fatalf("sleep requests %+v", r)
	}
}

// TestFetchFresh: Fresh bypasses the response cache; an identical ordinary query is cached.
func TestFetchFresh(t *testing.T) {
	f := newFixture(t, map[string]providertest.Route{"GET /v4/users/me/dataTypes/weight/dataPoints": file("weight.json")},
		fixtureOpts{cacheTTL: time.Minute})
	q := providers.Query{Kinds: []fhir.SampleKind{fhir.KindWeight}, Start: windowStart, End: windowEnd}
	fetchAll(t, f.c, q)
	fetchAll(t, f.c, q)
	path := "/v4/users/me/dataTypes/weight/dataPoints"
	if n := len(f.requests(path)); n != 1 {
		t.Fatalf("two identical queries: %d requests, want 1", n)
	}
	q.Fresh = true
	fetchAll(t, f.c, q)
	fetchAll(t, f.c, q)
	if n := len(f.requests(path)); n != 3 {
		t.Errorf("two Fresh queries more: %d requests in all, want 3", n)
	}
	for _, c := range f.rec.calls() {
		if c.Params.Get("filter") == "" {
			t.Errorf("cache key without the filter: %v", c.Params)
		}
	}
}

// TestCursor: cursors are opaque and bound to their query; garbage and another query's cursor
// are permanent errors; the heart-rate pages follow nextPageToken.
func TestCursor(t *testing.T) {
	routes := map[string]providertest.Route{
		"GET /v4/users/me/dataTypes/heart-rate/dataPoints":                     file("heart_rate_page1.json"),
		"GET /v4/users/me/dataTypes/heart-rate/dataPoints pageToken=hr-page-2": file("heart_rate_page2.json"),
		"GET /v4/users/me/dataTypes/weight/dataPoints":                         file("weight.json"),
	}
	f := newFixture(t, routes, fixtureOpts{kinds: []fhir.SampleKind{fhir.KindHeartRate, fhir.KindWeight}})
	q := providers.Query{Kinds: []fhir.SampleKind{fhir.KindHeartRate}, Start: windowStart, End: windowEnd}
	p, err := f.c.Fetch(t.Context(), testUser, bearer("a"), q)
	if err != nil || p.Next == "" || len(p.Samples) != 2 {
		t.Fatalf("first page %+v %v", p, err)
	}
	if strings.Contains(p.Next, "hr-page-2") {
		t.Error("cursor is not opaque")
	}
	for name, cur := range map[string]string{"garbage": "!!not-a-cursor", "other query": p.Next} {
		q2 := q
		if name == "other query" {
			q2.Kinds = []fhir.SampleKind{fhir.KindWeight}
		}
		q2.Cursor = cur
		if _, err := f.c.Fetch(t.Context(), testUser, bearer("a"), q2); providers.KindOf(err) != providers.KindPermanent {
			t.Errorf("%s cursor: %v, want permanent", name, err)
		}
	}
	ss, pages := fetchAll(t, f.c, q)
	if len(ss) != 3 || len(pages) != 2 || !pages[0].SyncedUntil.Equal(testNow.Truncate(time.Second)) {
		t.Errorf("%d samples over %d pages, SyncedUntil %v", len(ss), len(pages), pages[0].SyncedUntil)
	}
}

// TestErrors: Google's error model becomes classified errors naming status and reason only.
func TestErrors(t *testing.T) {
	for _, tc := range []struct {
		status int
		file   string
		header http.Header
		kind   providers.ErrorKind
		text   string
	}{
		{400, "error_invalid_filter.json", nil, providers.KindPermanent, "INVALID_ARGUMENT (INVALID_DATA_POINT_FILTER)"},
		{401, "error_unauthenticated.json", nil, providers.KindAuth, "UNAUTHENTICATED"},
		{429, "error_resource_exhausted.json", http.Header{"Retry-After": {"12"}}, providers.KindThrottled, "RESOURCE_EXHAUSTED"},
		{503, "error_unavailable.json", nil, providers.KindTransient, "UNAVAILABLE"},
	} {
		f := newFixture(t, map[string]providertest.Route{"GET /v4/users/me/dataTypes/weight/dataPoints": {Status: tc.status, Header: tc.header, File: "googlehealth/" + tc.file}}, fixtureOpts{})
		_, err := f.c.Fetch(t.Context(), testUser, bearer("a"), providers.Query{Kinds: []fhir.SampleKind{fhir.KindWeight}, Start: windowStart, End: windowEnd})
		var ue *providers.UpstreamError
		if !asUpstream(err, &ue) || ue.Kind != tc.kind || ue.Status != tc.status || !strings.Contains(err.Error(), tc.text) {
			t.Errorf("HTTP %d: %v, want kind %s naming %s", tc.status, err, tc.kind, tc.text)
			continue
		}
		if strings.Contains(err.Error(), "message") || strings.Contains(err.Error(), "Quota") || strings.Contains(err.Error(), "snake_case") {
			t.Errorf("HTTP %d: vendor message in the error: %v", tc.status, err)
		}
		if tc.status == 429 && ue.RetryAfter != 12*time.Second {
			t.Errorf("Retry-After: %v", ue.RetryAfter)
		}
	}
}
