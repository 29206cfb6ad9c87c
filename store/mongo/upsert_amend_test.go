package mongo

import (
	"testing"

	"github.com/openhealthexchange/ohx/fhir"
)

// TestUpsertAmendsWithinOneCall: without history, a second value of one record in the same
// call is planned against the first's planned version (no redo), which must count as stored
// final: the second is amended, as the other stores and the history path store it.
func TestUpsertAmendsWithinOneCall(t *testing.T) {
	s := openAtWith(t, ferretURI(t), Options{HistoryVersions: 1})
	res, err := s.Upsert(t.Context(), []fhir.Resource{weightRecord("r-1", "70"), weightRecord("r-1", "71")})
	if err != nil {
		t.Fatal(err)
	}
	e, err := s.Read(t.Context(), "Observation", res[1].ID)
	if err != nil {
		t.Fatal(err)
	}
	r, err := fhir.Decode(e.JSON, "Observation")
	if err != nil {
		t.Fatal(err)
	}
	if o := r.(*fhir.Observation); res[0].ID != res[1].ID || e.VersionID != 2 || o.Status != "amended" {
		t.Errorf("two values in one call: ids %s %s, stored version %d status %q; want one resource, version 2, amended", res[0].ID, res[1].ID, e.VersionID, o.Status)
	}
}
