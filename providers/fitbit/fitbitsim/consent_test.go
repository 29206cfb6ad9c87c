package fitbitsim

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/openhealthexchange/ohx/providers"
)

// fitbitError decodes Fitbit's error body and returns its first errorType.
func fitbitError(t testing.TB, body []byte) string {
	t.Helper()
	var eb struct {
		Errors []struct {
			ErrorType string `json:"errorType"`
		} `json:"errors"`
		Success *bool `json:"success"`
	}
	if err := json.Unmarshal(body, &eb); err != nil || len(eb.Errors) == 0 || eb.Success == nil || *eb.Success {
		t.Fatalf("not Fitbit's error shape: %s", body)
	}
	return eb.Errors[0].ErrorType
}

// postToken posts a form to the token endpoint with Basic client authentication.
func (e *env) postToken(t testing.TB, id, secret string, form url.Values) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/oauth2/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(id, secret)
	res, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, b
}

// TestConsentRefusals: deny, bad authorize requests, reused codes and nonces, a wrong redirect URI,
// verifier or client at the exchange are refused the way Fitbit refuses them.
func TestConsentRefusals(t *testing.T) {
	e := newEnv(t, envOpts{})
	p := e.people[0]

	t.Run("deny", func(t *testing.T) {
		u := e.adapter.AuthCodeURL("state-d", challenge(verifier))
		_, nonce, _ := e.consentPage(t, u)
		res := e.answer(t, u, nonce, p.Key, "deny")
		loc, _ := url.Parse(res.Header.Get("Location"))
		if res.StatusCode != http.StatusSeeOther || loc == nil || loc.Query().Get("error") != "access_denied" ||
			loc.Query().Get("state") != "state-d" || loc.Query().Has("code") {
			t.Errorf("deny: %d %q", res.StatusCode, res.Header.Get("Location"))
		}
	})

	t.Run("bad authorize requests", func(t *testing.T) {
		good, _ := url.Parse(e.adapter.AuthCodeURL("s", challenge(verifier)))
		for name, edit := range map[string]func(url.Values){
			"client_id":       func(q url.Values) { q.Set("client_id", "OTHER") },
			"relative uri":    func(q url.Values) { q.Set("redirect_uri", "/callback") },
			"ftp uri":         func(q url.Values) { q.Set("redirect_uri", "ftp://ohx.example/cb") },
			"no PKCE":         func(q url.Values) { q.Del("code_challenge") },
			"plain PKCE":      func(q url.Values) { q.Set("code_challenge_method", "plain") },
			"unknown scope":   func(q url.Values) { q.Set("scope", "profile everything") },
			"response_type":   func(q url.Values) { q.Set("response_type", "token") },
			"no scope":        func(q url.Values) { q.Del("scope") },
			"no redirect_uri": func(q url.Values) { q.Del("redirect_uri") },
		} {
			u := *good
			q := u.Query()
			edit(q)
			u.RawQuery = q.Encode()
			res, err := e.noRedirect().Get(u.String())
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode != http.StatusBadRequest || res.Header.Get("Location") != "" ||
				!strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") {
				t.Errorf("%s: %d %q, want a 400 page", name, res.StatusCode, res.Header.Get("Location"))
			}
		}
	})

	t.Run("reused nonce", func(t *testing.T) {
		u := e.adapter.AuthCodeURL("s", challenge(verifier))
		_, nonce, _ := e.consentPage(t, u)
		if res := e.answer(t, u, nonce, p.Key, "allow"); res.StatusCode != http.StatusSeeOther {
			t.Fatalf("first answer: %d", res.StatusCode)
		}
		if res := e.answer(t, u, nonce, p.Key, "allow"); res.StatusCode != http.StatusBadRequest {
			t.Errorf("second answer with the nonce: %d, want 400", res.StatusCode)
		}
	})

	t.Run("reused code", func(t *testing.T) {
		code := e.authorize(t, e.adapter, p)
		g, err := e.adapter.Exchange(t.Context(), code, verifier)
		if err != nil {
			t.Fatal(err)
		}
		_, err = e.adapter.Exchange(t.Context(), code, verifier)
		var ue *providers.UpstreamError
		if !errors.As(err, &ue) || ue.Kind != providers.KindPermanent || ue.Status != http.StatusBadRequest {
			t.Errorf("second exchange: %v, want a permanent 400", err)
		}
		status, body := e.postToken(t, testClientID, testClientSecret, url.Values{"grant_type": {"authorization_code"}, "code": {code},
			"redirect_uri": {testRedirect}, "code_verifier": {verifier}})
		if status != http.StatusBadRequest || fitbitError(t, body) != "invalid_grant" {
			t.Errorf("third exchange: %d %s", status, body)
		}
		// A replayed code revokes what it granted (RFC 6749 §4.1.2).
		if rec := get(t, e.sim, g.Token.AccessToken, "/1/user/-/profile.json"); rec.Code != http.StatusUnauthorized {
			t.Errorf("the first exchange's token after the replay: %d, want 401", rec.Code)
		}
	})

	t.Run("wrong redirect_uri at exchange", func(t *testing.T) {
		code := e.authorize(t, e.adapter, p)
		other := e.newAdapter(t, "https://evil.example/callback")
		_, err := other.Exchange(t.Context(), code, verifier)
		var ue *providers.UpstreamError
		if !errors.As(err, &ue) || ue.Kind != providers.KindPermanent {
			t.Errorf("exchange with another redirect_uri: %v, want a permanent error", err)
		}
		code = e.authorize(t, e.adapter, p)
		status, body := e.postToken(t, testClientID, testClientSecret, url.Values{"grant_type": {"authorization_code"}, "code": {code},
			"redirect_uri": {"https://evil.example/callback"}, "code_verifier": {verifier}})
		if status != http.StatusBadRequest || fitbitError(t, body) != "invalid_grant" {
			t.Errorf("redirect mismatch: %d %s", status, body)
		}
	})

	t.Run("wrong verifier", func(t *testing.T) {
		code := e.authorize(t, e.adapter, p)
		if _, err := e.adapter.Exchange(t.Context(), code, verifier+"x"); err == nil {
			t.Error("exchange with a wrong PKCE verifier succeeded")
		}
	})

	t.Run("wrong client", func(t *testing.T) {
		code := e.authorize(t, e.adapter, p)
		status, body := e.postToken(t, testClientID, "not-the-secret", url.Values{"grant_type": {"authorization_code"}, "code": {code},
			"redirect_uri": {testRedirect}, "code_verifier": {verifier}})
		if status != http.StatusUnauthorized || fitbitError(t, body) != "invalid_client" {
			t.Errorf("wrong client secret: %d %s", status, body)
		}
	})

	t.Run("expired code", func(t *testing.T) {
		code := e.authorize(t, e.adapter, p)
		e.clock.Add(11 * time.Minute)
		if _, err := e.adapter.Exchange(t.Context(), code, verifier); err == nil {
			t.Error("exchange of an 11-minute-old code succeeded")
		}
	})
}

