package providers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/patrickmn/go-cache"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"
	"golang.org/x/time/rate"

	"github.com/openhealthexchange/ohx/store"
)

// Quota is a vendor's limit as the vendor counts it: at most Limit requests in any window of
// length Window (Slots: the sub-windows the shared budget is counted in, default 20).
type Quota = store.BudgetLimit

// ClientConfig configures the resilient client of one vendor. Zero values take the defaults
// given per field.
type ClientConfig struct {
	// Provider is the vendor's name ("withings"), the metrics label and UpstreamError.Provider.
	Provider string

	// AppRate and AppBurst limit requests of the whole application (all users together).
	// Zero AppRate means no application limit. Withings allows 120 requests per minute per
	// application (https://developer.withings.com/developer-guide/v3/data-api/keep-user-data-up-to-date/): StrictLimit(120, time.Minute, 10) with burst 10.
	// The bucket lives in this process: it paces it and carries the vendor's throttling
	// answers. AppQuota with Budgets keeps several instances together within the limit.
	AppRate  rate.Limit
	AppBurst int
	// UserRate and UserBurst limit requests per vendor user (Call.User); zero UserRate means
	// no per-user limit (Withings); Fitbit allows 150 per user per hour.
	UserRate  rate.Limit
	UserBurst int
	// AppQuota and UserQuota are the vendor's limits as the vendor counts them (Withings: 120
	// per minute for the application; Fitbit: 150 per hour per user). With Budgets set, every
	// request first takes a unit of the application's and the user's budget, shared through the
	// store by every instance using it, so that all instances together never exceed the quota
	// in any window of its length (store.BudgetLimit explains how). A zero Limit means no
	// shared budget of that scope. The in-process buckets (AppRate, UserRate) keep working
	// beside them: pacing, Retry-After pauses, slowing down and recovery.
	AppQuota, UserQuota Quota
	// Budgets holds the shared budgets (the store); nil keeps only the in-process buckets. A
	// budget the store cannot grant because it fails refuses the request with a throttled
	// error (fail closed): the job retries, the vendor is not called.
	Budgets store.Budgets
	// UserThrottle says the vendor's throttling is per user (Fitbit, Google): a throttled answer
	// then pauses and slows only that user's bucket. False (Withings 601, an application-wide
	// limit) pauses and slows the application bucket.
	UserThrottle bool
	// ThrottleRecovery is how long the rate stays halved after a throttled answer before it
	// doubles again, up to the configured rate (default 1 minute).
	ThrottleRecovery time.Duration

	// Timeout bounds every attempt: connect, request, and reading the body (default 20s).
	Timeout time.Duration
	// MaxRetries is how often a transient or throttled failure is retried (default 3;
	// negative: never). Auth and permanent failures are never retried.
	MaxRetries int
	// BaseBackoff is the first retry delay, doubled for every further retry, with jitter
	// (default 500ms); MaxBackoff caps it (default 30s). A longer Retry-After wins.
	BaseBackoff, MaxBackoff time.Duration
	// MaxRetryWait is the longest a call waits before a retry; a vendor asking for more (via
	// Retry-After) gets the throttled error returned at once, with RetryAfter set (default 1m).
	MaxRetryWait time.Duration

	// CacheTTL is how long successful answers of Cacheable calls are served from memory
	// (default 30s; negative disables the cache — identical concurrent calls still share one
	// vendor request).
	CacheTTL time.Duration
	// MaxBody bounds a response body (default 32 MiB); a larger one is a permanent error.
	MaxBody int64

	// BreakerFailures is the number of consecutive transient failures (timeouts, network
	// errors, 5xx) that opens the vendor's breaker (default 5). Auth, permanent and throttled
	// answers never count as failures: they prove the vendor is up.
	BreakerFailures int
	// BreakerCooldown is how long the breaker stays open before one trial call is let through
	// (default 30s).
	BreakerCooldown time.Duration
}

