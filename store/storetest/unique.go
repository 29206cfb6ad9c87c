package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/store"
)

// patientWith returns a Patient (id may be "") carrying the identifiers, in mrnSystem.
func patientWith(id, family string, mrns ...string) *fhir.Patient {
	p := newPatient(id)
	for _, v := range mrns {
		p.Identifier = append(p.Identifier, ident(mrnSystem, v))
	}
	if family != "" {
		p.Name = []fhir.HumanName{{Family: family}}
	}
	return p
}

func mustCreateUnique(t testing.TB, s store.Store, r fhir.Resource, value string) (store.Entry, bool) {
	t.Helper()
	e, created, err := s.CreateUnique(t.Context(), r, mrnSystem, value)
	if err != nil {
		t.Fatalf("CreateUnique %s %s: %v", r.Type(), value, err)
	}
	return e, created
}

// holders returns the live Patients carrying MRN value.
func holders(t testing.TB, s store.Store, value string) []string {
	t.Helper()
	ids, err := s.FindByIdentifier(t.Context(), "Patient", mrnSystem, value)
	if err != nil {
		t.Fatalf("FindByIdentifier %s: %v", value, err)
	}
	return ids
}

func testCreateUnique(t *testing.T, open opener) {
	t.Run("CreatesOnce", func(t *testing.T) {
		s := open(t)
		// The store assigns the id: one the resource carries is not used.
		e, created := mustCreateUnique(t, s, patientWith("client-id", "Doe", "42"), "42")
		if !created || e.VersionID != 1 || !fhir.ValidID(e.ID) || e.ID == "client-id" {
			t.Fatalf("first CreateUnique: created %v, %s version %d; want a new Patient with a store id, version 1", created, e.ID, e.VersionID)
		}
		checkMeta(t, e)
		checkSameEntry(t, e, mustRead(t, s, "Patient", e.ID))
		if _, err := s.Read(t.Context(), "Patient", "client-id"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Read(client-id) after CreateUnique: err = %v, want ErrNotFound", err)
		}
		// A second registration of the identifier, whatever its content, returns the first.
		again, created := mustCreateUnique(t, s, patientWith("", "Roe", "42"), "42")
		if created {
			t.Errorf("second CreateUnique: created, want the existing Patient")
		}
		checkSameEntry(t, e, again)
		if got := holders(t, s, "42"); !cmp.Equal(got, []string{e.ID}) {
			t.Errorf("Patients with MRN 42: %v, want [%s]", got, e.ID)
		}
		// Any identifier of a stored resource counts, not only the first.
		byOther, created := mustCreateUnique(t, s, patientWith("", "", "43"), "43")
		two, _ := mustPut(t, s, patientWith(byOther.ID, "", "44", "43"), store.WriteOptions{})
		got, created2 := mustCreateUnique(t, s, patientWith("", "", "43"), "43")
		if !created || created2 || got.ID != two.ID || got.VersionID != 2 {
			t.Errorf("CreateUnique by a second identifier: %s version %d created %v, want %s version 2", got.ID, got.VersionID, created2, two.ID)
		}
	})

	t.Run("SeesOtherWrites", func(t *testing.T) {
		s := open(t)
		// A Patient stored by a plain Create is found.
		plain := mustCreate(t, s, patientWith("plain", "", "7"))
		if e, created := mustCreateUnique(t, s, patientWith("", "", "7"), "7"); created || e.ID != plain.ID {
			t.Errorf("CreateUnique of an identifier a plain Create stored: %s created %v, want %s", e.ID, created, plain.ID)
		}
		// Two live holders (only CreateUnique arbitrates): ErrDuplicate, nothing written.
		mustCreate(t, s, patientWith("dup-1", "", "8"))
		mustCreate(t, s, patientWith("dup-2", "", "8"))
		if _, _, err := s.CreateUnique(t.Context(), patientWith("", "", "8"), mrnSystem, "8"); !errors.Is(err, store.ErrDuplicate) {
			t.Errorf("CreateUnique with two holders: err = %v, want ErrDuplicate", err)
		}
		if got := holders(t, s, "8"); len(got) != 2 {
			t.Errorf("Patients with MRN 8 after a refused CreateUnique: %v, want the two", got)
		}
		// A resource without the identifier is refused and not stored.
		if _, _, err := s.CreateUnique(t.Context(), patientWith("", "", "9"), mrnSystem, "10"); err == nil {
			t.Errorf("CreateUnique of a resource that does not carry the identifier: no error")
		}
		if got := holders(t, s, "9"); len(got) != 0 {
			t.Errorf("a refused CreateUnique stored %v", got)
		}
	})

	t.Run("ReleasedIdentifier", func(t *testing.T) {
		// A holder that is deleted or loses the identifier no longer holds it, again and again
		// (each registration takes a new id).
		s := open(t)
		seen := map[string]bool{}
		for round := range 4 {
			e, created := mustCreateUnique(t, s, patientWith("", fmt.Sprint("Round", round), "55"), "55")
			if !created || seen[e.ID] || e.VersionID != 1 {
				t.Fatalf("round %d: CreateUnique after the holder went: %s version %d created %v, want a new Patient", round, e.ID, e.VersionID, created)
			}
			seen[e.ID] = true
			if round%2 == 0 {
				mustDelete(t, s, "Patient", e.ID)
			} else {
				mustPut(t, s, patientWith(e.ID, "", fmt.Sprint("changed-", round)), store.WriteOptions{})
			}
			if got := holders(t, s, "55"); len(got) != 0 {
				t.Fatalf("round %d: MRN 55 still held by %v", round, got)
			}
		}
	})

	t.Run("Concurrent", func(t *testing.T) {
		s := open(t)
		raceCreateUnique(t, []store.Store{s, s}, 4, 5)
	})

	t.Run("Cancel", func(t *testing.T) {
		s := open(t)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if _, _, err := s.CreateUnique(ctx, patientWith("", "", "1"), mrnSystem, "1"); !errors.Is(err, context.Canceled) {
			t.Errorf("CreateUnique with a cancelled context: err = %v, want one matching context.Canceled", err)
		}
		if got := holders(t, s, "1"); len(got) != 0 {
			t.Errorf("a cancelled CreateUnique stored %v", got)
		}
	})
}

