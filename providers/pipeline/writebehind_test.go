package pipeline

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/providers/withings"
)

// TestWriteBehindOverlapsNextPage: while a fetch's first batch is being stored (its Upserted
// hook is held), the fetch already asks the vendor for the next page; every page's
// Observation is stored in the end. Writing each batch in the fetch's own goroutine, the hook
// would wait for a request that never comes.
func TestWriteBehindOverlapsNextPage(t *testing.T) {
	f := &fakeMeasures{pageSize: 1}
	f.set(wdWeight(1, wdAt(11, 8), 748), wdWeight(2, wdAt(12, 8), 751), wdWeight(3, wdAt(13, 8), 749))
	g := newWithdrawRig(t, f)
	g.r.cfg.Batch = 1 // a batch per page
	calls := func() int {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.calls
	}
	batches, overlapped := 0, false
	g.r.cfg.Upserted = func(context.Context, string, bool) error {
		batches++
		if batches > 1 {
			return nil
		}
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
			if calls() >= 2 {
				overlapped = true
				return nil
			}
		}
		return nil
	}
	g.wdSync(t, wdStart, wdEnd, fhir.KindWeight)
	if !overlapped {
		t.Errorf("the second page was not requested while the first batch was stored (vendor calls: %d)", calls())
	}
	if batches != 3 {
		t.Errorf("%d batches stored, want 3 (one per page)", batches)
	}
	wdCheck(t, g.wdByRecord(t), map[string]string{"12345/1/1": "final/v1", "12345/2/1": "final/v1", "12345/3/1": "final/v1"})
}

// TestWriteBehindFailureFailsFetch: a batch that fails to store fails the fetch with its error,
// and no later batch is stored after it.
func TestWriteBehindFailureFailsFetch(t *testing.T) {
	f := &fakeMeasures{pageSize: 1}
	f.set(wdWeight(1, wdAt(11, 8), 748), wdWeight(2, wdAt(12, 8), 751), wdWeight(3, wdAt(13, 8), 749))
	g := newWithdrawRig(t, f)
	g.r.cfg.Batch = 1
	boom := errors.New("downstream refused")
	batches := 0
	g.r.cfg.Upserted = func(context.Context, string, bool) error {
		batches++
		if batches == 1 {
			return boom
		}
		return nil
	}
	w := Work{Provider: withings.Name, Patient: "p1", Kinds: []fhir.SampleKind{fhir.KindWeight}, Start: wdStart, End: wdEnd}
	err := g.r.Process(t.Context(), w.Job(TypeFetch))
	if !errors.Is(err, boom) {
		t.Fatalf("fetch error %v, want the batch's %v", err, boom)
	}
	if batches != 1 {
		t.Errorf("%d batches reached the store after the failed one, want none", batches-1)
	}
}
