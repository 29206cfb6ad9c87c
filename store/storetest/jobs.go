package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/openhealthexchange/ohx/store"
)

// jobStore is what the job and coverage tests use of a store.
type jobStore interface {
	store.Jobs
	store.Coverages
}

// jobOpener returns a fresh, empty store for one test, as opener does.
type jobOpener = func(t testing.TB) jobStore

// jobsOf adapts an opener of stores to the job tests.
func jobsOf(open opener) jobOpener {
	return func(t testing.TB) jobStore { return open(t) }
}

// t0 is the clock of the job tests: a time in a zone other than UTC, with nanoseconds, so that
// the tests see the stores keep microseconds and answer in UTC.
var t0 = time.Date(2031, 3, 4, 5, 6, 7, 123456789, time.FixedZone("UTC+1", 3600))

// at is t0 + d as the stores keep it.
func at(d time.Duration) time.Time { return t0.Add(d).UTC().Truncate(time.Microsecond) }

// jobDiff compares jobs field by field: times by instant (cmp uses time.Time.Equal), an empty
// payload equal to nil.
func jobDiff(want, got any) string { return cmp.Diff(want, got, cmpopts.EquateEmpty()) }

func mustEnqueue(t testing.TB, s store.Jobs, j store.Job, now time.Time) (string, bool) {
	t.Helper()
	id, coalesced, err := s.EnqueueJob(t.Context(), j, now)
	if err != nil {
		t.Fatalf("EnqueueJob(%s, key %q): %v", j.Type, j.Key, err)
	}
	if id == "" {
		t.Fatalf("EnqueueJob(%s, key %q): empty id", j.Type, j.Key)
	}
	return id, coalesced
}

// mustEnqueueNew enqueues a job that must not coalesce.
func mustEnqueueNew(t testing.TB, s store.Jobs, j store.Job, now time.Time) string {
	t.Helper()
	id, coalesced := mustEnqueue(t, s, j, now)
	if coalesced {
		t.Fatalf("EnqueueJob(%s, key %q) coalesced into %s, want a new job", j.Type, j.Key, id)
	}
	return id
}

func mustClaim(t testing.TB, s store.Jobs, owner string, max int, lease time.Duration, now time.Time) []store.Job {
	t.Helper()
	js, err := s.ClaimJobs(t.Context(), owner, max, lease, now)
	if err != nil {
		t.Fatalf("ClaimJobs(%s, %d): %v", owner, max, err)
	}
	for _, j := range js {
		checkUTC(t, j)
		if j.Owner != owner || !j.LeaseUntil.Equal(now.Add(lease).Truncate(time.Microsecond)) || j.Rerun || j.Dead {
			t.Errorf("ClaimJobs(%s): job %s has owner %q, lease until %s, rerun %v, dead %v; want %s until %s, no rerun, not dead",
				owner, j.ID, j.Owner, j.LeaseUntil, j.Rerun, j.Dead, owner, now.Add(lease))
		}
	}
	return js
}

// claimIDs claims and returns the ids.
func claimIDs(t testing.TB, s store.Jobs, owner string, max int, lease time.Duration, now time.Time) []string {
	t.Helper()
	return jobIDs(mustClaim(t, s, owner, max, lease, now))
}

func jobIDs(js []store.Job) []string {
	ids := []string{}
	for _, j := range js {
		ids = append(ids, j.ID)
	}
	return ids
}

func mustGetJob(t testing.TB, s store.Jobs, id string) store.Job {
	t.Helper()
	j, err := s.GetJob(t.Context(), id)
	if err != nil {
		t.Fatalf("GetJob(%s): %v", id, err)
	}
	checkUTC(t, j)
	return j
}

func wantNoJob(t testing.TB, s store.Jobs, id string) {
	t.Helper()
	if j, err := s.GetJob(t.Context(), id); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetJob(%s) = %+v, %v; want ErrNotFound", id, j, err)
	}
}

func mustComplete(t testing.TB, s store.Jobs, id, owner string) {
	t.Helper()
	if err := s.CompleteJob(t.Context(), id, owner); err != nil {
		t.Fatalf("CompleteJob(%s, %s): %v", id, owner, err)
	}
}

func mustFail(t testing.TB, s store.Jobs, id, owner string, f store.JobFailure) {
	t.Helper()
	if err := s.FailJob(t.Context(), id, owner, f); err != nil {
		t.Fatalf("FailJob(%s, %s): %v", id, owner, err)
	}
}

func wantStats(t testing.TB, s store.Jobs, now time.Time, want store.JobStats) {
	t.Helper()
	got, err := s.JobStats(t.Context(), now)
	if err != nil {
		t.Fatalf("JobStats: %v", err)
	}
	if got != want {
		t.Errorf("JobStats at %s = %+v, want %+v", now, got, want)
	}
}

func wantLeaseLost(t testing.TB, op string, err error) {
	t.Helper()
	if !errors.Is(err, store.ErrLeaseLost) {
		t.Errorf("%s: err = %v, want ErrLeaseLost", op, err)
	}
}

// checkUTC checks that every time of j is in UTC.
func checkUTC(t testing.TB, j store.Job) {
	t.Helper()
	for name, tm := range map[string]time.Time{"NotBefore": j.NotBefore, "Created": j.Created, "LeaseUntil": j.LeaseUntil, "FailedAt": j.FailedAt} {
		if !tm.IsZero() && tm.Location() != time.UTC {
			t.Errorf("job %s: %s %s is not in UTC", j.ID, name, tm)
		}
	}
}

func pendingIDs(t testing.TB, s store.Jobs, limit int) []string {
	t.Helper()
	js, err := s.PendingJobs(t.Context(), limit)
	if err != nil {
		t.Fatalf("PendingJobs: %v", err)
	}
	return jobIDs(js)
}

func deadIDs(t testing.TB, s store.Jobs, limit int) []string {
	t.Helper()
	js, err := s.DeadJobs(t.Context(), limit)
	if err != nil {
		t.Fatalf("DeadJobs: %v", err)
	}
	for _, j := range js {
		if !j.Dead {
			t.Errorf("DeadJobs lists %s, not dead", j.ID)
		}
	}
	return jobIDs(js)
}

