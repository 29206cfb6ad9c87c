package pipeline

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/oauth2"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/providers"
	"github.com/openhealthexchange/ohx/providers/providertest"
	"github.com/openhealthexchange/ohx/providers/withings"
	"github.com/openhealthexchange/ohx/store"
	"github.com/openhealthexchange/ohx/store/sqlite"
)

// The recorded Withings measures (getmeas_page2.json) are of 2 January 2024.
var (
	jan1 = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	jan2 = jan1.AddDate(0, 0, 1)
	jan3 = jan1.AddDate(0, 0, 2)
	jan4 = jan1.AddDate(0, 0, 3)
	// weight is the one kind the read-through searches of these tests ask for: one getmeas.
	weight = []fhir.SampleKind{fhir.KindWeight}
)

// testClock is a runner clock a test can move while the runner's goroutines read it.
type testClock struct{ offset atomic.Int64 }

func (c *testClock) now() time.Time        { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *testClock) shift(d time.Duration) { c.offset.Add(int64(d)) }
func (c *testClock) fn() func() time.Time  { return c.now }
func unix(t time.Time) string              { return strconv.FormatInt(t.Unix(), 10) }
func (g *rtRig) calls(route string) int    { return g.fake.Hits(route) }
func (g *rtRig) outcome(outcome string) float64 {
	return testutil.ToFloat64(g.rt.outcomes.WithLabelValues(withings.Name, outcome))
}

type rtRig struct {
	*rig
	clock *testClock
	rt    *ReadThrough
}

