package providers_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openhealthexchange/ohx/providers"
	"github.com/openhealthexchange/ohx/providers/providertest"
	"github.com/openhealthexchange/ohx/store"
	"github.com/openhealthexchange/ohx/store/sqlite"
)

// sharedStores opens one fresh SQLite database twice: two ohx instances on one store.
func sharedStores(t *testing.T) (*sqlite.Store, *sqlite.Store) {
	t.Helper()
	dir := t.TempDir()
	open := func() *sqlite.Store {
		s, err := sqlite.Open(t.Context(), dir, sqlite.Options{}, nil)
		if err != nil {
			t.Fatalf("sqlite.Open: %v", err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	return open(), open()
}

// instanceCall posts to path on s, naming the calling instance in a header so that the fake's
// record tells the instances apart.
func instanceCall(s *providertest.Server, instance, user, path string) providers.Call {
	return providers.Call{
		User:     user,
		Endpoint: strings.TrimPrefix(path, "/"),
		NewRequest: func(ctx context.Context) (*http.Request, error) {
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.URL()+path, nil)
			if err != nil {
				return nil, err
			}
			req.Header.Set("X-Instance", instance)
			return req, nil
		},
	}
}

// maxInWindow is the most of the instants that fall into one window of length w.
func maxInWindow(at []time.Time, w time.Duration) int {
	most := 0
	for _, a := range at {
		n := 0
		for _, b := range at {
			if !b.Before(a) && b.Sub(a) < w {
				n++
			}
		}
		most = max(most, n)
	}
	return most
}

// TestSharedAppBudget: two clients on two handles of one store, with no in-process limit and
// eight callers each, share an application budget of 8 requests per second: the fake vendor
// never sees more than 8 in any second, and both instances get requests through.
func TestSharedAppBudget(t *testing.T) {
	fake := providertest.NewServer(t, map[string]providertest.Route{"POST /measure": {Body: `{"status":0}`}})
	a, b := sharedStores(t)
	quota := store.BudgetLimit{Limit: 8, Window: time.Second, Slots: 10}
	var clients []*providers.Client
	for _, st := range []store.Budgets{a, b} {
		cfg := fastConfig()
		cfg.AppQuota, cfg.Budgets = quota, st
		c, _ := newClient(t, cfg)
		clients = append(clients, c)
	}
	end := time.Now().Add(3 * time.Second)
	var wg sync.WaitGroup
	for i, c := range clients {
		name := []string{"a", "b"}[i]
		for range 8 {
			wg.Go(func() {
				for time.Now().Before(end) {
					if _, err := c.Call(t.Context(), instanceCall(fake, name, "u", "/measure")); err != nil {
						t.Errorf("instance %s: %v", name, err)
						return
					}
				}
			})
		}
	}
	wg.Wait()
	var at []time.Time
	per := map[string]int{}
	for _, r := range fake.Requests() {
		at = append(at, r.At)
		per[r.Header.Get("X-Instance")]++
	}
	most := maxInWindow(at, quota.Window)
	t.Logf("%d requests (per instance %v), at most %d in one second", len(at), per, most)
	if most > quota.Limit {
		t.Errorf("the vendor saw %d requests in one second, want at most %d", most, quota.Limit)
	}
	// 3 s at 8·10/12 per second is 20 (the first burst and the last partial window aside).
	if len(at) < 12 {
		t.Errorf("%d requests in 3 s, want at least 12: the budget must not starve the instances", len(at))
	}
	if per["a"] == 0 || per["b"] == 0 {
		t.Errorf("requests per instance %v: both must make progress", per)
	}
}

// TestSharedUserBudget: a user's spent budget refuses that user's calls on the other instance
// at once, with a throttled error and RetryAfter, without a vendor request (the wait is longer
// than MaxRetryWait); another user's budget is untouched.
func TestSharedUserBudget(t *testing.T) {
	fake := providertest.NewServer(t, map[string]providertest.Route{"POST /measure": {Body: `{"status":0}`}})
	a, b := sharedStores(t)
	quota := store.BudgetLimit{Limit: 3, Window: time.Hour, Slots: 10}
	var clients []*providers.Client
	for _, st := range []store.Budgets{a, b} {
		cfg := fastConfig()
		cfg.UserQuota, cfg.Budgets, cfg.MaxRetryWait = quota, st, time.Second
		cfg.UserThrottle = true
		c, _ := newClient(t, cfg)
		clients = append(clients, c)
	}
	for i := range 3 {
		if _, err := clients[i%2].Call(t.Context(), instanceCall(fake, "x", "alice", "/measure")); err != nil {
			t.Fatalf("call %d within alice's budget: %v", i, err)
		}
	}
	_, err := clients[1].Call(t.Context(), instanceCall(fake, "b", "alice", "/measure"))
	ue := wantKind(t, err, providers.KindThrottled)
	if ue.RetryAfter < 30*time.Minute || ue.RetryAfter > time.Hour+12*time.Minute {
		t.Errorf("RetryAfter = %v, want until alice's first grant leaves the span (about an hour)", ue.RetryAfter)
	}
	if got := len(fake.Requests()); got != 3 {
		t.Errorf("vendor requests: %d, want 3 (the refused call is not sent)", got)
	}
	if _, err := clients[1].Call(t.Context(), instanceCall(fake, "b", "bob", "/measure")); err != nil {
		t.Errorf("bob's call after alice's budget was spent: %v", err)
	}
}

// TestSharedBudgetStoreDown: when the store cannot be asked, calls fail closed: a throttled
// error that the job retries, and no vendor request.
func TestSharedBudgetStoreDown(t *testing.T) {
	fake := providertest.NewServer(t, map[string]providertest.Route{"POST /measure": {Body: `{"status":0}`}})
	st, err := sqlite.Open(t.Context(), t.TempDir(), sqlite.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := fastConfig()
	cfg.AppQuota, cfg.Budgets = store.BudgetLimit{Limit: 100, Window: time.Minute}, st
	c, reg := newClient(t, cfg)
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	_, err = c.Call(t.Context(), instanceCall(fake, "a", "u", "/measure"))
	ue := wantKind(t, err, providers.KindThrottled)
	if ue.RetryAfter <= 0 {
		t.Errorf("RetryAfter = %v, want a positive delay for the job's retry", ue.RetryAfter)
	}
	if got := len(fake.Requests()); got != 0 {
		t.Errorf("vendor requests with the store down: %d, want 0", got)
	}
	if got := metricValue(t, reg, "ohx_provider_calls_total", map[string]string{"endpoint": "measure", "outcome": "error"}); got != 1 {
		t.Errorf("failed calls counted: %v, want 1", got)
	}
}

// TestSharedBudgetKeepsThrottling: with a shared budget a vendor's throttled answer still
// pauses the application for its Retry-After before the retry, which then succeeds; the
// retry takes a unit of the shared budget like any request.
func TestSharedBudgetKeepsThrottling(t *testing.T) {
	fake := providertest.NewServer(t, map[string]providertest.Route{
		"POST /measure": {Seq: []providertest.Route{
			{Body: `{"status":601}`, Header: http.Header{"Retry-After": {"1"}}},
			{Body: `{"status":0}`},
		}},
	})
	a, _ := sharedStores(t)
	cfg := fastConfig()
	cfg.AppRate, cfg.AppBurst = 100, 10
	cfg.AppQuota, cfg.Budgets = store.BudgetLimit{Limit: 2, Window: time.Minute}, a
	cfg.MaxRetryWait = 5 * time.Second
	c, _ := newClient(t, cfg)
	start := time.Now()
	if _, err := c.Call(t.Context(), withClassify(instanceCall(fake, "a", "u", "/measure"), envelopeClassify)); err != nil {
		t.Fatalf("throttled then accepted call: %v", err)
	}
	if d := time.Since(start); d < time.Second {
		t.Errorf("retry after %v, want at least the 1s Retry-After", d)
	}
	if got := len(fake.Requests()); got != 2 {
		t.Errorf("vendor requests: %d, want 2", got)
	}
	// Both requests took a unit: the budget of 2 per minute is spent.
	_, err := c.Call(t.Context(), withClassify(instanceCall(fake, "a", "u", "/measure"), envelopeClassify))
	if ue := wantKind(t, err, providers.KindThrottled); ue.RetryAfter <= cfg.MaxRetryWait {
		t.Errorf("third call: RetryAfter %v, want the wait for the spent budget (beyond MaxRetryWait %v)", ue.RetryAfter, cfg.MaxRetryWait)
	}
	if got := len(fake.Requests()); got != 2 {
		t.Errorf("vendor requests after the budget was spent: %d, want 2", got)
	}
}

// TestClientConfigValidatesQuota: an unenforceable quota is a configuration error.
func TestClientConfigValidatesQuota(t *testing.T) {
	cfg := fastConfig()
	cfg.AppQuota = store.BudgetLimit{Limit: 0, Window: time.Minute}
	if _, err := providers.NewClient(cfg, nil, nil, nil); !errors.Is(err, store.ErrInvalidBudget) {
		t.Errorf("NewClient with a zero quota limit: err = %v, want ErrInvalidBudget", err)
	}
}
