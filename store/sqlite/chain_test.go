package sqlite

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/fhir/search"
	"github.com/openhealthexchange/ohx/store"
	"github.com/openhealthexchange/ohx/store/storetest"
)

// planOf returns SQLite's query plan for the statement a search of typ runs, chains resolved
// first as Search does.
func planOf(t *testing.T, s *Store, typ, query string) string {
	t.Helper()
	pairs, err := search.ParseRawQuery(query)
	if err != nil {
		t.Fatal(err)
	}
	q, _, err := search.DefaultRegistry().Parse(typ, pairs, search.Options{Strict: true})
	if err != nil {
		t.Fatal(err)
	}
	if q, err = s.resolveChains(t.Context(), q); err != nil {
		t.Fatal(err)
	}
	stmt, args, err := s.SQL(q)
	if err != nil {
		t.Fatal(err)
	}
	return explainSQL(t, s, stmt, args...)
}

// seedChains stores 20 patients (MRN urn:mrn|40 … 59), each with a device, an association and
// 30 daily weights measured with that device.
func seedChains(t *testing.T, s *Store) {
	t.Helper()
	base := time.Date(2026, 1, 1, 8, 0, 0, 0, time.UTC)
	var batch []fhir.Resource
	for p := range 20 {
		id := fmt.Sprintf("p%d", p)
		dev := fmt.Sprintf("d%d", p)
		batch = append(batch,
			&fhir.Patient{Base: fhir.Base{ResourceType: "Patient", ID: id}, Identifier: []fhir.Identifier{{System: "urn:mrn", Value: fmt.Sprint(40 + p)}}},
			&fhir.Device{Base: fhir.Base{ResourceType: "Device", ID: dev}, Identifier: []fhir.Identifier{{System: "urn:dev", Value: dev}}},
			&fhir.DeviceAssociation{Base: fhir.Base{ResourceType: "DeviceAssociation", ID: "a" + id}, Identifier: []fhir.Identifier{{System: "urn:da", Value: id}},
				Device: fhir.Reference{Reference: "Device/" + dev}, Subject: &fhir.Reference{Reference: "Patient/" + id},
				Status: fhir.CodeableConcept{Coding: []fhir.Coding{{System: fhir.DeviceAssociationStatusSystem, Code: "attached"}}}})
		for d := range 30 {
			o := weight(id, base.AddDate(0, 0, d), "70.0")
			o.Device = &fhir.Reference{Reference: "Device/" + dev}
			batch = append(batch, o)
		}
	}
	if _, err := s.Upsert(t.Context(), batch); err != nil {
		t.Fatal(err)
	}
}