// raceCreateUnique registers rounds identifiers, each from workers goroutines per store handle
// at once, and checks that exactly one Patient per identifier exists and every caller got it.
func raceCreateUnique(t *testing.T, handles []store.Store, workers, rounds int) {
	t.Helper()
	for round := range rounds {
		mrn := fmt.Sprint("race-", round)
		type outcome struct {
			id      string
			created bool
		}
		var mu sync.Mutex
		var got []outcome
		var wg sync.WaitGroup
		start := make(chan struct{})
		for h, s := range handles {
			for w := range workers {
				wg.Go(func() {
					<-start
					e, created, err := s.CreateUnique(t.Context(), patientWith("", fmt.Sprintf("H%dW%d", h, w), mrn), mrnSystem, mrn)
					if err != nil {
						t.Errorf("handle %d worker %d: CreateUnique %s: %v", h, w, mrn, err)
						return
					}
					mu.Lock()
					got = append(got, outcome{e.ID, created})
					mu.Unlock()
				})
			}
		}
		close(start)
		wg.Wait()
		if t.Failed() {
			return
		}
		creates, same := 0, true
		for _, o := range got {
			if o.created {
				creates++
			}
			same = same && o.id == got[0].id
		}
		if !same {
			t.Errorf("%s: callers got different ids: %v", mrn, got)
		}
		if creates != 1 {
			t.Errorf("%s: %d callers created, want exactly one (%v)", mrn, creates, got)
		}
		for h, s := range handles {
			if ids := holders(t, s, mrn); !cmp.Equal(ids, []string{got[0].id}) {
				t.Errorf("%s: handle %d finds Patients %v, want only %s", mrn, h, ids, got[0].id)
			}
		}
	}
}

