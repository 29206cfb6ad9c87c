package providers_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"golang.org/x/time/rate"

	"github.com/openhealthexchange/ohx/providers"
	"github.com/openhealthexchange/ohx/providers/providertest"
)

// fastConfig is a client config with test-sized delays.
func fastConfig() providers.ClientConfig {
	return providers.ClientConfig{
		Provider:        "fake",
		Timeout:         2 * time.Second,
		BaseBackoff:     10 * time.Millisecond,
		MaxBackoff:      100 * time.Millisecond,
		BreakerCooldown: time.Minute,
	}
}

func newClient(t testing.TB, cfg providers.ClientConfig) (*providers.Client, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	c, err := providers.NewClient(cfg, nil, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c, reg
}

// envelopeClassify classifies a Withings-style {"status": n} envelope answered with HTTP 200.
func envelopeClassify(status int, h http.Header, body []byte) error {
	if status != http.StatusOK {
		return providers.ClassifyHTTP("fake", status, h)
	}
	var env struct {
		Status int `json:"status"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		return &providers.UpstreamError{Provider: "fake", Kind: providers.KindTransient, Status: status, Err: err}
	}
	kind := providers.ErrorKind("")
	switch env.Status {
	case 0:
		return nil
	case 100, 401:
		kind = providers.KindAuth
	case 601:
		kind = providers.KindThrottled
	default:
		kind = providers.KindPermanent
	}
	return &providers.UpstreamError{Provider: "fake", Kind: kind, Status: env.Status, Err: fmt.Errorf("status %d", env.Status)}
}

// formCall posts params (plus action) to path on s.
func formCall(s *providertest.Server, user, path string, params url.Values) providers.Call {
	return providers.Call{
		User:     user,
		Endpoint: strings.TrimPrefix(path, "/"),
		Params:   params,
		NewRequest: func(ctx context.Context) (*http.Request, error) {
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.URL()+path, strings.NewReader(params.Encode()))
			if err != nil {
				return nil, err
			}
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			return req, nil
		},
	}
}

func withClassify(c providers.Call, f func(int, http.Header, []byte) error) providers.Call {
	c.Classify = f
	return c
}

func wantKind(t testing.TB, err error, want providers.ErrorKind) *providers.UpstreamError {
	t.Helper()
	var ue *providers.UpstreamError
	if !errors.As(err, &ue) {
		t.Fatalf("got error %v, want an *UpstreamError of kind %s", err, want)
	}
	if ue.Kind != want {
		t.Fatalf("got kind %s (%v), want %s", ue.Kind, err, want)
	}
	return ue
}

// metricValue reads one counter or gauge from reg; labels must all match.
func metricValue(t testing.TB, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, lp := range m.GetLabel() {
				got[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if got[k] != v {
					continue next
				}
			}
			return value(m)
		}
	}
	return 0
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	}
	return 0
}

func TestLimiterPacesApp(t *testing.T) {
	s := providertest.NewServer(t, map[string]providertest.Route{"POST /measure": {Body: "{}"}})
	cfg := fastConfig()
	cfg.AppRate, cfg.AppBurst = 20, 1 // one request per 50 ms
	c, _ := newClient(t, cfg)

	var wg sync.WaitGroup
	for i := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := c.Call(t.Context(), formCall(s, fmt.Sprint("user", i), "/measure", nil)); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	assertSpacing(t, s.Requests(), 6, 50*time.Millisecond)
}

// assertSpacing checks that n requests arrived no faster than one per interval (with slack for
// scheduling): from the second request on, they span at least (n-2)·interval. The first is left
// out because its arrival also waits for the connection to be dialled, which on a loaded machine
// can take longer than an interval and shrink the span measured at the server without any
// request having been sent early.
func assertSpacing(t *testing.T, reqs []providertest.Recorded, n int, interval time.Duration) {
	t.Helper()
	if len(reqs) != n {
		t.Fatalf("got %d requests, want %d", len(reqs), n)
	}
	span := reqs[n-1].At.Sub(reqs[1].At)
	if min := time.Duration(n-2) * interval * 9 / 10; span < min {
		t.Errorf("requests 2 to %d took %v, want at least %v", n, span, min)
	}
}

func TestLimiterPacesUsersSeparately(t *testing.T) {
	s := providertest.NewServer(t, map[string]providertest.Route{"POST /measure": {Body: "{}"}})
	cfg := fastConfig()
	cfg.UserRate, cfg.UserBurst = 20, 1
	c, _ := newClient(t, cfg)

	start := time.Now()
	var wg sync.WaitGroup
	for _, user := range []string{"a", "b"} {
		for range 6 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := c.Call(t.Context(), formCall(s, user, "/measure", url.Values{"u": {user}})); err != nil {
					t.Error(err)
				}
			}()
		}
	}
	wg.Wait()
	elapsed := time.Since(start)
	byUser := map[string][]providertest.Recorded{}
	for _, r := range s.Requests() {
		byUser[r.Form.Get("u")] = append(byUser[r.Form.Get("u")], r)
	}
	for _, user := range []string{"a", "b"} {
		assertSpacing(t, byUser[user], 6, 50*time.Millisecond)
	}
	// The users' buckets are independent: 12 requests in about the time of 6 (250ms; one
	// shared bucket would take 550ms).
	if elapsed > 450*time.Millisecond {
		t.Errorf("12 requests of 2 users took %v, want about 250ms", elapsed)
	}
}

func TestRetryAfterHonoured(t *testing.T) {
	s := providertest.NewServer(t, map[string]providertest.Route{"POST /measure": {Seq: []providertest.Route{
		{Status: http.StatusTooManyRequests, Header: http.Header{"Retry-After": {"1"}}},
		{Body: `{"ok":true}`},
	}}})
	c, reg := newClient(t, fastConfig())
	start := time.Now()
	body, err := c.Call(t.Context(), formCall(s, "u", "/measure", nil))
	if err != nil {
		t.Fatal(err)
	}
	if string(body) != `{"ok":true}` {
		t.Errorf("body: got %s", body)
	}
	if d := time.Since(start); d < time.Second {
		t.Errorf("retried after %v, want at least the Retry-After of 1s", d)
	}
	if got := s.Hits("POST /measure"); got != 2 {
		t.Errorf("vendor calls: got %d, want 2", got)
	}
	if got := metricValue(t, reg, "ohx_provider_throttled_total", map[string]string{"scope": "app"}); got != 1 {
		t.Errorf("throttled_total: got %v, want 1", got)
	}
}

func TestRetryAfterBeyondDeadlineReturnsAtOnce(t *testing.T) {
	s := providertest.NewServer(t, map[string]providertest.Route{"POST /measure": {
		Status: http.StatusTooManyRequests, Header: http.Header{"Retry-After": {"30"}},
	}})
	c, _ := newClient(t, fastConfig())
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	start := time.Now()
	_, err := c.Call(ctx, formCall(s, "u", "/measure", nil))
	ue := wantKind(t, err, providers.KindThrottled)
	if ue.RetryAfter != 30*time.Second {
		t.Errorf("RetryAfter: got %v, want 30s", ue.RetryAfter)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("took %v: a wait beyond the deadline must fail at once", d)
	}
	// The application bucket is paused now: the next call does not reach the vendor either.
	_, err = c.Call(ctx, formCall(s, "v", "/measure", nil))
	wantKind(t, err, providers.KindThrottled)
	if got := s.Hits("POST /measure"); got != 1 {
		t.Errorf("vendor calls: got %d, want 1", got)
	}
}

func TestThrottledEnvelopeRetriedAndPausesApp(t *testing.T) {
	s := providertest.NewServer(t, map[string]providertest.Route{
		"POST /measure": {Seq: []providertest.Route{
			{Body: `{"status":601}`, Header: http.Header{"Retry-After": {"1"}}},
			{Body: `{"status":0}`},
		}},
		"POST /other": {Body: `{"status":0}`},
	})
	cfg := fastConfig()
	cfg.AppRate, cfg.AppBurst = 100, 10
	c, reg := newClient(t, cfg)

	start := time.Now()
	done := make(chan time.Duration)
	go func() {
		_, err := c.Call(t.Context(), withClassify(formCall(s, "a", "/measure", nil), envelopeClassify))
		if err != nil {
			t.Error(err)
		}
		done <- time.Since(start)
	}()
	// Another user's call during the pause waits for it: the limit is per application.
	for s.Hits("POST /measure") == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	if _, err := c.Call(t.Context(), withClassify(formCall(s, "b", "/other", nil), envelopeClassify)); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 900*time.Millisecond {
		t.Errorf("another user's call went out after %v, during the 1s pause", d)
	}
	if d := <-done; d < time.Second {
		t.Errorf("throttled call retried after %v, want at least 1s", d)
	}
	if got := s.Hits("POST /measure"); got != 2 {
		t.Errorf("vendor calls: got %d, want 2", got)
	}
	if got := metricValue(t, reg, "ohx_provider_requests_total", map[string]string{"endpoint": "measure", "outcome": "throttled"}); got != 1 {
		t.Errorf("throttled requests: got %v, want 1", got)
	}
}

func TestMaxRetries(t *testing.T) {
	s := providertest.NewServer(t, map[string]providertest.Route{"POST /measure": {Status: http.StatusServiceUnavailable}})
	c, reg := newClient(t, fastConfig())
	_, err := c.Call(t.Context(), formCall(s, "u", "/measure", nil))
	ue := wantKind(t, err, providers.KindTransient)
	if ue.Status != http.StatusServiceUnavailable {
		t.Errorf("status: got %d, want 503", ue.Status)
	}
	if got := s.Hits("POST /measure"); got != 4 {
		t.Errorf("vendor calls: got %d, want 4 (1 + 3 retries)", got)
	}
	if got := metricValue(t, reg, "ohx_provider_retries_total", nil); got != 3 {
		t.Errorf("retries_total: got %v, want 3", got)
	}
	if got := metricValue(t, reg, "ohx_provider_errors_total", map[string]string{"kind": "transient"}); got != 1 {
		t.Errorf("errors_total{kind=transient}: got %v, want 1", got)
	}
}

func TestNoRetryOnAuthOrPermanent(t *testing.T) {
	tests := []struct {
		name     string
		route    providertest.Route
		classify func(int, http.Header, []byte) error
		want     providers.ErrorKind
	}{
		{"http 401", providertest.Route{Status: http.StatusUnauthorized}, nil, providers.KindAuth},
		{"http 403", providertest.Route{Status: http.StatusForbidden}, nil, providers.KindAuth},
		{"http 400", providertest.Route{Status: http.StatusBadRequest}, nil, providers.KindPermanent},
		{"http 404", providertest.Route{Status: http.StatusNotFound}, nil, providers.KindPermanent},
		{"envelope 401", providertest.Route{Body: `{"status":401}`}, envelopeClassify, providers.KindAuth},
		{"envelope 2554", providertest.Route{Body: `{"status":2554}`}, envelopeClassify, providers.KindPermanent},
		{"classify plain error", providertest.Route{Body: `x`}, func(int, http.Header, []byte) error { return errors.New("bad payload") }, providers.KindPermanent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := providertest.NewServer(t, map[string]providertest.Route{"POST /measure": tt.route})
			c, _ := newClient(t, fastConfig())
			_, err := c.Call(t.Context(), withClassify(formCall(s, "u", "/measure", nil), tt.classify))
			wantKind(t, err, tt.want)
			if got := s.Hits("POST /measure"); got != 1 {
				t.Errorf("vendor calls: got %d, want 1", got)
			}
		})
	}
}

func breakerConfig() providers.ClientConfig {
	cfg := fastConfig()
	cfg.MaxRetries = -1
	cfg.BreakerFailures = 3
	cfg.BreakerCooldown = 200 * time.Millisecond
	return cfg
}

func TestBreakerOpensOnTransientFailures(t *testing.T) {
	s := providertest.NewServer(t, map[string]providertest.Route{"POST /measure": {Status: http.StatusBadGateway}})
	c, reg := newClient(t, breakerConfig())
	for i := range 3 {
		_, err := c.Call(t.Context(), formCall(s, fmt.Sprint("user", i), "/measure", nil))
		wantKind(t, err, providers.KindTransient)
	}
	start := time.Now()
	_, err := c.Call(t.Context(), formCall(s, "another", "/measure", nil))
	wantKind(t, err, providers.KindTransient)
	if !errors.Is(err, providers.ErrBreakerOpen) {
		t.Errorf("got %v, want ErrBreakerOpen", err)
	}
	if d := time.Since(start); d > 50*time.Millisecond {
		t.Errorf("open breaker took %v to reject", d)
	}
	if got := s.Hits("POST /measure"); got != 3 {
		t.Errorf("vendor calls: got %d, want 3", got)
	}
	if got := metricValue(t, reg, "ohx_provider_breaker_state", map[string]string{"provider": "fake"}); got != 2 {
		t.Errorf("breaker_state: got %v, want 2 (open)", got)
	}
	if got := metricValue(t, reg, "ohx_provider_errors_total", map[string]string{"kind": "breaker_open"}); got != 1 {
		t.Errorf("errors_total{kind=breaker_open}: got %v, want 1", got)
	}
	want := `
# HELP ohx_provider_requests_total HTTP requests sent to the vendor (attempts, retries included) by outcome.
# TYPE ohx_provider_requests_total counter
ohx_provider_requests_total{endpoint="measure",outcome="breaker_open",provider="fake"} 1
ohx_provider_requests_total{endpoint="measure",outcome="transient",provider="fake"} 3
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "ohx_provider_requests_total"); err != nil {
		t.Error(err)
	}
}

func TestBreakerTimeoutsCount(t *testing.T) {
	s := providertest.NewServer(t, map[string]providertest.Route{"POST /measure": {Delay: time.Second}})
	cfg := breakerConfig()
	cfg.Timeout = 30 * time.Millisecond
	c, _ := newClient(t, cfg)
	for range 3 {
		_, err := c.Call(t.Context(), formCall(s, "u", "/measure", nil))
		wantKind(t, err, providers.KindTransient)
	}
	if _, err := c.Call(t.Context(), formCall(s, "u", "/measure", nil)); !errors.Is(err, providers.ErrBreakerOpen) {
		t.Errorf("got %v, want ErrBreakerOpen after 3 timeouts", err)
	}
}

func TestBreakerIgnoresAuthThrottlingAndPermanent(t *testing.T) {
	for _, route := range []providertest.Route{
		{Status: http.StatusUnauthorized},
		{Status: http.StatusTooManyRequests},
		{Body: `{"status":601}`},
		{Status: http.StatusBadRequest},
	} {
		s := providertest.NewServer(t, map[string]providertest.Route{"POST /measure": route})
		cfg := breakerConfig()
		cfg.BaseBackoff = time.Millisecond // the pause after a throttled answer without Retry-After
		c, reg := newClient(t, cfg)
		for range 6 {
			_, err := c.Call(t.Context(), withClassify(formCall(s, "u", "/measure", nil), envelopeClassify))
			if err == nil || errors.Is(err, providers.ErrBreakerOpen) {
				t.Fatalf("route %+v: got %v, want the vendor's error", route, err)
			}
		}
		if got := s.Hits("POST /measure"); got != 6 {
			t.Errorf("route %+v: vendor calls: got %d, want 6", route, got)
		}
		if got := metricValue(t, reg, "ohx_provider_breaker_state", nil); got != 0 {
			t.Errorf("route %+v: breaker_state: got %v, want 0", route, got)
		}
	}
}

func TestBreakerHalfOpenRecovery(t *testing.T) {
	s := providertest.NewServer(t, map[string]providertest.Route{"POST /measure": {Seq: []providertest.Route{
		{Status: 500}, {Status: 500}, {Status: 500}, // open
		{Status: 500}, // failed trial: open again
		{Body: "ok"},  // successful trial: closed
	}}})
	c, reg := newClient(t, breakerConfig())
	call := func() error { _, err := c.Call(t.Context(), formCall(s, "u", "/measure", nil)); return err }
	for range 3 {
		call()
	}
	if err := call(); !errors.Is(err, providers.ErrBreakerOpen) {
		t.Fatalf("got %v, want ErrBreakerOpen", err)
	}
	time.Sleep(250 * time.Millisecond) // cooldown: half-open
	if err := call(); err == nil || errors.Is(err, providers.ErrBreakerOpen) {
		t.Fatalf("trial call: got %v, want the vendor's 500", err)
	}
	if err := call(); !errors.Is(err, providers.ErrBreakerOpen) {
		t.Fatalf("after a failed trial: got %v, want ErrBreakerOpen", err)
	}
	time.Sleep(250 * time.Millisecond)
	if err := call(); err != nil {
		t.Fatalf("second trial: %v", err)
	}
	if got := metricValue(t, reg, "ohx_provider_breaker_state", nil); got != 0 {
		t.Errorf("breaker_state: got %v, want 0 (closed)", got)
	}
	if err := call(); err != nil {
		t.Errorf("closed breaker: %v", err)
	}
	if got := s.Hits("POST /measure"); got != 6 {
		t.Errorf("vendor calls: got %d, want 6", got)
	}
}

func TestAttemptTimeout(t *testing.T) {
	s := providertest.NewServer(t, map[string]providertest.Route{"POST /measure": {Seq: []providertest.Route{
		{Delay: 2 * time.Second, Body: "slow"},
		{Body: "fast"},
	}}})
	cfg := fastConfig()
	cfg.Timeout = 100 * time.Millisecond
	c, _ := newClient(t, cfg)
	start := time.Now()
	body, err := c.Call(t.Context(), formCall(s, "u", "/measure", nil))
	if err != nil {
		t.Fatal(err)
	}
	if string(body) != "fast" {
		t.Errorf("body: got %q, want the retry's", body)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("took %v: the first attempt was not cut at 100ms", d)
	}

	// Every attempt too slow: a transient error, not the caller's context error.
	s.Set("POST /measure", providertest.Route{Delay: 2 * time.Second})
	cfg.MaxRetries = -1
	c, _ = newClient(t, cfg)
	_, err = c.Call(t.Context(), formCall(s, "u", "/measure", nil))
	wantKind(t, err, providers.KindTransient)
	if errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("attempt timeout reported as the caller's deadline: %v", err)
	}
}