func testJobs(t *testing.T, open jobOpener) {
	const lease = time.Minute

	t.Run("Lifecycle", func(t *testing.T) {
		s := open(t)
		payload := []byte(`{"patient":"p1","start":"2031-01-01"}`)
		id := mustEnqueueNew(t, s, store.Job{Type: "sync", Priority: 3, Payload: payload}, t0)
		want := store.Job{ID: id, Type: "sync", Priority: 3, Payload: payload, NotBefore: at(0), Created: at(0)}
		if diff := jobDiff(want, mustGetJob(t, s, id)); diff != "" {
			t.Errorf("GetJob after EnqueueJob (-want +got):\n%s", diff)
		}
		wantStats(t, s, t0, store.JobStats{Waiting: 1})
		got := mustClaim(t, s, "w1", 10, lease, t0)
		want.Owner, want.LeaseUntil = "w1", at(lease)
		if diff := jobDiff([]store.Job{want}, got); diff != "" {
			t.Errorf("ClaimJobs (-want +got):\n%s", diff)
		}
		if diff := jobDiff(want, mustGetJob(t, s, id)); diff != "" {
			t.Errorf("GetJob of the claimed job (-want +got):\n%s", diff)
		}
		wantStats(t, s, t0, store.JobStats{Running: 1})
		if ids := claimIDs(t, s, "w2", 10, lease, t0.Add(time.Second)); len(ids) != 0 {
			t.Errorf("second ClaimJobs while leased: %v, want none", ids)
		}
		if got := pendingIDs(t, s, 10); !cmp.Equal(got, []string{id}) {
			t.Errorf("PendingJobs of a running job: %v, want [%s]", got, id)
		}
		mustComplete(t, s, id, "w1")
		wantNoJob(t, s, id)
		wantStats(t, s, t0, store.JobStats{})
		if got := pendingIDs(t, s, 10); len(got) != 0 {
			t.Errorf("PendingJobs after CompleteJob: %v, want none", got)
		}
		wantLeaseLost(t, "CompleteJob twice", s.CompleteJob(t.Context(), id, "w1"))
		// Nothing to claim, and claims of none are no error.
		if ids := claimIDs(t, s, "w1", 10, lease, t0.Add(time.Hour)); len(ids) != 0 {
			t.Errorf("ClaimJobs of an empty queue: %v", ids)
		}
		if ids := claimIDs(t, s, "w1", 0, lease, t0); len(ids) != 0 {
			t.Errorf("ClaimJobs(max 0): %v", ids)
		}
		wantNoJob(t, s, "no-such-job")
	})

	t.Run("CallerID", func(t *testing.T) {
		s := open(t)
		if id := mustEnqueueNew(t, s, store.Job{ID: "job-1", Type: "sync"}, t0); id != "job-1" {
			t.Errorf("EnqueueJob with ID job-1 returned %s", id)
		}
		if _, _, err := s.EnqueueJob(t.Context(), store.Job{ID: "job-1", Type: "other"}, t0); !errors.Is(err, store.ErrDuplicate) {
			t.Errorf("EnqueueJob with the ID of a stored job: err = %v, want ErrDuplicate", err)
		}
		if j := mustGetJob(t, s, "job-1"); j.Type != "sync" {
			t.Errorf("job-1 after a refused enqueue: type %s, want sync", j.Type)
		}
		// Fields that describe the queue's state are the store's, not the caller's.
		id := mustEnqueueNew(t, s, store.Job{Type: "sync", Attempt: 4, LastError: "x", Owner: "w", LeaseUntil: at(time.Hour),
			Rerun: true, Dead: true, FailedAt: at(0), Created: at(-time.Hour), NotBefore: at(time.Minute)}, t0)
		want := store.Job{ID: id, Type: "sync", Created: at(-time.Hour), NotBefore: at(time.Minute)}
		if diff := jobDiff(want, mustGetJob(t, s, id)); diff != "" {
			t.Errorf("GetJob of a job enqueued with state fields set (-want +got):\n%s", diff)
		}
		if _, _, err := s.EnqueueJob(t.Context(), store.Job{}, t0); err == nil {
			t.Errorf("EnqueueJob without a type: no error")
		}
	})

	t.Run("ClaimOrder", func(t *testing.T) {
		s := open(t)
		// Enqueued out of order; claim order is priority desc, then not-before, then created.
		type spec struct {
			name     string
			prio     int
			nb, made time.Duration
		}
		specs := []spec{
			{"low-early", 0, -3 * time.Hour, -4 * time.Hour},
			{"high-late", 9, -time.Minute, -time.Hour},
			{"mid-b", 5, -2 * time.Hour, -time.Hour},
			{"mid-a", 5, -2 * time.Hour, -2 * time.Hour},
			{"high-early", 9, -time.Hour, -time.Minute},
			{"mid-first", 5, -3 * time.Hour, 0},
			{"negative", -2, -5 * time.Hour, -5 * time.Hour},
			{"low-now", 0, 0, 0},
		}
		ids := map[string]string{}
		names := map[string]string{}
		for _, sp := range specs {
			id := mustEnqueueNew(t, s, store.Job{Type: "t", Payload: []byte(sp.name), Priority: sp.prio, NotBefore: t0.Add(sp.nb), Created: t0.Add(sp.made)}, t0)
			ids[sp.name], names[id] = id, sp.name
		}
		order := []string{"high-early", "high-late", "mid-first", "mid-a", "mid-b", "low-early", "low-now", "negative"}
		named := func(got []string) []string {
			out := []string{}
			for _, id := range got {
				out = append(out, names[id])
			}
			return out
		}
		if diff := cmp.Diff(order, named(pendingIDs(t, s, 100))); diff != "" {
			t.Errorf("PendingJobs order (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(order[:3], named(pendingIDs(t, s, 3))); diff != "" {
			t.Errorf("PendingJobs(limit 3) (-want +got):\n%s", diff)
		}
		// Claims of 3 take the queue in order.
		var claimed []string
		for i := 0; i < 4; i++ {
			got := claimIDs(t, s, fmt.Sprint("w", i), 3, lease, t0)
			if len(got) > 3 {
				t.Fatalf("ClaimJobs(max 3) returned %d jobs", len(got))
			}
			claimed = append(claimed, named(got)...)
		}
		if diff := cmp.Diff(order, claimed); diff != "" {
			t.Errorf("claim order (-want +got):\n%s", diff)
		}
		// Running jobs are listed by lease expiry, as they would be claimed after it.
		if got := pendingIDs(t, s, 100); len(got) != len(order) {
			t.Errorf("PendingJobs of running jobs: %d, want %d", len(got), len(order))
		}
	})

	t.Run("NotDue", func(t *testing.T) {
		s := open(t)
		later := mustEnqueueNew(t, s, store.Job{Type: "t", Priority: 9, NotBefore: t0.Add(time.Hour)}, t0)
		now := mustEnqueueNew(t, s, store.Job{Type: "t"}, t0)
		if got := claimIDs(t, s, "w", 10, time.Hour, t0.Add(59*time.Minute)); !cmp.Equal(got, []string{now}) {
			t.Errorf("ClaimJobs before the high-priority job is due: %v, want only [%s]", got, now)
		}
		wantStats(t, s, t0, store.JobStats{Waiting: 1, Running: 1})
		// Due exactly at NotBefore.
		if got := claimIDs(t, s, "w", 10, lease, t0.Add(time.Hour)); !cmp.Equal(got, []string{later}) {
			t.Errorf("ClaimJobs at NotBefore: %v, want [%s]", got, later)
		}
	})

	t.Run("Lease", func(t *testing.T) {
		s := open(t)
		id := mustEnqueueNew(t, s, store.Job{Type: "t"}, t0)
		if got := claimIDs(t, s, "a", 1, lease, t0); !cmp.Equal(got, []string{id}) {
			t.Fatalf("ClaimJobs by a: %v", got)
		}
		if got := claimIDs(t, s, "b", 1, lease, t0.Add(lease-time.Microsecond)); len(got) != 0 {
			t.Errorf("ClaimJobs by b just before a's lease expires: %v, want none", got)
		}
		wantStats(t, s, t0.Add(lease-time.Microsecond), store.JobStats{Running: 1})
		// An expired lease not yet taken over counts as waiting, and its owner still holds it.
		wantStats(t, s, t0.Add(lease), store.JobStats{Waiting: 1})
		if err := s.RenewJob(t.Context(), id, "a", lease, t0.Add(lease+time.Second)); err != nil {
			t.Errorf("RenewJob by a after expiry, before a takeover: %v", err)
		}
		if j := mustGetJob(t, s, id); j.Owner != "a" || !j.LeaseUntil.Equal(at(2*lease+time.Second)) {
			t.Errorf("after RenewJob: owner %q until %s, want a until %s", j.Owner, j.LeaseUntil, at(2*lease+time.Second))
		}
		if got := claimIDs(t, s, "b", 1, lease, t0.Add(2*lease)); len(got) != 0 {
			t.Errorf("ClaimJobs by b before the renewed lease expires: %v, want none", got)
		}
		// The abandoned job is taken over once the renewed lease expires.
		taken := mustClaim(t, s, "b", 1, lease, t0.Add(2*lease+time.Second))
		if len(taken) != 1 || taken[0].ID != id || taken[0].Attempt != 0 {
			t.Fatalf("ClaimJobs by b after expiry: %+v, want job %s, attempt 0", taken, id)
		}
		wantLeaseLost(t, "RenewJob by the old owner", s.RenewJob(t.Context(), id, "a", lease, t0.Add(2*lease+2*time.Second)))
		wantLeaseLost(t, "CompleteJob by the old owner", s.CompleteJob(t.Context(), id, "a"))
		wantLeaseLost(t, "FailJob by the old owner", s.FailJob(t.Context(), id, "a", store.JobFailure{Error: "x", RetryAt: t0}))
		wantLeaseLost(t, "FailJob(Dead) by the old owner", s.FailJob(t.Context(), id, "a", store.JobFailure{Error: "x", Dead: true}))
		wantLeaseLost(t, "CompleteJob by nobody", s.CompleteJob(t.Context(), id, ""))
		if j := mustGetJob(t, s, id); j.Owner != "b" || j.Attempt != 0 || j.Dead {
			t.Errorf("after the old owner's calls: %+v, want b's lease untouched", j)
		}
		for _, op := range []struct {
			name string
			err  error
		}{
			{"RenewJob", s.RenewJob(t.Context(), "no-such-job", "b", lease, t0)},
			{"CompleteJob", s.CompleteJob(t.Context(), "no-such-job", "b")},
			{"FailJob", s.FailJob(t.Context(), "no-such-job", "b", store.JobFailure{Error: "x"})},
		} {
			wantLeaseLost(t, op.name+" of an unknown job", op.err)
		}
		mustComplete(t, s, id, "b")
		wantNoJob(t, s, id)
		// A waiting job is held by nobody.
		w := mustEnqueueNew(t, s, store.Job{Type: "t"}, t0)
		wantLeaseLost(t, "RenewJob of a waiting job", s.RenewJob(t.Context(), w, "", lease, t0))
		wantLeaseLost(t, "CompleteJob of a waiting job", s.CompleteJob(t.Context(), w, "b"))
		mustGetJob(t, s, w)
	})

	t.Run("FailRetry", func(t *testing.T) {
		s := open(t)
		id := mustEnqueueNew(t, s, store.Job{Type: "t", Payload: []byte("p")}, t0)
		claimIDs(t, s, "w", 1, lease, t0)
		mustFail(t, s, id, "w", store.JobFailure{Error: "vendor unavailable", RetryAt: t0.Add(5 * time.Minute)})
		want := store.Job{ID: id, Type: "t", Payload: []byte("p"), NotBefore: at(5 * time.Minute), Created: at(0), Attempt: 1, LastError: "vendor unavailable"}
		if diff := jobDiff(want, mustGetJob(t, s, id)); diff != "" {
			t.Errorf("GetJob after FailJob (-want +got):\n%s", diff)
		}
		wantStats(t, s, t0, store.JobStats{Waiting: 1})
		wantLeaseLost(t, "CompleteJob after FailJob", s.CompleteJob(t.Context(), id, "w"))
		if got := claimIDs(t, s, "w", 1, lease, t0.Add(5*time.Minute-time.Microsecond)); len(got) != 0 {
			t.Errorf("ClaimJobs before RetryAt: %v, want none", got)
		}
		got := mustClaim(t, s, "w2", 1, lease, t0.Add(5*time.Minute))
		if len(got) != 1 || got[0].Attempt != 1 || got[0].LastError != "vendor unavailable" {
			t.Fatalf("ClaimJobs at RetryAt: %+v, want the job at attempt 1", got)
		}
		mustFail(t, s, id, "w2", store.JobFailure{Error: "again", RetryAt: t0.Add(time.Hour)})
		if j := mustGetJob(t, s, id); j.Attempt != 2 || j.LastError != "again" || !j.NotBefore.Equal(at(time.Hour)) || j.Owner != "" || !j.LeaseUntil.IsZero() {
			t.Errorf("after the second failure: %+v, want attempt 2, LastError again, NotBefore %s, no lease", j, at(time.Hour))
		}
	})

	t.Run("FailRetryNow", func(t *testing.T) {
		// A zero RetryAt means "at once" (at f.At), never the zero time: the job must not jump
		// ahead of the jobs that became due before it.
		s := open(t)
		first := mustEnqueueNew(t, s, store.Job{Type: "t"}, t0)
		failed := mustEnqueueNew(t, s, store.Job{Type: "t"}, t0.Add(time.Second))
		if got := claimIDs(t, s, "w", 2, lease, t0.Add(2*time.Second)); len(got) != 2 {
			t.Fatalf("claimed %v, want both", got)
		}
		mustFail(t, s, failed, "w", store.JobFailure{Error: "retry now", At: t0.Add(3 * time.Second)})
		mustFail(t, s, first, "w", store.JobFailure{Error: "later", RetryAt: t0.Add(4 * time.Second)})
		if j := mustGetJob(t, s, failed); !j.NotBefore.Equal(at(3 * time.Second)) {
			t.Errorf("NotBefore after a failure without RetryAt: %s, want its At %s", j.NotBefore, at(3*time.Second))
		}
		got := claimIDs(t, s, "w", 2, lease, t0.Add(5*time.Second))
		if len(got) != 2 || got[0] != failed || got[1] != first {
			t.Errorf("claim order %v, want [%s %s] (ready at 3 s, then 4 s)", got, failed, first)
		}
	})

	t.Run("LeaseTooShort", func(t *testing.T) {
		// A lease below the stored precision would end the instant it starts.
		s := open(t)
		id := mustEnqueueNew(t, s, store.Job{Type: "t"}, t0)
		if _, err := s.ClaimJobs(t.Context(), "w", 1, store.Precision/2, t0); err == nil {
			t.Error("ClaimJobs with a lease below Precision: no error")
		}
		claimIDs(t, s, "w", 1, lease, t0)
		for _, l := range []time.Duration{0, -time.Hour, store.Precision / 2} {
			if err := s.RenewJob(t.Context(), id, "w", l, t0); err == nil {
				t.Errorf("RenewJob with lease %s: no error", l)
			}
		}
		if got := claimIDs(t, s, "other", 1, lease, t0.Add(time.Second)); len(got) != 0 {
			t.Errorf("a refused renew released the lease: %v claimed by another owner", got)
		}
	})

	t.Run("FailDead", func(t *testing.T) {
		s := open(t)
		first := mustEnqueueNew(t, s, store.Job{Type: "t", Key: "k1", Payload: []byte("one")}, t0)
		second := mustEnqueueNew(t, s, store.Job{Type: "t", Payload: []byte("two")}, t0)
		third := mustEnqueueNew(t, s, store.Job{Type: "t"}, t0)
		claimIDs(t, s, "w", 3, lease, t0)
		mustFail(t, s, first, "w", store.JobFailure{Error: "revoked", Dead: true, At: t0.Add(time.Second), RetryAt: t0.Add(time.Hour)})
		mustFail(t, s, second, "w", store.JobFailure{Error: "bad", Dead: true, At: t0.Add(2 * time.Second)})
		want := store.Job{ID: first, Type: "t", Key: "k1", Payload: []byte("one"), NotBefore: at(0), Created: at(0), Attempt: 1, LastError: "revoked",
			Dead: true, FailedAt: at(time.Second)}
		if diff := jobDiff(want, mustGetJob(t, s, first)); diff != "" {
			t.Errorf("GetJob of a dead letter (-want +got):\n%s", diff)
		}
		if got := deadIDs(t, s, 10); !cmp.Equal(got, []string{second, first}) {
			t.Errorf("DeadJobs: %v, want most recent first [%s %s]", got, second, first)
		}
		if got := deadIDs(t, s, 1); !cmp.Equal(got, []string{second}) {
			t.Errorf("DeadJobs(limit 1): %v, want [%s]", got, second)
		}
		if got := pendingIDs(t, s, 10); !cmp.Equal(got, []string{third}) {
			t.Errorf("PendingJobs with dead letters: %v, want [%s]", got, third)
		}
		wantStats(t, s, t0, store.JobStats{Running: 1, Dead: 2})
		mustComplete(t, s, third, "w")
		if got := claimIDs(t, s, "w", 10, lease, t0.Add(1000*time.Hour)); len(got) != 0 {
			t.Errorf("ClaimJobs with only dead letters: %v, want none", got)
		}
		wantLeaseLost(t, "CompleteJob of a dead letter", s.CompleteJob(t.Context(), first, "w"))
		wantLeaseLost(t, "FailJob of a dead letter", s.FailJob(t.Context(), first, "w", store.JobFailure{Error: "x", Dead: true}))
		// A dead letter holds no key.
		again := mustEnqueueNew(t, s, store.Job{Type: "t", Key: "k1"}, t0)
		if again == first {
			t.Errorf("EnqueueJob of a dead letter's key reused its id %s", first)
		}
		// FailJob without At dead-letters at the store's clock.
		claimIDs(t, s, "w", 1, lease, t0)
		mustFail(t, s, again, "w", store.JobFailure{Error: "x", Dead: true})
		if j := mustGetJob(t, s, again); !j.Dead || j.FailedAt.IsZero() {
			t.Errorf("dead letter failed without At: dead %v, FailedAt %s; want dead with a FailedAt", j.Dead, j.FailedAt)
		}
	})

	t.Run("RetryDead", func(t *testing.T) {
		s := open(t)
		id := mustEnqueueNew(t, s, store.Job{Type: "t", Key: "k", Priority: 2, Payload: []byte("p")}, t0)
		claimIDs(t, s, "w", 1, lease, t0)
		mustFail(t, s, id, "w", store.JobFailure{Error: "e1", RetryAt: t0})
		claimIDs(t, s, "w", 1, lease, t0)
		mustFail(t, s, id, "w", store.JobFailure{Error: "e2", Dead: true, At: t0})
		// While a pending job holds the key, the dead letter cannot come back.
		holder := mustEnqueueNew(t, s, store.Job{Type: "t", Key: "k"}, t0)
		if err := s.RetryDeadJob(t.Context(), id, t0.Add(time.Hour)); !errors.Is(err, store.ErrDuplicate) {
			t.Errorf("RetryDeadJob while a pending job holds the key: err = %v, want ErrDuplicate", err)
		}
		if j := mustGetJob(t, s, id); !j.Dead {
			t.Errorf("refused RetryDeadJob changed the dead letter: %+v", j)
		}
		claimIDs(t, s, "w", 1, lease, t0)
		mustComplete(t, s, holder, "w")
		if err := s.RetryDeadJob(t.Context(), id, t0.Add(time.Hour)); err != nil {
			t.Fatalf("RetryDeadJob: %v", err)
		}
		want := store.Job{ID: id, Type: "t", Key: "k", Priority: 2, Payload: []byte("p"), NotBefore: at(time.Hour), Created: at(0), LastError: "e2"}
		if diff := jobDiff(want, mustGetJob(t, s, id)); diff != "" {
			t.Errorf("GetJob after RetryDeadJob (-want +got):\n%s", diff)
		}
		if got := deadIDs(t, s, 10); len(got) != 0 {
			t.Errorf("DeadJobs after RetryDeadJob: %v", got)
		}
		// It holds its key again.
		if got, coalesced := mustEnqueue(t, s, store.Job{Type: "t", Key: "k"}, t0); !coalesced || got != id {
			t.Errorf("EnqueueJob of the retried job's key: %s coalesced %v, want %s coalesced", got, coalesced, id)
		}
		if err := s.RetryDeadJob(t.Context(), id, t0); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("RetryDeadJob of a pending job: err = %v, want ErrNotFound", err)
		}
		if err := s.RetryDeadJob(t.Context(), "no-such-job", t0); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("RetryDeadJob of an unknown job: err = %v, want ErrNotFound", err)
		}
		if got := claimIDs(t, s, "w", 1, lease, t0.Add(time.Hour)); !cmp.Equal(got, []string{id}) {
			t.Errorf("ClaimJobs of the retried job: %v, want [%s]", got, id)
		}
	})

	t.Run("CoalesceWaiting", func(t *testing.T) {
		s := open(t)
		id := mustEnqueueNew(t, s, store.Job{Type: "sync", Key: "p1/sync", Priority: 1, NotBefore: t0.Add(10 * time.Minute), Payload: []byte("first")}, t0)
		got, coalesced := mustEnqueue(t, s, store.Job{Type: "sync", Key: "p1/sync", Priority: 5, NotBefore: t0.Add(5 * time.Minute), Payload: []byte("second")}, t0.Add(time.Second))
		if !coalesced || got != id {
			t.Fatalf("second EnqueueJob of the key: %s coalesced %v, want %s coalesced", got, coalesced, id)
		}
		want := store.Job{ID: id, Type: "sync", Key: "p1/sync", Priority: 5, NotBefore: at(5 * time.Minute), Created: at(0), Payload: []byte("first")}
		if diff := jobDiff(want, mustGetJob(t, s, id)); diff != "" {
			t.Errorf("after coalescing an earlier, higher-priority enqueue (-want +got):\n%s", diff)
		}
		// A later, lower-priority one changes nothing; a zero NotBefore means now.
		mustEnqueue(t, s, store.Job{Type: "sync", Key: "p1/sync", Priority: 0, NotBefore: t0.Add(20 * time.Minute)}, t0)
		if diff := jobDiff(want, mustGetJob(t, s, id)); diff != "" {
			t.Errorf("after coalescing a later, lower-priority enqueue (-want +got):\n%s", diff)
		}
		mustEnqueue(t, s, store.Job{Type: "sync", Key: "p1/sync"}, t0.Add(time.Minute))
		want.NotBefore = at(time.Minute)
		if diff := jobDiff(want, mustGetJob(t, s, id)); diff != "" {
			t.Errorf("after coalescing an enqueue due at once (-want +got):\n%s", diff)
		}
		// Other keys, and no key, make jobs of their own.
		other := mustEnqueueNew(t, s, store.Job{Type: "sync", Key: "p2/sync"}, t0)
		plain1 := mustEnqueueNew(t, s, store.Job{Type: "sync"}, t0)
		plain2 := mustEnqueueNew(t, s, store.Job{Type: "sync"}, t0)
		if len(map[string]bool{id: true, other: true, plain1: true, plain2: true}) != 4 {
			t.Errorf("distinct jobs share ids: %s %s %s %s", id, other, plain1, plain2)
		}
		wantStats(t, s, t0, store.JobStats{Waiting: 4})
		// The coalesced job keeps its place: by its (earlier) NotBefore.
		if got := claimIDs(t, s, "w", 1, lease, t0.Add(time.Hour)); !cmp.Equal(got, []string{id}) {
			t.Errorf("first claim: %v, want the coalesced, priority-5 job %s", got, id)
		}
		mustComplete(t, s, id, "w")
		// The key is free again.
		if again := mustEnqueueNew(t, s, store.Job{Type: "sync", Key: "p1/sync"}, t0); again == id {
			t.Errorf("EnqueueJob after completion reused id %s", id)
		}
	})

	t.Run("CoalesceRunning", func(t *testing.T) {
		s := open(t)
		id := mustEnqueueNew(t, s, store.Job{Type: "sync", Key: "k", Payload: []byte("p")}, t0)
		claimIDs(t, s, "w", 1, lease, t0)
		if got, coalesced := mustEnqueue(t, s, store.Job{Type: "sync", Key: "k", Priority: 4}, t0.Add(10*time.Second)); !coalesced || got != id {
			t.Fatalf("EnqueueJob of a running job's key: %s coalesced %v, want %s coalesced", got, coalesced, id)
		}
		mustEnqueue(t, s, store.Job{Type: "sync", Key: "k"}, t0.Add(20*time.Second))
		if j := mustGetJob(t, s, id); !j.Rerun || j.Owner != "w" || j.Priority != 4 {
			t.Errorf("running job enqueued again: rerun %v, owner %q, priority %d; want rerun, owner w, priority 4", j.Rerun, j.Owner, j.Priority)
		}
		wantStats(t, s, t0, store.JobStats{Running: 1})
		mustComplete(t, s, id, "w")
		want := store.Job{ID: id, Type: "sync", Key: "k", Priority: 4, Payload: []byte("p"), NotBefore: at(10 * time.Second), Created: at(0)}
		if diff := jobDiff(want, mustGetJob(t, s, id)); diff != "" {
			t.Errorf("after CompleteJob of a job marked Rerun (-want +got):\n%s", diff)
		}
		wantStats(t, s, t0.Add(time.Minute), store.JobStats{Waiting: 1})
		// Due at once: at the time of the enqueue that marked it.
		if got := claimIDs(t, s, "w", 1, lease, t0.Add(10*time.Second)); !cmp.Equal(got, []string{id}) {
			t.Fatalf("ClaimJobs of the requeued job: %v, want [%s]", got, id)
		}
		mustComplete(t, s, id, "w")
		wantNoJob(t, s, id)

		// A failure keeps the mark until the retry is claimed; the retry covers it.
		id = mustEnqueueNew(t, s, store.Job{Type: "sync", Key: "k"}, t0)
		claimIDs(t, s, "w", 1, lease, t0)
		mustEnqueue(t, s, store.Job{Type: "sync", Key: "k"}, t0)
		mustFail(t, s, id, "w", store.JobFailure{Error: "e", RetryAt: t0.Add(time.Minute)})
		if j := mustGetJob(t, s, id); !j.Rerun || j.Attempt != 1 || !j.NotBefore.Equal(at(time.Minute)) {
			t.Errorf("failed job marked Rerun: %+v, want Rerun kept, attempt 1, NotBefore %s", j, at(time.Minute))
		}
		got := mustClaim(t, s, "w", 1, lease, t0.Add(time.Minute))
		if len(got) != 1 || got[0].ID != id {
			t.Fatalf("ClaimJobs of the retry: %+v", got)
		}
		if j := mustGetJob(t, s, id); j.Rerun {
			t.Errorf("claimed retry still marked Rerun")
		}
		mustComplete(t, s, id, "w")
		wantNoJob(t, s, id)
		// A takeover is a new run as well: it clears the mark.
		id = mustEnqueueNew(t, s, store.Job{Type: "sync", Key: "k"}, t0)
		claimIDs(t, s, "a", 1, lease, t0)
		mustEnqueue(t, s, store.Job{Type: "sync", Key: "k"}, t0)
		claimIDs(t, s, "b", 1, lease, t0.Add(lease))
		mustComplete(t, s, id, "b")
		wantNoJob(t, s, id)
		// A job whose lease expired is running until it is taken over: its owner may still be
		// at work, so an enqueue marks it.
		id = mustEnqueueNew(t, s, store.Job{Type: "sync", Key: "k"}, t0)
		claimIDs(t, s, "a", 1, lease, t0)
		if got, coalesced := mustEnqueue(t, s, store.Job{Type: "sync", Key: "k"}, t0.Add(2*lease)); !coalesced || got != id {
			t.Fatalf("EnqueueJob of an abandoned job's key: %s coalesced %v, want %s coalesced", got, coalesced, id)
		}
		if j := mustGetJob(t, s, id); !j.Rerun || j.Owner != "a" {
			t.Errorf("abandoned job enqueued again: rerun %v, owner %q; want rerun, owner a", j.Rerun, j.Owner)
		}
		mustComplete(t, s, id, "a")
		if j := mustGetJob(t, s, id); j.Owner != "" || j.Rerun || !j.NotBefore.Equal(at(2*lease)) {
			t.Errorf("after CompleteJob by the late owner: %+v, want waiting from %s", j, at(2*lease))
		}
	})

	t.Run("Cancel", func(t *testing.T) {
		s := open(t)
		id := mustEnqueueNew(t, s, store.Job{Type: "t"}, t0)
		claimIDs(t, s, "w", 1, lease, t0)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		k := store.CoverageKey{Provider: "p", Patient: "x", Kind: "k"}
		for _, tc := range []struct {
			name string
			call func() error
		}{
			{"EnqueueJob", func() error { _, _, err := s.EnqueueJob(ctx, store.Job{Type: "t"}, t0); return err }},
			{"ClaimJobs", func() error { _, err := s.ClaimJobs(ctx, "w2", 1, lease, t0.Add(time.Hour)); return err }},
			{"RenewJob", func() error { return s.RenewJob(ctx, id, "w", lease, t0) }},
			{"CompleteJob", func() error { return s.CompleteJob(ctx, id, "w") }},
			{"FailJob", func() error { return s.FailJob(ctx, id, "w", store.JobFailure{Error: "x", Dead: true}) }},
			{"GetJob", func() error { _, err := s.GetJob(ctx, id); return err }},
			{"PendingJobs", func() error { _, err := s.PendingJobs(ctx, 10); return err }},
			{"DeadJobs", func() error { _, err := s.DeadJobs(ctx, 10); return err }},
			{"RetryDeadJob", func() error { return s.RetryDeadJob(ctx, id, t0) }},
			{"JobStats", func() error { _, err := s.JobStats(ctx, t0); return err }},
			{"Coverage", func() error { _, err := s.Coverage(ctx, "p", "x"); return err }},
			{"UpdateCoverage", func() error {
				_, err := s.UpdateCoverage(ctx, k, t0, func(c *store.Coverage) error { c.Cursor = "c"; return nil })
				return err
			}},
			{"DeleteCoverage", func() error { return s.DeleteCoverage(ctx, "p", "x") }},
		} {
			t.Run(tc.name, func(t *testing.T) {
				if err := tc.call(); !errors.Is(err, context.Canceled) {
					t.Errorf("%s with a cancelled context: err = %v, want one matching context.Canceled", tc.name, err)
				}
			})
		}
		// Nothing changed.
		if j := mustGetJob(t, s, id); j.Owner != "w" || j.Dead {
			t.Errorf("job after cancelled calls: %+v, want still leased to w", j)
		}
		wantStats(t, s, t0, store.JobStats{Running: 1})
		if cs, err := s.Coverage(t.Context(), "p", "x"); err != nil || len(cs) != 0 {
			t.Errorf("Coverage after a cancelled UpdateCoverage = %v, %v; want none", cs, err)
		}
	})
}