// TestTokens: API calls without, with an unknown or with an expired token get Fitbit's 401; a
// refresh rotates the pair and the old refresh token is dead.
func TestTokens(t *testing.T) {
	e := newEnv(t, envOpts{})
	g := e.connect(t, e.people[0])
	for name, tok := range map[string]string{"missing": "", "unknown": "nope"} {
		rec := get(t, e.sim, tok, "/1/user/-/profile.json")
		if rec.Code != http.StatusUnauthorized {
			t.Errorf("%s token: %d", name, rec.Code)
		}
		fitbitError(t, rec.Body.Bytes())
	}
	if rec := get(t, e.sim, g.Token.AccessToken, "/1/user/-/profile.json"); rec.Code != http.StatusOK {
		t.Fatalf("profile: %d %s", rec.Code, rec.Body)
	}
	e.clock.Add(8*time.Hour + time.Second)
	rec := get(t, e.sim, g.Token.AccessToken, "/1/user/-/profile.json")
	if rec.Code != http.StatusUnauthorized || fitbitError(t, rec.Body.Bytes()) != "expired_token" {
		t.Errorf("expired token: %d %s", rec.Code, rec.Body)
	}
	fresh, err := e.adapter.Refresh(t.Context(), g.Token)
	if err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	if fresh.RefreshToken == g.Token.RefreshToken || fresh.AccessToken == g.Token.AccessToken {
		t.Error("refresh did not rotate the pair")
	}
	if rec := get(t, e.sim, fresh.AccessToken, "/1/user/-/devices.json"); rec.Code != http.StatusOK {
		t.Errorf("devices with the refreshed token: %d", rec.Code)
	}
	_, err = e.adapter.Refresh(t.Context(), g.Token)
	if !errors.Is(err, providers.ErrConsentRevoked) {
		t.Errorf("refresh with the spent refresh token: %v, want ErrConsentRevoked", err)
	}
}

