package api_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/openhealthexchange/ohx/fhir"
)

// outcomeEntries returns the OperationOutcomes of a searchset's search.mode=outcome entries.
func outcomeEntries(t *testing.T, b fhir.Bundle) []fhir.OperationOutcome {
	t.Helper()
	var out []fhir.OperationOutcome
	for _, en := range b.Entry {
		if en.Search == nil || en.Search.Mode != "outcome" {
			continue
		}
		var oo fhir.OperationOutcome
		if err := json.Unmarshal(en.Resource, &oo); err != nil || oo.ResourceType != "OperationOutcome" {
			t.Fatalf("outcome entry is no OperationOutcome: %s (%v)", en.Resource, err)
		}
		out = append(out, oo)
	}
	return out
}

// A parameter ignored under lenient handling is a warning of the handler: it reaches the client
// as an OperationOutcome entry with search.mode=outcome in the searchset
// (https://hl7.org/fhir/R5/bundle.html#searchset), also when the page comes from the cache, and
// is left out of the self link. Under Prefer: handling=strict it is a 400 instead.
func TestLenientWarningsInSearchset(t *testing.T) {
	e := newEnv(t)
	e.seed()
	for _, tc := range []struct{ name, path string }{
		{"search", "/fhir/Observation?patient=p1&bogus=1&_count=5"},
		{"search again (cached page)", "/fhir/Observation?patient=p1&bogus=2&_count=5"},
		{"R4 search", "/fhir/r4/Observation?patient=p1&bogus=1&_count=5"},
		{"compartment", "/fhir/Patient/p1/Observation?bogus=1&_count=5"},
		{"$everything", "/fhir/Patient/p1/$everything?bogus=1&_count=5"},
		{"$lastn", "/fhir/Observation/$lastn?patient=p1&bogus=1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.get(tc.path)
			if r.status != http.StatusOK {
				t.Fatalf("got %d %s, want 200", r.status, r.body)
			}
			b := r.bundle(t)
			if len(entryIDs(t, b, "match")) == 0 {
				t.Errorf("no matches: the warning must come with the data")
			}
			oos := outcomeEntries(t, b)
			if len(oos) != 1 || len(oos[0].Issue) != 1 {
				t.Fatalf("got outcomes %+v, want one with one issue", oos)
			}
			is := oos[0].Issue[0]
			if is.Severity != "warning" || is.Code != fhir.CodeNotSupported || !strings.Contains(is.Diagnostics, `"bogus"`) {
				t.Errorf("got issue %+v, want a not-supported warning naming bogus", is)
			}
			if self := linkOf(b, "self"); strings.Contains(self, "bogus") {
				t.Errorf("self link %q shows the ignored parameter", self)
			}
		})
	}
	t.Run("no warning without ignored parameters", func(t *testing.T) {
		if oos := outcomeEntries(t, e.get("/fhir/Observation?patient=p1&_count=5").bundle(t)); len(oos) != 0 {
			t.Errorf("got outcomes %+v, want none", oos)
		}
	})
	t.Run("strict refuses", func(t *testing.T) {
		r := e.get("/fhir/Observation?patient=p1&bogus=1", "Prefer", "handling=strict")
		if r.status != http.StatusBadRequest || r.outcome(t).Issue[0].Code != fhir.CodeNotSupported {
			t.Errorf("got %d %s, want 400 not-supported", r.status, r.body)
		}
	})
}