func TestCallerCancellation(t *testing.T) {
	s := providertest.NewServer(t, map[string]providertest.Route{"POST /measure": {Delay: 2 * time.Second}})
	cfg := breakerConfig()
	cfg.BreakerFailures = 1
	c, _ := newClient(t, cfg)
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if _, err := c.Call(ctx, formCall(s, "u", "/measure", nil)); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("got %v, want context.DeadlineExceeded", err)
	}
	// The caller giving up is not a vendor failure: the breaker stays closed.
	s.Set("POST /measure", providertest.Route{Body: "ok"})
	if _, err := c.Call(t.Context(), formCall(s, "u", "/measure", nil)); err != nil {
		t.Errorf("after a cancelled call: %v", err)
	}
}

func TestCache(t *testing.T) {
	s := providertest.NewServer(t, map[string]providertest.Route{"POST /measure": {Body: `{"status":0}`}})
	c, reg := newClient(t, fastConfig())
	call := func(user string, params url.Values, cacheable bool) {
		t.Helper()
		cl := formCall(s, user, "/measure", params)
		cl.Cacheable = cacheable
		if _, err := c.Call(t.Context(), cl); err != nil {
			t.Fatal(err)
		}
	}
	call("u", url.Values{"a": {"1"}, "b": {"2"}}, true)
	call("u", url.Values{"b": {"2"}, "a": {"1"}}, true) // same parameters, other order: cached
	if got := s.Hits("POST /measure"); got != 1 {
		t.Errorf("vendor calls after a repeated read: got %d, want 1", got)
	}
	call("u", url.Values{"a": {"1"}, "b": {"3"}}, true) // other parameters
	call("v", url.Values{"a": {"1"}, "b": {"2"}}, true) // other user
	call("u", url.Values{"a": {"1"}, "b": {"2"}}, false)
	if got := s.Hits("POST /measure"); got != 4 {
		t.Errorf("vendor calls: got %d, want 4", got)
	}
	if got := metricValue(t, reg, "ohx_provider_cache_hits_total", nil); got != 1 {
		t.Errorf("cache_hits_total: got %v, want 1", got)
	}
	if got := metricValue(t, reg, "ohx_provider_cache_misses_total", nil); got != 3 {
		t.Errorf("cache_misses_total: got %v, want 3", got)
	}
	if got := metricValue(t, reg, "ohx_provider_calls_total", map[string]string{"outcome": "cached"}); got != 1 {
		t.Errorf("calls_total{outcome=cached}: got %v, want 1", got)
	}
	if got := metricValue(t, reg, "ohx_provider_calls_total", map[string]string{"outcome": "ok"}); got != 4 {
		t.Errorf("calls_total{outcome=ok}: got %v, want 4", got)
	}
}

