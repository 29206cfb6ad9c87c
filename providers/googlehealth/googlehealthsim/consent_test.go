package googlehealthsim

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/oauth2"

	"github.com/openhealthexchange/ohx/providers"
)

// TestConsentRefusals: Deny, a bad client, a bad redirect_uri, a reused code, a wrong
// redirect_uri or PKCE verifier at exchange, and bad tokens are refused as Google refuses them.
func TestConsentRefusals(t *testing.T) {
	h := newHarness(t, 42, "")
	p := h.world.People[0]

	t.Run("deny", func(t *testing.T) {
		nonce, _ := consentForm(t, h.gh.AuthCodeURL("st-deny", oauth2.S256ChallengeFromVerifier(oauth2.GenerateVerifier())))
		loc := h.answer(t, nonce, p.Key, "deny")
		q := loc.Query()
		if q.Get("error") != "access_denied" || q.Get("state") != "st-deny" || q.Has("code") {
			t.Errorf("deny redirect %s: want error=access_denied with the state and no code", loc)
		}
		// The nonce was used up.
		res, err := noRedirect.PostForm(h.srv.URL+AuthPath, url.Values{"nonce": {nonce}, "account": {p.Key}, "action": {"allow"}})
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusBadRequest || res.Header.Get("Location") != "" {
			t.Errorf("reused nonce: %d %q, want 400 without redirect", res.StatusCode, res.Header.Get("Location"))
		}
	})

	good, _ := url.Parse(h.gh.AuthCodeURL("st", "challenge-abc"))
	for name, edit := range map[string]func(url.Values){
		"bad client_id":         func(q url.Values) { q.Set("client_id", "someone-else.apps.googleusercontent.com") },
		"relative redirect_uri": func(q url.Values) { q.Set("redirect_uri", "/connect/googlehealth/callback") },
		"ftp redirect_uri":      func(q url.Values) { q.Set("redirect_uri", "ftp://ohx.example/cb") },
		"no scope":              func(q url.Values) { q.Del("scope") },
	} {
		t.Run(name, func(t *testing.T) {
			u := *good
			q := u.Query()
			edit(q)
			u.RawQuery = q.Encode()
			res, err := noRedirect.Get(u.String())
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != http.StatusBadRequest || res.Header.Get("Location") != "" ||
				!strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") || strings.Contains(string(body), `name="nonce"`) {
				t.Errorf("got %d %q %q, want a 400 HTML error page without redirect or form", res.StatusCode, res.Header.Get("Location"), res.Header.Get("Content-Type"))
			}
		})
	}

	t.Run("reused code", func(t *testing.T) {
		code, verifier := h.code(t, h.gh, p)
		if _, err := h.gh.Exchange(t.Context(), code, verifier); err != nil {
			t.Fatal(err)
		}
		_, err := h.gh.Exchange(t.Context(), code, verifier)
		if upstreamKind(err) != providers.KindPermanent {
			t.Errorf("second exchange: %v, want a permanent error", err)
		}
		assertOAuthError(t, h, url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {verifier},
			"redirect_uri": {testRedirect}, "client_id": {testClientID}, "client_secret": {testSecret}}, 400, "invalid_grant")
	})

	t.Run("wrong redirect_uri at exchange", func(t *testing.T) {
		code, verifier := h.code(t, h.gh, p)
		other := h.adapter(t, "https://elsewhere.example/callback")
		if _, err := other.Exchange(t.Context(), code, verifier); upstreamKind(err) != providers.KindPermanent {
			t.Errorf("exchange: %v, want a permanent error", err)
		}
		code, verifier = h.code(t, h.gh, p)
		assertOAuthError(t, h, url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {verifier},
			"redirect_uri": {"https://elsewhere.example/callback"}, "client_id": {testClientID}, "client_secret": {testSecret}}, 400, "redirect_uri_mismatch")
	})

	t.Run("wrong PKCE verifier", func(t *testing.T) {
		code, _ := h.code(t, h.gh, p)
		assertOAuthError(t, h, url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {oauth2.GenerateVerifier()},
			"redirect_uri": {testRedirect}, "client_id": {testClientID}, "client_secret": {testSecret}}, 400, "invalid_grant")
		code, _ = h.code(t, h.gh, p)
		assertOAuthError(t, h, url.Values{"grant_type": {"authorization_code"}, "code": {code},
			"redirect_uri": {testRedirect}, "client_id": {testClientID}, "client_secret": {testSecret}}, 400, "invalid_grant")
	})

	t.Run("bad client secret", func(t *testing.T) {
		code, verifier := h.code(t, h.gh, p)
		assertOAuthError(t, h, url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {verifier},
			"redirect_uri": {testRedirect}, "client_id": {testClientID}, "client_secret": {"nope"}}, 401, "invalid_client")
	})

	t.Run("bad tokens", func(t *testing.T) {
		g := h.connect(t, p)
		for name, tok := range map[string]string{"none": "", "unknown": "ya29.unknown"} {
			status, body := rawGet(t, h.srv.URL+"/v4/users/me/identity", tok)
			var ge errorBody
			if status != 401 || json.Unmarshal(body, &ge) != nil || ge.Error.Status != "UNAUTHENTICATED" || ge.Error.Code != 401 {
				t.Errorf("%s token: %d %s, want 401 UNAUTHENTICATED", name, status, body)
			}
		}
		// Expired: an hour later the access token is refused, and the adapter sees an auth error.
		h.clock.Set(h.clock.Now().Add(accessTTL + 1))
		_, err := h.gh.Fetch(t.Context(), g.UserID, oauth2.StaticTokenSource(g.Token), providers.Query{Start: h.world.Start(p), End: h.world.Epoch})
		if upstreamKind(err) != providers.KindAuth {
			t.Errorf("fetch with an expired token: %v, want an auth error", err)
		}
	})

	t.Run("kebab-case filter", func(t *testing.T) {
		g := h.connect(t, p)
		status, body := rawGet(t, h.srv.URL+"/v4/users/me/dataTypes/body-fat/dataPoints?"+
			url.Values{"filter": {`body-fat.sample_time.physical_time >= "2026-11-01T00:00:00Z"`}}.Encode(), g.Token.AccessToken)
		var ge errorBody
		if status != 400 || json.Unmarshal(body, &ge) != nil || ge.Error.Status != "INVALID_ARGUMENT" || len(ge.Error.Details) != 1 || ge.Error.Details[0].Reason != "INVALID_DATA_POINT_FILTER" {
			t.Errorf("got %d %s, want 400 INVALID_DATA_POINT_FILTER", status, body)
		}
	})
}

func assertOAuthError(t *testing.T, h *harness, form url.Values, wantStatus int, wantCode string) {
	t.Helper()
	status, body := rawPost(t, h.srv.URL+TokenPath, form)
	var e struct {
		Error string `json:"error"`
	}
	if status != wantStatus || json.Unmarshal([]byte(body), &e) != nil || e.Error != wantCode {
		t.Errorf("token endpoint: %d %s, want %d %s", status, body, wantStatus, wantCode)
	}
}
