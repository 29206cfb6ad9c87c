package mongo

import (
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/fhir/search"
)

// TestChainTargetLimit: a chain is resolved to its targets' ids first, at most chainLimit of
// them (over all its target types); beyond that the search is a 400 too-costly, never a partial
// answer.
func TestChainTargetLimit(t *testing.T) {
	s := openFerret(t)
	s.chainLimit = 2
	ctx := t.Context()
	for i := range 3 {
		id := fmt.Sprint("p", i)
		if _, err := s.Create(ctx, &fhir.Patient{Base: fhir.Base{ResourceType: "Patient", ID: id}, Identifier: []fhir.Identifier{{System: "urn:mrn", Value: fmt.Sprint(i)}}}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Create(ctx, &fhir.Observation{Base: fhir.Base{ResourceType: "Observation", ID: "o" + id}, Status: "final",
			Code: fhir.CodeableConcept{Text: "x"}, Subject: &fhir.Reference{Reference: "Patient/" + id}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Create(ctx, &fhir.Device{Base: fhir.Base{ResourceType: "Device", ID: "d1"}, Identifier: []fhir.Identifier{{System: "urn:dev", Value: "1"}}}); err != nil {
		t.Fatal(err)
	}
	run := func(raw string) (int, error) {
		pairs, err := search.ParseRawQuery(raw)
		if err != nil {
			t.Fatal(err)
		}
		q, _, err := search.DefaultRegistry().Parse("Observation", pairs, search.Options{})
		if err != nil {
			t.Fatal(err)
		}
		res, err := s.Search(ctx, q)
		if err != nil {
			return 0, err
		}
		return len(res.Matches), nil
	}
	for _, tc := range []struct {
		query  string
		n      int
		costly bool
	}{
		{"patient.identifier=urn:mrn|0,urn:mrn|1", 2, false},
		{"patient.identifier=urn:mrn|", 0, true},
		{"subject.identifier=0,1", 0, true}, // Patient/p1 and Device/d1 count together with Patient/p0
		{"subject.identifier=urn:mrn|0,urn:dev|1", 1, false},
	} {
		n, err := run(tc.query)
		var fe *fhir.Error
		switch {
		case tc.costly && (!errors.As(err, &fe) || fe.Status != http.StatusBadRequest || fe.Code != fhir.CodeTooCostly):
			t.Errorf("%s: got %v, want 400 %s", tc.query, err, fhir.CodeTooCostly)
		case !tc.costly && err != nil:
			t.Errorf("%s: %v", tc.query, err)
		case !tc.costly && n != tc.n:
			t.Errorf("%s: %d matches, want %d", tc.query, n, tc.n)
		}
	}
}