// RunShared checks what must hold across several handles on one database, such as two ohx
// instances on one MongoDB or two processes on one SQLite file. open returns two handles on one
// fresh, empty database and registers their cleanup with t.Cleanup.
//
// The subtests are:
//   - CreateUniqueRace: both handles register the same identifier concurrently, many times;
//     exactly one Patient exists afterwards and every caller gets its id.
//   - TransactRace: for stores implementing store.Transactor, both handles commit transactions
//     creating a Patient with the same unique identifier concurrently; exactly one commits.
func RunShared(t *testing.T, open func(t testing.TB) (store.Store, store.Store)) {
	t.Run("CreateUniqueRace", func(t *testing.T) {
		a, b := open(t)
		raceCreateUnique(t, []store.Store{a, b}, 3, 20)
	})
	t.Run("TransactRace", func(t *testing.T) {
		a, b := open(t)
		ta, okA := a.(store.Transactor)
		tb, okB := b.(store.Transactor)
		if !okA || !okB {
			t.Skip("the store does not implement store.Transactor")
		}
		const workers, rounds = 3, 10
		for round := range rounds {
			mrn := fmt.Sprint("tx-race-", round)
			var mu sync.Mutex
			var committed []string
			var wg sync.WaitGroup
			start := make(chan struct{})
			for h, tx := range []store.Transactor{ta, tb} {
				for w := range workers {
					wg.Go(func() {
						<-start
						id := fmt.Sprintf("r%d-h%d-w%d", round, h, w)
						_, err := tx.Transact(t.Context(), []store.TxOp{
							{Resource: patientWith(id, "", mrn), Create: true, UniqueSystem: mrnSystem, UniqueValue: mrn},
						})
						var te *store.TxError
						switch {
						case err == nil:
							mu.Lock()
							committed = append(committed, id)
							mu.Unlock()
						case errors.As(err, &te) && te.Index == 0 && errors.Is(err, store.ErrDuplicate):
						default:
							t.Errorf("handle %d worker %d: Transact: err = %v, want nil or a *TxError for op 0 wrapping ErrDuplicate", h, w, err)
						}
					})
				}
			}
			close(start)
			wg.Wait()
			if len(committed) != 1 {
				t.Fatalf("%s: %d transactions committed (%v), want exactly one", mrn, len(committed), committed)
			}
			for h, s := range []store.Store{a, b} {
				if ids := holders(t, s, mrn); !cmp.Equal(ids, committed) {
					t.Errorf("%s: handle %d finds Patients %v, want %v", mrn, h, ids, committed)
				}
			}
		}
	})
}