// day is the interval of day n after t0's date.
func day(n int) store.Interval {
	d := time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, n)
	return store.Interval{Start: d, End: d.AddDate(0, 0, 1)}
}

func mustUpdateCoverage(t testing.TB, s store.Coverages, k store.CoverageKey, now time.Time, fn func(*store.Coverage) error) store.Coverage {
	t.Helper()
	c, err := s.UpdateCoverage(t.Context(), k, now, fn)
	if err != nil {
		t.Fatalf("UpdateCoverage(%v): %v", k, err)
	}
	return c
}

func mustCoverage(t testing.TB, s store.Coverages, provider, patient string) []store.Coverage {
	t.Helper()
	cs, err := s.Coverage(t.Context(), provider, patient)
	if err != nil {
		t.Fatalf("Coverage(%s, %s): %v", provider, patient, err)
	}
	for _, c := range cs {
		for _, tm := range append([]time.Time{c.Updated}, intervalTimes(c.Intervals)...) {
			if tm.Location() != time.UTC {
				t.Errorf("Coverage(%s, %s): time %s of %s not in UTC", provider, patient, tm, c.Kind)
			}
		}
	}
	return cs
}

func intervalTimes(ivs []store.Interval) []time.Time {
	var out []time.Time
	for _, iv := range ivs {
		out = append(out, iv.Start, iv.End)
	}
	return out
}

