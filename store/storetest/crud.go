package storetest

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/store"
)

// clockSkew bounds how far a store's clock may be from the test's (a database server may set
// lastUpdated).
const clockSkew = time.Minute

func testCRUD(t *testing.T, open opener) {
	t.Run("CreateAssignsID", func(t *testing.T) {
		s := open(t)
		in := newObservation("", loincCode(codeWeight), withSubject("Patient/p1"), withDate("2024-01-15T08:30:00Z"), withValue(ucumQty("72.5", "kg")))
		// A client's meta.versionId and meta.lastUpdated are overwritten; other meta is kept.
		in.Meta = &fhir.Meta{VersionID: "42", LastUpdated: "2000-01-01T00:00:00Z", Profile: []string{"http://example.org/StructureDefinition/weight"}}
		want := withoutMeta(t, in)
		before := time.Now()
		e := mustCreate(t, s, in)
		after := time.Now()

		if !fhir.ValidID(e.ID) {
			t.Errorf("Create: assigned id %q is not a valid FHIR id", e.ID)
		}
		if e.Type != "Observation" {
			t.Errorf("Create: Entry.Type = %q, want Observation", e.Type)
		}
		if e.VersionID != 1 {
			t.Errorf("Create: Entry.VersionID = %d, want 1", e.VersionID)
		}
		if e.LastUpdated.Before(before.Add(-clockSkew)) || e.LastUpdated.After(after.Add(clockSkew)) {
			t.Errorf("Create: Entry.LastUpdated = %s, want about %s", e.LastUpdated, before)
		}
		got := checkMeta(t, e)
		if m := got.Common().Meta; m != nil {
			if m.VersionID != "1" {
				t.Errorf("Create: meta.versionId = %q, want \"1\"", m.VersionID)
			}
			if diff := cmp.Diff([]string{"http://example.org/StructureDefinition/weight"}, m.Profile); diff != "" {
				t.Errorf("Create: meta.profile not kept (-want +got):\n%s", diff)
			}
		}
		want.Common().ID = e.ID
		if diff := cmp.Diff(want, withoutMeta(t, got)); diff != "" {
			t.Errorf("Create: stored content differs from the input (-want +got):\n%s", diff)
		}

		r := mustRead(t, s, "Observation", e.ID)
		checkSameEntry(t, e, r)

		e2 := mustCreate(t, s, newObservation("", loincCode(codeWeight)))
		if e2.ID == e.ID {
			t.Errorf("Create: two creates without id both got id %q", e.ID)
		}
	})

	t.Run("CreateKeepsID", func(t *testing.T) {
		s := open(t)
		e := mustCreate(t, s, newPatient("pat-1"))
		if e.ID != "pat-1" || e.Type != "Patient" || e.VersionID != 1 {
			t.Errorf("Create: got %s/%s version %d, want Patient/pat-1 version 1", e.Type, e.ID, e.VersionID)
		}
		checkMeta(t, e)
		checkSameEntry(t, e, mustRead(t, s, "Patient", "pat-1"))
	})

	t.Run("CreateDuplicate", func(t *testing.T) {
		s := open(t)
		first := newPatient("pat-1")
		first.Gender = "female"
		e := mustCreate(t, s, first)
		dup := newPatient("pat-1")
		dup.Gender = "male"
		if _, err := s.Create(t.Context(), dup); !errors.Is(err, store.ErrDuplicate) {
			t.Errorf("Create of an existing id: err = %v, want ErrDuplicate", err)
		}
		r := mustRead(t, s, "Patient", "pat-1")
		checkSameEntry(t, e, r)

		// "ErrDuplicate if a resource (live or deleted) with that id exists."
		mustDelete(t, s, "Patient", "pat-1")
		if _, err := s.Create(t.Context(), dup); !errors.Is(err, store.ErrDuplicate) {
			t.Errorf("Create of a deleted id: err = %v, want ErrDuplicate", err)
		}
	})

	t.Run("PutCreatesThenUpdates", func(t *testing.T) {
		s := open(t)
		e1, created := mustPut(t, s, newObservation("obs-1", loincCode(codeWeight), withValue(ucumQty("72.5", "kg"))), store.WriteOptions{})
		if !created || e1.ID != "obs-1" || e1.VersionID != 1 {
			t.Errorf("Put new: got id %q version %d created %v, want obs-1 version 1 created true", e1.ID, e1.VersionID, created)
		}
		checkMeta(t, e1)

		in := newObservation("obs-1", loincCode(codeWeight), withValue(ucumQty("73.1", "kg")))
		in.Meta = &fhir.Meta{VersionID: "7"} // ignored: the store numbers versions
		e2, created := mustPut(t, s, in, store.WriteOptions{})
		if created || e2.VersionID != 2 {
			t.Errorf("Put existing: got version %d created %v, want version 2 created false", e2.VersionID, created)
		}
		if e2.LastUpdated.Before(e1.LastUpdated) {
			t.Errorf("Put existing: LastUpdated went back from %s to %s", e1.LastUpdated, e2.LastUpdated)
		}
		got := checkMeta(t, e2).(*fhir.Observation)
		if got.ValueQuantity == nil || got.ValueQuantity.Value == nil || *got.ValueQuantity.Value != "73.1" {
			t.Errorf("Put existing: stored value = %+v, want 73.1", got.ValueQuantity)
		}
		checkSameEntry(t, e2, mustRead(t, s, "Observation", "obs-1"))
	})

	t.Run("PutIfMatch", func(t *testing.T) {
		s := open(t)
		e1 := mustCreate(t, s, newObservation("obs-1", loincCode(codeWeight), withValue(ucumQty("70", "kg"))))
		_, _, err := s.Put(t.Context(), newObservation("obs-1", loincCode(codeWeight), withValue(ucumQty("71", "kg"))), store.WriteOptions{IfMatch: 5})
		if !errors.Is(err, store.ErrVersionConflict) {
			t.Errorf("Put IfMatch 5 on version 1: err = %v, want ErrVersionConflict", err)
		}
		checkSameEntry(t, e1, mustRead(t, s, "Observation", "obs-1"))

		e2, created := mustPut(t, s, newObservation("obs-1", loincCode(codeWeight), withValue(ucumQty("72", "kg"))), store.WriteOptions{IfMatch: 1})
		if created || e2.VersionID != 2 {
			t.Errorf("Put IfMatch 1 on version 1: got version %d created %v, want version 2 created false", e2.VersionID, created)
		}
		_, _, err = s.Put(t.Context(), newObservation("obs-1", loincCode(codeWeight), withValue(ucumQty("73", "kg"))), store.WriteOptions{IfMatch: 1})
		if !errors.Is(err, store.ErrVersionConflict) {
			t.Errorf("Put IfMatch 1 on version 2: err = %v, want ErrVersionConflict", err)
		}
		checkSameEntry(t, e2, mustRead(t, s, "Observation", "obs-1"))

		// With no current version, no If-Match version can match.
		_, _, err = s.Put(t.Context(), newObservation("obs-new", loincCode(codeWeight)), store.WriteOptions{IfMatch: 1})
		if !errors.Is(err, store.ErrVersionConflict) {
			t.Errorf("Put IfMatch 1 on an unknown id: err = %v, want ErrVersionConflict", err)
		}
		if _, err := s.Read(t.Context(), "Observation", "obs-new"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Read after a failed conditional Put: err = %v, want ErrNotFound", err)
		}
	})

	t.Run("ReadUnknown", func(t *testing.T) {
		s := open(t)
		if _, err := s.Read(t.Context(), "Observation", "nope"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Read of an unknown id: err = %v, want ErrNotFound", err)
		}
		mustCreate(t, s, newDevice("dev-1"))
		if _, err := s.Read(t.Context(), "Patient", "dev-1"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Read Patient/dev-1 when only Device/dev-1 exists: err = %v, want ErrNotFound", err)
		}
	})

	t.Run("Delete", func(t *testing.T) {
		s := open(t)
		e := mustCreate(t, s, newObservation("obs-1", loincCode(codeWeight), withIdentifier(ident(measSystem, "m-1"))))
		mustCreate(t, s, newObservation("obs-2", loincCode(codeWeight)))
		mustDelete(t, s, "Observation", "obs-1")

		d, err := s.Read(t.Context(), "Observation", "obs-1")
		if !errors.Is(err, store.ErrDeleted) {
			t.Fatalf("Read after Delete: err = %v, want ErrDeleted", err)
		}
		if d.VersionID < e.VersionID || d.LastUpdated.IsZero() || d.JSON != nil {
			t.Errorf("Read after Delete: entry version %d, lastUpdated %s, JSON %q; want version >= %d, lastUpdated set, JSON nil", d.VersionID, d.LastUpdated, d.JSON, e.VersionID)
		}
		for _, qs := range []string{"_id=obs-1", "code=" + codeWeight, "identifier=" + measSystem + "|m-1"} {
			res := mustSearch(t, s, parse(t, "Observation", qs))
			if slices.Contains(ids(res.Matches), "obs-1") {
				t.Errorf("Search Observation?%s after Delete: got %v, want no obs-1", qs, ids(res.Matches))
			}
		}
		if got, err := s.FindByIdentifier(t.Context(), "Observation", measSystem, "m-1"); err != nil || len(got) != 0 {
			t.Errorf("FindByIdentifier after Delete = %v, %v; want none", got, err)
		}

		// Deleting a deleted resource is a no-op.
		mustDelete(t, s, "Observation", "obs-1")
		d2, err := s.Read(t.Context(), "Observation", "obs-1")
		if !errors.Is(err, store.ErrDeleted) {
			t.Fatalf("Read after a second Delete: err = %v, want ErrDeleted", err)
		}
		if d2.VersionID != d.VersionID {
			t.Errorf("second Delete changed the version from %d to %d, want a no-op", d.VersionID, d2.VersionID)
		}
		mustRead(t, s, "Observation", "obs-2")
	})

	t.Run("DeleteUnknown", func(t *testing.T) {
		s := open(t)
		if err := s.Delete(t.Context(), "Observation", "nope"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Delete of an unknown id: err = %v, want ErrNotFound", err)
		}
	})

	t.Run("PutResurrects", func(t *testing.T) {
		s := open(t)
		mustCreate(t, s, newObservation("obs-1", loincCode(codeWeight), withValue(ucumQty("70", "kg"))))
		e2, _ := mustPut(t, s, newObservation("obs-1", loincCode(codeWeight), withValue(ucumQty("71", "kg"))), store.WriteOptions{})
		mustDelete(t, s, "Observation", "obs-1")
		d, err := s.Read(t.Context(), "Observation", "obs-1")
		if !errors.Is(err, store.ErrDeleted) {
			t.Fatalf("Read after Delete: err = %v, want ErrDeleted", err)
		}
		// Whether created is true here is left to the implementation.
		e3, _ := mustPut(t, s, newObservation("obs-1", loincCode(codeWeight), withValue(ucumQty("72", "kg"))), store.WriteOptions{})
		if e3.VersionID <= e2.VersionID || e3.VersionID <= d.VersionID {
			t.Errorf("Put after Delete: version %d, want above the live version %d and the deleted version %d", e3.VersionID, e2.VersionID, d.VersionID)
		}
		checkMeta(t, e3)
		checkSameEntry(t, e3, mustRead(t, s, "Observation", "obs-1"))
		res := mustSearch(t, s, parse(t, "Observation", "code="+codeWeight))
		if diff := cmp.Diff([]string{"obs-1"}, ids(res.Matches)); diff != "" {
			t.Errorf("Search after resurrection (-want +got):\n%s", diff)
		}
	})

	t.Run("IDsArePerType", func(t *testing.T) {
		s := open(t)
		mustCreate(t, s, newPatient("same"))
		mustCreate(t, s, newDevice("same"))
		if e := mustRead(t, s, "Device", "same"); e.Type != "Device" || decode(t, e).Type() != "Device" {
			t.Errorf("Read Device/same: got a %s", e.Type)
		}
		mustDelete(t, s, "Device", "same")
		mustRead(t, s, "Patient", "same")
		res := mustSearch(t, s, parse(t, "Patient", "_id=same"))
		if diff := cmp.Diff([]string{"Patient/same"}, refs(res.Matches)); diff != "" {
			t.Errorf("Search Patient?_id=same (-want +got):\n%s", diff)
		}
	})

	t.Run("FindByIdentifier", func(t *testing.T) {
		s := open(t)
		mustCreate(t, s, newObservation("obs-1", loincCode(codeWeight), withIdentifier(ident(measSystem, "m-1"), ident("urn:oid:1.2.3", "x-1"))))
		mustCreate(t, s, newObservation("obs-2", loincCode(codeWeight), withIdentifier(ident(measSystem, "m-2"))))
		d := newDevice("dev-1")
		d.Identifier = []fhir.Identifier{ident(measSystem, "m-1")}
		mustCreate(t, s, d)
		for _, tc := range []struct {
			typ, system, value string
			want               []string
		}{
			{"Observation", measSystem, "m-1", []string{"obs-1"}},
			{"Observation", "urn:oid:1.2.3", "x-1", []string{"obs-1"}}, // not only the first identifier
			{"Observation", measSystem, "m-2", []string{"obs-2"}},
			{"Observation", measSystem, "m-3", nil},
			{"Observation", "urn:oid:9.9", "m-1", nil},
			{"Device", measSystem, "m-1", []string{"dev-1"}},
		} {
			got, err := s.FindByIdentifier(t.Context(), tc.typ, tc.system, tc.value)
			if err != nil {
				t.Errorf("FindByIdentifier(%s, %s|%s): %v", tc.typ, tc.system, tc.value, err)
				continue
			}
			if diff := cmp.Diff(tc.want, sorted(got)); diff != "" {
				t.Errorf("FindByIdentifier(%s, %s|%s) (-want +got):\n%s", tc.typ, tc.system, tc.value, diff)
			}
		}
	})
}

// checkSameEntry checks that a read returned what a write did.
func checkSameEntry(t testing.TB, want, got store.Entry) {
	t.Helper()
	if got.Type != want.Type || got.ID != want.ID || got.VersionID != want.VersionID || !got.LastUpdated.Equal(want.LastUpdated) {
		t.Errorf("Read %s/%s: got version %d at %s, want version %d at %s", want.Type, want.ID, got.VersionID, got.LastUpdated, want.VersionID, want.LastUpdated)
	}
	if diff := cmp.Diff(decode(t, want), decode(t, got)); diff != "" {
		t.Errorf("Read %s/%s: JSON differs from the written entry (-want +got):\n%s", want.Type, want.ID, diff)
	}
}
