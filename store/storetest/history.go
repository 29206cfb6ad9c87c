package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/store"
)

// ---- history helpers ----

func mustHistory(t testing.TB, s store.Store, q store.HistoryQuery) []store.Entry {
	t.Helper()
	es, err := s.History(t.Context(), q)
	if err != nil {
		t.Fatalf("History %+v: %v", q, err)
	}
	return es
}

// allVersions returns the whole history of one resource.
func allVersions(t testing.TB, s store.Store, typ, id string) []store.Entry {
	t.Helper()
	return mustHistory(t, s, store.HistoryQuery{Type: typ, ID: id, Count: 1000})
}

func versionsOf(es []store.Entry) []int64 {
	out := make([]int64, len(es))
	for i, e := range es {
		out[i] = e.VersionID
	}
	return out
}

// span returns the versions hi, hi-1, …, lo.
func span(hi, lo int64) []int64 {
	var out []int64
	for v := hi; v >= lo; v-- {
		out = append(out, v)
	}
	return out
}

// valueOf returns the valueInteger of an Observation entry.
func valueOf(t testing.TB, e store.Entry) int64 {
	t.Helper()
	o, ok := checkMeta(t, e).(*fhir.Observation)
	if !ok || o.ValueInteger == nil {
		t.Fatalf("%s/%s version %d: no valueInteger in %s", e.Type, e.ID, e.VersionID, e.JSON)
	}
	return *o.ValueInteger
}

// checkDeletion checks an entry standing for a deletion.
func checkDeletion(t testing.TB, e store.Entry, version int64) {
	t.Helper()
	if e.VersionID != version || e.JSON != nil || e.LastUpdated.IsZero() {
		t.Errorf("%s/%s: deletion entry = version %d, lastUpdated %s, JSON %q; want version %d, a lastUpdated and no JSON", e.Type, e.ID, e.VersionID, e.LastUpdated, e.JSON, version)
	}
}

// putVersions writes n versions of Observation id through Put (valueInteger 1…n) and returns
// the written entries, oldest first.
func putVersions(t testing.TB, s store.Store, id string, n int) []store.Entry {
	t.Helper()
	var out []store.Entry
	for i := 1; i <= n; i++ {
		e, _ := mustPut(t, s, newObservation(id, loincCode(codeWeight), withSubject("Patient/pat-1"), withInteger(int64(i))), store.WriteOptions{})
		out = append(out, e)
	}
	return out
}

func upsertObs(value int64) *fhir.Observation {
	return newObservation("", loincCode(codeWeight), withIdentifier(ident(measSystem, "hist-1")), withSubject("Patient/pat-1"), withInteger(value))
}

func mustUpsert(t testing.TB, s store.Store, rs ...fhir.Resource) []store.UpsertResult {
	t.Helper()
	res, err := s.Upsert(t.Context(), rs)
	if err != nil {
		t.Fatalf("Upsert: %v", err)
	}
	return res
}

