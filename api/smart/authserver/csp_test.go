package authserver

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestConsentPageCSP: the pages of an authorization session let their forms go to the origin of
// the session's redirect URI (Allow, Deny and a refused sign-in redirect there, and Chromium
// checks form-action on that redirect), while everything else stays locked down.
func TestConsentPageCSP(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	_, challenge := pkce()
	res, _ := b.do(http.MethodGet, "/auth/authorize?"+e.authorizeQuery("app", "launch/patient patient/*.rs", challenge).Encode(), nil)
	if res.StatusCode != http.StatusSeeOther {
		t.Fatalf("authorize: %d", res.StatusCode)
	}
	res, page := b.do(http.MethodGet, "/auth/login", nil)
	checkSessionCSP(t, "login page", res.Header)
	res, _ = b.do(http.MethodPost, "/auth/login", url.Values{"csrf": {csrfOf(t, page)}, "username": {"ann"}, "password": {password}})
	if res.StatusCode != http.StatusSeeOther {
		t.Fatalf("login: %d", res.StatusCode)
	}
	res, page = b.do(http.MethodGet, "/auth/consent", nil)
	if res.StatusCode != http.StatusOK || !strings.Contains(page, "Allow access?") {
		t.Fatalf("consent page: %d\n%s", res.StatusCode, page)
	}
	checkSessionCSP(t, "consent page", res.Header)

	// A page outside any session (here: no session cookie) allows our own forms only.
	res, _ = e.browser().do(http.MethodGet, "/auth/consent", nil)
	if got, want := res.Header.Get("Content-Security-Policy"), pageCSP(""); got != want || !strings.Contains(got, "form-action 'self';") {
		t.Errorf("error page CSP = %q, want %q", got, want)
	}
}

func checkSessionCSP(t *testing.T, page string, h http.Header) {
	t.Helper()
	csp := h.Get("Content-Security-Policy")
	for _, want := range []string{"form-action 'self' https://app.example;", "default-src 'none'", "frame-ancestors 'none'", "style-src 'unsafe-inline'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("%s: Content-Security-Policy %q lacks %q", page, csp, want)
		}
	}
	for k, want := range map[string]string{"X-Frame-Options": "DENY", "Cache-Control": "no-store", "Referrer-Policy": "no-referrer"} {
		if got := h.Get(k); got != want {
			t.Errorf("%s: %s = %q, want %q", page, k, got, want)
		}
	}
}

func TestRedirectSource(t *testing.T) {
	tests := []struct{ redirect, want string }{
		{"https://app.example/cb", "https://app.example"},
		{"https://App.Example/cb?x=1", "https://app.example"},
		{"http://127.0.0.1:8081/cb", "http://127.0.0.1:8081"},
		{"https://app.example:8443", "https://app.example:8443"},
		{"https://user:pw@app.example/cb", "https://app.example"},
		{"com.example.app:/cb", "com.example.app:"},
		{"com.example.app://callback", "com.example.app:"},
		// Odd values never reach the header: the pages then allow 'self' only.
		{"", ""},
		{"https://app.example;script-src/cb", ""},
		{"https://app.example,x/cb", ""},
		{"https://app.example'/cb", ""},
		{"https://[::1]:8080/cb", ""},
		{"https:/cb", ""},
		{"javascript:alert(1)", ""},
		{"data:text/html,x", ""},
		{"/relative/cb", ""},
	}
	for _, tt := range tests {
		if got := redirectSource(tt.redirect); got != tt.want {
			t.Errorf("redirectSource(%q) = %q, want %q", tt.redirect, got, tt.want)
		}
	}
	if got, want := pageCSP("com.example.app:/cb"), "default-src 'none'; style-src 'unsafe-inline'; form-action 'self' com.example.app:; frame-ancestors 'none'"; got != want {
		t.Errorf("pageCSP = %q, want %q", got, want)
	}
}
