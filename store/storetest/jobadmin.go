package storetest

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/openhealthexchange/ohx/store"
)

// mustDead enqueues a job of key and makes it a dead letter failed at fail. Its priority puts it
// ahead of every other job of the tests, so that it is the one claimed.
func mustDead(t testing.TB, s store.Jobs, key string, fail time.Time) string {
	t.Helper()
	id := mustEnqueueNew(t, s, store.Job{Type: "t", Key: key, Priority: 1000, Payload: []byte("p")}, t0)
	if got := claimIDs(t, s, "w", 1, time.Minute, t0); !cmp.Equal(got, []string{id}) {
		t.Fatalf("ClaimJobs before dead-lettering: %v, want [%s]", got, id)
	}
	mustFail(t, s, id, "w", store.JobFailure{Error: "poison", Dead: true, At: fail})
	return id
}

// testJobAdmin checks the operator's side of the queue: DiscardDeadJob removes a dead letter
// and nothing else.
func testJobAdmin(t *testing.T, open jobOpener) {
	t.Run("DiscardDead", func(t *testing.T) {
		s := open(t)
		first := mustDead(t, s, "k1", t0.Add(time.Second))
		second := mustDead(t, s, "k2", t0.Add(2*time.Second))
		if err := s.DiscardDeadJob(t.Context(), first); err != nil {
			t.Fatalf("DiscardDeadJob(%s): %v", first, err)
		}
		wantNoJob(t, s, first)
		if got := deadIDs(t, s, 10); !cmp.Equal(got, []string{second}) {
			t.Errorf("DeadJobs after DiscardDeadJob(%s): %v, want [%s]", first, got, second)
		}
		wantStats(t, s, t0, store.JobStats{Dead: 1})
		if err := s.DiscardDeadJob(t.Context(), first); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("second DiscardDeadJob(%s): err = %v, want ErrNotFound", first, err)
		}
		if err := s.RetryDeadJob(t.Context(), first, t0); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("RetryDeadJob of a discarded dead letter: err = %v, want ErrNotFound", err)
		}
		if err := s.DiscardDeadJob(t.Context(), "no-such-job"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("DiscardDeadJob of an unknown id: err = %v, want ErrNotFound", err)
		}
		// The discarded job's key is free: a new job takes it.
		if id, coalesced := mustEnqueue(t, s, store.Job{Type: "t", Key: "k1"}, t0); coalesced || id == first {
			t.Errorf("EnqueueJob of the discarded job's key: %s coalesced %v, want a new job", id, coalesced)
		}
	})

	t.Run("NeverPending", func(t *testing.T) {
		s := open(t)
		waiting := mustEnqueueNew(t, s, store.Job{Type: "t", Key: "w", Priority: 1}, t0)
		running := mustEnqueueNew(t, s, store.Job{Type: "t", Key: "r", Priority: 2}, t0)
		if got := claimIDs(t, s, "w", 1, time.Minute, t0); !cmp.Equal(got, []string{running}) {
			t.Fatalf("ClaimJobs: %v, want [%s]", got, running)
		}
		for _, id := range []string{waiting, running} {
			if err := s.DiscardDeadJob(t.Context(), id); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("DiscardDeadJob of pending job %s: err = %v, want ErrNotFound", id, err)
			}
		}
		if j := mustGetJob(t, s, waiting); j.Owner != "" || j.Dead {
			t.Errorf("waiting job after DiscardDeadJob: %+v, want still waiting", j)
		}
		if j := mustGetJob(t, s, running); j.Owner != "w" || j.Dead {
			t.Errorf("running job after DiscardDeadJob: %+v, want still leased to w", j)
		}
		wantStats(t, s, t0, store.JobStats{Waiting: 1, Running: 1})
		// A dead letter retried is pending again: not discarded.
		dead := mustDead(t, s, "d", t0)
		if err := s.RetryDeadJob(t.Context(), dead, t0); err != nil {
			t.Fatalf("RetryDeadJob: %v", err)
		}
		if err := s.DiscardDeadJob(t.Context(), dead); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("DiscardDeadJob of a retried dead letter: err = %v, want ErrNotFound", err)
		}
		if j := mustGetJob(t, s, dead); j.Dead {
			t.Errorf("retried job after DiscardDeadJob: %+v, want pending", j)
		}
	})

	t.Run("Cancel", func(t *testing.T) {
		s := open(t)
		id := mustDead(t, s, "", t0)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if err := s.DiscardDeadJob(ctx, id); !errors.Is(err, context.Canceled) {
			t.Errorf("DiscardDeadJob with a cancelled context: err = %v, want one matching context.Canceled", err)
		}
		if j := mustGetJob(t, s, id); !j.Dead {
			t.Errorf("dead letter after a cancelled DiscardDeadJob: %+v, want still dead", j)
		}
	})
}

// raceDiscard retries and discards the same dead letters from two handles at once, round after
// round: exactly one of the two wins each round, and the job ends up either pending or gone.
func raceDiscard(t *testing.T, a, b jobStore) {
	const rounds = 20
	for i := range rounds {
		id := mustDead(t, a, "", t0)
		var retryErr, discardErr error
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); retryErr = a.RetryDeadJob(t.Context(), id, t0) }()
		go func() { defer wg.Done(); discardErr = b.DiscardDeadJob(t.Context(), id) }()
		wg.Wait()
		for _, err := range []error{retryErr, discardErr} {
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("round %d: %v", i, err)
			}
		}
		if (retryErr == nil) == (discardErr == nil) {
			t.Fatalf("round %d: retry err %v, discard err %v; want exactly one to succeed", i, retryErr, discardErr)
		}
		j, err := a.GetJob(t.Context(), id)
		switch {
		case retryErr == nil && (err != nil || j.Dead):
			t.Fatalf("round %d: retry won but GetJob = %+v, %v; want a pending job", i, j, err)
		case discardErr == nil && !errors.Is(err, store.ErrNotFound):
			t.Fatalf("round %d: discard won but GetJob = %+v, %v; want ErrNotFound", i, j, err)
		}
		if retryErr == nil { // clear it for the next round's single claim
			if got := claimIDs(t, a, "w", 1, time.Minute, t0); !cmp.Equal(got, []string{id}) {
				t.Fatalf("round %d: ClaimJobs of the retried job: %v, want [%s]", i, got, id)
			}
			mustComplete(t, a, id, "w")
		}
	}
}
