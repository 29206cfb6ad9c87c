package storetest

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/openhealthexchange/ohx/store"
)

// binaryDoc() returns an opaque document as callers store them (encrypted bytes): not UTF-8, with
// NULs.
func binaryDoc() []byte { return []byte{0x00, 0xff, 0xfe, 'o', 'h', 'x', 0x00, 0x80} }

func testRecords(t *testing.T, open opener) {
	past := time.Now().Add(-time.Hour)
	future := time.Now().Add(time.Hour)

	t.Run("PutGet", func(t *testing.T) {
		s := open(t)
		ctx := t.Context()
		mustPutRecord(t, s, "client", "a", binaryDoc(), time.Time{})
		checkRecord(t, s, "client", "a", binaryDoc())
		mustPutRecord(t, s, "client", "a", []byte("second"), time.Time{}) // replaces
		checkRecord(t, s, "client", "a", []byte("second"))
		if _, err := s.GetRecord(ctx, "client", "b"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("GetRecord(client, b) of an absent id: err = %v, want ErrNotFound", err)
		}
		if _, err := s.GetRecord(ctx, "user", "a"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("GetRecord(user, a) when only (client, a) exists: err = %v, want ErrNotFound", err)
		}
		// Kind and id are separate key parts, whatever characters they hold.
		mustPutRecord(t, s, "k", "x|y", []byte("1"), time.Time{})
		mustPutRecord(t, s, "k|x", "y", []byte("2"), time.Time{})
		mustPutRecord(t, s, "k", "x/y:z", []byte("3"), time.Time{})
		checkRecord(t, s, "k", "x|y", []byte("1"))
		checkRecord(t, s, "k|x", "y", []byte("2"))
		checkRecord(t, s, "k", "x/y:z", []byte("3"))
	})

	t.Run("EmptyDoc", func(t *testing.T) {
		// Leases and markers carry no content: a nil document is stored and read back as empty.
		s := open(t)
		ctx := t.Context()
		if err := s.CreateRecord(ctx, "lease", "x", nil, future); err != nil {
			t.Fatalf("CreateRecord with a nil doc: %v", err)
		}
		if err := s.PutRecord(ctx, "marker", "y", nil, time.Time{}); err != nil {
			t.Fatalf("PutRecord with a nil doc: %v", err)
		}
		if doc, err := s.GetRecord(ctx, "marker", "y"); err != nil || len(doc) != 0 {
			t.Errorf("GetRecord of an empty doc: %q, %v", doc, err)
		}
	})

	t.Run("Create", func(t *testing.T) {
		s := open(t)
		ctx := t.Context()
		if err := s.CreateRecord(ctx, "code", "c1", []byte("first"), future); err != nil {
			t.Fatalf("CreateRecord: %v", err)
		}
		if err := s.CreateRecord(ctx, "code", "c1", []byte("second"), future); !errors.Is(err, store.ErrDuplicate) {
			t.Errorf("CreateRecord of a live record: err = %v, want ErrDuplicate", err)
		}
		checkRecord(t, s, "code", "c1", []byte("first"))
		if err := s.CreateRecord(ctx, "other", "c1", []byte("x"), time.Time{}); err != nil {
			t.Errorf("CreateRecord of the same id in another kind: %v", err)
		}
		// An expired record is absent: creating over it succeeds.
		mustPutRecord(t, s, "code", "c2", []byte("old"), past)
		if err := s.CreateRecord(ctx, "code", "c2", []byte("new"), future); err != nil {
			t.Errorf("CreateRecord over an expired record: %v", err)
		}
		checkRecord(t, s, "code", "c2", []byte("new"))
	})

	t.Run("Expiry", func(t *testing.T) {
		s := open(t)
		ctx := t.Context()
		mustPutRecord(t, s, "code", "gone", []byte("x"), past)
		mustPutRecord(t, s, "code", "live", []byte("y"), future)
		if _, err := s.GetRecord(ctx, "code", "gone"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("GetRecord of an expired record: err = %v, want ErrNotFound", err)
		}
		if _, err := s.TakeRecord(ctx, "code", "gone"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("TakeRecord of an expired record: err = %v, want ErrNotFound", err)
		}
		checkRecord(t, s, "code", "live", []byte("y"))
		list, err := s.ListRecords(ctx, "code")
		if err != nil {
			t.Fatalf("ListRecords: %v", err)
		}
		if len(list) != 1 || list[0].ID != "live" {
			t.Fatalf("ListRecords with one expired and one live record = %+v, want only live", list)
		}
		if d := list[0].Expires.Sub(future); d < -time.Second || d > time.Second {
			t.Errorf("ListRecords: Expires = %s, want %s", list[0].Expires, future)
		}
	})

	t.Run("Take", func(t *testing.T) {
		s := open(t)
		ctx := t.Context()
		mustPutRecord(t, s, "code", "c1", binaryDoc(), future)
		got, err := s.TakeRecord(ctx, "code", "c1")
		if err != nil {
			t.Fatalf("TakeRecord: %v", err)
		}
		if diff := cmp.Diff(binaryDoc(), got); diff != "" {
			t.Errorf("TakeRecord document (-want +got):\n%s", diff)
		}
		if _, err := s.GetRecord(ctx, "code", "c1"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("GetRecord after TakeRecord: err = %v, want ErrNotFound", err)
		}
		if _, err := s.TakeRecord(ctx, "code", "c1"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("second TakeRecord: err = %v, want ErrNotFound", err)
		}
	})

	t.Run("Delete", func(t *testing.T) {
		s := open(t)
		ctx := t.Context()
		if err := s.DeleteRecord(ctx, "client", "absent"); err != nil {
			t.Errorf("DeleteRecord of an absent record: %v, want nil", err)
		}
		mustPutRecord(t, s, "client", "a", []byte("x"), time.Time{})
		mustPutRecord(t, s, "client", "b", []byte("y"), time.Time{})
		if err := s.DeleteRecord(ctx, "client", "a"); err != nil {
			t.Fatalf("DeleteRecord: %v", err)
		}
		if _, err := s.GetRecord(ctx, "client", "a"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("GetRecord after DeleteRecord: err = %v, want ErrNotFound", err)
		}
		checkRecord(t, s, "client", "b", []byte("y"))
	})

	t.Run("List", func(t *testing.T) {
		s := open(t)
		ctx := t.Context()
		for _, r := range []store.Record{
			{Kind: "key", ID: "c", Doc: []byte("3")},
			{Kind: "key", ID: "a", Doc: binaryDoc()},
			{Kind: "key", ID: "b", Doc: []byte("2"), Expires: future},
			{Kind: "key", ID: "d", Doc: []byte("4"), Expires: past},
			{Kind: "user", ID: "a", Doc: []byte("u")},
		} {
			mustPutRecord(t, s, r.Kind, r.ID, r.Doc, r.Expires)
		}
		list, err := s.ListRecords(ctx, "key")
		if err != nil {
			t.Fatalf("ListRecords: %v", err)
		}
		var gotIDs []string
		for _, r := range list {
			gotIDs = append(gotIDs, r.ID)
			if r.Kind != "key" {
				t.Errorf("ListRecords(key): record %s has kind %q", r.ID, r.Kind)
			}
			if (r.ID == "b") == r.Expires.IsZero() {
				t.Errorf("ListRecords(key): record %s has Expires %s", r.ID, r.Expires)
			}
		}
		if diff := cmp.Diff([]string{"a", "b", "c"}, gotIDs); diff != "" {
			t.Errorf("ListRecords(key) ids, ordered by id (-want +got):\n%s", diff)
		}
		if len(list) > 0 && list[0].ID == "a" {
			if diff := cmp.Diff(binaryDoc(), list[0].Doc); diff != "" {
				t.Errorf("ListRecords(key) document of a (-want +got):\n%s", diff)
			}
		}
		if list, err := s.ListRecords(ctx, "none"); err != nil || len(list) != 0 {
			t.Errorf("ListRecords of an empty kind = %+v, %v; want none", list, err)
		}
	})

	t.Run("ConcurrentCreate", func(t *testing.T) {
		// Of concurrent creates exactly one succeeds (replay caches, single-flight leases).
		s := open(t)
		const workers = 8
		errs := make([]error, workers)
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() { errs[w] = s.CreateRecord(t.Context(), "jti", "token-1", []byte{byte(w)}, future) })
		}
		wg.Wait()
		won := -1
		for w, err := range errs {
			switch {
			case err == nil && won >= 0:
				t.Errorf("CreateRecord succeeded for workers %d and %d, want exactly one", won, w)
			case err == nil:
				won = w
			case !errors.Is(err, store.ErrDuplicate):
				t.Errorf("worker %d: CreateRecord: err = %v, want nil or ErrDuplicate", w, err)
			}
		}
		if won < 0 {
			t.Fatalf("no concurrent CreateRecord succeeded")
		}
		checkRecord(t, s, "jti", "token-1", []byte{byte(won)})
	})

	t.Run("ConcurrentTake", func(t *testing.T) {
		// Of concurrent takes exactly one gets the record (single-use authorization codes).
		s := open(t)
		const workers = 8
		mustPutRecord(t, s, "code", "c1", []byte("secret"), future)
		docs := make([][]byte, workers)
		errs := make([]error, workers)
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() { docs[w], errs[w] = s.TakeRecord(t.Context(), "code", "c1") })
		}
		wg.Wait()
		taken := 0
		for w, err := range errs {
			switch {
			case err == nil:
				taken++
				if string(docs[w]) != "secret" {
					t.Errorf("worker %d: TakeRecord = %q, want %q", w, docs[w], "secret")
				}
			case !errors.Is(err, store.ErrNotFound):
				t.Errorf("worker %d: TakeRecord: err = %v, want nil or ErrNotFound", w, err)
			}
		}
		if taken != 1 {
			t.Errorf("%d concurrent TakeRecord calls got the record, want exactly one", taken)
		}
	})
}

func mustPutRecord(t testing.TB, s store.Store, kind, id string, doc []byte, expires time.Time) {
	t.Helper()
	if err := s.PutRecord(t.Context(), kind, id, doc, expires); err != nil {
		t.Fatalf("PutRecord(%s, %s): %v", kind, id, err)
	}
}

// checkRecord checks that GetRecord returns exactly want.
func checkRecord(t testing.TB, s store.Store, kind, id string, want []byte) {
	t.Helper()
	got, err := s.GetRecord(t.Context(), kind, id)
	if err != nil {
		t.Errorf("GetRecord(%s, %s): %v", kind, id, err)
		return
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("GetRecord(%s, %s) (-want +got):\n%s", kind, id, diff)
	}
}