func TestCacheExpiresAndSkipsErrors(t *testing.T) {
	s := providertest.NewServer(t, map[string]providertest.Route{"POST /measure": {Seq: []providertest.Route{
		{Status: http.StatusBadRequest}, {Body: "ok"},
	}}})
	cfg := fastConfig()
	cfg.CacheTTL = 100 * time.Millisecond
	c, _ := newClient(t, cfg)
	cl := formCall(s, "u", "/measure", nil)
	cl.Cacheable = true
	if _, err := c.Call(t.Context(), cl); err == nil {
		t.Fatal("want the vendor's 400")
	}
	for range 2 {
		if _, err := c.Call(t.Context(), cl); err != nil {
			t.Fatal(err)
		}
	}
	if got := s.Hits("POST /measure"); got != 2 {
		t.Errorf("vendor calls: got %d, want 2 (errors are not cached)", got)
	}
	time.Sleep(150 * time.Millisecond)
	if _, err := c.Call(t.Context(), cl); err != nil {
		t.Fatal(err)
	}
	if got := s.Hits("POST /measure"); got != 3 {
		t.Errorf("vendor calls after the TTL: got %d, want 3", got)
	}
}

func TestConcurrentIdenticalCallsShareOneRequest(t *testing.T) {
	for _, ttl := range []time.Duration{0, -1} { // cache on (default) and off
		t.Run(fmt.Sprint("ttl ", ttl), func(t *testing.T) {
			s := providertest.NewServer(t, map[string]providertest.Route{"POST /measure": {Delay: 200 * time.Millisecond, Body: "shared"}})
			cfg := fastConfig()
			cfg.CacheTTL = ttl
			c, reg := newClient(t, cfg)
			cl := formCall(s, "u", "/measure", url.Values{"meastypes": {"1,9,10"}})
			cl.Cacheable = true

			// One impatient caller gives up: the shared request goes on for the others.
			impatient, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
			defer cancel()
			var wg sync.WaitGroup
			for i := range 20 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					ctx := t.Context()
					if i == 0 {
						ctx = impatient
					}
					body, err := c.Call(ctx, cl)
					if i == 0 {
						if !errors.Is(err, context.DeadlineExceeded) {
							t.Errorf("impatient caller: got %v, want context.DeadlineExceeded", err)
						}
						return
					}
					if err != nil || string(body) != "shared" {
						t.Errorf("got %q, %v", body, err)
					}
				}()
				if i == 0 {
					time.Sleep(5 * time.Millisecond) // the impatient caller leads the flight
				}
			}
			wg.Wait()
			if got := s.Hits("POST /measure"); got != 1 {
				t.Errorf("vendor calls: got %d, want 1", got)
			}
			if got := metricValue(t, reg, "ohx_provider_cache_hits_total", nil); got != 19 {
				t.Errorf("cache_hits_total: got %v, want 19 (they joined the impatient caller's request)", got)
			}
		})
	}
}

