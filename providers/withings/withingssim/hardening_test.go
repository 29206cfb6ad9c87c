package withingssim

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

// TestRegisteredRedirectURIs: with Config.RedirectURIs set, a registered redirect_uri gets the
// consent page and its redirect; any other is the 400 page without a Location, never a redirect.
func TestRegisteredRedirectURIs(t *testing.T) {
	h := newHarness(t, 5)
	s, err := New(Config{World: h.w, People: h.w.People, ClientID: testClientID, ClientSecret: testClientSecret,
		Now: h.clk.Now, RedirectURIs: []string{"https://other.example/cb", testRedirect}})
	if err != nil {
		t.Fatal(err)
	}
	h.s = s
	h.srv = httptest.NewServer(s.Handler())
	t.Cleanup(h.srv.Close)
	h.ad = h.adapter(t, testRedirect)

	if code := h.code(t, h.ad, h.w.People[0].Key); code == "" { // code checks the redirect to testRedirect
		t.Fatal("no code for a registered redirect URI")
	}
	for _, uri := range []string{"https://evil.example/connect/withings/callback", testRedirect + "/", testRedirect + "?x=1"} {
		res, err := noRedirect.Get(h.adapter(t, uri).AuthCodeURL("st", ""))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusBadRequest || res.Header.Get("Location") != "" {
			t.Errorf("unregistered %s: %d %q, want 400 without Location", uri, res.StatusCode, res.Header.Get("Location"))
		}
	}
	if _, err := New(Config{World: h.w, People: h.w.People, ClientID: testClientID, ClientSecret: testClientSecret,
		RedirectURIs: []string{"/callback"}}); err == nil {
		t.Error("New accepted a relative registered redirect URI")
	}
}

// TestConcurrentPush: pushes, token refreshes, API reads, notify subscribes and Served at once
// (run with -race).
func TestConcurrentPush(t *testing.T) {
	h := newHarness(t, 5)
	p := h.w.People[0]
	h.clk.Set(testEpoch.Add(2 * time.Hour))
	g := h.connect(t, p)
	target := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer target.Close()
	ts := oauth2.StaticTokenSource(g.Token)
	if err := h.ad.Subscribe(t.Context(), g.UserID, ts, target.URL+"/webhooks/withings/"+testHookSecret, nil); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			h.clk.Set(testEpoch.Add(2*time.Hour + time.Duration(i+1)*time.Minute))
			if _, err := h.s.Push(t.Context()); err != nil {
				t.Error(err)
			}
		})
		wg.Go(func() {
			if _, err := h.ad.Devices(t.Context(), g.UserID, ts); err != nil {
				t.Error(err)
			}
			_ = h.s.Served(p)
		})
		wg.Go(func() {
			cb := target.URL + "/webhooks/withings/" + testHookSecret + "-" + strconv.Itoa(i)
			if err := h.ad.Subscribe(t.Context(), g.UserID, ts, cb, nil); err != nil {
				t.Error(err)
			}
		})
	}
	// Refreshes rotate the refresh token, so they run one after another, beside the rest.
	wg.Go(func() {
		tok := g.Token
		for range 3 {
			nt, err := h.ad.Refresh(t.Context(), tok)
			if err != nil {
				t.Error(err)
				return
			}
			if _, err := h.ad.Devices(t.Context(), g.UserID, oauth2.StaticTokenSource(nt)); err != nil {
				t.Error(err)
			}
			tok = nt
		}
	})
	wg.Wait()
}