// TestChainPlan asserts that a chain resolved to its targets runs exactly the plan of the
// search by those targets' ids, and that the EHR's search by MRN — patient.identifier + code
// (+ date), newest first — is the one contiguous range scan of obs_clinical already in date order
// of TestHotSearchPlan: no scan of any table, no sort step.
func TestChainPlan(t *testing.T) {
	s := openTest(t)
	seedChains(t, s)
	const weight = "&code=http://loinc.org|29463-7"
	for _, tc := range []struct {
		name, typ, query, same string
	}{
		{"by MRN and code, newest first", "Observation", "patient.identifier=urn:mrn|42" + weight + "&_sort=-date&_count=1", "patient=p2" + weight + "&_sort=-date&_count=1"},
		{"by MRN, code and dates", "Observation", "subject:Patient.identifier=urn:mrn|42" + weight + "&date=ge2026-01-10&date=lt2026-01-20&_sort=-date",
			"patient=p2" + weight + "&date=ge2026-01-10&date=lt2026-01-20&_sort=-date"},
		{"by MRN, by date", "Observation", "patient.identifier=urn:mrn|42&_sort=-date", "patient=p2&_sort=-date"},
		{"by two MRNs", "Observation", "patient.identifier=urn:mrn|42,urn:mrn|43", "patient=p2,p3"},
		{"by device identifier", "Observation", "device.identifier=urn:dev|d3", "device=Device/d3"},
		{"by subject identifier", "Observation", "subject.identifier=d3,42", "subject=Patient/p2,Device/d3"},
		{"association by MRN", "DeviceAssociation", "patient.identifier=urn:mrn|42", "patient=p2"},
		{"association by device identifier", "DeviceAssociation", "device.identifier=urn:dev|d3", "device=Device/d3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plan := planOf(t, s, tc.typ, tc.query)
			t.Logf("plan:\n%s", plan)
			if want := planOf(t, s, tc.typ, tc.same); plan != want {
				t.Errorf("plan differs from that of %s?%s:\n%s\nwant:\n%s", tc.typ, tc.same, plan, want)
			}
		})
	}
	for _, query := range []string{
		"patient.identifier=urn:mrn|42" + weight + "&date=ge2026-01-10&_sort=-date",
		"patient.identifier=urn:mrn|999" + weight + "&_sort=-date", // no such patient: an _id that cannot exist
	} {
		plan := planOf(t, s, "Observation", query)
		for _, bad := range []string{"SCAN ", "TEMP B-TREE"} {
			if strings.Contains(plan, bad) {
				t.Errorf("%s: plan contains %q:\n%s", query, bad, plan)
			}
		}
	}
	if plan := planOf(t, s, "Observation", "patient.identifier=urn:mrn|42"+weight+"&date=ge2026-01-10&_sort=-date"); !strings.Contains(plan,
		"SEARCH r USING PRIMARY KEY (patient=? AND system=? AND code=? AND sort_date>?)") {
		t.Errorf("the search by MRN, code and date does not range-scan obs_clinical:\n%s", plan)
	}
}

// TestChainSubqueryPlan: a chain left a subquery (more than chainInline targets) still reads
// only index ranges: the identifier on the token index's primary key, then the patient-first
// tables or the reference index.
func TestChainSubqueryPlan(t *testing.T) {
	s := openTest(t)
	seedChains(t, s)
	s.subqueryChains = true
	for _, tc := range []struct {
		name, typ, query string
		want             string
	}{
		{"by MRN and code, newest first", "Observation", "patient.identifier=urn:mrn|42&code=http://loinc.org|29463-7&_sort=-date",
			"SEARCH r USING PRIMARY KEY (patient=? AND system=? AND code=?)"},
		{"by MRN, by date", "Observation", "patient.identifier=urn:mrn|42&_sort=-date",
			"SEARCH r USING INDEX resources_patient (type=? AND patient=?)"},
		{"by two MRNs", "Observation", "patient.identifier=urn:mrn|42,urn:mrn|43",
			"SEARCH r USING INDEX resources_patient (type=? AND patient=?)"},
		{"by device identifier", "Observation", "device.identifier=urn:dev|d3",
			"SEARCH idx_ref USING PRIMARY KEY (type=? AND col=? AND ref_id=? AND ref_type=?)"},
		{"association by MRN", "DeviceAssociation", "subject:Patient.identifier=urn:mrn|42",
			"SEARCH r USING INDEX resources_patient (type=? AND patient=?)"},
		{"association by device identifier", "DeviceAssociation", "device.identifier=urn:dev|d3",
			"SEARCH idx_ref USING PRIMARY KEY (type=? AND col=? AND ref_id=? AND ref_type=?)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plan := planOf(t, s, tc.typ, tc.query)
			t.Logf("plan:\n%s", plan)
			for _, want := range []string{tc.want, "SEARCH idx_token USING PRIMARY KEY (type=? AND col=? AND code=? AND system=?)"} {
				if !strings.Contains(plan, want) {
					t.Errorf("plan does not contain %q:\n%s", want, plan)
				}
			}
			if strings.Contains(plan, "SCAN ") {
				t.Errorf("plan scans a table:\n%s", plan)
			}
		})
	}
}

// TestConformanceChainSubqueries runs the chain conformance cases with every chain left a
// subquery, so that both ways of answering a chain agree with search.MatchesWith.
func TestConformanceChainSubqueries(t *testing.T) {
	storetest.RunChains(t, func(t testing.TB) store.Store {
		s := openTest(t)
		s.subqueryChains = true
		return s
	})
}