func TestErrorsHideURLs(t *testing.T) {
	c, _ := newClient(t, breakerConfig())
	_, err := c.Call(t.Context(), providers.Call{
		Endpoint: "measure",
		NewRequest: func(ctx context.Context) (*http.Request, error) {
			// Nothing listens on port 1.
			return http.NewRequestWithContext(ctx, http.MethodGet, "http://127.0.0.1:1/x?access_token=SECRET", nil)
		},
	})
	wantKind(t, err, providers.KindTransient)
	if strings.Contains(err.Error(), "SECRET") || strings.Contains(err.Error(), "127.0.0.1:1/x") {
		t.Errorf("error text leaks the URL: %v", err)
	}
}

func TestNewRequestErrors(t *testing.T) {
	c, _ := newClient(t, fastConfig())
	tests := []struct {
		err  error
		want providers.ErrorKind
	}{
		{providers.ErrConsentRevoked, providers.KindAuth},
		{&providers.UpstreamError{Provider: "fake", Kind: providers.KindTransient, Err: errors.New("refresh failed")}, providers.KindTransient},
		{errors.New("bad url"), providers.KindPermanent},
	}
	for _, tt := range tests {
		_, err := c.Call(t.Context(), providers.Call{
			Endpoint:   "x",
			NewRequest: func(context.Context) (*http.Request, error) { return nil, tt.err },
		})
		wantKind(t, err, tt.want)
		if !errors.Is(err, tt.err) {
			t.Errorf("got %v, want it to wrap %v", err, tt.err)
		}
	}
}

