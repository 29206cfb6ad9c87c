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
)

// twoCodings is a weight Observation of patient coded twice (two obs_clinical rows).
func twoCodings(patient string, at time.Time, kg string) *fhir.Observation {
	o := weight(patient, at, kg)
	o.Code.Coding = append(o.Code.Coding, fhir.Coding{System: "http://snomed.info/sct", Code: "27113001"})
	return o
}

func searchIDs(t *testing.T, s *Store, query string) []string {
	t.Helper()
	q := observationQuery(t, query)
	res, err := s.Search(t.Context(), q)
	if err != nil {
		t.Fatalf("search %s: %v", query, err)
	}
	var ids []string
	for _, m := range res.Matches {
		if len(m.JSON) == 0 {
			t.Errorf("search %s: %s without JSON", query, m.ID)
		}
		ids = append(ids, m.ID)
	}
	return ids
}

func count(t *testing.T, s *Store, query string, args ...any) int {
	t.Helper()
	var n int
	if err := s.DB().QueryRowContext(t.Context(), query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// TestJSONStoredOnce checks the layout of migration 5: an Observation in a patient's compartment
// keeps its JSON in obs_clinical only, any other resource in resources; reads see both.
func TestJSONStoredOnce(t *testing.T) {
	s := openTest(t)
	at := time.Date(2026, 1, 1, 8, 0, 0, 0, time.UTC)
	noPatient := weight("x", at, "70.0")
	noPatient.Subject = nil
	res, err := s.Upsert(t.Context(), []fhir.Resource{weight("p1", at, "70.0"), noPatient})
	if err != nil {
		t.Fatal(err)
	}
	withID, withoutID := res[0].ID, res[1].ID
	if n := count(t, s, `SELECT count(*) FROM resources WHERE id = ? AND json IS NULL AND clinical_code = '29463-7'`, withID); n != 1 {
		t.Errorf("the Observation of p1 keeps its JSON in resources too")
	}
	if n := count(t, s, `SELECT count(*) FROM resources WHERE id = ? AND json IS NOT NULL`, withoutID); n != 1 {
		t.Errorf("the Observation without patient has no JSON in resources")
	}
	for _, id := range []string{withID, withoutID} {
		e, err := s.Read(t.Context(), "Observation", id)
		if err != nil || !strings.Contains(string(e.JSON), `"value":70.0`) {
			t.Errorf("Read %s: %v %s", id, err, e.JSON)
		}
	}
	if got := searchIDs(t, s, "patient=p1&_sort=-date"); !slices.Equal(got, []string{withID}) {
		t.Errorf("search by patient: %v, want [%s]", got, withID)
	}
}

// TestUpgradeToSingleJSON opens a database in the layout before migration 5 — JSON in resources
// and in obs_clinical, obs_clinical indexed on id — and checks that its rows are read, searched,
// updated and deleted as before, and that updated rows take the new layout.
// copyIndexRows copy the index rows of the attached store src into the main one, laid out as
// before token and reference rows carried the sort date.
var copyIndexRows = []string{
	"INSERT INTO idx_token SELECT type, col, system, code, id FROM src.idx_token",
	"INSERT INTO idx_ref SELECT type, col, ref_type, ref_id, ref_url, id FROM src.idx_ref",
	"INSERT INTO idx_string SELECT * FROM src.idx_string",
	"INSERT INTO idx_date SELECT * FROM src.idx_date",
	"INSERT INTO idx_quantity SELECT * FROM src.idx_quantity",
}

// copyTables copy the named tables of the attached store src as they are.
func copyTables(names ...string) []string {
	var out []string
	for _, n := range names {
		out = append(out, "INSERT INTO "+n+" SELECT * FROM src."+n)
	}
	return out
}

// oldLayout makes, in a new directory, a store laid out by the first n migrations and fills it
// with the statements copies, which read the store in directory src attached as "src". It
// returns the directory.
func oldLayout(t *testing.T, src string, n int, copies ...string) string {
	t.Helper()
	dir := t.TempDir()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "ohx.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	stmts := append([]string{"PRAGMA page_size=16384", "CREATE TABLE schema_version (version INTEGER NOT NULL)",
		fmt.Sprintf("INSERT INTO schema_version VALUES (%d)", n)}, migrations[:n]...)
	stmts = append(stmts, fmt.Sprintf("ATTACH 'file:%s' AS src", filepath.Join(src, "ohx.db")))
	for _, q := range append(append(stmts, copies...), "DETACH src") {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%.60s: %v", q, err)
		}
	}
	return dir
}

