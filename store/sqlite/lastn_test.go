package sqlite

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/fhir/search"
	"github.com/openhealthexchange/ohx/store"
)

// TestLastNPlan asserts that $lastn is index-backed: a skip-scan step is a seek or two on
// obs_clinical's primary key, and each group is a range of that key read in order (newest
// first), other filters probing index tables per row, with no full scan of any table and no
// sort step.
func TestLastNPlan(t *testing.T) {
	s := openTest(t)
	base := time.Date(2026, 1, 1, 8, 0, 0, 0, time.UTC)
	var batch []fhir.Resource
	for p := range 20 {
		for d := range 30 {
			w := weight(fmt.Sprintf("p%d", p), base.AddDate(0, 0, d), "70.0")
			w.Category = []fhir.CodeableConcept{{Coding: []fhir.Coding{{System: "http://terminology.hl7.org/CodeSystem/observation-category", Code: "vital-signs"}}}}
			hr := weight(fmt.Sprintf("p%d", p), base.AddDate(0, 0, d).Add(time.Hour), "61")
			hr.Code = fhir.CodeableConcept{Coding: []fhir.Coding{{System: "http://loinc.org", Code: "8867-4"}}}
			batch = append(batch, w, hr)
		}
	}
	if _, err := s.Upsert(t.Context(), batch); err != nil {
		t.Fatal(err)
	}
	reg := search.DefaultRegistry()
	weightCoding := store.Coding{System: "http://loinc.org", Code: "29463-7"}
	noScan := func(t *testing.T, plan string) {
		t.Helper()
		for line := range strings.SplitSeq(plan, "\n") {
			// SCAN of a table or index (not of a one-row subquery result); a sort step; LIST
			// SUBQUERY: a filter collecting the ids of every patient's matches before the scan.
			if (strings.HasPrefix(line, "SCAN ") && !strings.HasPrefix(line, "SCAN (subquery-")) ||
				strings.Contains(line, "TEMP B-TREE") || strings.Contains(line, "LIST SUBQUERY") {
				t.Errorf("plan has %q:\n%s", line, plan)
			}
		}
	}
	t.Run("skip-scan step", func(t *testing.T) {
		_, _, step, err := s.LastNSQL(t.Context(), &search.Query{Type: "Observation", Clauses: []search.Clause{{Param: reg.Param("Observation", "patient"),
			Values: []search.Value{{RefType: "Patient", RefID: "p3"}}}}}, weightCoding, 1)
		if err != nil {
			t.Fatal(err)
		}
		plan := explainSQL(t, s, step, "p3", "http://loinc.org", "29463-7")
		t.Logf("plan:\n%s", plan)
		for _, want := range []string{
			"SEARCH obs_clinical USING PRIMARY KEY (patient=? AND system=? AND code>?)",
			"SEARCH obs_clinical USING PRIMARY KEY (patient=? AND system>?)",
		} {
			if !strings.Contains(plan, want) {
				t.Errorf("plan does not contain %q:\n%s", want, plan)
			}
		}
		noScan(t, plan)
	})
	for _, tc := range []struct {
		name, query string
		want        []string
	}{
		{"group", "patient=p3",
			[]string{"SEARCH r USING PRIMARY KEY (patient=? AND system=? AND code=?)"}},
		{"group with a date range", "patient=p3&date=ge2026-01-10",
			[]string{"SEARCH r USING PRIMARY KEY (patient=? AND system=? AND code=? AND sort_date>?)"}},
		{"group with a category", "patient=p3&category=http://terminology.hl7.org/CodeSystem/observation-category|vital-signs",
			[]string{"SEARCH r USING PRIMARY KEY (patient=? AND system=? AND code=?)",
				"SEARCH idx_token EXISTS USING PRIMARY KEY (type=? AND col=? AND code=? AND system=? AND sort_date=? AND id=?)"}},
		// Without a system, the category is given the stored ones (resolveSystems).
		{"group with a category without its system", "patient=p3&category=vital-signs",
			[]string{"SEARCH r USING PRIMARY KEY (patient=? AND system=? AND code=?)",
				"SEARCH idx_token EXISTS USING PRIMARY KEY (type=? AND col=? AND code=? AND system=? AND sort_date=? AND id=?)"}},
		{"group with a category excluded", "patient=p3&category:not=http://terminology.hl7.org/CodeSystem/observation-category|laboratory",
			[]string{"SEARCH r USING PRIMARY KEY (patient=? AND system=? AND code=?)",
				"SEARCH idx_token USING PRIMARY KEY (type=? AND col=? AND code=? AND system=? AND sort_date=? AND id=?)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pairs, err := search.ParseRawQuery(tc.query)
			if err != nil {
				t.Fatal(err)
			}
			q, _, err := reg.Parse("Observation", pairs, search.Options{})
			if err != nil {
				t.Fatal(err)
			}
			group, args, _, err := s.LastNSQL(t.Context(), q, weightCoding, 3)
			if err != nil {
				t.Fatal(err)
			}
			plan := explainSQL(t, s, group, args...)
			t.Logf("group plan:\n%s", plan)
			for _, want := range tc.want {
				if !strings.Contains(plan, want) {
					t.Errorf("group plan does not contain %q:\n%s", want, plan)
				}
			}
			noScan(t, plan)
		})
	}
}

// BenchmarkLastN measures LastN for a patient with 20 codes of 1,000 Observations each, among
// 20 other patients with 1,000 vital signs each (so that a category matches 40,000 rows).
func BenchmarkLastN(b *testing.B) {
	s := openTest(b)
	base := time.Date(2026, 1, 1, 8, 0, 0, 0, time.UTC)
	vital := []fhir.CodeableConcept{{Coding: []fhir.Coding{{System: "http://terminology.hl7.org/CodeSystem/observation-category", Code: "vital-signs"}}}}
	var batch []fhir.Resource
	flush := func() {
		if _, err := s.Upsert(b.Context(), batch); err != nil {
			b.Fatal(err)
		}
		batch = batch[:0]
	}
	for i := range 20000 {
		o := weight("p0", base.Add(time.Duration(i)*time.Minute), "70.0")
		o.Code = fhir.CodeableConcept{Coding: []fhir.Coding{{System: "http://loinc.org", Code: fmt.Sprintf("code-%02d", i%20)}}}
		o.Category = vital
		batch = append(batch, o)
		other := weight(fmt.Sprintf("p%d", 1+i%20), base.Add(time.Duration(i)*time.Minute), "70.0")
		other.Category = vital
		batch = append(batch, other)
		if len(batch) >= 2000 {
			flush()
		}
	}
	flush()
	reg := search.DefaultRegistry()
	for _, bc := range []struct {
		name, query string
		n           int
	}{
		{"all codes max 1", "patient=p0", 1},
		{"all codes max 10", "patient=p0", 10},
		{"category max 1", "patient=p0&category=http://terminology.hl7.org/CodeSystem/observation-category|vital-signs", 1},
		{"one code max 1", "patient=p0&code=http://loinc.org|code-07", 1},
	} {
		b.Run(bc.name, func(b *testing.B) {
			pairs, err := search.ParseRawQuery(bc.query)
			if err != nil {
				b.Fatal(err)
			}
			q, _, err := reg.Parse("Observation", pairs, search.Options{})
			if err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				groups, err := s.LastN(b.Context(), q, bc.n)
				if err != nil || len(groups) == 0 {
					b.Fatalf("LastN: %d groups, %v", len(groups), err)
				}
			}
		})
	}
}
