package pipeline

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/providers"
	"github.com/openhealthexchange/ohx/providers/providertest"
	"github.com/openhealthexchange/ohx/providers/withings"
	"github.com/openhealthexchange/ohx/store/sqlite"
)

const (
	getdevice      = "POST /v2/user action=getdevice"
	notifyList     = "POST /notify action=list"
	notifySubcribe = "POST /notify action=subscribe"
	tokenRefresh   = "POST /v2/oauth2 action=requesttoken grant_type=refresh_token"
	upkeepCallback = "https://ohx.test/webhooks/withings/s"
)

// upkeepBase is the runners' clock at offset 0: three days after the weigh-in of
// withings/getmeas_page2.json (2024-01-02), so that it lies in the reconciliation's window.
var upkeepBase = time.Unix(1704153600, 0).Add(72 * time.Hour)

// instance is one ohx process of an upkeep rig: its own store handle on the shared database,
// vault and runner.
type instance struct {
	st    *sqlite.Store
	vault *providers.Vault
	r     *Runner
}

// upkeepRig is a number of instances over one database and one fake Withings (reading weight
// only: a windowed fetch is one getmeas call), with patient p1 connected as Withings user 12345.
// The instances share one clock, upkeepBase plus an offset the test moves.
type upkeepRig struct {
	fake  *providertest.Server
	inst  []*instance
	clock atomic.Int64 // offset from upkeepBase, ns
	logs  *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func newUpkeepRig(t *testing.T, instances int, routes map[string]providertest.Route, tok *oauth2.Token, cfg Config) *upkeepRig {
	t.Helper()
	g := &upkeepRig{fake: providertest.NewServer(t, routes), logs: &syncBuffer{}}
	dir := t.TempDir()
	log := slog.New(slog.NewJSONHandler(g.logs, nil))
	for range instances {
		st, err := sqlite.Open(t.Context(), dir, sqlite.Options{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		caller, err := providers.NewClient(providers.ClientConfig{Provider: withings.Name, CacheTTL: -1, MaxRetries: -1}, g.fake.Client(), nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		w, err := withings.New(withings.Config{ClientID: "c", ClientSecret: "s", RedirectURL: "https://ohx.test/cb", APIURL: g.fake.URL(),
			Kinds: []fhir.SampleKind{fhir.KindWeight}}, caller, nil)
		if err != nil {
			t.Fatal(err)
		}
		vault, err := providers.NewVault(st, map[string][]byte{"k": make([]byte, 32)}, "k", nil)
		if err != nil {
			t.Fatal(err)
		}
		c := cfg
		c.CallbackURL = func(string) string { return upkeepCallback }
		c.Lease = time.Minute
		c.MaxAttempts = 3
		c.Now = func() time.Time { return upkeepBase.Add(time.Duration(g.clock.Load())) }
		g.inst = append(g.inst, &instance{st: st, vault: vault, r: NewRunner(c, providers.NewRegistry(w), vault, st, log)})
	}
	if err := g.inst[0].vault.Save(t.Context(), &providers.Connection{Provider: withings.Name, PatientID: "p1", VendorUserID: "12345",
		Status: providers.StatusActive, Token: tok}); err != nil {
		t.Fatal(err)
	}
	return g
}

// validFor is a token pair whose access token expires d from now (wall clock: the vault's).
func validFor(d time.Duration) *oauth2.Token {
	return &oauth2.Token{AccessToken: "a1", RefreshToken: "r1", TokenType: "Bearer", Expiry: time.Now().Add(d)}
}

// advance moves the shared clock by d.
func (g *upkeepRig) advance(d time.Duration) { g.clock.Add(int64(d)) }

// upkeep runs Upkeep on every instance at once and returns the passes they ran.
func (g *upkeepRig) upkeep(t *testing.T) []Pass {
	t.Helper()
	var mu sync.Mutex
	var all []Pass
	var wg sync.WaitGroup
	for _, in := range g.inst {
		wg.Go(func() {
			ps, err := in.r.Upkeep(t.Context())
			if err != nil {
				t.Error(err)
			}
			mu.Lock()
			all = append(all, ps...)
			mu.Unlock()
		})
	}
	wg.Wait()
	return all
}

// drain runs jobs on every instance at once until none is due.
func (g *upkeepRig) drain(t *testing.T) {
	t.Helper()
	for range 20 {
		var ran atomic.Int32
		var wg sync.WaitGroup
		for _, in := range g.inst {
			wg.Go(func() {
				n, err := in.r.RunOnce(t.Context())
				if err != nil {
					t.Error(err)
				}
				ran.Add(int32(n))
			})
		}
		wg.Wait()
		if ran.Load() == 0 {
			return
		}
	}
	t.Fatal("jobs still due after 20 rounds")
}

// tasks counts the passes by task and checks that no slot of a task ran twice.
func tasks(t *testing.T, ps []Pass) map[string]int {
	t.Helper()
	n := map[string]int{}
	seen := map[string]bool{}
	for _, p := range ps {
		k := p.Task + "@" + p.Slot.String()
		if seen[k] {
			t.Errorf("pass %s ran twice", k)
		}
		seen[k] = true
		n[p.Task]++
	}
	return n
}

// subscriptions is a fake Withings notification service with state: list shows what is
// subscribed, subscribe adds a category, and the test can drop them all (Withings drops a
// subscription after repeated failed deliveries).
type subscriptions struct {
	mu     sync.Mutex
	applis map[string]bool // "appli callbackurl"
}

func (s *subscriptions) routes() map[string]providertest.Route {
	return map[string]providertest.Route{
		notifyList: {Handler: func(w http.ResponseWriter, r *http.Request) {
			s.mu.Lock()
			defer s.mu.Unlock()
			var ps []string
			for k := range s.applis {
				appli, cb, _ := strings.Cut(k, " ")
				ps = append(ps, fmt.Sprintf(`{"appli":%s,"callbackurl":%q,"expires":2147483647,"comment":"ohx"}`, appli, cb))
			}
			slices.Sort(ps)
			fmt.Fprintf(w, `{"status":0,"body":{"profiles":[%s]}}`, strings.Join(ps, ","))
		}},
		notifySubcribe: {Handler: func(w http.ResponseWriter, r *http.Request) {
			s.mu.Lock()
			defer s.mu.Unlock()
			if _, err := strconv.Atoi(r.FormValue("appli")); err != nil || r.FormValue("callbackurl") == "" {
				fmt.Fprint(w, `{"status":503,"body":{},"error":"Invalid Params"}`)
				return
			}
			s.applis[r.FormValue("appli")+" "+r.FormValue("callbackurl")] = true
			fmt.Fprint(w, `{"status":0,"body":{}}`)
		}},
	}
}

func (s *subscriptions) drop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.applis)
}

func (s *subscriptions) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.applis)
}

