package googlehealthsim

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/providers"
	"github.com/openhealthexchange/ohx/providers/googlehealth"
	"github.com/openhealthexchange/ohx/providers/sim"
)

const (
	testClientID = "sim-client.apps.googleusercontent.com"
	testSecret   = "sim-client-secret"
	testRedirect = "https://ohx.example/connect/googlehealth/callback"
	testHook     = "Bearer hook-secret-1"
)

// testEpoch is the end of the world's history: 10:30 in Paris, 04:30 in New York.
var testEpoch = time.Date(2026, 11, 20, 9, 30, 0, 0, time.UTC)

// clock is a settable Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

type harness struct {
	world *sim.World
	sim   *Simulator
	srv   *httptest.Server
	clock *clock
	gh    *googlehealth.Client
}

func newWorld(t testing.TB, seed int64) *sim.World {
	t.Helper()
	w, err := sim.New(seed, 3, 45, testEpoch)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// newHarness starts the simulator over httptest and the real adapter against it.
func newHarness(t testing.TB, seed int64, webhookURL string) *harness {
	t.Helper()
	h := &harness{world: newWorld(t, seed), clock: &clock{t: testEpoch.Add(5 * time.Minute)}}
	var err error
	h.sim, err = New(Config{World: h.world, People: h.world.People, ClientID: testClientID, ClientSecret: testSecret,
		Now: h.clock.Now, WebhookURL: webhookURL, WebhookAuthorization: testHook})
	if err != nil {
		t.Fatal(err)
	}
	h.srv = httptest.NewServer(h.sim.Handler())
	t.Cleanup(h.srv.Close)
	h.gh = h.adapter(t, testRedirect)
	return h
}

// adapter is the real Google Health adapter configured as Env tells ohx to configure it.
func (h *harness) adapter(t testing.TB, redirect string) *googlehealth.Client {
	t.Helper()
	env := h.sim.Env(h.srv.URL)
	caller, err := providers.NewClient(googlehealth.ClientConfig(), h.srv.Client(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []fhir.SampleKind
	for _, k := range strings.Split(env["OHX_GOOGLEHEALTH_KINDS"], ",") {
		kinds = append(kinds, fhir.SampleKind(k))
	}
	c, err := googlehealth.New(googlehealth.Config{ClientID: env["OHX_GOOGLEHEALTH_CLIENT_ID"], ClientSecret: env["OHX_GOOGLEHEALTH_CLIENT_SECRET"],
		RedirectURL: redirect, APIURL: env["OHX_GOOGLEHEALTH_API_URL"], AuthURL: env["OHX_GOOGLEHEALTH_AUTH_URL"],
		TokenURL: env["OHX_GOOGLEHEALTH_TOKEN_URL"], RevokeURL: env["OHX_GOOGLEHEALTH_REVOKE_URL"], Kinds: kinds,
		WebhookSecret: env["OHX_GOOGLEHEALTH_WEBHOOK_SECRET"]}, caller, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// noRedirect is a client that returns redirects instead of following them.
var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

var (
	nonceRE   = regexp.MustCompile(`<input type="hidden" name="nonce" value="([^"]+)">`)
	accountRE = regexp.MustCompile(`name="account" value="([^"]+)"`)
)

// consentForm GETs an authorize URL and returns the page's nonce and account keys.
func consentForm(t testing.TB, authURL string) (nonce string, accounts []string) {
	t.Helper()
	res, err := noRedirect.Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("consent page: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	m := nonceRE.FindSubmatch(body)
	if m == nil {
		t.Fatalf("consent page without a nonce:\n%s", body)
	}
	for _, a := range accountRE.FindAllSubmatch(body, -1) {
		accounts = append(accounts, string(a[1]))
	}
	return string(m[1]), accounts
}

// answer POSTs the consent form and returns the 303's Location.
func (h *harness) answer(t testing.TB, nonce, account, action string) *url.URL {
	t.Helper()
	res, err := noRedirect.PostForm(h.srv.URL+AuthPath, url.Values{"nonce": {nonce}, "account": {account}, "action": {action}})
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusSeeOther {
		t.Fatalf("consent answer: status %d, want 303", res.StatusCode)
	}
	loc, err := url.Parse(res.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

// code drives the consent page for p and returns the code and the PKCE verifier.
func (h *harness) code(t testing.TB, gh *googlehealth.Client, p *sim.Person) (code, verifier string) {
	t.Helper()
	verifier = oauth2.GenerateVerifier()
	nonce, _ := consentForm(t, gh.AuthCodeURL("state-1", oauth2.S256ChallengeFromVerifier(verifier)))
	loc := h.answer(t, nonce, p.Key, "allow")
	if got := loc.Query().Get("state"); got != "state-1" {
		t.Fatalf("state %q, want state-1", got)
	}
	return loc.Query().Get("code"), verifier
}

// connect runs the whole connect flow for p.
func (h *harness) connect(t testing.TB, p *sim.Person) *providers.Grant {
	t.Helper()
	code, verifier := h.code(t, h.gh, p)
	g, err := h.gh.Exchange(context.Background(), code, verifier)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// fetchAll reads every page of a query.
func fetchAll(t testing.TB, gh *googlehealth.Client, g *providers.Grant, q providers.Query) []fhir.Sample {
	t.Helper()
	ts := oauth2.StaticTokenSource(g.Token)
	var out []fhir.Sample
	for range 1000 {
		page, err := gh.Fetch(context.Background(), g.UserID, ts, q)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, page.Samples...)
		if page.Next == "" {
			return out
		}
		q.Cursor = page.Next
	}
	t.Fatal("fetch did not terminate")
	return nil
}

func countKinds(ss []fhir.Sample) map[fhir.SampleKind]int {
	out := map[fhir.SampleKind]int{}
	for _, s := range ss {
		out[s.Kind]++
	}
	return out
}

// num is a decimal's value.
func num(t testing.TB, d fhir.Decimal) float64 {
	t.Helper()
	f, err := strconv.ParseFloat(string(d), 64)
	if err != nil {
		t.Fatalf("decimal %q: %v", d, err)
	}
	return f
}

// upstreamKind is the kind of an adapter error.
func upstreamKind(err error) providers.ErrorKind {
	var ue *providers.UpstreamError
	if errors.As(err, &ue) {
		return ue.Kind
	}
	return ""
}

// rawPost POSTs a form and returns the status and body.
func rawPost(t testing.TB, u string, form url.Values) (int, string) {
	t.Helper()
	res, err := http.PostForm(u, form)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// rawGet GETs a URL with a bearer token and returns the status and body.
func rawGet(t testing.TB, u, token string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, b
}
