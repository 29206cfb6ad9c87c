package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/oauth2"

	"github.com/openhealthexchange/ohx/providers"
	"github.com/openhealthexchange/ohx/providers/withings"
	"github.com/openhealthexchange/ohx/store"
)

// TestRetryThenDeadLetter: a failing job is retried after an exponential backoff with jitter
// (30 s, then 1 min, ±20 %), then kept as a dead letter once its attempts are used up; a
// permanent failure is dead-lettered at once; a success disappears from the queue.
func TestRetryThenDeadLetter(t *testing.T) {
	g := newRig(t, nil)
	ctx := t.Context()
	var runs atomic.Int32
	g.r.Handle("flaky", func(ctx context.Context, j store.Job) error {
		runs.Add(1)
		return errors.New("vendor 503")
	})
	id, _, err := g.r.Enqueue(ctx, store.Job{Type: "flaky"})
	if err != nil {
		t.Fatal(err)
	}
	var clock time.Duration
	for attempt, want := range []time.Duration{30 * time.Second, time.Minute} {
		before := time.Now().Add(clock)
		if n, err := g.r.RunOnce(ctx); n != 1 || err != nil {
			t.Fatalf("run %d: %d %v", attempt+1, n, err)
		}
		j, err := g.st.GetJob(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if j.Attempt != attempt+1 || j.LastError != "vendor 503" || j.Dead {
			t.Fatalf("after run %d: %+v", attempt+1, j)
		}
		wait := j.NotBefore.Sub(before)
		if lo, hi := time.Duration(float64(want)*0.8)-time.Second, time.Duration(float64(want)*1.2)+time.Second; wait < lo || wait > hi {
			t.Errorf("backoff after run %d: %v, want %v ±20 %%", attempt+1, wait, want)
		}
		if n, _ := g.r.RunOnce(ctx); n != 0 {
			t.Fatalf("a job in backoff ran")
		}
		clock += 2 * want
		g.at(clock)
	}
	if n, _ := g.r.RunOnce(ctx); n != 1 {
		t.Fatal("third run not claimed")
	}
	if p := g.pending(t); len(p) != 0 {
		t.Errorf("dead job still pending: %+v", p)
	}
	if d := g.dead(t); len(d) != 1 || d[0].ID != id || d[0].Attempt != 3 || d[0].LastError != "vendor 503" {
		t.Errorf("dead letters: %+v", d)
	}
	if runs.Load() != 3 {
		t.Errorf("runs: %d, want 3", runs.Load())
	}

	// Permanent failures go straight to the dead letters; successes disappear.
	g.r.Handle("refused", func(context.Context, store.Job) error { return Permanent(errors.New("bad request")) })
	g.r.Handle("fine", func(context.Context, store.Job) error { return nil })
	g.r.Enqueue(ctx, store.Job{Type: "refused"})
	g.r.Enqueue(ctx, store.Job{Type: "fine"})
	if n, _ := g.r.RunOnce(ctx); n != 2 {
		t.Fatalf("ran %d jobs, want 2", n)
	}
	if d := g.dead(t); len(d) != 2 || d[0].Type != "refused" || d[0].Attempt != 1 {
		t.Errorf("permanent failure not dead-lettered at once: %+v", d)
	}
	if p := g.pending(t); len(p) != 0 {
		t.Errorf("pending after done: %+v", p)
	}
}

// TestHandlers: a job of a registered type runs its handler with its payload; a job of an
// unknown type is dead-lettered and kept; a type is registered once.
func TestHandlers(t *testing.T) {
	g := newRig(t, nil)
	ctx := t.Context()
	var got []byte
	g.r.Handle("custom", func(ctx context.Context, j store.Job) error {
		got = j.Payload
		return nil
	})
	g.r.Enqueue(ctx, store.Job{Type: "custom", Payload: []byte(`{"x":1}`)})
	unknown, _, _ := g.r.Enqueue(ctx, store.Job{Type: "nobody-handles-this"})
	if n, err := g.r.RunOnce(ctx); n != 2 || err != nil {
		t.Fatalf("RunOnce: %d %v", n, err)
	}
	if string(got) != `{"x":1}` {
		t.Errorf("custom handler got payload %q", got)
	}
	if d := g.dead(t); len(d) != 1 || d[0].ID != unknown || d[0].Attempt != 1 {
		t.Errorf("an unknown type must be dead-lettered at once: %+v", d)
	}
	defer func() {
		if recover() == nil {
			t.Error("registering a type twice did not panic")
		}
	}()
	g.r.Handle(TypeFetch, func(context.Context, store.Job) error { return nil })
}

// TestLeaseTakeover: a job claimed by a runner that crashed (never completed) is taken over by
// another runner once the lease expires, and runs to completion there.
func TestLeaseTakeover(t *testing.T) {
	g := newRig(t, nil)
	ctx := t.Context()
	var runs atomic.Int32
	g.r.Handle("work", func(context.Context, store.Job) error { runs.Add(1); return nil })
	id, _, _ := g.r.Enqueue(ctx, store.Job{Type: "work"})
	if js, err := g.st.ClaimJobs(ctx, "crashed-runner", 10, time.Minute, time.Now()); err != nil || len(js) != 1 {
		t.Fatalf("claim by the crashing runner: %v %v", js, err)
	}
	if n, _ := g.r.RunOnce(ctx); n != 0 {
		t.Fatal("a leased job was claimed twice")
	}
	g.at(2 * time.Minute)
	if n, err := g.r.RunOnce(ctx); n != 1 || err != nil {
		t.Fatalf("abandoned job not taken over: %d %v", n, err)
	}
	if runs.Load() != 1 {
		t.Errorf("runs: %d", runs.Load())
	}
	if _, err := g.st.GetJob(ctx, id); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("completed job still stored: %v", err)
	}
	if err := g.st.CompleteJob(ctx, id, "crashed-runner"); !errors.Is(err, store.ErrLeaseLost) {
		t.Errorf("the crashed runner completing late: %v, want ErrLeaseLost", err)
	}
}