func (c *ClientConfig) defaults() error {
	if c.Provider == "" {
		return errors.New("providers: client config: Provider is required")
	}
	if c.AppRate < 0 || c.UserRate < 0 {
		return errors.New("providers: client config: negative rate")
	}
	for _, q := range []struct {
		name string
		l    store.BudgetLimit
	}{{"AppQuota", c.AppQuota}, {"UserQuota", c.UserQuota}} {
		if q.l != (store.BudgetLimit{}) {
			if err := q.l.Validate(); err != nil {
				return fmt.Errorf("providers: client config: %s: %w", q.name, err)
			}
		}
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.Timeout, 20*time.Second)
	def(&c.BaseBackoff, 500*time.Millisecond)
	def(&c.MaxBackoff, 30*time.Second)
	def(&c.MaxRetryWait, time.Minute)
	def(&c.CacheTTL, 30*time.Second)
	def(&c.BreakerCooldown, 30*time.Second)
	def(&c.ThrottleRecovery, time.Minute)
	switch {
	case c.MaxRetries == 0:
		c.MaxRetries = 3
	case c.MaxRetries < 0:
		c.MaxRetries = 0
	}
	if c.MaxBody <= 0 {
		c.MaxBody = 32 << 20
	}
	if c.BreakerFailures <= 0 {
		c.BreakerFailures = 5
	}
	return nil
}

// Client is the resilient HTTP client of one vendor; it implements Caller. It is safe for
// concurrent use.
type Client struct {
	cfg     ClientConfig
	hc      *http.Client
	log     *slog.Logger
	m       *metrics
	breaker *gobreaker.CircuitBreaker[[]byte]
	cache   *cache.Cache // nil when disabled
	flight  flights

	app   *bucket
	mu    sync.Mutex
	users map[string]*bucket
	ops   int

	// appShared is the application's shared budget (nil without one); sharedUsers holds the
	// users' (by vendor user id), dropped when idle like users.
	appShared   *shared
	sharedUsers map[string]*shared
	sharedOps   int
}

var _ Caller = (*Client)(nil)

// idleBucket is how long an unused per-user bucket is kept.
const idleBucket = 10 * time.Minute

// NewClient returns the resilient client for cfg.Provider. hc nil means a plain http.Client
// (the per-attempt timeout comes from cfg); reg nil means metrics are kept but not registered;
// log nil discards. It fails on an invalid config or a metrics registration conflict.
func NewClient(cfg ClientConfig, hc *http.Client, reg prometheus.Registerer, log *slog.Logger) (*Client, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	if hc == nil {
		hc = &http.Client{}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("providers: %s client metrics: %w", cfg.Provider, err)
	}
	c := &Client{
		cfg: cfg, hc: hc, m: m, users: map[string]*bucket{}, sharedUsers: map[string]*shared{},
		log: log.With("provider", cfg.Provider),
		app: newBucket(cfg.AppRate, cfg.AppBurst, time.Now()),
	}
	if cfg.Budgets != nil && cfg.AppQuota.Limit > 0 {
		c.appShared = newShared(cfg.Budgets, cfg.Provider+"/app", cfg.AppQuota, time.Now())
	}
	if cfg.CacheTTL > 0 {
		c.cache = cache.New(cfg.CacheTTL, 2*cfg.CacheTTL)
	}
	m.breaker.WithLabelValues(cfg.Provider).Set(0)
	c.breaker = gobreaker.NewCircuitBreaker[[]byte](gobreaker.Settings{
		Name:        cfg.Provider,
		MaxRequests: 1, // half-open: one trial call
		Timeout:     cfg.BreakerCooldown,
		ReadyToTrip: func(n gobreaker.Counts) bool {
			return n.ConsecutiveFailures >= uint32(cfg.BreakerFailures)
		},
		// Only vendor-wide failures count. A user's revoked consent, a bad request or a
		// throttled answer is the vendor working as designed.
		IsSuccessful: func(err error) bool { return err == nil || KindOf(err) != KindTransient },
		// The caller giving up says nothing about the vendor.
		IsExcluded: func(err error) bool {
			return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
		},
		OnStateChange: func(name string, from, to gobreaker.State) {
			// Called under the breaker's lock: no breaker calls here.
			m.breaker.WithLabelValues(name).Set(float64(to))
			c.log.Warn("vendor circuit breaker", "from", from.String(), "to", to.String())
		},
	})
	return c, nil
}