// TestAPIRefusals: the hourly quota, missing scopes, another user's data, bad ranges and
// unknown paths are refused in Fitbit's shapes.
func TestAPIRefusals(t *testing.T) {
	e := newEnv(t, envOpts{hourlyLimit: 3})
	g := e.connect(t, e.people[0])
	tok := g.Token.AccessToken
	for path, want := range map[string]int{
		"/1/user/-/activities/steps/date/2026-03-30/2026-03-01.json": http.StatusBadRequest,
		"/1/user/-/body/log/weight/date/2026-01-01/2026-03-01.json":  http.StatusBadRequest,
		"/1/user/OTHER1/profile.json":                                http.StatusForbidden,
	} {
		rec := get(t, e.sim, tok, path)
		if rec.Code != want {
			t.Errorf("%s: %d, want %d", path, rec.Code, want)
		}
		fitbitError(t, rec.Body.Bytes())
	}
	rec := get(t, e.sim, tok, "/1/user/-/profile.json")
	if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Fitbit-Rate-Limit-Remaining") != "0" ||
		rec.Header().Get("Fitbit-Rate-Limit-Reset") == "" || rec.Header().Get("Retry-After") == "" {
		t.Errorf("fourth request of the hour: %d %v", rec.Code, rec.Header())
	}
	e.clock.Add(time.Hour)
	if rec := get(t, e.sim, tok, "/1/user/-/profile.json"); rec.Code != http.StatusOK || rec.Header().Get("Fitbit-Rate-Limit-Remaining") != "2" {
		t.Errorf("next hour: %d, remaining %s", rec.Code, rec.Header().Get("Fitbit-Rate-Limit-Remaining"))
	}
	if rec := get(t, e.sim, tok, "/1/user/-/nothing.json"); rec.Code != http.StatusNotFound {
		t.Errorf("unknown path: %d", rec.Code)
	}

	// A consent without the weight scope: the weight log is refused with insufficient_scope.
	u, _ := url.Parse(e.adapter.AuthCodeURL("s", challenge(verifier)))
	q := u.Query()
	q.Set("scope", "profile activity")
	u.RawQuery = q.Encode()
	_, nonce, _ := e.consentPage(t, u.String())
	res := e.answer(t, u.String(), nonce, e.people[1].Key, "allow")
	loc, _ := url.Parse(res.Header.Get("Location"))
	g2, err := e.adapter.Exchange(t.Context(), loc.Query().Get("code"), verifier)
	if err != nil {
		t.Fatal(err)
	}
	rec = get(t, e.sim, g2.Token.AccessToken, "/1/user/-/body/log/weight/date/2026-03-01/2026-03-02.json")
	if rec.Code != http.StatusForbidden || fitbitError(t, rec.Body.Bytes()) != "insufficient_scope" {
		t.Errorf("weight without the weight scope: %d %s", rec.Code, rec.Body)
	}
}