func testHistory(t *testing.T, open opener) {
	t.Run("VReadEveryVersion", func(t *testing.T) {
		s := open(t)
		first := mustCreate(t, s, newObservation("obs-h", loincCode(codeWeight), withSubject("Patient/pat-1"), withInteger(0)))
		written := append([]store.Entry{first}, putVersions(t, s, "obs-h", 3)...)
		for i, w := range written {
			if w.VersionID != int64(i+1) {
				t.Fatalf("write %d: version %d, want %d", i, w.VersionID, i+1)
			}
			got, err := s.ReadVersion(t.Context(), "Observation", "obs-h", w.VersionID)
			if err != nil {
				t.Fatalf("ReadVersion %d: %v", w.VersionID, err)
			}
			checkSameEntry(t, w, got)
			checkMeta(t, got)
		}
		// Newest first, each version as it was written.
		h := allVersions(t, s, "Observation", "obs-h")
		if diff := cmp.Diff(span(4, 1), versionsOf(h)); diff != "" {
			t.Fatalf("History versions (-want +got):\n%s", diff)
		}
		for i, e := range h {
			checkSameEntry(t, written[len(written)-1-i], e)
		}
		// The current version is the same through Read, ReadVersion and History.
		checkSameEntry(t, mustRead(t, s, "Observation", "obs-h"), h[0])
	})

	t.Run("UnknownVersions", func(t *testing.T) {
		s := open(t)
		putVersions(t, s, "x", 2)
		mustCreate(t, s, newPatient("x")) // same id, another type: its own history
		for _, tc := range []struct {
			typ, id string
			version int64
		}{{"Observation", "x", 0}, {"Observation", "x", 3}, {"Observation", "x", -1}, {"Observation", "nope", 1}, {"Device", "x", 1}} {
			if _, err := s.ReadVersion(t.Context(), tc.typ, tc.id, tc.version); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("ReadVersion %s/%s %d: err = %v, want ErrNotFound", tc.typ, tc.id, tc.version, err)
			}
		}
		if _, err := s.History(t.Context(), store.HistoryQuery{Type: "Observation", ID: "nope", Count: 10}); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("History of an unknown resource: err = %v, want ErrNotFound", err)
		}
		if got := versionsOf(allVersions(t, s, "Patient", "x")); !slices.Equal(got, []int64{1}) {
			t.Errorf("History Patient/x: versions %v, want [1] (Observation/x has its own)", got)
		}
		if got := versionsOf(allVersions(t, s, "Observation", "x")); !slices.Equal(got, []int64{2, 1}) {
			t.Errorf("History Observation/x: versions %v, want [2 1]", got)
		}
	})

	t.Run("Deletions", func(t *testing.T) {
		s := open(t)
		w := putVersions(t, s, "obs-d", 2)
		mustDelete(t, s, "Observation", "obs-d") // v3
		mustDelete(t, s, "Observation", "obs-d") // a no-op: no new version
		back, created := mustPut(t, s, newObservation("obs-d", loincCode(codeWeight), withInteger(4)), store.WriteOptions{})
		if !created || back.VersionID != 4 {
			t.Fatalf("Put after Delete: version %d created %v, want 4 true", back.VersionID, created)
		}
		mustDelete(t, s, "Observation", "obs-d") // v5

		h := allVersions(t, s, "Observation", "obs-d")
		if diff := cmp.Diff(span(5, 1), versionsOf(h)); diff != "" {
			t.Fatalf("History versions (-want +got):\n%s", diff)
		}
		checkDeletion(t, h[0], 5)
		checkSameEntry(t, back, h[1])
		checkDeletion(t, h[2], 3)
		checkSameEntry(t, w[1], h[3])
		checkSameEntry(t, w[0], h[4])
		for i := 1; i < len(h); i++ {
			if h[i-1].LastUpdated.Before(h[i].LastUpdated) {
				t.Errorf("version %d lastUpdated %s is before version %d's %s", h[i-1].VersionID, h[i-1].LastUpdated, h[i].VersionID, h[i].LastUpdated)
			}
		}
		for _, v := range []int64{3, 5} {
			e, err := s.ReadVersion(t.Context(), "Observation", "obs-d", v)
			if !errors.Is(err, store.ErrDeleted) {
				t.Errorf("ReadVersion %d (a deletion): err = %v, want ErrDeleted", v, err)
				continue
			}
			checkDeletion(t, e, v)
		}
		if e, err := s.ReadVersion(t.Context(), "Observation", "obs-d", 4); err != nil {
			t.Errorf("ReadVersion 4 of a deleted resource: %v", err)
		} else if got := valueOf(t, e); got != 4 {
			t.Errorf("ReadVersion 4: value %d, want 4", got)
		}
	})

	t.Run("Upsert", func(t *testing.T) {
		s := open(t)
		r := mustUpsert(t, s, upsertObs(1))
		id := r[0].ID
		mustUpsert(t, s, upsertObs(1)) // unchanged: no version
		if got := versionsOf(allVersions(t, s, "Observation", id)); !slices.Equal(got, []int64{1}) {
			t.Fatalf("History after an unchanged upsert: versions %v, want [1]", got)
		}
		mustUpsert(t, s, upsertObs(2))
		// The same resource twice in one call: both versions are kept.
		if r := mustUpsert(t, s, upsertObs(3), upsertObs(4)); r[0].VersionID != 3 || r[1].VersionID != 4 {
			t.Fatalf("Upsert of two changes in one call: versions %d, %d, want 3, 4", r[0].VersionID, r[1].VersionID)
		}
		h := allVersions(t, s, "Observation", id)
		var got []int64
		for _, e := range h {
			got = append(got, valueOf(t, e))
		}
		if diff := cmp.Diff(span(4, 1), versionsOf(h)); diff != "" {
			t.Errorf("History versions (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]int64{4, 3, 2, 1}, got); diff != "" {
			t.Errorf("History values (-want +got):\n%s", diff)
		}
	})

	t.Run("Paging", func(t *testing.T) {
		s := open(t)
		putVersions(t, s, "obs-p", 7)
		var pages [][]int64
		q := store.HistoryQuery{Type: "Observation", ID: "obs-p", Count: 3}
		for range 10 {
			es := mustHistory(t, s, q)
			if len(es) == 0 {
				break
			}
			pages = append(pages, versionsOf(es))
			q.Before = es[len(es)-1].VersionID
		}
		if diff := cmp.Diff([][]int64{{7, 6, 5}, {4, 3, 2}, {1}}, pages); diff != "" {
			t.Errorf("pages (-want +got):\n%s", diff)
		}
	})

	t.Run("SinceUntil", func(t *testing.T) {
		s := open(t)
		w := putVersions(t, s, "obs-t", 5)
		// Expectations follow the stored lastUpdated values (two writes may share a microsecond).
		want := func(keep func(time.Time) bool) []int64 {
			var out []int64
			for _, e := range slices.Backward(w) {
				if keep(e.LastUpdated) {
					out = append(out, e.VersionID)
				}
			}
			return out
		}
		at := func(i int) time.Time { return w[i].LastUpdated }
		for _, tc := range []struct {
			name         string
			since, until time.Time
			want         []int64
		}{
			{"since", at(2), time.Time{}, want(func(lu time.Time) bool { return !lu.Before(at(2)) })},
			{"until", time.Time{}, at(2), want(func(lu time.Time) bool { return lu.Before(at(2)) })},
			{"both", at(1), at(3), want(func(lu time.Time) bool { return !lu.Before(at(1)) && lu.Before(at(3)) })},
			{"after everything", at(4).Add(time.Second), time.Time{}, nil},
		} {
			got := versionsOf(mustHistory(t, s, store.HistoryQuery{Type: "Observation", ID: "obs-t", Count: 100, Since: tc.since, Until: tc.until}))
			if diff := cmp.Diff(tc.want, got, cmpEmpty); diff != "" {
				t.Errorf("%s: versions (-want +got):\n%s", tc.name, diff)
			}
		}
	})

	t.Run("PurgeHistory", func(t *testing.T) {
		s := open(t)
		putVersions(t, s, "obs-x", 3)
		mustDelete(t, s, "Observation", "obs-x")
		if err := s.PurgeHistory(t.Context(), "Observation", "obs-x"); err != nil {
			t.Fatalf("PurgeHistory: %v", err)
		}
		h := allVersions(t, s, "Observation", "obs-x")
		if len(h) != 1 {
			t.Fatalf("History after PurgeHistory: versions %v, want only the deletion [4]", versionsOf(h))
		}
		checkDeletion(t, h[0], 4)
		for v := int64(1); v <= 3; v++ {
			if _, err := s.ReadVersion(t.Context(), "Observation", "obs-x", v); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("ReadVersion %d after PurgeHistory: err = %v, want ErrNotFound", v, err)
			}
		}
		mustPut(t, s, newObservation("obs-x", loincCode(codeWeight), withInteger(9)), store.WriteOptions{})
		if got := versionsOf(allVersions(t, s, "Observation", "obs-x")); !slices.Equal(got, []int64{5, 4}) {
			t.Errorf("History after a later Put: versions %v, want [5 4]", got)
		}
		if err := s.PurgeHistory(t.Context(), "Observation", "nope"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("PurgeHistory of an unknown resource: err = %v, want ErrNotFound", err)
		}
	})

	t.Run("ConcurrentWriters", func(t *testing.T) {
		s := open(t)
		const workers, rounds = 6, 5
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				for i := range rounds {
					if _, _, err := s.Put(t.Context(), newObservation("shared", loincCode(codeWeight), withInteger(int64(w*100+i))), store.WriteOptions{}); err != nil {
						t.Errorf("worker %d: Put: %v", w, err)
						return
					}
				}
			})
		}
		wg.Wait()
		// Every write is exactly one version: none lost, none twice, each with its own content.
		h := allVersions(t, s, "Observation", "shared")
		if diff := cmp.Diff(span(workers*rounds, 1), versionsOf(h)); diff != "" {
			t.Fatalf("History versions (-want +got):\n%s", diff)
		}
		var got, want []int64
		for _, e := range h {
			got = append(got, valueOf(t, e))
		}
		for w := range workers {
			for i := range rounds {
				want = append(want, int64(w*100+i))
			}
		}
		slices.Sort(got)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("values of the versions (-want +got):\n%s", diff)
		}
	})

	t.Run("Cancel", func(t *testing.T) {
		s := open(t)
		putVersions(t, s, "obs-c", 2)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if _, err := s.ReadVersion(ctx, "Observation", "obs-c", 1); !errors.Is(err, context.Canceled) {
			t.Errorf("ReadVersion: err = %v, want context.Canceled", err)
		}
		if _, err := s.History(ctx, store.HistoryQuery{Type: "Observation", ID: "obs-c", Count: 5}); !errors.Is(err, context.Canceled) {
			t.Errorf("History: err = %v, want context.Canceled", err)
		}
		if err := s.PurgeHistory(ctx, "Observation", "obs-c"); !errors.Is(err, context.Canceled) {
			t.Errorf("PurgeHistory: err = %v, want context.Canceled", err)
		}
	})
}

