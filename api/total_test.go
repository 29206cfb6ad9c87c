package api_test

import (
	"strings"
	"testing"
)

// TestBundleTotal checks Bundle.total: present on every page when it is cheap (below
// store.TotalBound), also when a next page exists, absent with _total=none, in both versions.
func TestBundleTotal(t *testing.T) {
	e := newEnv(t)
	e.seed() // p1 has 12 Observations
	for _, tc := range []struct {
		path      string
		wantTotal int // -1: absent
		wantNext  bool
	}{
		{"/fhir/Observation?patient=p1", 12, false}, // one page: free
		{"/fhir/Observation?patient=p1&_count=5", 12, true},
		{"/fhir/Observation?patient=p1&_count=5&_total=estimate", 12, true},
		{"/fhir/Observation?patient=p1&_count=5&_total=accurate", 12, true},
		{"/fhir/Observation?patient=p1&_count=5&_total=none", -1, true},
		{"/fhir/Observation?patient=p1&code=http://loinc.org|29463-7&_sort=-date&_count=5", 12, true},
		{"/fhir/r4/Observation?patient=p1&_count=5", 12, true},
		{"/fhir/Observation?patient=p1&_summary=count", 12, false},
		{"/fhir/Observation?patient=p1&_summary=count&_total=none", -1, false},
	} {
		t.Run(tc.path, func(t *testing.T) {
			path := tc.path
			for page := 1; path != ""; page++ {
				b := e.get(path).bundle(t)
				got := -1
				if b.Total != nil {
					got = *b.Total
				}
				if got != tc.wantTotal {
					t.Errorf("page %d: total %d, want %d (-1: absent)", page, got, tc.wantTotal)
				}
				next := linkOf(b, "next")
				if page == 1 && (next != "") != tc.wantNext {
					t.Errorf("next link %q, want one: %v", next, tc.wantNext)
				}
				if page > 5 {
					t.Fatal("more than 5 pages")
				}
				path = next
			}
		})
	}
	if r := e.get("/fhir/Observation?_total=some"); r.status != 400 || !strings.Contains(string(r.body), "_total") {
		t.Errorf("_total=some: got %d %s, want 400", r.status, r.body)
	}
}