// vendorRoutes is the fake Withings of the upkeep tests: data (one weigh-in), devices and the
// notification service.
func vendorRoutes(subs *subscriptions) map[string]providertest.Route {
	routes := subs.routes()
	routes[getmeas] = providertest.Route{File: "withings/getmeas_page2.json"}
	routes[getdevice] = providertest.Route{File: "withings/getdevice_account.json"}
	return routes
}

// TestReconcileCatchesMissedWebhook: the vendor has a weigh-in whose notification never
// arrived; the upkeep's reconcile pass queues one windowed fetch of the last 7 days (one
// getmeas call), after which the Observation is searchable and the window covered; the daily
// device pass syncs the devices; the pass logs what it queued; a second look in the same
// period runs nothing.
func TestReconcileCatchesMissedWebhook(t *testing.T) {
	subs := &subscriptions{applis: map[string]bool{"1 " + upkeepCallback: true, "46 " + upkeepCallback: true}}
	g := newUpkeepRig(t, 1, vendorRoutes(subs), validFor(3*time.Hour), Config{})
	in := g.inst[0]
	ctx := t.Context()
	if obs := observationsOf(t, in.st); len(obs) != 0 {
		t.Fatalf("observations before the pass: %d", len(obs))
	}
	ps := g.upkeep(t)
	if n := tasks(t, ps); n[TaskReconcile] != 1 || n[TaskDevices] != 1 || n[TaskTokens] != 1 {
		t.Fatalf("passes %v, want one of each task", n)
	}
	for _, p := range ps {
		want := map[string]int{TaskReconcile: 2, TaskDevices: 1, TaskTokens: 0}[p.Task] // reconcile + subscribe; device sync; no token expiring
		if p.Connections != 1 || p.Queued != want || p.Coalesced != 0 {
			t.Errorf("pass %+v: want 1 connection and %d queued", p, want)
		}
	}
	pending, err := in.st.PendingJobs(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range pending {
		if j.Type == TypeReconcile && j.Priority != PriorityReconcile || j.Type == TypeDeviceSync && j.Priority != PriorityReconcile {
			t.Errorf("%s job priority %d, want %d (below webhook fetches, %d)", j.Type, j.Priority, PriorityReconcile, PriorityFetch)
		}
	}
	g.drain(t)

	if h := g.fake.Hits(getmeas); h != 1 {
		t.Fatalf("getmeas calls: %d, want 1", h)
	}
	end := upkeepBase.UTC().Truncate(time.Second)
	var form map[string][]string
	for _, r := range g.fake.Requests() {
		if r.Route == getmeas {
			form = r.Form
		}
	}
	if got, want := first(form["startdate"]), strconv.FormatInt(end.Add(-7*24*time.Hour).Unix(), 10); got != want {
		t.Errorf("getmeas startdate %s, want %s (7 days back)", got, want)
	}
	obs := observationsOf(t, in.st)
	if len(obs) != 1 || obs[0].Code.Coding[0].Code != "29463-7" || obs[0].Subject.Reference != "Patient/p1" {
		t.Fatalf("observations after the pass: %+v, want the weigh-in", obs)
	}
	covs, err := in.r.Coverage(ctx, withings.Name, "p1")
	if err != nil {
		t.Fatal(err)
	}
	if len(covs) == 0 || !covs[0].Covers(end.Add(-7*24*time.Hour), end) {
		t.Errorf("coverage %+v, want the 7 days up to %v", covs, end)
	}
	if h := g.fake.Hits(getdevice); h != 1 {
		t.Errorf("getdevice calls: %d, want 1 (the daily device pass)", h)
	}
	if h := g.fake.Hits(notifySubcribe); h != 0 {
		t.Errorf("subscribe calls: %d, want 0 (both categories are subscribed)", h)
	}
	if !strings.Contains(g.logs.String(), `"msg":"upkeep pass","task":"reconcile"`) || !strings.Contains(g.logs.String(), `"queued":2`) {
		t.Errorf("logs lack the reconcile pass and what it queued:\n%s", g.logs.String())
	}
	if ps := g.upkeep(t); len(ps) != 0 {
		t.Errorf("a second look in the same period ran %+v", ps)
	}
}

func first(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

// observationsOf returns p1's Observations in st.
func observationsOf(t *testing.T, st *sqlite.Store) []fhir.Observation {
	t.Helper()
	return (&rig{st: st}).observations(t)
}

// TestReconcileRestoresSubscription: the vendor dropped our subscriptions; the next reconcile
// pass lists them and subscribes both categories again (counted at the fake), and the pass
// after that, finding them, subscribes nothing.
func TestReconcileRestoresSubscription(t *testing.T) {
	subs := &subscriptions{applis: map[string]bool{"1 " + upkeepCallback: true, "46 " + upkeepCallback: true}}
	g := newUpkeepRig(t, 1, vendorRoutes(subs), validFor(3*time.Hour), Config{DeviceSync: -1, TokenRefreshAhead: -1})
	g.upkeep(t)
	g.drain(t)
	if h := g.fake.Hits(notifySubcribe); h != 0 {
		t.Fatalf("subscribe calls while subscribed: %d, want 0", h)
	}
	subs.drop()
	g.advance(6 * time.Hour)
	if n := tasks(t, g.upkeep(t)); n[TaskReconcile] != 1 {
		t.Fatalf("passes %v after a period, want a reconciliation", n)
	}
	g.drain(t)
	if h := g.fake.Hits(notifySubcribe); h != 2 {
		t.Errorf("subscribe calls after the vendor dropped them: %d, want 2 (weight, user events)", h)
	}
	if n := subs.count(); n != 2 {
		t.Errorf("subscriptions at the vendor: %d, want 2", n)
	}
	g.advance(6 * time.Hour)
	g.upkeep(t)
	g.drain(t)
	if h := g.fake.Hits(notifySubcribe); h != 2 {
		t.Errorf("subscribe calls after a pass that found them: %d, want still 2", h)
	}
	if h := g.fake.Hits(notifyList); h != 3 {
		t.Errorf("subscription listings: %d, want one per pass (3)", h)
	}
}

// TestUpkeepTwoInstances: two runners on one database (two store handles) run each pass once
// per period between them, and their jobs make one vendor call per kind family: the weigh-in
// is fetched once, the devices once, the subscriptions listed once. The next period runs the
// reconciliation again, once.
func TestUpkeepTwoInstances(t *testing.T) {
	subs := &subscriptions{applis: map[string]bool{"1 " + upkeepCallback: true, "46 " + upkeepCallback: true}}
	g := newUpkeepRig(t, 2, vendorRoutes(subs), validFor(3*time.Hour), Config{})
	ps := g.upkeep(t)
	if n := tasks(t, ps); n[TaskReconcile] != 1 || n[TaskDevices] != 1 || n[TaskTokens] != 1 || len(ps) != 3 {
		t.Fatalf("passes %v, want each task once across both instances", n)
	}
	// The other instance, looking again, finds every pass done.
	if ps := g.upkeep(t); len(ps) != 0 {
		t.Errorf("passes already done ran again: %+v", ps)
	}
	g.drain(t)
	for route, want := range map[string]int{getmeas: 1, getdevice: 1, notifyList: 1, notifySubcribe: 0} {
		if h := g.fake.Hits(route); h != want {
			t.Errorf("%s: %d calls, want %d", route, h, want)
		}
	}
	g.advance(6 * time.Hour)
	n := tasks(t, g.upkeep(t))
	if n[TaskReconcile] != 1 {
		t.Errorf("passes of the next period %v, want one reconciliation", n)
	}
	g.drain(t)
	if h := g.fake.Hits(getmeas); h != 2 {
		t.Errorf("getmeas calls after two periods: %d, want 2", h)
	}
}

// TestUpkeepPassesCoalesce: a reconciliation whose jobs still wait (a backlog) queues nothing new
// in the next period: the job keys name the connection, not the period.
func TestUpkeepPassesCoalesce(t *testing.T) {
	subs := &subscriptions{applis: map[string]bool{}}
	g := newUpkeepRig(t, 1, vendorRoutes(subs), validFor(3*time.Hour), Config{DeviceSync: -1, TokenRefreshAhead: -1})
	g.upkeep(t)
	g.advance(6 * time.Hour)
	ps := g.upkeep(t)
	if len(ps) != 1 || ps[0].Queued != 0 || ps[0].Coalesced != 2 {
		t.Fatalf("second reconciliation with its jobs still queued: %+v, want 2 coalesced, 0 queued", ps)
	}
	pending, err := g.inst[0].st.PendingJobs(t.Context(), 10)
	if err != nil || len(pending) != 2 {
		t.Errorf("pending jobs %d (%v), want 2", len(pending), err)
	}
}

// TestUpkeepLeaseTakeover: a pass whose lease another instance holds is not run; once that
// instance's lease expires (it died mid-pass) the pass runs here.
func TestUpkeepLeaseTakeover(t *testing.T) {
	g := newUpkeepRig(t, 1, vendorRoutes(&subscriptions{applis: map[string]bool{}}), validFor(3*time.Hour),
		Config{DeviceSync: -1, TokenRefreshAhead: -1})
	in := g.inst[0]
	slot := upkeepBase.UTC().Truncate(6 * time.Hour)
	id := TaskReconcile + "@" + slot.Format(time.RFC3339)
	doc, _ := json.Marshal(upkeepLease{Owner: "runner-dead", At: time.Now()})
	if err := in.st.CreateRecord(t.Context(), kindUpkeep, id, doc, time.Now().Add(300*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if ps := g.upkeep(t); len(ps) != 0 {
		t.Fatalf("ran %+v under another instance's lease", ps)
	}
	time.Sleep(400 * time.Millisecond) // past the dead instance's lease
	if ps := g.upkeep(t); len(ps) != 1 || ps[0].Task != TaskReconcile || ps[0].Queued != 2 {
		t.Fatalf("after the lease expired: %+v, want the reconciliation", ps)
	}
}

// TestProactiveTokenRefresh: a token expiring within the margin is refreshed by the tokens pass
// through the vault (one refresh call at the fake, across two instances), the rotated pair is
// stored, and the next pass, finding the new token good for an hour, refreshes nothing.
func TestProactiveTokenRefresh(t *testing.T) {
	routes := map[string]providertest.Route{tokenRefresh: {File: "withings/token_refresh.json"}}
	g := newUpkeepRig(t, 2, routes, validFor(10*time.Minute), Config{Reconcile: -1, DeviceSync: -1})
	ps := g.upkeep(t)
	if len(ps) != 1 || ps[0].Task != TaskTokens || ps[0].Queued != 1 {
		t.Fatalf("passes %+v, want one tokens pass queuing one refresh", ps)
	}
	g.drain(t)
	if h := g.fake.Hits(tokenRefresh); h != 1 {
		t.Fatalf("refresh calls: %d, want 1", h)
	}
	for i, in := range g.inst {
		c, err := in.vault.Get(t.Context(), withings.Name, "p1")
		if err != nil {
			t.Fatal(err)
		}
		if c.Token.AccessToken != "new_access_token" || c.Token.RefreshToken != "new_refresh_token" || c.Status != providers.StatusActive {
			t.Errorf("instance %d reads %v, want the rotated pair, active", i, c)
		}
	}
	g.advance(10 * time.Minute)
	ps = g.upkeep(t)
	if len(ps) != 1 || ps[0].Queued != 0 {
		t.Errorf("next tokens pass %+v, want nothing queued", ps)
	}
	g.drain(t)
	if h := g.fake.Hits(tokenRefresh); h != 1 {
		t.Errorf("refresh calls after the next pass: %d, want still 1", h)
	}
}

// TestProactiveRefreshRevoked: a refresh token the vendor refuses marks the connection
// needs-reauth; the job is done (no dead letter, no retry) and later passes skip the
// connection, so the dead token is sent once.
func TestProactiveRefreshRevoked(t *testing.T) {
	routes := map[string]providertest.Route{tokenRefresh: {File: "withings/token_refresh_invalid.json"}}
	g := newUpkeepRig(t, 1, routes, validFor(5*time.Minute), Config{Reconcile: -1, DeviceSync: -1})
	in := g.inst[0]
	g.upkeep(t)
	g.drain(t)
	c, err := in.vault.Get(t.Context(), withings.Name, "p1")
	if err != nil {
		t.Fatal(err)
	}
	if c.Status != providers.StatusNeedsReauth || c.LastError == "" {
		t.Errorf("connection after a refused refresh: %v (%q), want needs-reauth with a reason", c, c.LastError)
	}
	if dead, err := in.st.DeadJobs(t.Context(), 10); err != nil || len(dead) != 0 {
		t.Errorf("dead letters %+v (%v), want none", dead, err)
	}
	for range 3 {
		g.advance(10 * time.Minute)
		if ps := g.upkeep(t); len(ps) != 1 || ps[0].Queued != 0 || ps[0].Connections != 0 {
			t.Errorf("pass after the refusal: %+v, want no active connection and nothing queued", ps)
		}
		g.drain(t)
	}
	if h := g.fake.Hits(tokenRefresh); h != 1 {
		t.Errorf("refresh calls: %d, want 1 (no loop with a refused token)", h)
	}
	if p, err := in.st.PendingJobs(t.Context(), 10); err != nil || len(p) != 0 {
		t.Errorf("pending jobs %+v (%v), want none", p, err)
	}
}

// TestUpkeepJobOfGoneConnection: an upkeep job whose connection was disconnected before it ran
// is done, not a dead letter.
func TestUpkeepJobOfGoneConnection(t *testing.T) {
	g := newUpkeepRig(t, 1, map[string]providertest.Route{}, validFor(3*time.Hour), Config{DeviceSync: -1, TokenRefreshAhead: -1})
	in := g.inst[0]
	if _, err := in.r.Reconcile(t.Context()); err != nil {
		t.Fatal(err)
	}
	c, err := in.vault.Get(t.Context(), withings.Name, "p1")
	if err != nil {
		t.Fatal(err)
	}
	if err := in.vault.Delete(t.Context(), c); err != nil {
		t.Fatal(err)
	}
	g.drain(t)
	dead, err := in.st.DeadJobs(t.Context(), 10)
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range dead {
		if j.Type == TypeReconcile {
			t.Errorf("reconcile job of a gone connection dead-lettered: %+v", j)
		}
	}
	if h := len(g.fake.Requests()); h != 0 {
		t.Errorf("vendor calls for a gone connection: %d", h)
	}
}
