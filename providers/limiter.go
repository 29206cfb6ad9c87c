package providers

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/openhealthexchange/ohx/store"
)

// bucket is a token bucket that the vendor's throttling answers pause and slow down: a throttled
// answer pauses the bucket until its Retry-After has passed, halves its rate (down to an eighth
// of the configured one) and drops its burst to 1; every recovery period without another
// throttled answer doubles the rate again until the configured rate and burst are back.
type bucket struct {
	lim   *rate.Limiter
	base  rate.Limit
	burst int

	mu          sync.Mutex
	pausedUntil time.Time
	slowedAt    time.Time // last throttled answer, zero when running at the base rate
	lastUsed    time.Time
}

func newBucket(r rate.Limit, burst int, now time.Time) *bucket {
	if r == 0 {
		r = rate.Inf
	}
	if burst < 1 {
		burst = 1
	}
	return &bucket{lim: rate.NewLimiter(r, burst), base: r, burst: burst, lastUsed: now}
}

// pause returns the end of the current pause (zero if none) and applies the gradual recovery.
func (b *bucket) pause(now time.Time, recovery time.Duration) time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.lastUsed = now
	if !b.slowedAt.IsZero() && now.Sub(b.slowedAt) >= recovery {
		l := b.lim.Limit() * 2
		if l >= b.base {
			b.lim.SetLimitAt(now, b.base)
			b.lim.SetBurstAt(now, b.burst)
			b.slowedAt = time.Time{}
		} else {
			b.lim.SetLimitAt(now, l)
			b.slowedAt = now
		}
	}
	if now.Before(b.pausedUntil) {
		return b.pausedUntil
	}
	return time.Time{}
}

// throttled records a throttled answer: pause for d and slow down.
func (b *bucket) throttled(now time.Time, d time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if until := now.Add(d); until.After(b.pausedUntil) {
		b.pausedUntil = until
	}
	b.slowedAt = now
	if b.base == rate.Inf {
		return // nothing to slow down: the pause is all we can do
	}
	l := max(b.lim.Limit()/2, b.base/8)
	// Take effect after the pause, with no burst saved up during it.
	b.lim.SetLimitAt(now, l)
	b.lim.SetBurstAt(now, 1)
}

func (b *bucket) idle(now time.Time, after time.Duration) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return now.Sub(b.lastUsed) > after && !now.Before(b.pausedUntil) && b.slowedAt.IsZero()
}

// acquire waits until every bucket (nil entries skipped) allows one request, then takes one
// unit of every shared budget (nil entries skipped, in order). If the wait would outlast ctx's
// deadline (for a shared budget: or maxWait) it returns a throttled *UpstreamError at once,
// with the wait as RetryAfter, so that the caller can answer "try later" instead of timing out.
func acquire(ctx context.Context, provider string, recovery, maxWait time.Duration, budgets []*shared, buckets ...*bucket) error {
	for {
		now := time.Now()
		var until time.Time
		for _, b := range buckets {
			if b == nil {
				continue
			}
			if u := b.pause(now, recovery); u.After(until) {
				until = u
			}
		}
		if !until.IsZero() {
			if err := sleepWithin(ctx, provider, until.Sub(now)); err != nil {
				return err
			}
			continue
		}
		// Reserve from every bucket at once and wait for the latest, so that no bucket's token
		// is spent long before the request is sent.
		var rs []*rate.Reservation
		var d time.Duration
		for _, b := range buckets {
			if b == nil {
				continue
			}
			r := b.lim.ReserveN(now, 1)
			if !r.OK() {
				cancelAll(rs, now)
				return &UpstreamError{Provider: provider, Kind: KindThrottled, Err: errLocalLimit}
			}
			rs = append(rs, r)
			d = max(d, r.DelayFrom(now))
		}
		if err := sleepWithin(ctx, provider, d); err != nil {
			cancelAll(rs, now)
			return err
		}
		// The local buckets pace this process and carry the vendor's throttling answers; the
		// shared budgets keep every instance together within the vendor's limit.
		for _, s := range budgets {
			if s == nil {
				continue
			}
			if err := s.take(ctx, provider, maxWait); err != nil {
				return err
			}
		}
		// A throttled answer may have paused a bucket while we waited: then wait for the pause
		// too (the token is spent; erring on the slow side is what the vendor asked for).
		paused := false
		now = time.Now()
		for _, b := range buckets {
			if b != nil && !b.pause(now, recovery).IsZero() {
				paused = true
			}
		}
		if !paused {
			return nil
		}
	}
}

func cancelAll(rs []*rate.Reservation, now time.Time) {
	for _, r := range rs {
		r.CancelAt(now)
	}
}

