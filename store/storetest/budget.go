package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openhealthexchange/ohx/store"
)

// budgetT0 is the clock of the budget tests: on a second boundary, so that the sub-windows of
// the test limits start at it, and in the future, so that no store sweeps the tests' budgets as
// expired by the wall clock.
var budgetT0 = time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC)

// testLimit is 10 units per second in 10 sub-windows of 100 ms: a span of 12 sub-windows.
var testLimit = store.BudgetLimit{Limit: 10, Window: time.Second, Slots: 10}

// RunBudgets checks the shared rate-limit budgets (store.Budgets) of the stores returned by
// open, each fresh and empty, with explicit clocks.
//
// The subtests are:
//   - Grant: up to the limit, partial grants, Until and Next.
//   - Slide: nothing more until the oldest grant leaves the span, all of it after.
//   - Strict: a greedy taker and a sparse one over many windows never get more than the limit
//     in any window of the limit's length (at sub-window boundaries too), and the budget is not
//     stricter than documented.
//   - Keys: budgets of different keys are independent.
//   - OtherSlots: a grant recorded under another sub-window length still counts.
//   - Invalid: bad limits and counts are ErrInvalidBudget.
//   - Cancel: a cancelled context is context.Canceled and grants nothing.
func RunBudgets(t *testing.T, open func(t testing.TB) store.Budgets) {
	t.Run("Grant", func(t *testing.T) { testBudgetGrant(t, open(t)) })
	t.Run("Slide", func(t *testing.T) { testBudgetSlide(t, open(t)) })
	t.Run("Strict", func(t *testing.T) { testBudgetStrict(t, open(t)) })
	t.Run("Keys", func(t *testing.T) { testBudgetKeys(t, open(t)) })
	t.Run("OtherSlots", func(t *testing.T) { testBudgetOtherSlots(t, open(t)) })
	t.Run("Invalid", func(t *testing.T) { testBudgetInvalid(t, open(t)) })
	t.Run("Cancel", func(t *testing.T) { testBudgetCancel(t, open(t)) })
}

// RunBudgetsShared checks the budgets across two handles on one database (two ohx instances):
// open returns two handles on one fresh, empty database and registers their cleanup.
//
// The subtests are:
//   - Race: goroutines on both handles take units of one budget at once; together they get
//     exactly the limit, in the first sub-window and again once the span has passed.
//   - Chunks: the same with takes of several units: never more than the limit.
func RunBudgetsShared(t *testing.T, open func(t testing.TB) (store.Budgets, store.Budgets)) {
	t.Run("Race", func(t *testing.T) { a, b := open(t); raceBudget(t, a, b, 1) })
	t.Run("Chunks", func(t *testing.T) { a, b := open(t); raceBudget(t, a, b, 3) })
}

func mustTake(t testing.TB, s store.Budgets, key string, l store.BudgetLimit, n int, now time.Time) store.BudgetGrant {
	t.Helper()
	g, err := s.TakeBudget(t.Context(), key, l, n, now)
	if err != nil {
		t.Fatalf("TakeBudget(%s, %d at %v): %v", key, n, now.Sub(budgetT0), err)
	}
	if g.N < 0 || g.N > n {
		t.Fatalf("TakeBudget(%s, %d at %v) granted %d, want 0 to %d", key, n, now.Sub(budgetT0), g.N, n)
	}
	return g
}

func testBudgetGrant(t *testing.T, s store.Budgets) {
	now := budgetT0.Add(30 * time.Millisecond)
	g := mustTake(t, s, "app", testLimit, 4, now)
	if g.N != 4 {
		t.Errorf("first take of 4: granted %d, want 4", g.N)
	}
	if want := budgetT0.Add(100 * time.Millisecond); !g.Until.Equal(want) {
		t.Errorf("Until = %v, want the end of the sub-window %v", g.Until, want)
	}
	g = mustTake(t, s, "app", testLimit, 10, now.Add(150*time.Millisecond))
	if g.N != 6 {
		t.Errorf("take of 10 with 6 left: granted %d, want 6", g.N)
	}
	// The first grant (sub-window 0) stops counting in sub-window 12.
	if want := budgetT0.Add(1200 * time.Millisecond); !g.Next.Equal(want) {
		t.Errorf("Next = %v, want %v (sub-window 0 leaves the span of 12)", g.Next.Sub(budgetT0), want.Sub(budgetT0))
	}
	g = mustTake(t, s, "app", testLimit, 1, now.Add(500*time.Millisecond))
	if g.N != 0 {
		t.Errorf("take from a spent budget: granted %d, want 0", g.N)
	}
	if want := budgetT0.Add(1200 * time.Millisecond); !g.Next.Equal(want) {
		t.Errorf("Next of a spent budget = %v, want %v", g.Next.Sub(budgetT0), want.Sub(budgetT0))
	}
}

