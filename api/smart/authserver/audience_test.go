package authserver

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"testing"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp"

	"github.com/openhealthexchange/ohx/api/smart"
)

// TestAuthorizeAudience checks which aud values authorize accepts: the R5 base and the R4 base
// (with or without a trailing slash), nothing else.
func TestAuthorizeAudience(t *testing.T) {
	e := newEnv(t)
	_, challenge := pkce()
	for _, tc := range []struct {
		aud string
		ok  bool
	}{
		{e.fhir, true},
		{e.fhir + "/", true},
		{e.fhir + "/r4", true},
		{e.fhir + "/r4/", true},
		{e.fhir + "/r5", false},
		{e.fhir + "/r4/Patient", false},
		{e.url, false},
		{"https://other.example/fhir/r4", false},
		{"", false},
	} {
		t.Run(tc.aud, func(t *testing.T) {
			q := e.authorizeQuery("app", "launch/patient patient/*.rs", challenge)
			q.Set("aud", tc.aud)
			res, _ := e.browser().do(http.MethodGet, "/auth/authorize?"+q.Encode(), nil)
			loc, _ := url.Parse(res.Header.Get("Location"))
			switch {
			case tc.ok && (res.StatusCode != http.StatusSeeOther || loc.String() != "/auth/login"):
				t.Errorf("got %d → %q, want the login page", res.StatusCode, loc)
			case !tc.ok && (res.StatusCode != http.StatusFound || loc.Query().Get("error") != "invalid_request"):
				t.Errorf("got %d → %q, want a redirect with error=invalid_request", res.StatusCode, loc)
			}
		})
	}
}

// TestR4AudienceLaunch runs a launch whose aud is the R4 base and checks the token: its aud
// lists both bases, and resource-server verifiers for either base accept it.
func TestR4AudienceLaunch(t *testing.T) {
	e := newEnv(t)
	verifier, challenge := pkce()
	b := e.browser()
	q := e.authorizeQuery("app", "openid fhirUser user/*.rs", challenge)
	q.Set("aud", e.fhir+"/r4")
	res, _ := b.do(http.MethodGet, "/auth/authorize?"+q.Encode(), nil)
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/auth/login" {
		t.Fatalf("authorize with the R4 aud: %d → %q", res.StatusCode, res.Header.Get("Location"))
	}
	_, page := b.do(http.MethodGet, "/auth/login", nil)
	if res, _ := b.do(http.MethodPost, "/auth/login", url.Values{"csrf": {csrfOf(t, page)}, "username": {"doc"}, "password": {password}}); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("login: %d", res.StatusCode)
	}
	r := e.exchange("app", b.approve(), verifier)
	if r.status != http.StatusOK {
		t.Fatalf("token: %d %v", r.status, r.body)
	}
	at := r.body["access_token"].(string)
	c := e.verify(at)
	if diff := cmp.Diff(jwt.ClaimStrings{e.fhir, e.fhir + "/r4"}, c.Audience); diff != "" {
		t.Errorf("aud (-want +got):\n%s", diff)
	}
	if c.FHIRUser != "Practitioner/d1" {
		t.Errorf("fhirUser %q, want Practitioner/d1", c.FHIRUser)
	}
	for _, cfg := range []smart.VerifierConfig{
		{Audience: e.fhir},
		{Audience: e.fhir, Audiences: []string{e.fhir + "/r4"}},
		{Audience: e.fhir + "/r4"},
	} {
		cfg.Issuer, cfg.Keyfunc, cfg.RequireTyp = e.s.Endpoints().Issuer, e.s.Keyfunc(), true
		v, err := smart.NewVerifier(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.Verify(t.Context(), at); err != nil {
			t.Errorf("verifier for %s %v: %v", cfg.Audience, cfg.Audiences, err)
		}
	}
	v, err := smart.NewVerifier(smart.VerifierConfig{Issuer: e.s.Endpoints().Issuer, Keyfunc: e.s.Keyfunc(), Audience: "https://other.example/fhir",
		Audiences: []string{"https://other.example/fhir/r4"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(t.Context(), at); !errors.Is(err, smart.ErrInvalidToken) {
		t.Errorf("another server's verifier: got %v, want smart.ErrInvalidToken", err)
	}
	aud, _ := e.introspect(at)["aud"].([]any)
	if !slices.Equal(aud, []any{e.fhir, e.fhir + "/r4"}) {
		t.Errorf("introspection aud %v, want both bases", aud)
	}
}

// TestClientCredentialsAudience checks that Backend Services tokens list both bases and that a
// requested aud must name one of them.
func TestClientCredentialsAudience(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		aud    string // "": not sent
		status int
	}{
		{"", http.StatusOK},
		{e.fhir, http.StatusOK},
		{e.fhir + "/r4", http.StatusOK},
		{e.fhir + "/r4/", http.StatusOK},
		{"https://other.example/fhir", http.StatusBadRequest},
	} {
		t.Run(tc.aud, func(t *testing.T) {
			f := backendForm(e.assertion(jwt.SigningMethodES384, e.ecKey, "ec1", nil))
			if tc.aud != "" {
				f.Set("aud", tc.aud)
			}
			r := e.post("/auth/token", f)
			if r.status != tc.status {
				t.Fatalf("got %d %v, want %d", r.status, r.body, tc.status)
			}
			if r.status != http.StatusOK {
				if r.body["error"] != "invalid_request" {
					t.Errorf("error %v, want invalid_request", r.body["error"])
				}
				return
			}
			if got := e.verify(r.body["access_token"].(string)).Audience; !slices.Equal(got, jwt.ClaimStrings{e.fhir, e.fhir + "/r4"}) {
				t.Errorf("aud %v, want both bases", got)
			}
		})
	}
}
