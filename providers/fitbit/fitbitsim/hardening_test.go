package fitbitsim

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

// TestRegisteredRedirectURIs: with Config.RedirectURIs set, a registered redirect_uri gets the
// consent page and its redirect; any other is the 400 page without a Location, never a redirect.
func TestRegisteredRedirectURIs(t *testing.T) {
	e := newEnv(t, envOpts{})
	s, err := New(Config{World: e.w, People: e.people, ClientID: testClientID, ClientSecret: testClientSecret,
		Now: e.clock.Now, VerificationCode: testVerify, SubscriberID: testSubscriber,
		RedirectURIs: []string{testRedirect, "https://other.example/cb"}})
	if err != nil {
		t.Fatal(err)
	}
	e.sim = s
	e.srv = httptest.NewServer(s.Handler())
	t.Cleanup(e.srv.Close)
	e.adapter = e.newAdapter(t, testRedirect)

	if code := e.authorize(t, e.adapter, e.people[0]); code == "" { // authorize checks the redirect
		t.Fatal("no code for a registered redirect URI")
	}
	for _, uri := range []string{"https://evil.example/connect/fitbit/callback", testRedirect + "/", testRedirect + "?x=1"} {
		u := e.newAdapter(t, uri).AuthCodeURL("st", challenge(verifier))
		status, nonce, _ := e.consentPage(t, u)
		res, err := e.noRedirect().Get(u)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if status != http.StatusBadRequest || nonce != "" || res.Header.Get("Location") != "" {
			t.Errorf("unregistered %s: %d, nonce %q, Location %q; want 400 without a form or Location", uri, status, nonce, res.Header.Get("Location"))
		}
	}
	if _, err := New(Config{World: e.w, People: e.people, ClientID: testClientID, ClientSecret: testClientSecret,
		RedirectURIs: []string{"ftp://ohx.example/cb"}}); err == nil {
		t.Error("New accepted an ftp registered redirect URI")
	}
}

// TestProbeErrorRedacted: a verification probe that fails names neither the verification code
// nor the probe's URL.
func TestProbeErrorRedacted(t *testing.T) {
	gone := httptest.NewServer(http.NotFoundHandler())
	gone.Close() // nothing listens there any more
	e := newEnv(t, envOpts{subscriberURL: gone.URL + "/webhooks/fitbit"})
	_, err := e.sim.Push(t.Context())
	if err == nil {
		t.Fatal("Push to a closed subscriber succeeded")
	}
	for _, leak := range []string{testVerify, "verify=", gone.URL} {
		if strings.Contains(err.Error(), leak) {
			t.Errorf("error %q contains %q", err, leak)
		}
	}
}

// TestSweep: expired consent requests, codes and spent codes are forgotten at a later insert,
// and an expired access token is answered expired_token for expiredMemory, then forgotten.
func TestSweep(t *testing.T) {
	e := newEnv(t, envOpts{})
	p := e.people[0]
	authURL := e.adapter.AuthCodeURL("s", challenge(verifier))
	_, nonce, _ := e.consentPage(t, authURL) // left unanswered
	code := e.authorize(t, e.adapter, p)     // left unexchanged
	g := e.connect(t, p)                     // a spent code and an access token
	at := g.Token.AccessToken
	e.sim.mu.Lock()
	pending, codes, used := len(e.sim.pending), len(e.sim.codes), len(e.sim.used)
	e.sim.mu.Unlock()
	if pending != 1 || codes != 1 || used != 1 {
		t.Fatalf("before expiry: %d pending, %d codes, %d spent; want 1 each", pending, codes, used)
	}

	e.clock.Add(codeTTL + time.Second)
	e.consentPage(t, authURL) // a later insert sweeps
	e.sim.mu.Lock()
	_, nonceKept := e.sim.pending[nonce]
	_, codeKept := e.sim.codes[code]
	used = len(e.sim.used)
	e.sim.mu.Unlock()
	if nonceKept || codeKept || used != 0 {
		t.Errorf("after expiry: consent kept %v, code kept %v, %d spent codes; want all gone", nonceKept, codeKept, used)
	}

	e.clock.Add(accessTTL)
	e.consentPage(t, authURL)
	if rec := get(t, e.sim, at, "/1/user/-/profile.json"); rec.Code != http.StatusUnauthorized || fitbitError(t, rec.Body.Bytes()) != "expired_token" {
		t.Errorf("recently expired token: %d %s, want 401 expired_token", rec.Code, rec.Body)
	}
	e.clock.Add(expiredMemory)
	e.consentPage(t, authURL)
	e.sim.mu.Lock()
	_, tokKept := e.sim.access[at]
	grantTokens := len(e.sim.refresh[g.Token.RefreshToken].access)
	e.sim.mu.Unlock()
	if tokKept || grantTokens != 0 {
		t.Errorf("long-expired token kept %v, its grant lists %d tokens; want both gone", tokKept, grantTokens)
	}
	// The grant itself stands: a refresh still works.
	if _, err := e.adapter.Refresh(t.Context(), g.Token); err != nil {
		t.Errorf("refresh after the sweep: %v", err)
	}
}

// TestConcurrentPush: pushes, token refreshes, API reads, subscription calls (apiSubscriptions)
// and Served at once (run with -race).
func TestConcurrentPush(t *testing.T) {
	sb := &subscriber{}
	target := httptest.NewServer(sb)
	defer target.Close()
	e := newEnv(t, envOpts{subscriberURL: target.URL + "/webhooks/fitbit"})
	sb.mu.Lock()
	sb.adapter = e.adapter
	sb.mu.Unlock()
	p := e.people[0]
	g := e.connect(t, p)
	ts := tokenSource(g)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			e.clock.Add(time.Minute)
			if _, err := e.sim.Push(t.Context()); err != nil {
				t.Error(err)
			}
		})
		wg.Go(func() {
			if _, err := e.adapter.Devices(t.Context(), g.UserID, ts); err != nil {
				t.Error(err)
			}
			_ = e.sim.Served(p)
		})
		wg.Go(func() {
			if err := e.adapter.Subscribe(t.Context(), g.UserID, ts, "", nil); err != nil {
				t.Error(err)
			}
			if rec := get(t, e.sim, g.Token.AccessToken, "/1/user/-/apiSubscriptions.json"); rec.Code != http.StatusOK {
				t.Errorf("list subscriptions: %d %s", rec.Code, rec.Body)
			}
		})
	}
	// Refresh tokens are single-use, so the refreshes run one after another, beside the rest.
	wg.Go(func() {
		tok := g.Token
		for range 3 {
			nt, err := e.adapter.Refresh(t.Context(), tok)
			if err != nil {
				t.Error(err)
				return
			}
			if _, err := e.adapter.Devices(t.Context(), g.UserID, oauth2.StaticTokenSource(nt)); err != nil {
				t.Error(err)
			}
			tok = nt
		}
	})
	wg.Wait()
}