func testTransact(t *testing.T, open opener) {
	if _, ok := open(t).(store.Transactor); !ok {
		t.Skip("the store does not implement store.Transactor")
	}
	transactor := func(t *testing.T) (store.Store, store.Transactor) {
		s := open(t)
		return s, s.(store.Transactor)
	}
	// wantNothingWritten checks that p-1 is still at version 1 as stored and nothing else
	// exists after a failed transaction.
	wantUnchanged := func(t *testing.T, s store.Store, before store.Entry) {
		t.Helper()
		checkSameEntry(t, before, mustRead(t, s, "Patient", "p-1"))
		for _, id := range []string{"p-new", "p-other"} {
			if _, err := s.Read(t.Context(), "Patient", id); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("Read %s after a failed transaction: err = %v, want ErrNotFound", id, err)
			}
		}
		if got := holders(t, s, "new"); len(got) != 0 {
			t.Errorf("Patients with MRN new after a failed transaction: %v, want none", got)
		}
		res := mustSearch(t, s, parse(t, "Patient", "_summary=count"))
		if res.Total != 1 {
			t.Errorf("Patients after a failed transaction: %d, want 1", res.Total)
		}
	}

	t.Run("Commit", func(t *testing.T) {
		s, tx := transactor(t)
		old := mustCreate(t, s, patientWith("p-1", "Old", "1"))
		res, err := tx.Transact(t.Context(), []store.TxOp{
			{Resource: patientWith("p-new", "New", "new"), Create: true, UniqueSystem: mrnSystem, UniqueValue: "new"},
			{Resource: patientWith("p-1", "Updated", "1"), IfMatch: 1},
			// Later ops see earlier ones: the version the previous op wrote.
			{Resource: patientWith("p-1", "Again", "1"), IfMatch: 2},
			{Resource: patientWith("p-other", "", "other")},
		})
		if err != nil {
			t.Fatalf("Transact: %v", err)
		}
		type got struct {
			ID      string
			Version int64
			Created bool
		}
		var gs []got
		for _, r := range res {
			gs = append(gs, got{r.Entry.ID, r.Entry.VersionID, r.Created})
			checkMeta(t, r.Entry)
		}
		want := []got{{"p-new", 1, true}, {"p-1", 2, false}, {"p-1", 3, false}, {"p-other", 1, true}}
		if diff := cmp.Diff(want, gs); diff != "" {
			t.Errorf("Transact results (-want +got):\n%s", diff)
		}
		checkSameEntry(t, res[2].Entry, mustRead(t, s, "Patient", "p-1"))
		checkSameEntry(t, res[0].Entry, mustRead(t, s, "Patient", "p-new"))
		if p := decode(t, mustRead(t, s, "Patient", "p-1")).(*fhir.Patient); p.Name[0].Family != "Again" {
			t.Errorf("p-1 after the transaction: family %q, want Again", p.Name[0].Family)
		}
		if !old.LastUpdated.Before(res[1].Entry.LastUpdated) {
			t.Errorf("p-1 lastUpdated did not advance: %s then %s", old.LastUpdated, res[1].Entry.LastUpdated)
		}
		if got := holders(t, s, "new"); !cmp.Equal(got, []string{"p-new"}) {
			t.Errorf("Patients with MRN new: %v, want [p-new]", got)
		}
		// An empty transaction writes nothing and is no error.
		if res, err := tx.Transact(t.Context(), nil); err != nil || len(res) != 0 {
			t.Errorf("empty Transact = %v, %v; want no results, no error", res, err)
		}
	})

	for _, tc := range []struct {
		name  string
		ops   []store.TxOp
		index int
		want  error
	}{
		{"CreateExisting", []store.TxOp{
			{Resource: patientWith("p-new", "", "new"), Create: true},
			{Resource: patientWith("p-1", "Changed", "1")},
			{Resource: patientWith("p-1", "", "1"), Create: true},
		}, 2, store.ErrDuplicate},
		{"IfMatch", []store.TxOp{
			{Resource: patientWith("p-new", "", "new")},
			{Resource: patientWith("p-1", "Changed", "1"), IfMatch: 5},
		}, 1, store.ErrVersionConflict},
		{"IfMatchSeesEarlierOp", []store.TxOp{
			{Resource: patientWith("p-1", "Changed", "1"), IfMatch: 1},
			{Resource: patientWith("p-1", "Twice", "1"), IfMatch: 1},
		}, 1, store.ErrVersionConflict},
		{"UniqueHeld", []store.TxOp{
			{Resource: patientWith("p-other", "", "other")},
			{Resource: patientWith("p-new", "", "new", "1"), Create: true, UniqueSystem: mrnSystem, UniqueValue: "1"},
		}, 1, store.ErrDuplicate},
		{"UniqueHeldByEarlierOp", []store.TxOp{
			{Resource: patientWith("p-new", "", "new"), Create: true, UniqueSystem: mrnSystem, UniqueValue: "new"},
			{Resource: patientWith("p-other", "", "new"), Create: true, UniqueSystem: mrnSystem, UniqueValue: "new"},
		}, 1, store.ErrDuplicate},
	} {
		t.Run("RollBack"+tc.name, func(t *testing.T) {
			s, tx := transactor(t)
			before := mustCreate(t, s, patientWith("p-1", "Old", "1"))
			res, err := tx.Transact(t.Context(), tc.ops)
			var te *store.TxError
			if !errors.As(err, &te) || te.Index != tc.index || !errors.Is(err, tc.want) {
				t.Fatalf("Transact = %v, %v; want a *TxError for op %d wrapping %v", res, err, tc.index, tc.want)
			}
			wantUnchanged(t, s, before)
		})
	}

	t.Run("UniqueOwnID", func(t *testing.T) {
		// The resource that holds the identifier may be written with it.
		s, tx := transactor(t)
		mustCreate(t, s, patientWith("p-1", "Old", "1"))
		res, err := tx.Transact(t.Context(), []store.TxOp{{Resource: patientWith("p-1", "New", "1"), UniqueSystem: mrnSystem, UniqueValue: "1"}})
		if err != nil || len(res) != 1 || res[0].Entry.VersionID != 2 || res[0].Created {
			t.Errorf("Transact of the holder itself = %v, %v; want version 2, not created", res, err)
		}
	})

	t.Run("ResurrectsDeleted", func(t *testing.T) {
		s, tx := transactor(t)
		mustCreate(t, s, patientWith("p-1", "Old", "1"))
		mustDelete(t, s, "Patient", "p-1")
		res, err := tx.Transact(t.Context(), []store.TxOp{{Resource: patientWith("p-1", "Back", "1")}})
		if err != nil || len(res) != 1 || res[0].Entry.VersionID != 3 || !res[0].Created {
			t.Errorf("Transact over a deleted resource = %v, %v; want version 3, created", res, err)
		}
		// Create of a deleted id is a duplicate, as in Create.
		mustDelete(t, s, "Patient", "p-1")
		if _, err := tx.Transact(t.Context(), []store.TxOp{{Resource: patientWith("p-1", "", "1"), Create: true}}); !errors.Is(err, store.ErrDuplicate) {
			t.Errorf("Transact Create of a deleted id: err = %v, want ErrDuplicate", err)
		}
	})

	t.Run("Cancel", func(t *testing.T) {
		s, tx := transactor(t)
		before := mustCreate(t, s, patientWith("p-1", "Old", "1"))
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if _, err := tx.Transact(ctx, []store.TxOp{{Resource: patientWith("p-new", "", "new"), Create: true}}); !errors.Is(err, context.Canceled) {
			t.Errorf("Transact with a cancelled context: err = %v, want one matching context.Canceled", err)
		}
		wantUnchanged(t, s, before)
	})
}
