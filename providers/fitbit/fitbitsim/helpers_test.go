package fitbitsim

import (
	"crypto/sha256"
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
	_ "time/tzdata" // the people's zones must not depend on the machine's zoneinfo

	"golang.org/x/oauth2"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/providers"
	"github.com/openhealthexchange/ohx/providers/fitbit"
	"github.com/openhealthexchange/ohx/providers/sim"
)

const (
	testClientID     = "23SIMX"
	testClientSecret = "sim-client-secret"
	testRedirect     = "https://ohx.example/connect/fitbit/callback"
	testVerify       = "verify-4711"
	testSubscriber   = "ohx-test"
	testSeed         = 42
	testDays         = 75
	verifier         = "a-pkce-verifier-of-at-least-forty-three-characters-0123"
)

// testEpoch is the end of the history: the afternoon after the European switch to summer time
// (2026-03-29), so that the history spans both DST changes of the people's zones.
var testEpoch = time.Date(2026, 3, 30, 13, 17, 0, 0, time.UTC)

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// env is a simulator served over httptest and the real adapter pointed at it.
type env struct {
	w       *sim.World
	people  []*sim.Person
	sim     *Simulator
	srv     *httptest.Server
	clock   *clock
	adapter *fitbit.Client
}

type envOpts struct {
	subscriberURL string
	hourlyLimit   int
	redirect      string
}

func newWorld(t testing.TB) *sim.World {
	t.Helper()
	w, err := sim.New(testSeed, 3, testDays, testEpoch)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// newEnv serves a simulator holding the world's first and third person (Paris, Berlin; the third is
// prone to atrial fibrillation), its clock two hours after the Epoch.
func newEnv(t testing.TB, o envOpts) *env {
	t.Helper()
	w := newWorld(t)
	e := &env{w: w, people: []*sim.Person{w.People[0], w.People[2]}, clock: &clock{t: testEpoch.Add(2 * time.Hour)}}
	s, err := New(Config{World: w, People: e.people, ClientID: testClientID, ClientSecret: testClientSecret,
		Now: e.clock.Now, SubscriberURL: o.subscriberURL, VerificationCode: testVerify, SubscriberID: testSubscriber,
		HourlyLimit: o.hourlyLimit})
	if err != nil {
		t.Fatal(err)
	}
	e.sim = s
	e.srv = httptest.NewServer(s.Handler())
	t.Cleanup(e.srv.Close)
	e.adapter = e.newAdapter(t, o.redirect)
	return e
}

// newAdapter is the real fitbit adapter against the simulator, through the real resilient client
// (no retries, no cache, no client-side hourly budget: the simulator's quota is under test).
func (e *env) newAdapter(t testing.TB, redirect string) *fitbit.Client {
	t.Helper()
	if redirect == "" {
		redirect = testRedirect
	}
	cfg := fitbit.ClientConfig(0)
	cfg.MaxRetries, cfg.CacheTTL, cfg.Timeout, cfg.UserRate = -1, -1, 10*time.Second, 0
	pc, err := providers.NewClient(cfg, e.srv.Client(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := fitbit.New(fitbit.Config{ClientID: testClientID, ClientSecret: testClientSecret, RedirectURL: redirect,
		APIURL: e.srv.URL, AuthURL: e.srv.URL + authorizePath, VerificationCode: testVerify, SubscriberID: testSubscriber}, pc, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func challenge(v string) string {
	sum := sha256.Sum256([]byte(v))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

var (
	nonceRE   = regexp.MustCompile(`<input type="hidden" name="nonce" value="([^"]+)">`)
	accountRE = regexp.MustCompile(`name="account" value="([^"]+)"`)
)

// noRedirect is a client that returns redirects instead of following them.
func (e *env) noRedirect() *http.Client {
	c := *e.srv.Client()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &c
}

// consentPage GETs an authorize URL and returns the status, the nonce and the account keys.
func (e *env) consentPage(t testing.TB, authURL string) (int, string, []string) {
	t.Helper()
	res, err := e.noRedirect().Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	var nonce string
	if m := nonceRE.FindSubmatch(b); m != nil {
		nonce = string(m[1])
	}
	var accounts []string
	for _, m := range accountRE.FindAllSubmatch(b, -1) {
		accounts = append(accounts, string(m[1]))
	}
	if res.StatusCode == http.StatusOK && !strings.Contains(string(b), "<title>Fitbit</title>") {
		t.Errorf("consent page without the vendor's title")
	}
	return res.StatusCode, nonce, accounts
}

// answer POSTs the consent form and returns the response (the redirect is not followed).
func (e *env) answer(t testing.TB, authURL, nonce, account, action string) *http.Response {
	t.Helper()
	res, err := e.noRedirect().PostForm(authURL, url.Values{"nonce": {nonce}, "account": {account}, "action": {action}})
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res
}

// authorize drives the consent page for p and returns the redirect's code.
func (e *env) authorize(t testing.TB, a *fitbit.Client, p *sim.Person) string {
	t.Helper()
	u := a.AuthCodeURL("state-1", challenge(verifier))
	status, nonce, accounts := e.consentPage(t, u)
	if status != http.StatusOK || nonce == "" || len(accounts) != len(e.people) {
		t.Fatalf("consent page: status %d, nonce %q, accounts %v", status, nonce, accounts)
	}
	res := e.answer(t, u, nonce, p.Key, "allow")
	if res.StatusCode != http.StatusSeeOther {
		t.Fatalf("allow: status %d, want 303", res.StatusCode)
	}
	loc, err := url.Parse(res.Header.Get("Location"))
	if err != nil || !strings.HasPrefix(loc.String(), testRedirect+"?") {
		t.Fatalf("allow redirected to %q", res.Header.Get("Location"))
	}
	if got := loc.Query().Get("state"); got != "state-1" {
		t.Errorf("state %q, want state-1", got)
	}
	return loc.Query().Get("code")
}

// connect authorizes p and exchanges the code through the adapter.
func (e *env) connect(t testing.TB, p *sim.Person) *providers.Grant {
	t.Helper()
	code := e.authorize(t, e.adapter, p)
	g, err := e.adapter.Exchange(t.Context(), code, verifier)
	if err != nil {
		t.Fatalf("Exchange: %v", err)
	}
	return g
}

func tokenSource(g *providers.Grant) oauth2.TokenSource { return oauth2.StaticTokenSource(g.Token) }

// fetchAll pages through a query with the adapter.
func (e *env) fetchAll(t testing.TB, user string, ts oauth2.TokenSource, q providers.Query) []fhir.Sample {
	t.Helper()
	var out []fhir.Sample
	for range 500 {
		p, err := e.adapter.Fetch(t.Context(), user, ts, q)
		if err != nil {
			t.Fatalf("Fetch: %v", err)
		}
		out = append(out, p.Samples...)
		if p.Next == "" {
			return out
		}
		q.Cursor = p.Next
	}
	t.Fatal("Fetch did not terminate")
	return nil
}

func countKinds(samples []fhir.Sample) map[fhir.SampleKind]int {
	out := map[fhir.SampleKind]int{}
	for _, s := range samples {
		out[s.Kind]++
	}
	return out
}
