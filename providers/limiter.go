package providers

import (
	"context"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
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

// acquire waits until every bucket (nil entries skipped) allows one request. If the wait would
// outlast ctx's deadline it returns a throttled *UpstreamError at once, with the wait as
// RetryAfter, so that the caller can answer "try later" instead of timing out.
func acquire(ctx context.Context, provider string, recovery time.Duration, buckets ...*bucket) error {
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