// Call implements Caller. Cacheable calls are answered from the cache when an identical call
// (same user, endpoint and parameters) succeeded within CacheTTL, and identical concurrent calls
// share one vendor request. Errors are *UpstreamError (kind transient wrapping ErrBreakerOpen
// when the breaker is open; kind throttled when the vendor's or our own limit does not allow
// the call before ctx's deadline) or ctx.Err().
func (c *Client) Call(ctx context.Context, call Call) ([]byte, error) {
	if call.NewRequest == nil {
		return nil, fmt.Errorf("providers: %s %s: call without NewRequest", c.cfg.Provider, call.Endpoint)
	}
	if !call.Cacheable {
		b, err := c.do(ctx, call)
		c.count(call.Endpoint, err, false)
		return b, err
	}

	key := call.User + "\x00" + call.Endpoint + "\x00" + call.Params.Encode() // Encode sorts by name
	if c.cache != nil {
		if b, ok := c.cache.Get(key); ok {
			c.m.cacheHits.WithLabelValues(c.cfg.Provider, call.Endpoint).Inc()
			c.count(call.Endpoint, nil, true)
			return slices.Clone(b.([]byte)), nil
		}
	}
	// The shared request runs detached from the callers' contexts: one impatient caller must
	// not fail the others. It is bounded by the longest a call can take, and cancelled when
	// every caller has gone.
	limit := time.Duration(c.cfg.MaxRetries+1)*c.cfg.Timeout + time.Duration(c.cfg.MaxRetries)*c.cfg.MaxRetryWait
	b, shared, err := c.flight.do(ctx, key, limit, func(fctx context.Context) ([]byte, error) {
		c.m.cacheMiss.WithLabelValues(c.cfg.Provider, call.Endpoint).Inc()
		b, err := c.do(fctx, call)
		if err == nil && c.cache != nil {
			c.cache.SetDefault(key, b)
		}
		return b, err
	})
	if shared {
		c.m.cacheHits.WithLabelValues(c.cfg.Provider, call.Endpoint).Inc()
	}
	c.count(call.Endpoint, err, shared)
	if err != nil {
		return nil, err
	}
	return slices.Clone(b), nil
}

// count records a finished logical call.
func (c *Client) count(endpoint string, err error, cached bool) {
	switch {
	case err == nil && cached:
		c.m.calls.WithLabelValues(c.cfg.Provider, endpoint, "cached").Inc()
	case err == nil:
		c.m.calls.WithLabelValues(c.cfg.Provider, endpoint, "ok").Inc()
	default:
		c.m.calls.WithLabelValues(c.cfg.Provider, endpoint, "error").Inc()
		c.m.errors.WithLabelValues(c.cfg.Provider, endpoint, errorLabel(err)).Inc()
	}
}

func errorLabel(err error) string {
	switch {
	case errors.Is(err, ErrBreakerOpen):
		return "breaker_open"
	case KindOf(err) != "":
		return string(KindOf(err))
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return "canceled"
	default:
		return "other"
	}
}

