package mongo

import (
	"slices"
	"testing"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/store"
	"github.com/openhealthexchange/ohx/store/storetest"
)

func TestHistoryRetention(t *testing.T) {
	storetest.RunHistoryRetention(t, func(t testing.TB, keep int) store.Store {
		return openAtWith(t, ferretURI(t), Options{HistoryVersions: keep})
	})
}

// TestHistoryCopyOfCurrent plays the write that saved the copy of the current version and then
// lost its race or crashed before replacing the document: the copy is never shown twice, and the
// next write, saving the same copy again, goes through.
func TestHistoryCopyOfCurrent(t *testing.T) {
	s := openFerret(t)
	ctx := t.Context()
	obs := func(v int64) *fhir.Observation {
		return &fhir.Observation{Base: fhir.Base{ResourceType: "Observation", ID: "o1"}, Status: "final",
			Code: fhir.CodeableConcept{Coding: []fhir.Coding{{System: "http://loinc.org", Code: "29463-7"}}}, Value: fhir.Value{ValueInteger: &v}}
	}
	if _, err := s.Create(ctx, obs(1)); err != nil {
		t.Fatal(err)
	}
	cur, _, err := s.Put(ctx, obs(2), store.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	h, _, _ := readHead(ctx, s.colls["Observation"], "o1")
	if err := s.keepPriors(ctx, []historyDoc{priorOf("Observation", h, string(cur.JSON))}); err != nil {
		t.Fatalf("saving the copy of the current version: %v", err)
	}
	versions := func() []int64 {
		t.Helper()
		es, err := s.History(ctx, store.HistoryQuery{Type: "Observation", ID: "o1", Count: 10})
		if err != nil {
			t.Fatal(err)
		}
		var vs []int64
		for _, e := range es {
			vs = append(vs, e.VersionID)
		}
		return vs
	}
	if got := versions(); !slices.Equal(got, []int64{2, 1}) {
		t.Errorf("History with a copy of the current version: versions %v, want [2 1]", got)
	}
	if _, _, err := s.Put(ctx, obs(3), store.WriteOptions{}); err != nil {
		t.Fatalf("Put after an earlier copy of the version it replaces: %v", err)
	}
	if got := versions(); !slices.Equal(got, []int64{3, 2, 1}) {
		t.Errorf("History after the next Put: versions %v, want [3 2 1]", got)
	}
	e, err := s.ReadVersion(ctx, "Observation", "o1", 2)
	if err != nil || string(e.JSON) != string(cur.JSON) {
		t.Errorf("ReadVersion 2: %v, JSON %s, want %s", err, e.JSON, cur.JSON)
	}
}
