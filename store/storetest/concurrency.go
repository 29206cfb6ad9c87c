package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/store"
)

func testCancel(t *testing.T, open opener) {
	s := open(t)
	e := mustCreate(t, s, newPatient("pat-1"))
	mustPutRecord(t, s, "k", "a", []byte("doc"), time.Time{})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	q := parse(t, "Patient", "_id=pat-1")
	withID := newPatient("")
	withID.Identifier = []fhir.Identifier{ident(mrnSystem, "1")}
	for _, tc := range []struct {
		name string
		call func() error
	}{
		{"Create", func() error { _, err := s.Create(ctx, newPatient("")); return err }},
		{"Put", func() error { _, _, err := s.Put(ctx, newPatient("pat-1"), store.WriteOptions{}); return err }},
		{"Read", func() error { _, err := s.Read(ctx, "Patient", "pat-1"); return err }},
		{"Delete", func() error { return s.Delete(ctx, "Patient", "pat-1") }},
		{"Search", func() error { _, err := s.Search(ctx, q); return err }},
		{"FindByIdentifier", func() error { _, err := s.FindByIdentifier(ctx, "Patient", mrnSystem, "1"); return err }},
		{"Upsert", func() error { _, err := s.Upsert(ctx, []fhir.Resource{withID}); return err }},
		{"PutRecord", func() error { return s.PutRecord(ctx, "k", "new", []byte("x"), time.Time{}) }},
		{"CreateRecord", func() error { return s.CreateRecord(ctx, "k", "new", []byte("x"), time.Time{}) }},
		{"GetRecord", func() error { _, err := s.GetRecord(ctx, "k", "a"); return err }},
		{"TakeRecord", func() error { _, err := s.TakeRecord(ctx, "k", "a"); return err }},
		{"DeleteRecord", func() error { return s.DeleteRecord(ctx, "k", "a") }},
		{"ListRecords", func() error { _, err := s.ListRecords(ctx, "k"); return err }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.call(); !errors.Is(err, context.Canceled) {
				t.Errorf("%s with a cancelled context: err = %v, want one matching context.Canceled", tc.name, err)
			}
		})
	}
	// Nothing was written, and the store still works.
	checkSameEntry(t, e, mustRead(t, s, "Patient", "pat-1"))
	if got, err := s.FindByIdentifier(t.Context(), "Patient", mrnSystem, "1"); err != nil || len(got) != 0 {
		t.Errorf("FindByIdentifier after a cancelled Upsert = %v, %v; want nothing written", got, err)
	}
	checkRecord(t, s, "k", "a", []byte("doc"))
	if _, err := s.GetRecord(t.Context(), "k", "new"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetRecord after a cancelled PutRecord and CreateRecord: err = %v, want ErrNotFound", err)
	}
}

func testConcurrency(t *testing.T, open opener) {
	const workers, rounds = 8, 10
	code := concept(coding(testSystem, "K"))

	t.Run("PutReadSearch", func(t *testing.T) {
		s := open(t)
		var created atomic.Int32
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				ctx := t.Context()
				own := fmt.Sprintf("w-%d", w)
				for i := range rounds {
					// A resource only this worker writes: versions are exactly sequential.
					e, _, err := s.Put(ctx, newObservation(own, code, withSubject(fmt.Sprintf("Patient/p-%d", w)), withInteger(int64(i))), store.WriteOptions{})
					if err != nil {
						t.Errorf("worker %d: Put %s: %v", w, own, err)
						return
					}
					if e.VersionID != int64(i+1) {
						t.Errorf("worker %d: Put %s: version %d, want %d", w, own, e.VersionID, i+1)
					}
					r, err := s.Read(ctx, "Observation", own)
					if err != nil {
						t.Errorf("worker %d: Read %s: %v", w, own, err)
						return
					}
					if r.VersionID != int64(i+1) {
						t.Errorf("worker %d: Read %s: version %d, want %d", w, own, r.VersionID, i+1)
					}

					// A resource every worker writes.
					_, c, err := s.Put(ctx, newObservation("shared", code, withInteger(int64(w*100+i))), store.WriteOptions{})
					if err != nil {
						t.Errorf("worker %d: Put shared: %v", w, err)
						return
					}
					if c {
						created.Add(1)
					}

					for _, raw := range []string{"code=K&_count=5&_sort=-_lastUpdated", "_id=" + own, fmt.Sprintf("patient=p-%d", w)} {
						q, err := parseQuery("Observation", raw)
						if err != nil {
							t.Errorf("parse %s: %v", raw, err)
							return
						}
						res, err := s.Search(ctx, q)
						if err != nil {
							t.Errorf("worker %d: Search %s: %v", w, raw, err)
							return
						}
						if len(res.Matches) > 5 {
							t.Errorf("worker %d: Search %s: %d matches, more than _count=5", w, raw, len(res.Matches))
						}
						if raw != "code=K&_count=5&_sort=-_lastUpdated" && (len(res.Matches) != 1 || res.Matches[0].VersionID != int64(i+1)) {
							t.Errorf("worker %d: Search %s: got %d matches (%v), want %s version %d", w, raw, len(res.Matches), ids(res.Matches), own, i+1)
						}
					}
				}
			})
		}
		wg.Wait()
		if n := created.Load(); n != 1 {
			t.Errorf("Put of shared: created reported %d times, want once", n)
		}
		if e := mustRead(t, s, "Observation", "shared"); e.VersionID != workers*rounds {
			t.Errorf("shared after %d Puts: version %d, want %d (no lost version)", workers*rounds, e.VersionID, workers*rounds)
		}
		res := mustSearch(t, s, parse(t, "Observation", "code=K&_summary=count"))
		if res.Total != workers+1 {
			t.Errorf("Total = %d, want %d", res.Total, workers+1)
		}
	})

	t.Run("IfMatchCounter", func(t *testing.T) {
		// Optimistic locking: each worker increments a counter with read + conditional Put,
		// retrying on ErrVersionConflict. Any lost update shows in the final value.
		const increments = 5
		s := open(t)
		mustCreate(t, s, newObservation("counter", code, withInteger(0)))
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				ctx := t.Context()
				for done, tries := 0, 0; done < increments; tries++ {
					if tries > 1000 {
						t.Errorf("worker %d: no progress after %d conflicts", w, tries)
						return
					}
					e, err := s.Read(ctx, "Observation", "counter")
					if err != nil {
						t.Errorf("worker %d: Read: %v", w, err)
						return
					}
					r, err := fhir.Decode(e.JSON, "Observation")
					if err != nil {
						t.Errorf("worker %d: decode: %v", w, err)
						return
					}
					n := *r.(*fhir.Observation).ValueInteger
					_, _, err = s.Put(ctx, newObservation("counter", code, withInteger(n+1)), store.WriteOptions{IfMatch: e.VersionID})
					switch {
					case errors.Is(err, store.ErrVersionConflict):
						continue
					case err != nil:
						t.Errorf("worker %d: Put: %v", w, err)
						return
					}
					done++
				}
			})
		}
		wg.Wait()
		e := mustRead(t, s, "Observation", "counter")
		o := decode(t, e).(*fhir.Observation)
		if want := int64(workers * increments); o.ValueInteger == nil || *o.ValueInteger != want || e.VersionID != want+1 {
			t.Errorf("counter: value %v version %d, want value %d version %d", o.ValueInteger, e.VersionID, want, want+1)
		}
	})
}
