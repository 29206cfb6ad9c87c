package googlehealthsim

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestRegisteredRedirectURIs: with Config.RedirectURIs set, a registered redirect_uri gets the
// consent page and its redirect; any other is the 400 page (redirect_uri_mismatch) without a
// Location, never a redirect.
func TestRegisteredRedirectURIs(t *testing.T) {
	h := newHarness(t, 42, "")
	s, err := New(Config{World: h.world, People: h.world.People, ClientID: testClientID, ClientSecret: testSecret,
		Now: h.clock.Now, RedirectURIs: []string{"https://other.example/cb", testRedirect}})
	if err != nil {
		t.Fatal(err)
	}
	h.sim = s
	h.srv = httptest.NewServer(s.Handler())
	t.Cleanup(h.srv.Close)
	h.gh = h.adapter(t, testRedirect)

	h.connect(t, h.world.People[0])
	for _, uri := range []string{"https://evil.example/connect/googlehealth/callback", testRedirect + "/", testRedirect + "?x=1"} {
		res, err := noRedirect.Get(h.adapter(t, uri).AuthCodeURL("st", "challenge-abc"))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusBadRequest || res.Header.Get("Location") != "" ||
			strings.Contains(string(body), `name="nonce"`) || !strings.Contains(string(body), "redirect_uri_mismatch") {
			t.Errorf("unregistered %s: %d %q, want a 400 redirect_uri_mismatch page without Location or form", uri, res.StatusCode, res.Header.Get("Location"))
		}
	}
	if _, err := New(Config{World: h.world, People: h.world.People, ClientID: testClientID, ClientSecret: testSecret,
		RedirectURIs: []string{"ohx.example/cb"}}); err == nil {
		t.Error("New accepted a registered redirect URI without a scheme")
	}
}

// TestPushErrorRedacted: a delivery that fails does not name the webhook URL, whose query may
// carry a secret.
func TestPushErrorRedacted(t *testing.T) {
	gone := httptest.NewServer(http.NotFoundHandler())
	gone.Close() // nothing listens there any more
	hook := gone.URL + "/webhooks/googlehealth?key=s3cret-key"
	h := newHarness(t, 42, hook)
	h.connect(t, h.world.People[0])
	h.clock.Set(h.world.Epoch.Add(time.Hour))
	_, err := h.sim.Push(t.Context())
	if err == nil {
		t.Fatal("Push to a closed endpoint succeeded")
	}
	for _, leak := range []string{"s3cret-key", gone.URL, testHook} {
		if strings.Contains(err.Error(), leak) {
			t.Errorf("error %q contains %q", err, leak)
		}
	}
}