// sleepWithin sleeps d, unless ctx ends first (ctx.Err()) or its deadline is sooner than d
// (a throttled error at once).
func sleepWithin(ctx context.Context, provider string, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < d {
		return &UpstreamError{Provider: provider, Kind: KindThrottled, RetryAfter: d, Err: errLocalLimit}
	}
	return sleep(ctx, d)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// StrictLimit is the token-bucket rate that never exceeds n requests in any window of length
// per, burst included: a bucket can spend its burst and then refill at rate r, so at most
// burst + r·per requests fit in one window. Withings (120 requests per minute per application,
// https://developer.withings.com/developer-guide/v3/data-api/keep-user-data-up-to-date/) with burst 10: StrictLimit(120, time.Minute, 10) = 110/min.
func StrictLimit(n int, per time.Duration, burst int) rate.Limit {
	if n <= burst || per <= 0 {
		return rate.Limit(math.SmallestNonzeroFloat64)
	}
	return rate.Limit(float64(n-burst) / per.Seconds())
}

var (
	errSharedLimit       = errors.New("shared rate limit spent")
	errBudgetUnavailable = errors.New("shared rate limit unavailable")
)

// budgetRetry is the RetryAfter of a call refused because the store holding the shared budgets
// failed.
const budgetRetry = 5 * time.Second

// shared is this process's side of a budget shared through the store by every instance
// (store.Budgets): units leased from the store a few at a time and spent locally until their
// sub-window ends. The store, not this process, is what keeps all instances together within
// the vendor's limit; a store that cannot be asked means no request (fail closed).
type shared struct {
	st    store.Budgets
	key   string
	lim   store.BudgetLimit
	chunk int
	sem   chan struct{} // one lease at a time per budget in this process

	mu       sync.Mutex
	left     int       // leased units not yet spent
	until    time.Time // end of the leased units' sub-window
	next     time.Time // the budget is spent until then
	lastUsed time.Time
}

// newShared returns the local side of the budget key under lim. Each lease asks for an eighth
// of what one sub-window can carry on average (at least 1): a unit leased but not spent before
// its sub-window ends counts against the budget all the same, so large leases on several
// instances would waste it, and small ones cost a store round trip per few requests.
func newShared(st store.Budgets, key string, lim store.BudgetLimit, now time.Time) *shared {
	return &shared{st: st, key: key, lim: lim, chunk: max(1, lim.Limit/(8*lim.Span())), sem: make(chan struct{}, 1), lastUsed: now}
}

// spend takes one leased unit at now. Otherwise wait is how long the budget stays spent (0:
// lease more now).
func (s *shared) spend(now time.Time) (ok bool, wait time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastUsed = now
	if s.left > 0 && now.Before(s.until) {
		s.left--
		return true, 0
	}
	if now.Before(s.next) {
		return false, s.next.Sub(now)
	}
	return false, 0
}

// take spends one unit of the budget, leasing more from the store when none is left. When the
// budget is spent it waits for the next grant, unless that is later than maxWait or than ctx's
// deadline allows: then it returns a throttled *UpstreamError with the wait as RetryAfter at
// once, so that the job is rescheduled rather than a worker held. A store failure is a throttled
// error too: never a request outside the budget.
func (s *shared) take(ctx context.Context, provider string, maxWait time.Duration) error {
	for {
		ok, wait := s.spend(time.Now())
		if ok {
			return nil
		}
		if wait > 0 {
			if wait > maxWait {
				return &UpstreamError{Provider: provider, Kind: KindThrottled, RetryAfter: wait, Err: errSharedLimit}
			}
			if err := sleepWithin(ctx, provider, wait); err != nil {
				return err
			}
			continue
		}
		if err := s.lease(ctx, provider); err != nil {
			return err
		}
	}
}

// lease asks the store for more units, unless another goroutine of this process got some
// while this one waited for its turn.
func (s *shared) lease(ctx context.Context, provider string) error {
	select {
	case s.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-s.sem }()
	now := time.Now()
	s.mu.Lock()
	fresh := (s.left > 0 && now.Before(s.until)) || now.Before(s.next)
	s.mu.Unlock()
	if fresh {
		return nil
	}
	g, err := s.st.TakeBudget(ctx, s.key, s.lim, s.chunk, now)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		// The job retries later; the vendor sees nothing.
		return &UpstreamError{Provider: provider, Kind: KindThrottled, RetryAfter: budgetRetry, Err: fmt.Errorf("%w: %w", errBudgetUnavailable, err)}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.left, s.until, s.next = g.N, g.Until, time.Time{}
	if g.N == 0 {
		s.next = g.Next
	}
	return nil
}

func (s *shared) idle(now time.Time, after time.Duration) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return now.Sub(s.lastUsed) > after && !now.Before(s.until) && !now.Before(s.next)
}
