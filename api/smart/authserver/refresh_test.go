package authserver

import (
	"net/http"
	"net/url"
	"testing"
)

// refreshWith posts a refresh_token grant with the given extra form fields and Basic credentials.
func (e *env) refreshWith(rt string, extra url.Values, basic ...string) resp {
	e.t.Helper()
	f := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}
	for k, v := range extra {
		f[k] = v
	}
	return e.post("/auth/token", f, basic...)
}

// TestPublicRefreshWithoutClientID checks RFC 6749 §6 for public clients: a refresh without
// client_id (as fhirclient sends it) works, the token is still rotated, and replaying a rotated
// token still revokes the family.
func TestPublicRefreshWithoutClientID(t *testing.T) {
	e := newEnv(t)
	verifier, challenge := pkce()
	r0 := e.exchange("app", e.login("app", "ann", "offline_access patient/*.rs", challenge, ""), verifier)
	rt0 := r0.body["refresh_token"].(string)

	r1 := e.refreshWith(rt0, nil)
	if r1.status != http.StatusOK || r1.body["refresh_token"] == nil || r1.body["refresh_token"] == rt0 || r1.body["patient"] != "p1" {
		t.Fatalf("refresh without client_id: %d %v", r1.status, r1.body)
	}
	checkNoStore(t, r1.header)
	if c := e.verify(r1.body["access_token"].(string)); c.ClientID != "app" || c.Subject != "ann" {
		t.Errorf("refreshed token: client %q sub %q, want app and ann", c.ClientID, c.Subject)
	}
	// With client_id, as before.
	r2 := e.refreshWith(r1.body["refresh_token"].(string), url.Values{"client_id": {"app"}})
	if r2.status != http.StatusOK {
		t.Fatalf("refresh with client_id: %d %v", r2.status, r2.body)
	}
	rt2, at2 := r2.body["refresh_token"].(string), r2.body["access_token"].(string)
	// Replaying a rotated token without client_id still burns the family.
	if r := e.refreshWith(rt0, nil); r.status != http.StatusBadRequest || r.body["error"] != "invalid_grant" {
		t.Errorf("replay of a rotated token: got %d %v, want 400 invalid_grant", r.status, r.body)
	}
	if r := e.refreshWith(rt2, nil); r.status != http.StatusBadRequest || r.body["error"] != "invalid_grant" {
		t.Errorf("refresh after replay detection: got %d %v, want 400 invalid_grant", r.status, r.body)
	}
	if got := e.introspect(at2); got["active"] != false {
		t.Errorf("access token of the revoked family: %v, want inactive", got)
	}
	if r := e.refreshWith("no-such-refresh-token", nil); r.status != http.StatusBadRequest || r.body["error"] != "invalid_grant" {
		t.Errorf("unknown token: got %d %v, want 400 invalid_grant", r.status, r.body)
	}
	if r := e.refreshWith("", nil); r.status != http.StatusBadRequest || r.body["error"] != "invalid_request" {
		t.Errorf("no token: got %d %v, want 400 invalid_request", r.status, r.body)
	}
}

// TestConfidentialRefreshNeedsAuthentication checks that a confidential client's refresh token
// is refused without its authentication, and that the refusal does not consume it.
func TestConfidentialRefreshNeedsAuthentication(t *testing.T) {
	e := newEnv(t)
	verifier, challenge := pkce()
	r := e.exchange("conf", e.login("conf", "ann", "launch/patient offline_access patient/*.rs", challenge, ""), verifier)
	rt := r.body["refresh_token"].(string)
	for _, tc := range []struct {
		name  string
		extra url.Values
		want  string
	}{
		{"no client authentication", nil, "invalid_client"},
		{"client_id only", url.Values{"client_id": {"conf"}}, "invalid_client"},
		// Last: the token is bound to conf, so presenting it as app is a leak and burns the
		// family (unchanged behaviour).
		{"another public client", url.Values{"client_id": {"app"}}, "invalid_grant"},
	} {
		got := e.refreshWith(rt, tc.extra)
		if got.status == http.StatusOK || got.body["error"] != tc.want {
			t.Errorf("%s: got %d %v, want %s", tc.name, got.status, got.body, tc.want)
		}
		if tc.want == "invalid_client" && (got.status != http.StatusUnauthorized || got.header.Get("WWW-Authenticate") == "") {
			t.Errorf("%s: got %d WWW-Authenticate %q, want 401 with a challenge", tc.name, got.status, got.header.Get("WWW-Authenticate"))
		}
	}
	if got := e.refreshWith(rt, nil, "conf", e.secret); got.status != http.StatusBadRequest || got.body["error"] != "invalid_grant" {
		t.Errorf("after the leak: got %d %v, want 400 invalid_grant", got.status, got.body)
	}
}

// TestConfidentialRefreshSurvivesUnauthenticatedAttempt checks that refusing an unauthenticated
// refresh of a confidential client's token leaves the token usable by the client.
func TestConfidentialRefreshSurvivesUnauthenticatedAttempt(t *testing.T) {
	e := newEnv(t)
	verifier, challenge := pkce()
	r := e.exchange("conf", e.login("conf", "ann", "launch/patient offline_access patient/*.rs", challenge, ""), verifier)
	rt := r.body["refresh_token"].(string)
	if got := e.refreshWith(rt, nil); got.status != http.StatusUnauthorized || got.body["error"] != "invalid_client" {
		t.Fatalf("without authentication: got %d %v, want 401 invalid_client", got.status, got.body)
	}
	if got := e.refreshWith(rt, nil, "conf", e.secret); got.status != http.StatusOK {
		t.Errorf("with authentication afterwards: got %d %v, want 200", got.status, got.body)
	}
}

// TestPublicRefreshRemovedClient checks that a public client's refresh token dies with the client.
func TestPublicRefreshRemovedClient(t *testing.T) {
	e := newEnv(t)
	verifier, challenge := pkce()
	r := e.exchange("app", e.login("app", "ann", "offline_access patient/*.rs", challenge, ""), verifier)
	if err := e.s.RemoveClient(t.Context(), "app"); err != nil {
		t.Fatal(err)
	}
	if got := e.refreshWith(r.body["refresh_token"].(string), nil); got.status != http.StatusBadRequest || got.body["error"] != "invalid_grant" {
		t.Errorf("got %d %v, want 400 invalid_grant", got.status, got.body)
	}
}
