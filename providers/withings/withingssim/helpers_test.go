package withingssim

import (
	"context"
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
	"github.com/openhealthexchange/ohx/providers/sim"
	"github.com/openhealthexchange/ohx/providers/withings"
)

// testEpoch ends the history a few weeks after the US switch to daylight saving time, so that
// the history crosses a DST change in some zones.
var testEpoch = time.Date(2026, 3, 20, 15, 4, 5, 0, time.UTC)

const (
	testClientID     = "cid"
	testClientSecret = "csecret"
	testRedirect     = "https://ohx.example/connect/withings/callback"
	testHookSecret   = "hook-s3cret"
)

// clock is a settable simulator clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *clock) Set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

// harness is a simulator served over httptest and the real adapter pointed at it.
type harness struct {
	w   *sim.World
	s   *Simulator
	srv *httptest.Server
	ad  *withings.Client
	clk *clock
}

func newHarness(t testing.TB, seed int64) *harness {
	t.Helper()
	w, err := sim.New(seed, 3, 75, testEpoch)
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{t: testEpoch.Add(time.Hour)}
	s, err := New(Config{World: w, People: w.People, ClientID: testClientID, ClientSecret: testClientSecret, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	h := &harness{w: w, s: s, srv: srv, clk: clk}
	h.ad = h.adapter(t, testRedirect)
	return h
}

// adapter is the real Withings adapter, through the real resilient client, at the simulator.
func (h *harness) adapter(t testing.TB, redirect string) *withings.Client {
	t.Helper()
	env := h.s.Env(h.srv.URL)
	pc, err := providers.NewClient(providers.ClientConfig{Provider: withings.Name, MaxRetries: -1, CacheTTL: -1,
		Timeout: 20 * time.Second}, h.srv.Client(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ad, err := withings.New(withings.Config{ClientID: env["OHX_WITHINGS_CLIENT_ID"], ClientSecret: env["OHX_WITHINGS_CLIENT_SECRET"],
		RedirectURL: redirect, APIURL: env["OHX_WITHINGS_API_URL"], AuthURL: env["OHX_WITHINGS_AUTH_URL"],
		WebhookSecret: testHookSecret}, pc, nil)
	if err != nil {
		t.Fatal(err)
	}
	return ad
}

var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

var nonceRE = regexp.MustCompile(`<input type="hidden" name="nonce" value="([^"]+)">`)

// getConsent GETs an authorize URL and returns the status, the body and the form's nonce.
func getConsent(t testing.TB, authURL string) (int, string, string) {
	t.Helper()
	res, err := noRedirect.Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	var nonce string
	if m := nonceRE.FindStringSubmatch(string(b)); m != nil {
		nonce = m[1]
	}
	return res.StatusCode, string(b), nonce
}

// decide POSTs the consent form to the authorize URL and returns the response (body closed).
func decide(t testing.TB, authURL, nonce, account, action string) *http.Response {
	t.Helper()
	res, err := noRedirect.PostForm(authURL, url.Values{"nonce": {nonce}, "account": {account}, "action": {action}})
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res
}

// code drives the consent page for account with ad's authorize URL and returns the code.
func (h *harness) code(t testing.TB, ad *withings.Client, account string) string {
	t.Helper()
	u := ad.AuthCodeURL("state-1", "")
	status, body, nonce := getConsent(t, u)
	if status != http.StatusOK || nonce == "" || !strings.Contains(body, `name="account" value="`+account+`"`) {
		t.Fatalf("consent page: %d, nonce %q\n%s", status, nonce, body)
	}
	res := decide(t, u, nonce, account, "allow")
	loc, err := url.Parse(res.Header.Get("Location"))
	if res.StatusCode != http.StatusSeeOther || err != nil || loc.Query().Get("state") != "state-1" || loc.Query().Get("code") == "" {
		t.Fatalf("allow: %d %q", res.StatusCode, res.Header.Get("Location"))
	}
	if !strings.HasPrefix(loc.String(), testRedirect+"?") {
		t.Fatalf("allow redirected to %s", loc)
	}
	return loc.Query().Get("code")
}

// connect runs consent and code exchange for a person.
func (h *harness) connect(t testing.TB, p *sim.Person) *providers.Grant {
	t.Helper()
	g, err := h.ad.Exchange(context.Background(), h.code(t, h.ad, p.Key), "")
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	return g
}

// fetchAll reads every page of q.
func fetchAll(t testing.TB, ad *withings.Client, user string, ts oauth2.TokenSource, q providers.Query) []fhir.Sample {
	t.Helper()
	var out []fhir.Sample
	for range 1000 {
		pg, err := ad.Fetch(context.Background(), user, ts, q)
		if err != nil {
			t.Fatalf("fetch: %v", err)
		}
		out = append(out, pg.Samples...)
		if pg.Next == "" {
			return out
		}
		q.Cursor = pg.Next
	}
	t.Fatal("fetch did not end")
	return nil
}

func num(t testing.TB, d fhir.Decimal) float64 {
	t.Helper()
	f, err := strconv.ParseFloat(string(d), 64)
	if err != nil {
		t.Fatalf("decimal %q: %v", d, err)
	}
	return f
}

// post calls a Withings service with a Bearer token and returns the raw answer.
func post(t testing.TB, base, path, token string, form url.Values) []byte {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("%s: HTTP %d", path, res.StatusCode)
	}
	return b
}