// TestLeaseRenewal: a running job's lease is renewed, so nobody takes it over while it runs;
// when the lease is lost anyway the job's context ends and the runner records nothing.
func TestLeaseRenewal(t *testing.T) {
	g := newRig(t, nil)
	// Renewed every lease/3: a second of lease leaves two renewals of slack on a loaded machine.
	g.r.cfg.Lease = time.Second
	ctx := t.Context()
	started := make(chan struct{})
	ended := make(chan error, 1)
	g.r.Handle("slow", func(ctx context.Context, j store.Job) error {
		close(started)
		select {
		case <-ctx.Done():
			ended <- context.Cause(ctx)
			return ctx.Err()
		case <-time.After(10 * time.Second):
			ended <- nil
			return nil
		}
	})
	id, _, _ := g.r.Enqueue(ctx, store.Job{Type: "slow"})
	done := make(chan struct{})
	go func() {
		defer close(done)
		g.r.RunOnce(ctx)
	}()
	<-started
	time.Sleep(2500 * time.Millisecond) // two and a half lease lengths: renewed meanwhile
	if js, _ := g.st.ClaimJobs(ctx, "other", 1, time.Minute, time.Now()); len(js) != 0 {
		t.Fatal("a renewed lease was taken over")
	}
	// Another runner whose clock is far ahead takes the job over: the next renewal fails.
	if js, _ := g.st.ClaimJobs(ctx, "other", 1, time.Hour, time.Now().Add(time.Hour)); len(js) != 1 {
		t.Fatal("take-over claim failed")
	}
	if err := <-ended; !errors.Is(err, store.ErrLeaseLost) {
		t.Errorf("job context cause: %v, want ErrLeaseLost", err)
	}
	<-done
	if n := testutil.ToFloat64(g.r.jobs.WithLabelValues("slow", "lost")); n != 1 {
		t.Errorf("lost leases counted: %v", n)
	}
	j, err := g.st.GetJob(ctx, id)
	if err != nil || j.Owner != "other" || j.Attempt != 0 {
		t.Errorf("the job must stay with its new owner, unfailed: %+v %v", j, err)
	}
}

// TestConcurrentRunners: runners sharing a queue run every job exactly once.
func TestConcurrentRunners(t *testing.T) {
	g := newRig(t, nil)
	ctx := t.Context()
	var mu sync.Mutex
	seen := map[string]int{}
	var runners []*Runner
	for range 4 {
		r := NewRunner(Config{Workers: 5}, g.r.reg, g.vault, g.st, nil)
		r.Handle("count", func(ctx context.Context, j store.Job) error {
			mu.Lock()
			seen[j.ID]++
			mu.Unlock()
			return nil
		})
		runners = append(runners, r)
	}
	for range 20 {
		g.r.Enqueue(ctx, store.Job{Type: "count"})
	}
	var wg sync.WaitGroup
	for _, r := range runners {
		wg.Go(func() {
			for {
				n, err := r.RunOnce(ctx)
				if err != nil {
					t.Error(err)
				}
				if n == 0 {
					return
				}
			}
		})
	}
	wg.Wait()
	if len(seen) != 20 {
		t.Errorf("ran %d distinct jobs, want 20", len(seen))
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("job %s ran %d times", id, n)
		}
	}
}