func testBudgetSlide(t *testing.T, s store.Budgets) {
	mustTake(t, s, "app", testLimit, 3, budgetT0)                           // sub-window 0
	mustTake(t, s, "app", testLimit, 7, budgetT0.Add(550*time.Millisecond)) // sub-window 5
	for _, ms := range []int{600, 1000, 1100, 1199} {
		if g := mustTake(t, s, "app", testLimit, 1, budgetT0.Add(time.Duration(ms)*time.Millisecond)); g.N != 0 {
			t.Errorf("at %d ms, with the limit granted within the span: granted %d, want 0", ms, g.N)
		}
	}
	// Sub-window 12: sub-window 0 no longer counts, sub-window 5 still does.
	if g := mustTake(t, s, "app", testLimit, 10, budgetT0.Add(1200*time.Millisecond)); g.N != 3 {
		t.Errorf("at 1200 ms: granted %d, want the 3 of sub-window 0", g.N)
	}
	if g := mustTake(t, s, "app", testLimit, 10, budgetT0.Add(1700*time.Millisecond)); g.N != 7 {
		t.Errorf("at 1700 ms: granted %d, want the 7 of sub-window 5", g.N)
	}
}

// testBudgetStrict spends the grants of every other sub-window as late as the span tolerates
// (almost one sub-window after the grant's sub-window ended: a late request or a clock behind)
// and the others at once, the worst case at the boundaries, and checks every window of the
// limit's length.
func testBudgetStrict(t *testing.T, s store.Budgets) {
	var spent []time.Time
	d := testLimit.Window / time.Duration(testLimit.Slots)
	step := 7 * time.Millisecond // not a divisor of the sub-window: takes land everywhere in it
	greedy, bursts := 0, 0
	var last time.Time
	for now := budgetT0; now.Before(budgetT0.Add(6 * time.Second)); now = now.Add(step) {
		g := mustTake(t, s, "greedy", testLimit, 3, now)
		if g.N == 0 {
			continue
		}
		if !g.Until.Equal(last) {
			bursts++
			last = g.Until
		}
		greedy += g.N
		at := now
		if bursts%2 == 1 {
			at = g.Until.Add(d - time.Nanosecond)
		}
		for range g.N {
			spent = append(spent, at)
		}
	}
	checkWindows(t, spent, testLimit)
	// Steady state is Limit·Slots/(Slots+2) per window: 6 windows give at least 50 (minus one
	// span's worth of rounding), never more than the 60 of a plain limit.
	if greedy < 6*testLimit.Limit*testLimit.Slots/(testLimit.Slots+2)-testLimit.Limit || greedy > 6*testLimit.Limit {
		t.Errorf("a greedy taker got %d units in 6 windows of %d, want about %d", greedy, testLimit.Limit, 6*testLimit.Limit*testLimit.Slots/(testLimit.Slots+2))
	}
}

// checkWindows fails if more than l.Limit of the instants fall into one window of length
// l.Window. Windows starting at each instant are enough: a window holding the most instants
// can be moved forward until it starts at one.
func checkWindows(t testing.TB, spent []time.Time, l store.BudgetLimit) {
	t.Helper()
	for i, a := range spent {
		n := 0
		for _, b := range spent {
			if !b.Before(a) && b.Sub(a) < l.Window {
				n++
			}
		}
		if n > l.Limit {
			t.Fatalf("%d units spent in the window starting at %v (unit %d), want at most %d", n, a.Sub(budgetT0), i, l.Limit)
		}
	}
}