func TestUpgradeToSingleJSON(t *testing.T) {
	before := slices.IndexFunc(migrations, func(m string) bool { return strings.Contains(m, "clinical_system") })
	if before < 0 {
		t.Fatal("no migration adds clinical_system")
	}
	at := time.Date(2026, 1, 1, 8, 0, 0, 0, time.UTC)
	// The rows the store wrote then are the rows it writes now, with the JSON back in resources.
	src := t.TempDir()
	s, err := Open(t.Context(), src, Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, o := range []*fhir.Observation{twoCodings("p1", at, "70.0"), weight("p1", at.Add(time.Hour), "71.0"), weight("p2", at, "72.0")} {
		res, err := s.Upsert(t.Context(), []fhir.Resource{o})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, res[0].ID)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	copies := slices.Concat([]string{`INSERT INTO resources (type, id, version, last_updated, deleted, patient, sort_date, date_lo, date_hi, json)
			SELECT type, id, version, last_updated, deleted, patient, sort_date, date_lo, date_hi, ` + strings.ReplaceAll(jsonExpr, "FROM obs_clinical", "FROM src.obs_clinical") + `
			FROM src.resources r`}, copyIndexRows, copyTables("obs_clinical", "date_span"))
	dir := oldLayout(t, src, before, copies...)

	s, err = Open(t.Context(), dir, Options{}, nil)
	if err != nil {
		t.Fatalf("Open after the upgrade: %v", err)
	}
	defer s.Close()
	if n := count(t, s, `SELECT count(*) FROM resources WHERE json IS NOT NULL`); n != 3 {
		t.Fatalf("%d rows with JSON in resources after the upgrade, want the 3 old ones", n)
	}
	if n := count(t, s, `SELECT count(*) FROM sqlite_schema WHERE name = 'obs_clinical_id'`); n != 0 {
		t.Errorf("obs_clinical_id is still there")
	}
	for i, kg := range []string{"70.0", "71.0", "72.0"} {
		e, err := s.Read(t.Context(), "Observation", ids[i])
		if err != nil || !strings.Contains(string(e.JSON), `"value":`+kg) {
			t.Errorf("Read old %s: %v %s", ids[i], err, e.JSON)
		}
	}
	if got := searchIDs(t, s, "patient=p1&code=http://loinc.org|29463-7&_sort=-date"); !slices.Equal(got, []string{ids[1], ids[0]}) {
		t.Errorf("hot search of old rows: %v, want %v", got, []string{ids[1], ids[0]})
	}
	if got := searchIDs(t, s, "patient=p1&_sort=-date"); !slices.Equal(got, []string{ids[1], ids[0]}) {
		t.Errorf("search by patient of old rows: %v, want %v", got, []string{ids[1], ids[0]})
	}

	// A changed value: version 2 in the new layout, version 1 in history, and the old
	// obs_clinical rows of both codings gone.
	res, err := s.Upsert(t.Context(), []fhir.Resource{twoCodings("p1", at, "75.0")})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].ID != ids[0] || res[0].VersionID != 2 || !res[0].Changed {
		t.Fatalf("upsert of the changed old row: %+v", res[0])
	}
	if n := count(t, s, `SELECT count(*) FROM resources WHERE id = ? AND json IS NULL`, ids[0]); n != 1 {
		t.Errorf("the updated row keeps its JSON in resources")
	}
	if n := count(t, s, `SELECT count(*) FROM obs_clinical WHERE id = ?`, ids[0]); n != 2 {
		t.Errorf("%d obs_clinical rows for the updated Observation, want 2 (one per coding)", n)
	}
	if n := count(t, s, `SELECT count(*) FROM obs_clinical WHERE id = ? AND json LIKE '%"value":70.0%'`, ids[0]); n != 0 {
		t.Errorf("%d obs_clinical rows of the old version remain", n)
	}
	for _, q := range []string{"patient=p1&code=http://loinc.org|29463-7&value-quantity=75", "patient=p1&code=http://snomed.info/sct|27113001&value-quantity=75"} {
		if got := searchIDs(t, s, q); !slices.Equal(got, []string{ids[0]}) {
			t.Errorf("%s: %v, want [%s]", q, got, ids[0])
		}
	}
	if got := searchIDs(t, s, "patient=p1&code=http://loinc.org|29463-7&value-quantity=70"); len(got) != 0 {
		t.Errorf("the old value is still found: %v", got)
	}
	hist, err := s.History(t.Context(), store.HistoryQuery{Type: "Observation", ID: ids[0], Count: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) != 2 || hist[0].VersionID != 2 || !strings.Contains(string(hist[0].JSON), `"value":75.0`) ||
		hist[1].VersionID != 1 || !strings.Contains(string(hist[1].JSON), `"value":70.0`) {
		t.Errorf("history after the update: %+v", hist)
	}
	// Unchanged: no new version.
	if res, err := s.Upsert(t.Context(), []fhir.Resource{twoCodings("p1", at, "75.0")}); err != nil || res[0].VersionID != 2 || res[0].Changed {
		t.Errorf("unchanged upsert: %+v %v", res, err)
	}

	// Deleting an old row removes its obs_clinical row.
	if err := s.Delete(t.Context(), "Observation", ids[2]); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Read(t.Context(), "Observation", ids[2]); !errors.Is(err, store.ErrDeleted) {
		t.Errorf("Read deleted: %v, want ErrDeleted", err)
	}
	if n := count(t, s, `SELECT count(*) FROM obs_clinical WHERE id = ?`, ids[2]); n != 0 {
		t.Errorf("%d obs_clinical rows of the deleted Observation", n)
	}
	if e, err := s.ReadVersion(t.Context(), "Observation", ids[2], 1); err != nil || !strings.Contains(string(e.JSON), `"value":72.0`) {
		t.Errorf("version 1 of the deleted old row: %v %s", err, e.JSON)
	}
}

// TestWALCap checks that the writer keeps the WAL file under its limit when it writes faster
// than the background checkpointer copies pages back.
func TestWALCap(t *testing.T) {
	s := openTest(t)
	const limit = 4 << 20
	s.wal.limit = limit
	// Without the background checkpointer only the writer's cap keeps the WAL short.
	close(s.ckStop)
	<-s.ckDone
	base := time.Date(2026, 1, 1, 8, 0, 0, 0, time.UTC)
	var biggest, total int64
	for b := range 40 {
		var rs []fhir.Resource
		for i := range 20 {
			rs = append(rs, weight(fmt.Sprintf("p%d", i), base.Add(time.Duration(b)*time.Hour), "70.0"))
		}
		if _, err := s.Upsert(t.Context(), rs); err != nil {
			t.Fatal(err)
		}
		biggest = max(biggest, fileSize(s.wal.path))
		total += s.wal.grown[(s.wal.next+len(s.wal.grown)-1)%len(s.wal.grown)]
	}
	t.Logf("largest WAL: %d bytes; one transaction adds about %d", biggest, s.wal.nextTx())
	if s.wal.nextTx() == 0 || s.wal.nextTx() > limit/2 {
		t.Fatalf("a transaction adds %d bytes: the test needs several per WAL of %d", s.wal.nextTx(), limit)
	}
	if total <= limit || s.wal.checkpoints.Load() == 0 {
		t.Fatalf("%d bytes written to the WAL with a limit of %d and %d cap checkpoints: the cap was never needed", total, limit, s.wal.checkpoints.Load())
	}
	if biggest > limit {
		t.Errorf("the WAL reached %d bytes, over its limit of %d", biggest, limit)
	}
}

// TestUpgradeToTimeKeyedIndex: a store whose token and reference rows were keyed without the
// sort date opens with them rebuilt under the new key, and every way that reads them finds the
// old resources: a status or device filter, a category on the hot path (a correlated seek by
// sort date and id), a patient reference, and an upsert matching by identifier.
func TestUpgradeToTimeKeyedIndex(t *testing.T) {
	before := slices.IndexFunc(migrations, func(m string) bool {
		return strings.Contains(m, "PRIMARY KEY (type, col, code, system, sort_date, id)")
	})
	if before < 0 {
		t.Fatal("no migration keys idx_token by sort date")
	}
	at := time.Date(2026, 1, 1, 8, 0, 0, 0, time.UTC)
	src := t.TempDir()
	s, err := Open(t.Context(), src, Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var rs []fhir.Resource
	for i := range 6 {
		o := weight(fmt.Sprintf("p%d", i%2+1), at.Add(time.Duration(i)*time.Hour), fmt.Sprintf("7%d.0", i))
		o.Category = []fhir.CodeableConcept{{Coding: []fhir.Coding{{System: "http://terminology.hl7.org/CodeSystem/observation-category", Code: "vital-signs"}}}}
		o.Device = &fhir.Reference{Reference: "Device/d1"}
		rs = append(rs, o)
	}
	res, err := s.Upsert(t.Context(), rs)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{}
	for i, r := range rs {
		want[res[i].ID] = wantRows(t, r)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	dir := oldLayout(t, src, before, slices.Concat(copyIndexRows, copyTables("resources", "obs_clinical", "date_span", "index_state"))...)

	s, err = Open(t.Context(), dir, Options{}, nil)
	if err != nil {
		t.Fatalf("Open after the upgrade: %v", err)
	}
	defer s.Close()
	for id, n := range want {
		if got := indexRowCount(t, s, "Observation", id); got != n {
			t.Errorf("%s: %d index rows after the upgrade, want %d", id, got, n)
		}
	}
	if n := count(t, s, `SELECT count(*) FROM idx_token t JOIN resources r ON r.type = t.type AND r.id = t.id WHERE t.sort_date <> r.sort_date`); n != 0 {
		t.Errorf("%d token rows whose sort date is not their resource's", n)
	}
	for q, n := range map[string]int{
		"status=final":       6,
		"device=Device/d1":   6,
		"subject=Patient/p1": 3,
		"patient=p2&code=http://loinc.org|29463-7&category=vital-signs&_sort=date": 3,
		"patient=p2&code=http://loinc.org|29463-7&category:not=vital-signs":        0,
		"patient=p2&code=http://loinc.org|29463-7&status=final&value-quantity=71":  1,
	} {
		if got := searchIDs(t, s, q); len(got) != n {
			t.Errorf("%s after the upgrade: %d matches, want %d", q, len(got), n)
		}
	}
	again, err := s.Upsert(t.Context(), rs)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range again {
		if e.ID != res[i].ID || e.VersionID != 1 || e.Changed {
			t.Errorf("upsert of unchanged %s after the upgrade: %+v", res[i].ID, e)
		}
	}
}
