package fitbit

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/openhealthexchange/ohx/providers"
)

// Rate-limit headers Fitbit sends with every answer: the hourly quota, the calls left in the
// current window and the seconds until it resets
// (https://dev.fitbit.com/build/reference/web-api/developer-guide/application-design/#Rate-Limits).
const (
	headerRemaining = "Fitbit-Rate-Limit-Remaining"
	headerReset     = "Fitbit-Rate-Limit-Reset"
)

// errQuotaSpent is the cause of a call refused locally because the user's hourly quota is spent.
var errQuotaSpent = errors.New("fitbit hourly rate limit of the user is spent")

// rateLimits remembers, per user, until when Fitbit's quota is spent. It is fed by every answer's
// headers; a caller checks it before sending, so that a spent quota costs no request and blocks no
// worker (the error carries RetryAfter: the job is rescheduled).
//
// The state lives in this process only. Fitbit counts the quota per user and application, over
// all of the application's clients: with several ohx instances, each learns of a spent quota
// only from its own answers, so another instance may still send requests that Fitbit refuses with
// 429 (which that instance then records in turn), and the per-user budget of
// providers.ClientConfig is likewise per instance. Nothing is lost (429 is a throttled error and
// the job is rescheduled), but the instances together may spend more requests than one would.
type rateLimits struct {
	mu    sync.Mutex
	until map[string]time.Time
}

func newRateLimits() *rateLimits { return &rateLimits{until: map[string]time.Time{}} }

// observe records an answer's headers for user at now.
func (r *rateLimits) observe(user string, h http.Header, now time.Time) {
	if user == "" {
		return
	}
	remaining, okR := headerInt(h, headerRemaining)
	reset, okS := headerInt(h, headerReset)
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case okR && remaining <= 0 && okS && reset > 0:
		r.until[user] = now.Add(time.Duration(reset) * time.Second)
	case okR && remaining > 0:
		delete(r.until, user) // a new window began
	}
}

// block pauses user for d (a 429 without rate-limit headers but with Retry-After).
func (r *rateLimits) block(user string, d time.Duration, now time.Time) {
	if user == "" || d <= 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if t := now.Add(d); t.After(r.until[user]) {
		r.until[user] = t
	}
}

// check returns a throttled *providers.UpstreamError while user's quota is spent, else nil.
func (r *rateLimits) check(user string, now time.Time) error {
	if user == "" {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	until, ok := r.until[user]
	if !ok {
		return nil
	}
	if !now.Before(until) {
		delete(r.until, user)
		return nil
	}
	return &providers.UpstreamError{Provider: Name, Kind: providers.KindThrottled, Status: http.StatusTooManyRequests,
		RetryAfter: until.Sub(now), Err: errQuotaSpent}
}

// resetAfter is the Fitbit-Rate-Limit-Reset delay of an answer, 0 when absent.
func resetAfter(h http.Header) time.Duration {
	if s, ok := headerInt(h, headerReset); ok && s > 0 {
		return time.Duration(s) * time.Second
	}
	return 0
}

func headerInt(h http.Header, name string) (int64, bool) {
	v := strings.TrimSpace(h.Get(name))
	if v == "" {
		return 0, false
	}
	n, err := strconv.ParseInt(v, 10, 64)
	return n, err == nil
}