// TestMigrate: the records of the old queue (jobs, leases, dead letters) become store jobs and
// are deleted; a second migration finds nothing; the migrated jobs run.
func TestMigrate(t *testing.T) {
	g := newRig(t, nil)
	ctx := t.Context()
	created := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	old := map[string]string{
		"j1": `{"id":"j1","type":"backfill","provider":"withings","patient":"p1","start":"2026-01-01T00:00:00Z","end":"2026-01-31T00:00:00Z","attempt":2,"created":"2026-01-02T03:04:05Z","lastError":"x"}`,
		"j2": `{"id":"j2","type":"sync","provider":"withings","patient":"p1","attempt":0,"created":"2026-01-02T03:04:05Z"}`,
	}
	for id, doc := range old {
		if err := g.st.PutRecord(ctx, oldKindJob, id, []byte(doc), time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	g.st.PutRecord(ctx, oldKindLease, "j1", nil, time.Now().Add(time.Minute))
	g.st.PutRecord(ctx, oldKindDead, "j3", []byte(`{"id":"j3","type":"subscribe","provider":"withings","patient":"p1","attempt":8,"created":"2026-01-02T03:04:05Z"}`), time.Time{})

	n, err := g.r.Migrate(ctx)
	if err != nil || n != 3 {
		t.Fatalf("Migrate: %d %v, want 3 jobs", n, err)
	}
	for _, kind := range []string{oldKindJob, oldKindLease, oldKindDead} {
		if recs, _ := g.st.ListRecords(ctx, kind); len(recs) != 0 {
			t.Errorf("%d %s records left", len(recs), kind)
		}
	}
	got := map[string]Work{}
	types := map[string]string{}
	for _, j := range g.pending(t) {
		var w Work
		if err := json.Unmarshal(j.Payload, &w); err != nil {
			t.Fatal(err)
		}
		got[j.ID], types[j.ID] = w, j.Type
		if !j.Created.Equal(created) {
			t.Errorf("job %s created %v, want %v", j.ID, j.Created, created)
		}
	}
	wantTypes := map[string]string{"j1": TypeBackfill, "j2": TypeFetch, "j3": TypeSubscribe}
	if diff := cmp.Diff(wantTypes, types); diff != "" {
		t.Errorf("migrated types (-want +got):\n%s", diff)
	}
	if w := got["j1"]; w.Provider != withings.Name || w.Patient != "p1" || !w.Start.Equal(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)) || !w.End.Equal(time.Date(2026, 1, 31, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("migrated backfill: %+v", w)
	}
	if n, err := g.r.Migrate(ctx); n != 0 || err != nil {
		t.Errorf("second Migrate: %d %v", n, err)
	}
	if p := g.pending(t); len(p) != 3 {
		t.Errorf("pending after the second migration: %d, want 3", len(p))
	}
}

// TestPublicError: a connection's LastError (shown by GET /connect/status) is a classified
// summary or a fixed text, never the error's own words; the job keeps them for the operator.
func TestPublicError(t *testing.T) {
	internal := errors.New("sqlite: write jobs: disk I/O error at /var/lib/ohx/ohx.db")
	if got := publicError(internal); got != "sync failed" {
		t.Errorf("publicError(internal) = %q, want the fixed text", got)
	}
	if got := jobError(internal); got != internal.Error() {
		t.Errorf("jobError(internal) = %q, want the error", got)
	}
	ue := &providers.UpstreamError{Provider: "withings", Kind: providers.KindTransient, Status: 503, Err: errors.New("vendor says: user 12345 …")}
	for _, f := range []func(error) string{publicError, jobError} {
		if got := f(ue); got != "vendor transient error (status 503)" {
			t.Errorf("vendor error recorded as %q, want the classified summary", got)
		}
	}
}

// TestSlowJobHoldsOnlyItsSlot: while one job is stuck (a throttled or unreachable vendor), the
// other worker slot keeps taking due jobs one after the other.
func TestSlowJobHoldsOnlyItsSlot(t *testing.T) {
	g := newRig(t, nil)
	g.r.cfg.Workers, g.r.cfg.Poll = 2, 10*time.Millisecond
	release := make(chan struct{})
	stuck := make(chan struct{})
	g.r.Handle("slow", func(ctx context.Context, j store.Job) error {
		close(stuck)
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil
	})
	var quick atomic.Int32
	g.r.Handle("quick", func(context.Context, store.Job) error { quick.Add(1); return nil })
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); g.r.Run(ctx) }()
	defer func() { close(release); cancel(); <-done }()

	if _, _, err := g.r.Enqueue(ctx, store.Job{Type: "slow", Priority: 100}); err != nil {
		t.Fatal(err)
	}
	<-stuck
	for i := range 5 {
		if _, _, err := g.r.Enqueue(ctx, store.Job{Type: "quick", Key: string(rune('a' + i))}); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for quick.Load() < 5 {
		if time.Now().After(deadline) {
			t.Fatalf("%d of 5 jobs ran while another job was stuck", quick.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRetire: a retired connection ends like a disconnection without purge (tokens, coverage
// and the connection gone, Observations kept) but without a single vendor call; retiring it
// again is done at once.
func TestRetire(t *testing.T) {
	g := newRig(t, nil) // no routes: any vendor request fails the test
	ctx := t.Context()
	key := store.CoverageKey{Provider: withings.Name, Patient: "p1", Kind: "weight"}
	if _, err := g.st.UpdateCoverage(ctx, key, time.Now(), func(c *store.Coverage) error {
		c.Cursor = "c1"
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := g.r.Retire(ctx, withings.Name, "p1"); err != nil {
		t.Fatal(err)
	}
	if n, err := g.r.RunOnce(ctx); n != 1 || err != nil {
		t.Fatalf("RunOnce: %d %v", n, err)
	}
	if _, err := g.vault.Get(ctx, withings.Name, "p1"); !errors.Is(err, providers.ErrNotConnected) {
		t.Errorf("after Retire: %v, want ErrNotConnected", err)
	}
	if n := len(g.fake.Requests()); n != 0 {
		t.Errorf("%d vendor requests, want none", n)
	}
	if cs, err := g.st.Coverage(ctx, withings.Name, "p1"); err != nil || len(cs) != 0 {
		t.Errorf("coverage after Retire: %v %v, want none", cs, err)
	}
	if err := g.r.Retire(ctx, withings.Name, "p1"); err != nil {
		t.Fatal(err)
	}
	if n, _ := g.r.RunOnce(ctx); n != 1 {
		t.Fatalf("second retirement not run")
	}
	if dead, err := g.st.DeadJobs(ctx, 10); err != nil || len(dead) != 0 {
		t.Errorf("dead letters %v (%v), want none", dead, err)
	}
}

// TestReconcileRetires: a connection that another connection of its patient continues is
// retired by the reconciliation, should its retirement not have been queued at the move.
func TestReconcileRetires(t *testing.T) {
	g := newRig(t, nil)
	ctx := t.Context()
	next := &providers.Connection{Provider: "successor", PatientID: "p1", VendorUserID: "s-1", Status: providers.StatusActive,
		Token:       &oauth2.Token{AccessToken: "a", RefreshToken: "r"},
		Predecessor: &providers.Predecessor{Account: providers.Account{Provider: withings.Name, User: "12345"}, Until: time.Now()}}
	if err := g.vault.Save(ctx, next); err != nil {
		t.Fatal(err)
	}
	if _, err := g.r.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	pending, err := g.st.PendingJobs(ctx, 100)
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(pending, func(j store.Job) bool { return j.Type == TypeRetire })
	if i < 0 {
		t.Fatalf("no retirement queued among %d jobs", len(pending))
	}
	var w Work
	if err := json.Unmarshal(pending[i].Payload, &w); err != nil || w.Provider != withings.Name || w.Patient != "p1" {
		t.Fatalf("retirement of %+v (%v), want withings p1", w, err)
	}
	if err := g.r.Process(ctx, pending[i]); err != nil {
		t.Fatal(err)
	}
	if _, err := g.vault.Get(ctx, withings.Name, "p1"); !errors.Is(err, providers.ErrNotConnected) {
		t.Errorf("the continued connection after reconciliation: %v, want retired", err)
	}
	if _, err := g.vault.Get(ctx, "successor", "p1"); err != nil {
		t.Errorf("the successor: %v", err)
	}
}
