package sqlite

import (
	"fmt"
	"testing"
	"time"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/fhir/search"
	"github.com/openhealthexchange/ohx/store"
)

// indexRowCount counts the index table rows of typ/id: with no index on (type, id), a scan.
func indexRowCount(t *testing.T, s *Store, typ, id string) int {
	t.Helper()
	total := 0
	for _, tb := range indexTables {
		var n int
		if err := s.r.QueryRowContext(t.Context(), `SELECT count(*) FROM `+tb.name+` WHERE type = ? AND id = ?`, typ, id).Scan(&n); err != nil {
			t.Fatal(err)
		}
		total += n
	}
	return total
}

// wantRows is how many index table rows the index of r makes (indexRow).
func wantRows(t *testing.T, r fhir.Resource) int {
	t.Helper()
	idx, err := search.Extract(r)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, e := range idx.Entries {
		if tb, vals := indexRow(r.Type(), r.Common().ID, idx.SortDate, e); tb != nil {
			seen[tb.name+"\x00"+fmt.Sprint(vals...)] = true // INSERT OR IGNORE: duplicates are one row
		}
	}
	return len(seen)
}

func mustExec(t *testing.T, s *Store, q string, args ...any) {
	t.Helper()
	if _, err := s.w.ExecContext(t.Context(), q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// TestDropIndexLeavesNoRows: the index rows a write deletes are derived from the stored JSON;
// after an update that changes every indexed value, and after a delete, none of the old rows is
// left, found by scanning the tables.
func TestDropIndexLeavesNoRows(t *testing.T) {
	s := openTest(t)
	ctx := t.Context()
	at := time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)
	o := weight("p1", at, "70.5")
	o.Category = []fhir.CodeableConcept{{Coding: []fhir.Coding{{System: "http://terminology.hl7.org/CodeSystem/observation-category", Code: "vital-signs"}}}}
	o.Device = &fhir.Reference{Reference: "Device/d1"}
	e, err := s.Create(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := indexRowCount(t, s, "Observation", e.ID), wantRows(t, o); got != want || got == 0 {
		t.Fatalf("after create: %d index rows, want %d", got, want)
	}
	u := weight("p2", at.Add(time.Hour), "71")
	u.ID = e.ID
	u.Code = fhir.CodeableConcept{Coding: []fhir.Coding{{System: "http://loinc.org", Code: "8867-4"}}}
	u.Device = &fhir.Reference{Reference: "Device/d2"}
	if _, _, err := s.Put(ctx, u, store.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if got, want := indexRowCount(t, s, "Observation", e.ID), wantRows(t, u); got != want {
		t.Fatalf("after update: %d index rows, want %d (the old version's left behind)", got, want)
	}
	for _, q := range []string{"device=Device/d1", "category=vital-signs", "code=29463-7", "patient=p1"} {
		if ids := searchIDs(t, s, q); len(ids) != 0 {
			t.Errorf("%s after the update: %v, want none", q, ids)
		}
	}
	if ids := searchIDs(t, s, "patient=p2&code=8867-4&device=Device/d2"); len(ids) != 1 {
		t.Errorf("the new version: %v, want %s", ids, e.ID)
	}
	if err := s.Delete(ctx, "Observation", e.ID); err != nil {
		t.Fatal(err)
	}
	if got := indexRowCount(t, s, "Observation", e.ID); got != 0 {
		t.Fatalf("after delete: %d index rows, want 0", got)
	}
}

// TestReindexOnIndexVersionChange: rows another indexer made (recorded as another
// search.IndexVersion) are rebuilt from the stored JSON at open: a row no current index entry
// names goes, the resource's own rows come back, and the version is recorded.
func TestReindexOnIndexVersionChange(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	s, err := Open(ctx, dir, Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	o := weight("p1", time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC), "70.5")
	e, err := s.Create(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	want := indexRowCount(t, s, "Observation", e.ID)
	// What an older indexer might have left: a row of a column this one does not make, and a
	// resource's row gone missing.
	mustExec(t, s, `INSERT INTO idx_token (type, col, system, code, sort_date, id) VALUES ('Observation', 'old-column', 's', 'c', 0, ?)`, e.ID)
	mustExec(t, s, `DELETE FROM idx_token WHERE type = 'Observation' AND col = 'status' AND id = ?`, e.ID)
	mustExec(t, s, `UPDATE index_state SET version = ?`, search.IndexVersion-1)
	s.Close()

	s, err = Open(ctx, dir, Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := indexRowCount(t, s, "Observation", e.ID); got != want {
		t.Errorf("after reindex: %d index rows, want %d", got, want)
	}
	if ids := searchIDs(t, s, "status=final"); len(ids) != 1 {
		t.Errorf("status=final after reindex: %v, want %s", ids, e.ID)
	}
	var v int
	if err := s.r.QueryRowContext(ctx, `SELECT version FROM index_state`).Scan(&v); err != nil || v != search.IndexVersion {
		t.Errorf("index_state = %d, %v; want %d", v, err, search.IndexVersion)
	}
}

// TestTokenWithoutSystem: a code searched without a system matches it under every system it is
// stored with, none included, also negated, and on the hot path (patient and code).
func TestTokenWithoutSystem(t *testing.T) {
	s := openTest(t)
	ctx := t.Context()
	at := time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)
	var ids []string
	for i, sys := range []string{"http://loinc.org", "http://example.org/codes", ""} {
		o := weight("p1", at.Add(time.Duration(i)*time.Hour), "70")
		o.Category = []fhir.CodeableConcept{{Coding: []fhir.Coding{{System: sys, Code: "vital-signs"}}}}
		e, err := s.Create(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, e.ID)
	}
	other := weight("p1", at.Add(5*time.Hour), "70")
	other.Category = []fhir.CodeableConcept{{Coding: []fhir.Coding{{System: "http://loinc.org", Code: "laboratory"}}}}
	if _, err := s.Create(ctx, other); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"category=vital-signs", "patient=p1&code=http://loinc.org|29463-7&category=vital-signs", "patient=p1&code=29463-7&category=vital-signs"} {
		if got := searchIDs(t, s, q); len(got) != 3 {
			t.Errorf("%s: %d matches, want 3", q, len(got))
		}
	}
	if got := searchIDs(t, s, "patient=p1&code=http://loinc.org|29463-7&category:not=vital-signs"); len(got) != 1 {
		t.Errorf("category:not=vital-signs: %d matches, want 1", len(got))
	}
	if got := searchIDs(t, s, "category=no-such-code"); len(got) != 0 {
		t.Errorf("category=no-such-code: %d matches, want 0", len(got))
	}
	// A new system of the code after the systems were looked up (and cached) is found too.
	o := weight("p1", at.Add(9*time.Hour), "70")
	o.Category = []fhir.CodeableConcept{{Coding: []fhir.Coding{{System: "urn:new", Code: "vital-signs"}}}}
	if _, err := s.Create(ctx, o); err != nil {
		t.Fatal(err)
	}
	if got := searchIDs(t, s, "patient=p1&code=http://loinc.org|29463-7&category=vital-signs"); len(got) != 4 {
		t.Errorf("after a new system: %d matches, want 4", len(got))
	}
}