// do runs the attempts of one call.
func (c *Client) do(ctx context.Context, call Call) ([]byte, error) {
	for attempt := 0; ; attempt++ {
		req, err := call.NewRequest(ctx)
		if err != nil {
			// Never retried here: a token refresh made by NewRequest has its own retries.
			return nil, c.requestError(ctx, err)
		}
		body, err := c.attempt(ctx, req, call)
		if err == nil {
			return body, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		var ue *UpstreamError
		if !errors.As(err, &ue) || errors.Is(err, ErrBreakerOpen) || errors.Is(err, errLocalLimit) ||
			errors.Is(err, errSharedLimit) || errors.Is(err, errBudgetUnavailable) {
			return nil, err
		}
		delay := c.backoff(attempt)
		if ue.Kind == KindThrottled {
			if ue.RetryAfter == 0 {
				ue.RetryAfter = delay // the vendor said not when (Withings 601): a hint for our callers
			}
			c.throttled(call.User, ue.RetryAfter)
		}
		if ue.Kind != KindTransient && ue.Kind != KindThrottled {
			return nil, err // auth and permanent failures are never retried
		}
		if attempt >= c.cfg.MaxRetries {
			return nil, err
		}
		if ue.RetryAfter > delay {
			delay = ue.RetryAfter + jitter(c.cfg.BaseBackoff/2)
		} else if ue.Kind == KindThrottled {
			delay = ue.RetryAfter // our backoff: the bucket is paused exactly that long
		}
		if delay > c.cfg.MaxRetryWait {
			return nil, err
		}
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < delay {
			return nil, err
		}
		c.log.DebugContext(ctx, "vendor call retry", "endpoint", call.Endpoint, "attempt", attempt+1,
			"kind", string(ue.Kind), "status", ue.Status, "delay", delay)
		c.m.retries.WithLabelValues(c.cfg.Provider, call.Endpoint).Inc()
		if err := sleep(ctx, delay); err != nil {
			return nil, err
		}
	}
}

// backoff is the delay before retry attempt+1: exponential, capped, with jitter in [d/2, d).
func (c *Client) backoff(attempt int) time.Duration {
	d := c.cfg.BaseBackoff << min(attempt, 20)
	if d <= 0 || d > c.cfg.MaxBackoff {
		d = c.cfg.MaxBackoff
	}
	return d/2 + jitter(d/2)
}

func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return rand.N(d)
}

// throttled pauses and slows the bucket the vendor's limit applies to.
func (c *Client) throttled(user string, d time.Duration) {
	scope, b := "app", c.app
	if c.cfg.UserThrottle && user != "" {
		scope, b = "user", c.userBucket(user)
	}
	b.throttled(time.Now(), d)
	c.m.throttled.WithLabelValues(c.cfg.Provider, scope).Inc()
	c.log.Info("vendor throttled", "scope", scope, "pause", d)
}

// userBucket returns the user's bucket, creating it; idle buckets are dropped now and then.
func (c *Client) userBucket(user string) *bucket {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	if c.ops++; c.ops%1024 == 0 {
		for u, b := range c.users {
			if b.idle(now, idleBucket) {
				delete(c.users, u)
			}
		}
	}
	b, ok := c.users[user]
	if !ok {
		b = newBucket(c.cfg.UserRate, c.cfg.UserBurst, now)
		c.users[user] = b
	}
	return b
}

// userShared returns the user's shared budget (nil without one), creating it; idle ones are
// dropped now and then. The store key carries a hash of the vendor user id, not the id.
func (c *Client) userShared(user string) *shared {
	if c.cfg.Budgets == nil || c.cfg.UserQuota.Limit <= 0 || user == "" {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	if c.sharedOps++; c.sharedOps%1024 == 0 {
		for u, s := range c.sharedUsers {
			if s.idle(now, idleBucket) {
				delete(c.sharedUsers, u)
			}
		}
	}
	s, ok := c.sharedUsers[user]
	if !ok {
		sum := sha256.Sum256([]byte(user))
		s = newShared(c.cfg.Budgets, c.cfg.Provider+"/user/"+hex.EncodeToString(sum[:16]), c.cfg.UserQuota, now)
		c.sharedUsers[user] = s
	}
	return s
}

// attempt sends the request once: wait for the rate limits, then send it through the breaker
// with the per-attempt timeout.
func (c *Client) attempt(ctx context.Context, req *http.Request, call Call) ([]byte, error) {
	var ub *bucket
	if call.User != "" && (c.cfg.UserRate > 0 || c.cfg.UserThrottle) {
		ub = c.userBucket(call.User)
	}
	// The user's budget first: when it is spent the application's unit is not taken in vain.
	budgets := []*shared{c.userShared(call.User), c.appShared}
	if err := acquire(ctx, c.cfg.Provider, c.cfg.ThrottleRecovery, c.cfg.MaxRetryWait, budgets, c.app, ub); err != nil {
		return nil, err
	}
	body, err := c.breaker.Execute(func() ([]byte, error) { return c.send(ctx, req, call) })
	if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
		c.m.requests.WithLabelValues(c.cfg.Provider, call.Endpoint, "breaker_open").Inc()
		return nil, &UpstreamError{Provider: c.cfg.Provider, Kind: KindTransient, RetryAfter: c.cfg.BreakerCooldown, Err: ErrBreakerOpen}
	}
	return body, err
}