// cmpEmpty makes nil and empty slices equal.
var cmpEmpty = cmp.Transformer("nonNil", func(s []int64) []int64 {
	if s == nil {
		return []int64{}
	}
	return s
})

// RunHistoryRetention checks that a store opened by open(t, keep) keeps only the keep newest
// versions of each resource (the current one included), pruning older ones on every kind of
// write: Put, Upsert, Delete.
func RunHistoryRetention(t *testing.T, open func(t testing.TB, keep int) store.Store) {
	for _, keep := range []int{1, 3} {
		t.Run(fmt.Sprintf("Keep%d", keep), func(t *testing.T) {
			s := open(t, keep)
			check := func(what, typ, id string, current int64) {
				t.Helper()
				if diff := cmp.Diff(span(current, max(1, current-int64(keep)+1)), versionsOf(allVersions(t, s, typ, id))); diff != "" {
					t.Errorf("%s: History versions (-want +got):\n%s", what, diff)
				}
				for v := int64(1); v <= current; v++ {
					_, err := s.ReadVersion(t.Context(), typ, id, v)
					if kept := v > current-int64(keep); kept != !errors.Is(err, store.ErrNotFound) {
						t.Errorf("%s: ReadVersion %d: err = %v, want it kept: %v", what, v, err, kept)
					}
				}
			}
			putVersions(t, s, "obs-r", 6)
			check("after 6 Puts", "Observation", "obs-r", 6)
			mustDelete(t, s, "Observation", "obs-r")
			check("after Delete", "Observation", "obs-r", 7)
			mustPut(t, s, newObservation("obs-r", loincCode(codeWeight), withInteger(8)), store.WriteOptions{})
			check("after resurrection", "Observation", "obs-r", 8)

			id := mustUpsert(t, s, upsertObs(1))[0].ID
			for v := int64(2); v <= 5; v++ {
				mustUpsert(t, s, upsertObs(v))
			}
			check("after 5 Upserts", "Observation", id, 5)
			mustUpsert(t, s, upsertObs(6), upsertObs(7), upsertObs(8))
			check("after one Upsert of three changes", "Observation", id, 8)
		})
	}
}