// newRTRig wires the real Withings adapter (client with clientCfg's limits), vault and runner to
// a fake Withings and a fresh embedded store, with patient p1 stored and connected as Withings
// user 12345, the runner running in the background and its read-through configured by cfg
// (read-through reaches back 10 years, to the recorded payloads).
func newRTRig(t *testing.T, routes map[string]providertest.Route, clientCfg providers.ClientConfig, cfg ReadThroughConfig) *rtRig {
	t.Helper()
	st, err := sqlite.Open(t.Context(), t.TempDir(), sqlite.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	fake := providertest.NewServer(t, routes)
	clientCfg.Provider, clientCfg.CacheTTL, clientCfg.MaxRetries = withings.Name, -1, -1
	caller, err := providers.NewClient(clientCfg, fake.Client(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	w, err := withings.New(withings.Config{ClientID: "c", ClientSecret: "s", RedirectURL: "https://ohx.test/cb", APIURL: fake.URL()}, caller, nil)
	if err != nil {
		t.Fatal(err)
	}
	vault, err := providers.NewVault(st, map[string][]byte{"k": make([]byte, 32)}, "k", nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if err := vault.Save(ctx, &providers.Connection{Provider: withings.Name, PatientID: "p1", VendorUserID: "12345",
		Status: providers.StatusActive, Token: &oauth2.Token{AccessToken: "a1", RefreshToken: "r1", Expiry: time.Now().Add(time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Create(ctx, &fhir.Patient{Base: fhir.Base{ResourceType: "Patient", ID: "p1"}}); err != nil {
		t.Fatal(err)
	}
	clock := &testClock{}
	r := NewRunner(Config{Lease: time.Minute, MaxAttempts: 3, Now: clock.fn()}, providers.NewRegistry(w), vault, st, nil)
	if cfg.MaxAge == 0 {
		cfg.MaxAge = 10 * 365 * 24 * time.Hour
	}
	g := &rtRig{rig: &rig{st: st, fake: fake, vault: vault, w: w, r: r}, clock: clock, rt: r.ReadThrough(cfg)}
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.Run(runCtx) }()
	t.Cleanup(func() { stop(); <-done })
	waitFor(t, "the runner to run", func() bool { return r.rt.running.Load() > 0 })
	return g
}

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// uncovered returns the warnings as UncoveredErrors, failing on anything else.
func uncovered(t *testing.T, ws []error) []*providers.UncoveredError {
	t.Helper()
	var out []*providers.UncoveredError
	for _, w := range ws {
		var uc *providers.UncoveredError
		if !errors.As(w, &uc) {
			t.Fatalf("warning %v is no UncoveredError", w)
		}
		out = append(out, uc)
	}
	return out
}

func (g *rtRig) fill(t *testing.T, patient string, kinds []fhir.SampleKind, start, end time.Time) []*providers.UncoveredError {
	t.Helper()
	ws, err := g.rt.Fill(t.Context(), patient, kinds, start, end)
	if err != nil {
		t.Fatalf("Fill: %v", err)
	}
	return uncovered(t, ws)
}

// TestReadThroughFillsUncoveredWindow: a search of a window nothing covers queues one fetch of
// it, which the runner runs within the budget (one getmeas over exactly that window); the
// samples are stored and the window covered, so the same search, and one of a part of it, call
// the vendor no more.
func TestReadThroughFillsUncoveredWindow(t *testing.T) {
	g := newRTRig(t, map[string]providertest.Route{getmeas: {File: "withings/getmeas_page2.json"}}, providers.ClientConfig{}, ReadThroughConfig{})
	if ws := g.fill(t, "p1", weight, jan1, jan4); len(ws) != 0 {
		t.Fatalf("warnings %v, want none: the window was fetched within the budget", ws)
	}
	reqs := g.fake.Requests()
	if len(reqs) != 1 || reqs[0].Route != getmeas {
		t.Fatalf("vendor calls %+v, want one getmeas", reqs)
	}
	if f := reqs[0].Form; f.Get("startdate") != unix(jan1) || f.Get("enddate") == "" || f.Get("lastupdate") != "" {
		t.Errorf("getmeas form %v, want the searched window from %s", f, unix(jan1))
	}
	if obs := g.observations(t); len(obs) != 1 || obs[0].Code.Coding[0].Code != "29463-7" {
		t.Errorf("observations %+v, want the one weight of 2 January", obs)
	}
	covs, err := g.st.Coverage(t.Context(), withings.Name, "p1")
	if err != nil || len(covs) != 1 || !covs[0].Covers(jan1, jan4) || covs[0].Kind != string(fhir.KindWeight) {
		t.Fatalf("coverage %+v %v, want weight covering the window", covs, err)
	}
	if n := g.outcome(rtFilled); n != 1 {
		t.Errorf("filled outcomes %v, want 1", n)
	}
	for _, w := range [][2]time.Time{{jan1, jan4}, {jan2, jan3}} {
		if ws := g.fill(t, "p1", weight, w[0], w[1]); len(ws) != 0 {
			t.Errorf("Fill %v: warnings %v", w, ws)
		}
	}
	if n := g.calls(getmeas); n != 1 {
		t.Errorf("getmeas calls %d, want still 1: the window is covered", n)
	}
	if n := g.outcome(rtCovered); n != 2 {
		t.Errorf("covered outcomes %v, want 2", n)
	}
	if p := g.drained(t); len(p) != 0 {
		t.Errorf("pending jobs %+v, want none", p)
	}
}

// TestReadThroughOnlyMissingPieces: with 1 and 3 January covered, a search of 1–4 January
// fetches exactly 2 January, at read-through priority; a kind the adapter does not read and a
// patient without a connection, or without a stored Patient, fetch nothing.
func TestReadThroughOnlyMissingPieces(t *testing.T) {
	g := newRTRig(t, map[string]providertest.Route{getmeas: {File: "withings/getmeas_page2.json"}}, providers.ClientConfig{}, ReadThroughConfig{})
	ctx := t.Context()
	if _, err := g.st.UpdateCoverage(ctx, store.CoverageKey{Provider: withings.Name, Patient: "p1", Kind: string(fhir.KindWeight)}, time.Now(),
		func(c *store.Coverage) error { c.Add(jan1, jan2); c.Add(jan3, jan4); return nil }); err != nil {
		t.Fatal(err)
	}
	if ws := g.fill(t, "p1", weight, jan1, jan4); len(ws) != 0 {
		t.Fatalf("warnings %v", ws)
	}
	reqs := g.fake.Requests()
	if len(reqs) != 1 || reqs[0].Form.Get("startdate") != unix(jan2) || reqs[0].Form.Get("enddate") != unix(jan3) {
		t.Fatalf("vendor calls %+v, want one getmeas of 2 January (%s–%s)", reqs, unix(jan2), unix(jan3))
	}
	// The search learns the outcome as the job's handler returns, before the runner records it.
	waitFor(t, "the fetch to be completed", func() bool { return len(g.pending(t)) == 0 })
	// Nothing to read through: no vendor call, no job.
	if err := g.vault.Save(ctx, &providers.Connection{Provider: withings.Name, PatientID: "p3", VendorUserID: "333",
		Status: providers.StatusActive, Token: &oauth2.Token{AccessToken: "a3", Expiry: time.Now().Add(time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		patient string
		kinds   []fhir.SampleKind
	}{
		{"a kind withings does not read", "p1", []fhir.SampleKind{fhir.KindECG + "-unknown"}},
		{"no connection", "p2", weight},
		{"a connection but no stored Patient", "p3", weight},
		{"an invalid id", "p1/../p3", weight},
	} {
		if ws := g.fill(t, tc.patient, tc.kinds, jan1.AddDate(0, -1, 0), jan1); len(ws) != 0 {
			t.Errorf("%s: warnings %v, want none", tc.name, ws)
		}
	}
	if n := len(g.fake.Requests()); n != 1 {
		t.Errorf("vendor calls %d, want still 1", n)
	}
	if p := g.pending(t); len(p) != 0 {
		t.Errorf("pending %+v, want nothing queued", p)
	}
}

// TestReadThroughThrottled: a vendor answering 601 (too many requests) leaves the window
// uncovered: the search gets a warning naming withings, the window and the throttling, and the
// fetch stays queued for its retry. Searches within the TTL, of the same window or another, call
// the vendor no more. Once the retry has run, the window is covered and the next search calls
// nothing and warns of nothing.
func TestReadThroughThrottled(t *testing.T) {
	g := newRTRig(t, map[string]providertest.Route{getmeas: {File: "withings/status_601.json"}}, providers.ClientConfig{}, ReadThroughConfig{})
	ws := g.fill(t, "p1", weight, jan1, jan4)
	if len(ws) != 1 || ws[0].Provider != withings.Name || !ws[0].Start.Equal(jan1) || !ws[0].End.Equal(jan4) ||
		providers.KindOf(ws[0].Err) != providers.KindThrottled {
		t.Fatalf("warnings %+v, want one throttled warning for withings, 1–4 January", ws)
	}
	waitFor(t, "the failure to be recorded", func() bool { p := g.pending(t); return len(p) == 1 && p[0].Attempt == 1 })
	p := g.pending(t)
	if p[0].Type != TypeFetch || p[0].Priority != PriorityReadThrough || p[0].LastError != "vendor throttled error (status 601)" {
		t.Fatalf("pending %+v, want the read-through fetch waiting for its retry", p)
	}
	for _, w := range [][2]time.Time{{jan1, jan4}, {jan2, jan4}} {
		ws := g.fill(t, "p1", weight, w[0], w[1])
		if len(ws) != 1 || providers.KindOf(ws[0].Err) != providers.KindThrottled {
			t.Errorf("Fill %v within the TTL: %+v, want the throttled warning again", w, ws)
		}
	}
	if n := g.calls(getmeas); n != 1 {
		t.Errorf("getmeas calls %d, want 1: searches within the TTL must not call the vendor", n)
	}
	if n := g.outcome(rtThrottled); n != 3 {
		t.Errorf("throttled outcomes %v, want 3", n)
	}
	// The vendor recovers; the retry (backoff: at most 36 s) runs once it is due.
	g.fake.Set(getmeas, providertest.Route{File: "withings/getmeas_page2.json"})
	g.clock.shift(time.Hour)
	g.r.rt.nudge()
	waitFor(t, "the retry", func() bool { return len(g.pending(t)) == 0 })
	if ws := g.fill(t, "p1", weight, jan1, jan4); len(ws) != 0 {
		t.Errorf("after the retry: warnings %+v, want none", ws)
	}
	if n := g.calls(getmeas); n != 1 {
		t.Errorf("getmeas calls after the retry %d, want 1 (the retry; the search found the window covered)", n)
	}
	if obs := g.observations(t); len(obs) != 1 {
		t.Errorf("observations %d, want 1", len(obs))
	}
}

// TestReadThroughNeedsReauth: a connection that needs a new consent is not read: the search gets
// a warning that says so, and nothing is queued or called.
func TestReadThroughNeedsReauth(t *testing.T) {
	g := newRTRig(t, map[string]providertest.Route{}, providers.ClientConfig{}, ReadThroughConfig{})
	ctx := t.Context()
	c, err := g.vault.Get(ctx, withings.Name, "p1")
	if err != nil {
		t.Fatal(err)
	}
	if err := g.vault.MarkNeedsReauth(ctx, c, "test"); err != nil {
		t.Fatal(err)
	}
	ws := g.fill(t, "p1", nil, jan1, jan4)
	if len(ws) != 1 || !errors.Is(ws[0].Err, providers.ErrConsentRevoked) || ws[0].Provider != withings.Name || !ws[0].Start.Equal(jan1) {
		t.Fatalf("warnings %+v, want one needs-reauth warning for withings from 1 January", ws)
	}
	if n := len(g.fake.Requests()); n != 0 {
		t.Errorf("vendor calls %d, want none", n)
	}
	if p := g.pending(t); len(p) != 0 {
		t.Errorf("pending %+v, want nothing queued", p)
	}
	if n := g.outcome(rtReauth); n != 1 {
		t.Errorf("reauth outcomes %v, want 1", n)
	}
}

// TestReadThroughBudget: a vendor slower than the budget leaves the search with a pending
// warning; the fetch goes on in the background, and once it has ended the search is covered.
func TestReadThroughBudget(t *testing.T) {
	g := newRTRig(t, map[string]providertest.Route{getmeas: {File: "withings/getmeas_page2.json", Delay: time.Second}},
		providers.ClientConfig{}, ReadThroughConfig{Budget: 100 * time.Millisecond})
	start := time.Now()
	ws := g.fill(t, "p1", weight, jan1, jan4)
	if len(ws) != 1 || !errors.Is(ws[0].Err, providers.ErrSyncPending) {
		t.Fatalf("warnings %+v, want one pending warning", ws)
	}
	if waited := time.Since(start); waited > 900*time.Millisecond {
		t.Errorf("Fill took %v: it must not wait for the vendor beyond the budget", waited)
	}
	waitFor(t, "the fetch to end", func() bool { return len(g.pending(t)) == 0 })
	if ws := g.fill(t, "p1", weight, jan1, jan4); len(ws) != 0 {
		t.Errorf("after the fetch: warnings %+v, want none", ws)
	}
	if n := g.calls(getmeas); n != 1 {
		t.Errorf("getmeas calls %d, want 1", n)
	}
}

// TestReadThroughConcurrentSearches: five identical searches at once make one job and one vendor
// call, and all of them get the data.
func TestReadThroughConcurrentSearches(t *testing.T) {
	g := newRTRig(t, map[string]providertest.Route{getmeas: {File: "withings/getmeas_page2.json", Delay: 50 * time.Millisecond}},
		providers.ClientConfig{}, ReadThroughConfig{})
	var wg sync.WaitGroup
	results := make([][]error, 5)
	for i := range results {
		wg.Go(func() {
			ws, err := g.rt.Fill(t.Context(), "p1", weight, jan1, jan4)
			if err != nil {
				ws = append(ws, err)
			}
			results[i] = ws
		})
	}
	wg.Wait()
	for i, ws := range results {
		if len(ws) != 0 {
			t.Errorf("search %d: %v, want no warnings", i, ws)
		}
	}
	if n := g.calls(getmeas); n != 1 {
		t.Errorf("getmeas calls %d, want 1", n)
	}
}

// TestReadThroughRespectsRateLimit: searches of many different windows never make the adapter
// exceed the application limit (here 4 requests per minute, a burst of 2): the fake counts the
// calls. What the limit holds back is answered as pending and stays queued, not lost.
func TestReadThroughRespectsRateLimit(t *testing.T) {
	const perMinute, burst = 4, 2
	g := newRTRig(t, map[string]providertest.Route{getmeas: {File: "withings/getmeas_page2.json"}},
		providers.ClientConfig{AppRate: providers.StrictLimit(perMinute, time.Minute, burst), AppBurst: burst},
		ReadThroughConfig{Budget: 300 * time.Millisecond, MaxPieces: 8})
	var warnings int
	for day := range 8 {
		from := jan1.AddDate(0, 0, -7*day)
		warnings += len(g.fill(t, "p1", weight, from, from.AddDate(0, 0, 1)))
	}
	if n := g.calls(getmeas); n > perMinute {
		t.Errorf("getmeas calls %d within a minute, the limit is %d", n, perMinute)
	}
	if n := g.calls(getmeas); n < burst {
		t.Errorf("getmeas calls %d, want the burst of %d at least", n, burst)
	}
	if n := g.calls(getmeas); warnings < 8-n {
		t.Errorf("%d warnings and %d vendor calls for 8 searches: every search the limit held back must say so", warnings, n)
	}
	queued := len(g.pending(t))
	if queued+g.calls(getmeas) < 8 {
		t.Errorf("%d queued and %d fetched of 8 windows: a held back window was dropped", queued, g.calls(getmeas))
	}
	if diff := cmp.Diff(0, len(g.dead(t))); diff != "" {
		t.Errorf("dead letters (-want +got):\n%s", diff)
	}
}
