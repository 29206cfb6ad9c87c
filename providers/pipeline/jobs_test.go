package pipeline

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/openhealthexchange/ohx/store/sqlite"
)

func newQueue(t *testing.T) *Queue {
	t.Helper()
	st, err := sqlite.Open(t.Context(), t.TempDir(), sqlite.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return NewQueue(st, time.Minute, 3)
}

func TestQueueLifecycle(t *testing.T) {
	q := newQueue(t)
	ctx := t.Context()
	j, err := q.Enqueue(ctx, Job{Type: JobBackfill, Provider: "withings", Patient: "p1"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := q.Claim(ctx, 10)
	if err != nil || len(got) != 1 || got[0].ID != j.ID {
		t.Fatalf("claim: %v %v", got, err)
	}
	if again, _ := q.Claim(ctx, 10); len(again) != 0 {
		t.Errorf("a leased job was claimed twice")
	}
	// Failure: rescheduled with backoff, lease released, not due yet.
	if dead, err := q.Fail(ctx, got[0], errors.New("vendor 503"), false); dead || err != nil {
		t.Fatalf("fail: %v %v", dead, err)
	}
	if again, _ := q.Claim(ctx, 10); len(again) != 0 {
		t.Errorf("a job in backoff was claimed")
	}
	q.now = func() time.Time { return time.Now().Add(2 * time.Hour) }
	got, _ = q.Claim(ctx, 10)
	if len(got) != 1 || got[0].Attempt != 1 || got[0].LastErr != "vendor 503" {
		t.Fatalf("after backoff: %+v", got)
	}
	q.Fail(ctx, got[0], errors.New("again"), false)
	q.now = func() time.Time { return time.Now().Add(4 * time.Hour) }
	got, _ = q.Claim(ctx, 10)
	if dead, err := q.Fail(ctx, got[0], errors.New("third"), false); !dead || err != nil {
		t.Fatalf("third failure must dead-letter: %v %v", dead, err)
	}
	if p, _ := q.Pending(ctx); len(p) != 0 {
		t.Errorf("dead job still pending")
	}
	if d, _ := q.Dead(ctx); len(d) != 1 || d[0].Attempt != 3 || d[0].LastErr != "third" {
		t.Errorf("dead letters: %+v", d)
	}
	// Permanent failures go straight to the dead letters; successes disappear.
	j2, _ := q.Enqueue(ctx, Job{Type: JobSync})
	j3, _ := q.Enqueue(ctx, Job{Type: JobSync})
	got, _ = q.Claim(ctx, 10)
	for _, g := range got {
		if g.ID == j2.ID {
			q.Fail(ctx, g, errors.New("bad request"), true)
		} else if g.ID == j3.ID {
			q.Done(ctx, g)
		}
	}
	if d, _ := q.Dead(ctx); len(d) != 2 {
		t.Errorf("permanent failure not dead-lettered: %d", len(d))
	}
	if p, _ := q.Pending(ctx); len(p) != 0 {
		t.Errorf("pending after done: %d", len(p))
	}
}

func TestQueueConcurrentClaims(t *testing.T) {
	q := newQueue(t)
	ctx := t.Context()
	for range 20 {
		q.Enqueue(ctx, Job{Type: JobSync})
	}
	var mu sync.Mutex
	seen := map[string]int{}
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := q.Claim(ctx, 20)
			if err != nil {
				t.Error(err)
			}
			mu.Lock()
			for _, j := range got {
				seen[j.ID]++
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	if len(seen) != 20 {
		t.Errorf("claimed %d distinct jobs, want 20", len(seen))
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("job %s claimed %d times", id, n)
		}
	}
}