func TestNewClientValidates(t *testing.T) {
	if _, err := providers.NewClient(providers.ClientConfig{}, nil, nil, nil); err == nil {
		t.Error("config without provider: want an error")
	}
	// Two clients share one registry.
	reg := prometheus.NewRegistry()
	for _, name := range []string{"withings", "fitbit"} {
		if _, err := providers.NewClient(providers.ClientConfig{Provider: name}, nil, reg, nil); err != nil {
			t.Errorf("client %s: %v", name, err)
		}
	}
}

func TestStrictLimit(t *testing.T) {
	got := providers.StrictLimit(120, time.Minute, 10)
	want := rate.Limit(110.0 / 60)
	if got != want {
		t.Errorf("StrictLimit(120/min, burst 10): got %v, want %v", got, want)
	}
}

func TestRetryAfterParsing(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := map[string]time.Duration{
		"":                              0,
		"7":                             7 * time.Second,
		"-1":                            0,
		"soon":                          0,
		"Sun, 01 Mar 2026 12:00:30 GMT": 30 * time.Second,
		"Sun, 01 Mar 2026 11:00:00 GMT": 0,
	}
	for v, want := range tests {
		h := http.Header{}
		if v != "" {
			h.Set("Retry-After", v)
		}
		if got := providers.RetryAfter(h, now); got != want {
			t.Errorf("Retry-After %q: got %v, want %v", v, got, want)
		}
	}
}
