package pipeline

import (
	"errors"
	"testing"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/providers/providertest"
	"github.com/openhealthexchange/ohx/providers/withings"
	"github.com/openhealthexchange/ohx/store"
)

// TestPurgeErasesHistory: a purge on disconnect leaves no earlier version of the purged
// Observations readable through vread or _history, only their deletion.
func TestPurgeErasesHistory(t *testing.T) {
	g := newRig(t, map[string]providertest.Route{})
	ctx := t.Context()
	obs := func(kg string) *fhir.Observation {
		v := fhir.Decimal(kg)
		return &fhir.Observation{Base: fhir.Base{ResourceType: "Observation"}, Status: "final",
			Identifier: []fhir.Identifier{{System: fhir.DefaultNamespace.IdentifierSystem("withings/meas"), Value: "m1"}},
			Code:       fhir.CodeableConcept{Coding: []fhir.Coding{{System: "http://loinc.org", Code: "29463-7"}}},
			Subject:    &fhir.Reference{Reference: "Patient/p1"},
			Value:      fhir.Value{ValueQuantity: &fhir.Quantity{Value: &v, System: "http://unitsofmeasure.org", Code: "kg"}}}
	}
	var id string
	for _, kg := range []string{"70", "71"} {
		res, err := g.st.Upsert(ctx, []fhir.Resource{obs(kg)})
		if err != nil {
			t.Fatal(err)
		}
		id = res[0].ID
	}
	if err := g.r.purge(ctx, withings.Name, "p1"); err != nil {
		t.Fatalf("purge: %v", err)
	}
	es, err := g.st.History(ctx, store.HistoryQuery{Type: "Observation", ID: id, Count: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 1 || es[0].VersionID != 3 || es[0].JSON != nil {
		t.Errorf("history after purge: %+v, want only the deletion, version 3", es)
	}
	for v := int64(1); v <= 2; v++ {
		if _, err := g.st.ReadVersion(ctx, "Observation", id, v); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("ReadVersion %d after purge: err = %v, want ErrNotFound", v, err)
		}
	}
}

// TestPurgeFollowsSource: a purge of the provider also deletes the Observations it took over from
// a predecessor (written by it last, under the predecessor's identifier), and only those.
func TestPurgeFollowsSource(t *testing.T) {
	g := newRig(t, map[string]providertest.Route{})
	ctx := t.Context()
	obs := func(rec, source string) *fhir.Observation {
		v := fhir.Decimal("70")
		return &fhir.Observation{Base: fhir.Base{ResourceType: "Observation", Meta: &fhir.Meta{Source: fhir.DefaultNamespace.ProviderSource(source)}}, Status: "final",
			Identifier: []fhir.Identifier{{System: fhir.DefaultNamespace.IdentifierSystem("fitbit/weight"), Value: "ABC123/" + rec}},
			Code:       fhir.CodeableConcept{Coding: []fhir.Coding{{System: "http://loinc.org", Code: "29463-7"}}},
			Subject:    &fhir.Reference{Reference: "Patient/p1"},
			Value:      fhir.Value{ValueQuantity: &fhir.Quantity{Value: &v, System: "http://unitsofmeasure.org", Code: "kg"}}}
	}
	res, err := g.st.Upsert(ctx, []fhir.Resource{obs("1", "googlehealth"), obs("2", "fitbit")})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.r.purge(ctx, "googlehealth", "p1"); err != nil {
		t.Fatalf("purge: %v", err)
	}
	if _, err := g.st.Read(ctx, "Observation", res[0].ID); !errors.Is(err, store.ErrDeleted) {
		t.Errorf("the Observation Google Health took over: %v, want deleted", err)
	}
	if _, err := g.st.Read(ctx, "Observation", res[1].ID); err != nil {
		t.Errorf("the Fitbit Observation Google Health never wrote: %v, want kept", err)
	}
}