// requestError turns a NewRequest failure into the Call error contract.
func (c *Client) requestError(ctx context.Context, err error) error {
	var ue *UpstreamError
	switch {
	case errors.As(err, &ue):
		return err // e.g. a failed token refresh
	case ctx.Err() != nil:
		return ctx.Err()
	case errors.Is(err, ErrConsentRevoked):
		return &UpstreamError{Provider: c.cfg.Provider, Kind: KindAuth, Err: err}
	default:
		return &UpstreamError{Provider: c.cfg.Provider, Kind: KindPermanent, Err: fmt.Errorf("build request: %w", err)}
	}
}

func (c *Client) send(ctx context.Context, req *http.Request, call Call) ([]byte, error) {
	actx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	start := time.Now()
	body, err := c.roundTrip(ctx, actx, req, call)
	c.m.duration.WithLabelValues(c.cfg.Provider, call.Endpoint).Observe(time.Since(start).Seconds())
	outcome := "ok"
	if err != nil {
		outcome = errorLabel(err)
	}
	c.m.requests.WithLabelValues(c.cfg.Provider, call.Endpoint, outcome).Inc()
	c.m.responses.WithLabelValues(c.cfg.Provider, statusLabel(err)).Inc()
	return body, err
}

// roundTrip sends req under actx, the attempt's context derived from the call's ctx.
func (c *Client) roundTrip(ctx, actx context.Context, req *http.Request, call Call) ([]byte, error) {
	fail := func(kind ErrorKind, status int, err error) error {
		return &UpstreamError{Provider: c.cfg.Provider, Kind: kind, Status: status, Err: err}
	}
	// transportError hides the URL (it may carry secrets in its query) of *url.Error.
	transportError := func(err error) error {
		if ctx.Err() != nil {
			return ctx.Err() // the caller gave up
		}
		if actx.Err() != nil {
			return fail(KindTransient, 0, fmt.Errorf("%s %s: %w", req.Method, call.Endpoint, errAttemptTimeout))
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fail(KindTransient, 0, fmt.Errorf("%s %s: %w", req.Method, call.Endpoint, err))
	}
	res, err := c.hc.Do(req.WithContext(actx))
	if err != nil {
		return nil, transportError(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, c.cfg.MaxBody+1))
	if err != nil {
		return nil, transportError(err)
	}
	if int64(len(body)) > c.cfg.MaxBody {
		return nil, fail(KindPermanent, res.StatusCode, errTooLarge)
	}
	classify := call.Classify
	if classify == nil {
		classify = func(status int, h http.Header, _ []byte) error { return ClassifyHTTP(c.cfg.Provider, status, h) }
	}
	if err := classify(res.StatusCode, res.Header, body); err != nil {
		var ue *UpstreamError
		if !errors.As(err, &ue) {
			return nil, fail(KindPermanent, res.StatusCode, err)
		}
		if ue.Kind == KindThrottled && ue.RetryAfter == 0 {
			ue.RetryAfter = RetryAfter(res.Header, time.Now())
		}
		return nil, err
	}
	return body, nil
}