func testCoverage(t *testing.T, open jobOpener) {
	t.Run("CreateUpdate", func(t *testing.T) {
		s := open(t)
		k := store.CoverageKey{Provider: "withings", Patient: "p1", Kind: "weight"}
		if cs := mustCoverage(t, s, "withings", "p1"); cs == nil || len(cs) != 0 {
			t.Errorf("Coverage of an unknown connection: %#v, want an empty slice", cs)
		}
		calls := 0
		got := mustUpdateCoverage(t, s, k, t0, func(c *store.Coverage) error {
			calls++
			if diff := cmp.Diff(store.Coverage{CoverageKey: k}, *c, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("fn of a new stream got (-want +got):\n%s", diff)
			}
			c.Add(day(3).Start, day(3).End)
			c.Add(day(1).Start, day(1).End)
			c.Cursor = "cursor-1"
			return nil
		})
		if calls != 1 {
			t.Errorf("fn called %d times without contention, want 1", calls)
		}
		want := store.Coverage{CoverageKey: k, Intervals: []store.Interval{day(1), day(3)}, Cursor: "cursor-1", Updated: at(0)}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("UpdateCoverage result (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]store.Coverage{want}, mustCoverage(t, s, "withings", "p1")); diff != "" {
			t.Errorf("Coverage after create (-want +got):\n%s", diff)
		}
		// An update gets the stored coverage; the day between merges the three.
		got = mustUpdateCoverage(t, s, k, t0.Add(time.Hour), func(c *store.Coverage) error {
			if diff := cmp.Diff(want, *c); diff != "" {
				t.Errorf("fn of a stored stream got (-want +got):\n%s", diff)
			}
			c.Add(day(2).Start, day(2).End)
			c.CoverageKey = store.CoverageKey{Provider: "other", Patient: "other", Kind: "other"} // ignored
			return nil
		})
		want = store.Coverage{CoverageKey: k, Intervals: []store.Interval{{Start: day(1).Start, End: day(3).End}}, Cursor: "cursor-1", Updated: at(time.Hour)}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("UpdateCoverage merging result (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]store.Coverage{want}, mustCoverage(t, s, "withings", "p1")); diff != "" {
			t.Errorf("Coverage after update (-want +got):\n%s", diff)
		}
		if cs := mustCoverage(t, s, "other", "other"); len(cs) != 0 {
			t.Errorf("a changed key was stored: %v", cs)
		}
		// An error from fn stores nothing.
		boom := errors.New("boom")
		if _, err := s.UpdateCoverage(t.Context(), k, t0.Add(2*time.Hour), func(c *store.Coverage) error {
			c.Cursor = "lost"
			return boom
		}); !errors.Is(err, boom) {
			t.Errorf("UpdateCoverage with a failing fn: err = %v, want fn's error", err)
		}
		if _, err := s.UpdateCoverage(t.Context(), store.CoverageKey{Provider: "withings", Patient: "p1", Kind: "new"}, t0, func(c *store.Coverage) error {
			c.Cursor = "lost"
			return boom
		}); !errors.Is(err, boom) {
			t.Errorf("UpdateCoverage of a new stream with a failing fn: err = %v, want fn's error", err)
		}
		if diff := cmp.Diff([]store.Coverage{want}, mustCoverage(t, s, "withings", "p1")); diff != "" {
			t.Errorf("Coverage after failing updates (-want +got):\n%s", diff)
		}
		// Stored as Normalized: microseconds, UTC, re-merged.
		zone := time.FixedZone("UTC-5", -5*3600)
		got = mustUpdateCoverage(t, s, store.CoverageKey{Provider: "withings", Patient: "p1", Kind: "ns"}, t0, func(c *store.Coverage) error {
			c.Add(t0.Add(time.Nanosecond).In(zone), t0.Add(time.Hour+500*time.Nanosecond))
			c.Add(t0.Add(time.Hour+900*time.Nanosecond), t0.Add(2*time.Hour))
			return nil
		})
		wantIvs := []store.Interval{{Start: at(0), End: at(2 * time.Hour)}}
		if diff := cmp.Diff(wantIvs, got.Intervals); diff != "" {
			t.Errorf("intervals with nanoseconds (-want +got):\n%s", diff)
		}
	})

	t.Run("OrderAndDelete", func(t *testing.T) {
		s := open(t)
		for _, k := range []store.CoverageKey{
			{Provider: "withings", Patient: "p1", Kind: "sleep"},
			{Provider: "withings", Patient: "p1", Kind: "activity"},
			{Provider: "withings", Patient: "p1", Kind: "heart"},
			{Provider: "withings", Patient: "p2", Kind: "activity"},
			{Provider: "oura", Patient: "p1", Kind: "activity"},
		} {
			mustUpdateCoverage(t, s, k, t0, func(c *store.Coverage) error { c.Cursor = k.Provider + "/" + k.Patient + "/" + k.Kind; return nil })
		}
		kinds := func(cs []store.Coverage) []string {
			out := []string{}
			for _, c := range cs {
				out = append(out, c.Provider+"/"+c.Patient+"/"+c.Kind)
				if c.Cursor != c.Provider+"/"+c.Patient+"/"+c.Kind {
					t.Errorf("coverage %s/%s/%s has cursor %q", c.Provider, c.Patient, c.Kind, c.Cursor)
				}
			}
			return out
		}
		if diff := cmp.Diff([]string{"withings/p1/activity", "withings/p1/heart", "withings/p1/sleep"}, kinds(mustCoverage(t, s, "withings", "p1"))); diff != "" {
			t.Errorf("Coverage(withings, p1) (-want +got):\n%s", diff)
		}
		if err := s.DeleteCoverage(t.Context(), "withings", "p1"); err != nil {
			t.Fatalf("DeleteCoverage: %v", err)
		}
		if cs := mustCoverage(t, s, "withings", "p1"); len(cs) != 0 {
			t.Errorf("Coverage after DeleteCoverage: %v", kinds(cs))
		}
		if diff := cmp.Diff([]string{"withings/p2/activity"}, kinds(mustCoverage(t, s, "withings", "p2"))); diff != "" {
			t.Errorf("other patient after DeleteCoverage (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]string{"oura/p1/activity"}, kinds(mustCoverage(t, s, "oura", "p1"))); diff != "" {
			t.Errorf("other provider after DeleteCoverage (-want +got):\n%s", diff)
		}
		if err := s.DeleteCoverage(t.Context(), "withings", "p1"); err != nil {
			t.Errorf("DeleteCoverage of nothing: %v", err)
		}
		// A deleted stream starts over.
		k := store.CoverageKey{Provider: "withings", Patient: "p1", Kind: "sleep"}
		mustUpdateCoverage(t, s, k, t0, func(c *store.Coverage) error {
			if c.Cursor != "" || len(c.Intervals) != 0 {
				t.Errorf("fn after DeleteCoverage got %+v, want an empty coverage", *c)
			}
			return nil
		})
	})
}

// raceJobs claims and completes 200 jobs from workers on two handles of one database: every
// job runs exactly once and is never leased to two owners at once.
func raceJobs(t *testing.T, a, b jobStore) {
	const jobs, workers = 200, 4
	for i := range jobs {
		h := []jobStore{a, b}[i%2]
		mustEnqueueNew(t, h, store.Job{Type: "race", Priority: i % 3, Payload: fmt.Append(nil, i)}, t0)
	}
	var mu sync.Mutex
	running := map[string]string{} // job → owner
	runs := map[string]int{}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for h, s := range []jobStore{a, b} {
		for w := range workers {
			owner := fmt.Sprintf("h%d-w%d", h, w)
			wg.Go(func() {
				<-start
				for {
					// A lease far longer than the test: a job claimed twice is a broken claim.
					js, err := s.ClaimJobs(t.Context(), owner, 3, time.Hour, t0)
					if err != nil {
						t.Errorf("%s: ClaimJobs: %v", owner, err)
						return
					}
					if len(js) == 0 {
						return
					}
					for _, j := range js {
						mu.Lock()
						if other, ok := running[j.ID]; ok {
							t.Errorf("job %s leased to %s while %s runs it", j.ID, owner, other)
						}
						running[j.ID] = owner
						runs[j.ID]++
						mu.Unlock()
						if err := s.RenewJob(t.Context(), j.ID, owner, time.Hour, t0); err != nil {
							t.Errorf("%s: RenewJob %s: %v", owner, j.ID, err)
						}
						mu.Lock()
						delete(running, j.ID)
						mu.Unlock()
						if err := s.CompleteJob(t.Context(), j.ID, owner); err != nil {
							t.Errorf("%s: CompleteJob %s: %v", owner, j.ID, err)
						}
					}
				}
			})
		}
	}
	close(start)
	wg.Wait()
	if len(runs) != jobs {
		t.Errorf("%d jobs ran, want %d", len(runs), jobs)
	}
	for id, n := range runs {
		if n != 1 {
			t.Errorf("job %s ran %d times", id, n)
		}
	}
	for _, s := range []jobStore{a, b} {
		wantStats(t, s, t0, store.JobStats{})
	}
}

// raceEnqueue enqueues one key from workers on two handles at once, round after round: each
// round makes exactly one job, and every caller gets its id.
func raceEnqueue(t *testing.T, a, b jobStore) {
	const workers, rounds = 3, 10
	for round := range rounds {
		key := fmt.Sprint("race-key-", round)
		var mu sync.Mutex
		ids := map[string]bool{}
		var created atomic.Int32
		var wg sync.WaitGroup
		start := make(chan struct{})
		for _, s := range []jobStore{a, b} {
			for range workers {
				wg.Go(func() {
					<-start
					id, coalesced, err := s.EnqueueJob(t.Context(), store.Job{Type: "race", Key: key}, t0)
					if err != nil {
						t.Errorf("EnqueueJob(%s): %v", key, err)
						return
					}
					if !coalesced {
						created.Add(1)
					}
					mu.Lock()
					ids[id] = true
					mu.Unlock()
				})
			}
		}
		close(start)
		wg.Wait()
		if created.Load() != 1 || len(ids) != 1 {
			t.Fatalf("%s: %d enqueues created a job, callers got ids %v; want one job", key, created.Load(), ids)
		}
	}
	for _, s := range []jobStore{a, b} {
		if got := pendingIDs(t, s, 100); len(got) != rounds {
			t.Errorf("PendingJobs after the races: %d jobs, want %d", len(got), rounds)
		}
	}
}

// raceCoverage adds distinct days to one stream from workers on two handles at once: none is
// lost.
func raceCoverage(t *testing.T, a, b jobStore) {
	const workers, updates = 3, 5
	k := store.CoverageKey{Provider: "withings", Patient: "p1", Kind: "weight"}
	var wg sync.WaitGroup
	start := make(chan struct{})
	n := 0
	for _, s := range []jobStore{a, b} {
		for range workers {
			first := n
			n += updates
			wg.Go(func() {
				<-start
				for i := range updates {
					// Every other day, so that no two intervals merge.
					d := day(2 * (first + i))
					if _, err := s.UpdateCoverage(t.Context(), k, t0, func(c *store.Coverage) error {
						c.Add(d.Start, d.End)
						return nil
					}); err != nil {
						t.Errorf("UpdateCoverage: %v", err)
					}
				}
			})
		}
	}
	close(start)
	wg.Wait()
	var want []store.Interval
	for i := range n {
		want = append(want, day(2*i))
	}
	for h, s := range []jobStore{a, b} {
		cs := mustCoverage(t, s, k.Provider, k.Patient)
		if len(cs) != 1 {
			t.Fatalf("handle %d: Coverage: %d streams, want 1", h, len(cs))
		}
		if diff := cmp.Diff(want, cs[0].Intervals); diff != "" {
			t.Errorf("handle %d: intervals after concurrent updates (-want +got):\n%s", h, diff)
		}
	}
}

// RunJobsShared checks the job queue and the coverage store across two handles on one
// database, as RunShared does for resources: open returns two handles on one fresh, empty
// database and registers their cleanup with t.Cleanup.
//
// The subtests are:
//   - ClaimRace: workers on both handles claim and complete 200 jobs; every job runs exactly
//     once and is never leased to two owners at once.
//   - EnqueueRace: both handles enqueue one key concurrently, round after round; each round
//     stores exactly one job and every caller gets its id.
//   - CoverageRace: both handles add distinct intervals to one stream concurrently; none is
//     lost.
//   - DiscardRace: one handle retries a dead letter while the other discards it; exactly one
//     wins.
func RunJobsShared(t *testing.T, open func(t testing.TB) (store.Store, store.Store)) {
	shared := func(t *testing.T) (jobStore, jobStore) { return open(t) }
	t.Run("ClaimRace", func(t *testing.T) { a, b := shared(t); raceJobs(t, a, b) })
	t.Run("EnqueueRace", func(t *testing.T) { a, b := shared(t); raceEnqueue(t, a, b) })
	t.Run("CoverageRace", func(t *testing.T) { a, b := shared(t); raceCoverage(t, a, b) })
	t.Run("DiscardRace", func(t *testing.T) { a, b := shared(t); raceDiscard(t, a, b) })
}
