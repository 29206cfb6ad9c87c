package sqlite

import (
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/store"
	"github.com/openhealthexchange/ohx/store/storetest"
)

func TestHistoryRetention(t *testing.T) {
	storetest.RunHistoryRetention(t, func(t testing.TB, keep int) store.Store {
		s, err := Open(t.Context(), t.TempDir(), Options{HistoryVersions: keep}, nil)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}

// TestHistoryOnlyOnChange checks that history costs the ingest path nothing: creating and
// re-sending unchanged resources writes no history row; only a change copies the prior version.
func TestHistoryOnlyOnChange(t *testing.T) {
	s := openTest(t)
	base := time.Date(2026, 1, 1, 8, 0, 0, 0, time.UTC)
	batch := func(kg string) []fhir.Resource {
		var rs []fhir.Resource
		for i := range 50 {
			rs = append(rs, weight(fmt.Sprintf("p%d", i%5), base.Add(time.Duration(i)*time.Minute), kg))
		}
		return rs
	}
	rows := func() int {
		t.Helper()
		var n int
		if err := s.DB().QueryRowContext(t.Context(), `SELECT count(*) FROM history`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	for _, step := range []struct {
		what string
		kg   string
		want int
	}{{"create", "70.0", 0}, {"unchanged", "70.0", 0}, {"changed", "71.0", 50}} {
		if _, err := s.Upsert(t.Context(), batch(step.kg)); err != nil {
			t.Fatal(err)
		}
		if got := rows(); got != step.want {
			t.Errorf("after the %s upsert: %d history rows, want %d", step.what, got, step.want)
		}
	}
}

// TestHistoryAfterUpgrade opens a database written before history existed: the migration adds
// the table, versions from before it are simply not kept, and later writes keep theirs.
func TestHistoryAfterUpgrade(t *testing.T) {
	dir := t.TempDir()
	before := slices.IndexFunc(migrations, func(m string) bool { return strings.Contains(m, "CREATE TABLE history") })
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "ohx.db"))
	if err != nil {
		t.Fatal(err)
	}
	stmts := append([]string{"PRAGMA page_size=16384", "CREATE TABLE schema_version (version INTEGER NOT NULL)",
		fmt.Sprintf("INSERT INTO schema_version VALUES (%d)", before)}, migrations[:before]...)
	// Version 2 of a Patient, as the store wrote it then.
	stmts = append(stmts, `INSERT INTO resources (type, id, version, last_updated, patient, sort_date, json)
		VALUES ('Patient', 'p', 2, 1767225600000000, 'p', 0, '{"resourceType":"Patient","id":"p","meta":{"versionId":"2","lastUpdated":"2026-01-01T00:00:00.000000Z"},"name":[{"family":"B"}]}')`)
	for _, q := range stmts {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%.40s: %v", q, err)
		}
	}
	db.Close()

	s, err := Open(t.Context(), dir, Options{}, nil)
	if err != nil {
		t.Fatalf("Open after the upgrade: %v", err)
	}
	defer s.Close()
	if _, err := s.ReadVersion(t.Context(), "Patient", "p", 1); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a version from before the upgrade: err = %v, want ErrNotFound", err)
	}
	if _, _, err := s.Put(t.Context(), &fhir.Patient{Base: fhir.Base{ResourceType: "Patient", ID: "p"}, Name: []fhir.HumanName{{Family: "C"}}}, store.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	es, err := s.History(t.Context(), store.HistoryQuery{Type: "Patient", ID: "p", Count: 10})
	if err != nil {
		t.Fatal(err)
	}
	var got []int64
	for _, e := range es {
		got = append(got, e.VersionID)
	}
	if !slices.Equal(got, []int64{3, 2}) {
		t.Errorf("History after the upgrade: versions %v, want [3 2]", got)
	}
	if e, err := s.ReadVersion(t.Context(), "Patient", "p", 2); err != nil || !strings.Contains(string(e.JSON), `"family":"B"`) {
		t.Errorf("version 2, written before the upgrade: %v %s", err, e.JSON)
	}
}
