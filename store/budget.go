package store

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Budgets shares rate-limit budgets among every process using one database, so that any number
// of ohx instances together stay within a vendor's limit (Withings: 120 requests per minute per
// application, https://developer.withings.com/developer-guide/v3/data-api/keep-user-data-up-to-date/;
// Fitbit: 150 per user and hour,
// https://dev.fitbit.com/build/reference/web-api/developer-guide/application-design/#Rate-Limits).
// An instance takes a few units at a time and spends them locally until the grant's sub-window
// ends, so the store is not asked on every request.
type Budgets interface {
	// TakeBudget takes up to n units of the budget named key at the instant now, under limit l,
	// and returns how many it granted (0 to n) with the end of the sub-window they were recorded
	// in: a unit not spent by then is lost. Grants are recorded per sub-window (BudgetLimit) and
	// never exceed l.Limit over l.Span() consecutive sub-windows, which keeps every window of
	// length l.Window within the limit (see BudgetLimit). The read-modify-write is atomic: of
	// concurrent calls for one key, through any number of store handles on one database, the
	// grants together obey the limit. It returns an error if l is invalid or n < 1, and ctx's
	// error (wrapped) if ctx ends first; callers must then treat the budget as spent (fail
	// closed), never as unlimited.
	TakeBudget(ctx context.Context, key string, l BudgetLimit, n int, now time.Time) (BudgetGrant, error)
}

// BudgetLimit is a vendor limit: at most Limit requests in any window of length Window.
//
// A counter per fixed window alone lets twice the limit through around a window boundary (the
// end of one window and the start of the next). The budget is therefore counted in Slots
// sub-windows of length d = Window/Slots, and a grant in sub-window t is allowed only while the
// grants of sub-windows t-Span()+1 … t together stay within Limit, with Span() = ⌈Window/d⌉+2.
// A window of length Window overlaps at most ⌈Window/d⌉+1 consecutive sub-windows; the one
// more sub-window in the span absorbs a clock difference between instances plus request latency
// of up to d. Units are spent within their own sub-window, so every window of length Window sees
// at most Limit requests. The price is that a steadily busy budget runs at Limit·Slots/(Slots+2)
// per Window (110 of 120 per minute with the default 20 sub-windows: what
// providers.StrictLimit(120, time.Minute, 10) allows one process today).
type BudgetLimit struct {
	// Limit is the most requests in any window (at least 1).
	Limit int
	// Window is the vendor's window (at least a millisecond per sub-window).
	Window time.Duration
	// Slots is the number of sub-windows per Window (default 20, at most 1000).
	Slots int
}

// DefaultBudgetSlots is the number of sub-windows of a BudgetLimit with Slots 0.
const DefaultBudgetSlots = 20

// ErrInvalidBudget means TakeBudget was called with an invalid limit or count.
var ErrInvalidBudget = errors.New("invalid budget")

// Validate returns an error wrapping ErrInvalidBudget if l cannot be enforced.
func (l BudgetLimit) Validate() error {
	switch {
	case l.Limit < 1:
		return fmt.Errorf("%w: limit %d, want at least 1", ErrInvalidBudget, l.Limit)
	case l.Slots < 0 || l.Slots > 1000:
		return fmt.Errorf("%w: %d sub-windows, want 1 to 1000", ErrInvalidBudget, l.Slots)
	case l.Window <= 0 || l.slot() < time.Millisecond:
		return fmt.Errorf("%w: window %v with %d sub-windows, want sub-windows of at least 1ms", ErrInvalidBudget, l.Window, l.slots())
	}
	return nil
}

func (l BudgetLimit) slots() int {
	if l.Slots == 0 {
		return DefaultBudgetSlots
	}
	return l.Slots
}

// slot is the length of one sub-window.
func (l BudgetLimit) slot() time.Duration { return l.Window / time.Duration(l.slots()) }

// Span is the number of consecutive sub-windows whose grants together stay within Limit.
func (l BudgetLimit) Span() int {
	d := l.slot()
	return int((l.Window+d-1)/d) + 2
}

// BudgetGrant is what TakeBudget granted.
type BudgetGrant struct {
	// N is the number of units granted (0 to the n asked for).
	N int
	// Until is the end of the sub-window the grant belongs to: spend the units before it.
	Until time.Time
	// Next, when N is less than asked for, is the earliest time more units can be granted (the
	// start of the sub-window in which the oldest grant still counted stops counting).
	Next time.Time
}

// BudgetSlot is the use of one sub-window of a budget as stored: Start and End in Unix
// nanoseconds, Used the units granted in it.
type BudgetSlot struct {
	Start, End int64
	Used       int
}

// TakeBudget is the arithmetic of Budgets.TakeBudget, for implementations: given the stored
// sub-windows of a budget, it grants up to n units at now and returns the grant, the
// sub-windows to store instead (the ones no longer counted dropped, the grant added) and when
// the stored record may be forgotten. Implementations run it inside their atomic
// read-modify-write. Stored sub-windows of another length (an instance configured
// differently) count whole for as long as any part of them lies in the span: never less
// strict than either configuration.
func TakeBudget(slots []BudgetSlot, l BudgetLimit, n int, now time.Time) (g BudgetGrant, kept []BudgetSlot, expires time.Time, err error) {
	if err := l.Validate(); err != nil {
		return BudgetGrant{}, nil, time.Time{}, err
	}
	if n < 1 {
		return BudgetGrant{}, nil, time.Time{}, fmt.Errorf("%w: take %d units, want at least 1", ErrInvalidBudget, n)
	}
	d := int64(l.slot())
	k := int64(l.Span())
	t := floorDiv(now.UnixNano(), d)
	cur := BudgetSlot{Start: t * d, End: (t + 1) * d}
	spanStart := (t - k + 1) * d
	used := 0
	for _, s := range slots {
		if s.End <= spanStart || s.Used <= 0 {
			continue
		}
		used += s.Used
		kept = append(kept, s)
	}
	g.N = min(n, max(l.Limit-used, 0))
	g.Until = time.Unix(0, cur.End).UTC()
	if g.N > 0 {
		merged := false
		for i := range kept {
			if kept[i].Start == cur.Start && kept[i].End == cur.End {
				kept[i].Used += g.N
				merged = true
			}
		}
		if !merged {
			kept = append(kept, BudgetSlot{Start: cur.Start, End: cur.End, Used: g.N})
		}
	}
	// A stored sub-window ending at e stops counting in the sub-window t' with
	// (t'-k+1)·d ≥ e, i.e. t' = ⌈e/d⌉ + k - 1.
	var next, last int64
	for i, s := range kept {
		free := (ceilDiv(s.End, d) + k - 1) * d
		if i == 0 || free < next {
			next = free
		}
		last = max(last, free)
	}
	if g.N < n && len(kept) > 0 {
		g.Next = time.Unix(0, max(next, cur.End)).UTC()
	}
	if len(kept) > 0 {
		expires = time.Unix(0, last).UTC()
	}
	return g, kept, expires, nil
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

func ceilDiv(a, b int64) int64 { return -floorDiv(-a, b) }
