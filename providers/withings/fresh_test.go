package withings

import (
	"testing"
	"time"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/providers"
	"github.com/openhealthexchange/ohx/providers/providertest"
)

// TestFetchFresh: a Fresh query bypasses the response cache (the pipeline's re-run of a job must
// see data that arrived since its first run); an ordinary identical query within the cache TTL
// is answered from the cache.
func TestFetchFresh(t *testing.T) {
	routes := map[string]providertest.Route{"POST /measure action=getmeas": file("getmeas_page2.json")}
	f := newFixture(t, routes, fixtureOpts{kinds: []fhir.SampleKind{fhir.KindWeight}, cacheTTL: time.Minute})
	q := providers.Query{Kinds: []fhir.SampleKind{fhir.KindWeight}, Start: time.Unix(1704000000, 0), End: time.Unix(1704100000, 0)}
	fetchAll(t, f.c, q)
	fetchAll(t, f.c, q)
	if n := len(f.requests("/measure")); n != 1 {
		t.Fatalf("two identical cacheable queries made %d getmeas calls, want 1 (cached)", n)
	}
	q.Fresh = true
	fetchAll(t, f.c, q)
	fetchAll(t, f.c, q)
	if n := len(f.requests("/measure")); n != 3 {
		t.Errorf("two Fresh queries after that: %d getmeas calls in all, want 3", n)
	}
}
