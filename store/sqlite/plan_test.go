package sqlite

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/fhir/search"
)

func openTest(t testing.TB) *Store {
	t.Helper()
	s, err := Open(t.Context(), t.TempDir(), Options{}, nil)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func weight(patient string, at time.Time, kg string) *fhir.Observation {
	v := fhir.Decimal(kg)
	return &fhir.Observation{
		Base:              fhir.Base{ResourceType: "Observation"},
		Identifier:        []fhir.Identifier{{System: "https://ohx.test/id", Value: patient + at.String()}},
		Status:            "final",
		Code:              fhir.CodeableConcept{Coding: []fhir.Coding{{System: "http://loinc.org", Code: "29463-7", Display: "Body weight"}}},
		Subject:           &fhir.Reference{Reference: "Patient/" + patient},
		EffectiveDateTime: at.Format(time.RFC3339),
		Value:             fhir.Value{ValueQuantity: &fhir.Quantity{Value: &v, Unit: "kg", System: "http://unitsofmeasure.org", Code: "kg"}},
	}
}

// observationQuery parses an Observation search.
func observationQuery(t *testing.T, query string) *search.Query {
	t.Helper()
	pairs, err := search.ParseRawQuery(query)
	if err != nil {
		t.Fatal(err)
	}
	q, _, err := search.DefaultRegistry().Parse("Observation", pairs, search.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return q
}

// explain returns SQLite's query plan for the statement a search runs.
func explain(t *testing.T, s *Store, query string) string {
	t.Helper()
	q := observationQuery(t, query)
	stmt, args, err := s.SQL(q)
	if err != nil {
		t.Fatal(err)
	}
	return explainSQL(t, s, stmt, args...)
}

// TestHotSearchPlan asserts that the patient + code + date search is answered by range scans on
// indexes: no full scan of any table and no sort step.
func TestHotSearchPlan(t *testing.T) {
	s := openTest(t)
	base := time.Date(2026, 1, 1, 8, 0, 0, 0, time.UTC)
	var batch []fhir.Resource
	for p := range 20 {
		for d := range 30 {
			batch = append(batch, weight(fmt.Sprintf("p%d", p), base.AddDate(0, 0, d), "70.0"))
		}
	}
	if _, err := s.Upsert(t.Context(), batch); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, query, want string }{
		{"newest first", "patient=p3&code=http://loinc.org|29463-7&date=ge2026-01-10&_sort=-date&_count=50",
			"SEARCH r USING PRIMARY KEY (patient=? AND system=? AND code=? AND sort_date>?)"},
		{"closed range", "patient=p3&code=http://loinc.org|29463-7&date=ge2026-01-10&date=lt2026-01-20&_sort=date",
			"SEARCH r USING PRIMARY KEY (patient=? AND system=? AND code=? AND sort_date>? AND sort_date<?)"},
		{"patient only, by date", "patient=p3&_sort=-date",
			"SEARCH r USING INDEX resources_patient (type=? AND patient=?)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plan := explain(t, s, tc.query)
			t.Logf("plan:\n%s", plan)
			if !strings.Contains(plan, tc.want) {
				t.Errorf("plan does not contain %q:\n%s", tc.want, plan)
			}
			for _, bad := range []string{"SCAN ", "TEMP B-TREE"} {
				if strings.Contains(plan, bad) {
					t.Errorf("plan contains %q:\n%s", bad, plan)
				}
			}
		})
	}
}

// explainSQL returns SQLite's query plan for a statement.
func explainSQL(t *testing.T, s *Store, stmt string, args ...any) string {
	t.Helper()
	rows, err := s.DB().QueryContext(t.Context(), "EXPLAIN QUERY PLAN "+stmt, args...)
	if err != nil {
		t.Fatalf("explain: %v", err)
	}
	defer rows.Close()
	var lines []string
	for rows.Next() {
		var id, parent, notused int
		var detail string
		if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, detail)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return strings.Join(lines, "\n")
}
