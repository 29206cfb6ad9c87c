package sqlite

import (
	"database/sql"
	"testing"
	"time"

	"github.com/openhealthexchange/ohx/fhir"
)

// TestNewRowsOrElse checks that a row buffered as new (INSERT OR IGNORE) whose key is stored
// after all replaces the stored row, through orElse, instead of being dropped.
func TestNewRowsOrElse(t *testing.T) {
	s := openTest(t)
	at := time.Date(2026, 1, 1, 8, 0, 0, 0, time.UTC)
	res, err := s.Upsert(t.Context(), []fhir.Resource{weight("p1", at, "70.0"), weight("p2", at, "71.0")})
	if err != nil {
		t.Fatal(err)
	}
	var patient, system, code string
	var sortDate int64
	if err := s.DB().QueryRow(`SELECT patient, clinical_system, clinical_code, sort_date FROM resources WHERE id = ?`, res[0].ID).Scan(&patient, &system, &code, &sortDate); err != nil {
		t.Fatal(err)
	}
	err = s.tx(t.Context(), func(tx *sql.Tx) error {
		w := newWriteBuf()
		// One stored key among new ones: the chunk holds 2 rows, and inserts 1.
		w.add(&tblResourcesNew, "Observation", res[0].ID, 9, 1, 0, patient, sortDate, nil, nil, nil, system, code)
		w.add(&tblResourcesNew, "Observation", "brand-new", 1, 1, 0, "", 0, nil, nil, `{"resourceType":"Observation","id":"brand-new"}`, nil, nil)
		w.add(&tblClinicalNew, patient, system, code, sortDate, res[0].ID, 9, 1, nil, nil, `{"replaced":true}`)
		return s.flush(t.Context(), tx, w)
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := count(t, s, `SELECT count(*) FROM resources WHERE id = ? AND version = 9`, res[0].ID); n != 1 {
		t.Errorf("the stored resources row was not replaced")
	}
	if n := count(t, s, `SELECT count(*) FROM resources WHERE id = 'brand-new'`); n != 1 {
		t.Errorf("the new resources row is missing")
	}
	if n := count(t, s, `SELECT count(*) FROM obs_clinical WHERE id = ? AND version = 9 AND json = '{"replaced":true}'`, res[0].ID); n != 1 {
		t.Errorf("the stored obs_clinical row was not replaced")
	}
	if n := count(t, s, `SELECT count(*) FROM resources WHERE id = ? AND version = 1`, res[1].ID); n != 1 {
		t.Errorf("another row changed")
	}
}