func testBudgetKeys(t *testing.T, s store.Budgets) {
	if g := mustTake(t, s, "withings/app", testLimit, 10, budgetT0); g.N != 10 {
		t.Fatalf("granted %d, want 10", g.N)
	}
	if g := mustTake(t, s, "fitbit/user/a", testLimit, 10, budgetT0); g.N != 10 {
		t.Errorf("another key after the first was spent: granted %d, want 10", g.N)
	}
	if g := mustTake(t, s, "withings/app", testLimit, 1, budgetT0); g.N != 0 {
		t.Errorf("the spent key: granted %d, want 0", g.N)
	}
}

func testBudgetOtherSlots(t *testing.T, s store.Budgets) {
	if g := mustTake(t, s, "app", testLimit, 10, budgetT0.Add(50*time.Millisecond)); g.N != 10 {
		t.Fatalf("granted %d, want 10", g.N)
	}
	other := store.BudgetLimit{Limit: 10, Window: time.Second, Slots: 4}
	for _, ms := range []int{50, 500, 1000} {
		if g := mustTake(t, s, "app", other, 1, budgetT0.Add(time.Duration(ms)*time.Millisecond)); g.N != 0 {
			t.Errorf("at %d ms with 4 sub-windows after 10 granted with 10: granted %d, want 0", ms, g.N)
		}
	}
}

func testBudgetInvalid(t *testing.T, s store.Budgets) {
	for _, tc := range []struct {
		name string
		l    store.BudgetLimit
		n    int
	}{
		{"zero limit", store.BudgetLimit{Window: time.Second}, 1},
		{"zero window", store.BudgetLimit{Limit: 5}, 1},
		{"sub-windows too short", store.BudgetLimit{Limit: 5, Window: 10 * time.Millisecond, Slots: 20}, 1},
		{"too many sub-windows", store.BudgetLimit{Limit: 5, Window: time.Hour, Slots: 5000}, 1},
		{"zero units", testLimit, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := s.TakeBudget(t.Context(), "app", tc.l, tc.n, budgetT0); !errors.Is(err, store.ErrInvalidBudget) {
				t.Errorf("TakeBudget(%+v, %d): err = %v, want ErrInvalidBudget", tc.l, tc.n, err)
			}
		})
	}
	if g := mustTake(t, s, "app", testLimit, 10, budgetT0); g.N != 10 {
		t.Errorf("after invalid takes: granted %d, want 10 (nothing taken)", g.N)
	}
}

func testBudgetCancel(t *testing.T, s store.Budgets) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := s.TakeBudget(ctx, "app", testLimit, 5, budgetT0); !errors.Is(err, context.Canceled) {
		t.Errorf("TakeBudget with a cancelled context: err = %v, want one matching context.Canceled", err)
	}
	if g := mustTake(t, s, "app", testLimit, 10, budgetT0); g.N != 10 {
		t.Errorf("after a cancelled take: granted %d, want 10", g.N)
	}
}

// raceBudget has 4 goroutines per handle take n units at a time of a budget of 50 until it
// is spent, at one instant and again after the span.
func raceBudget(t *testing.T, a, b store.Budgets, n int) {
	l := store.BudgetLimit{Limit: 50, Window: time.Second, Slots: 10}
	for round, now := range []time.Time{budgetT0.Add(10 * time.Millisecond), budgetT0.Add(1210 * time.Millisecond)} {
		var total atomic.Int64
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for i := range 8 {
			s := a
			if i%2 == 1 {
				s = b
			}
			wg.Go(func() {
				for {
					g, err := s.TakeBudget(t.Context(), "shared", l, n, now)
					if err != nil {
						errs <- fmt.Errorf("goroutine %d: %w", i, err)
						return
					}
					if g.N == 0 {
						return
					}
					total.Add(int64(g.N))
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("round %d: TakeBudget: %v", round, err)
		}
		if got := total.Load(); got != int64(l.Limit) {
			t.Errorf("round %d: both handles together were granted %d, want exactly the limit %d", round, got, l.Limit)
		}
	}
}
