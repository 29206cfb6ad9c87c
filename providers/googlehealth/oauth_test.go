package googlehealth

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/providers"
	"github.com/openhealthexchange/ohx/providers/providertest"
)

// TestAuthCodeURL: PKCE S256, offline access, consent prompt, incremental scopes, and only the
// read-only scopes of the enabled kinds.
func TestAuthCodeURL(t *testing.T) {
	f := newFixture(t, nil, fixtureOpts{kinds: []fhir.SampleKind{fhir.KindWeight, fhir.KindSleepDeep}})
	u, err := url.Parse(f.c.AuthCodeURL("st", "chal"))
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	for k, want := range map[string]string{"code_challenge": "chal", "code_challenge_method": "S256", "access_type": "offline",
		"prompt": "consent", "include_granted_scopes": "true", "state": "st", "response_type": "code", "redirect_uri": testRedirect} {
		if got := q.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	want := []string{scopePrefix + "health_metrics_and_measurements.readonly", scopePrefix + "settings.readonly", scopePrefix + "sleep.readonly"}
	if got := strings.Fields(q.Get("scope")); !slices.Equal(got, want) {
		t.Errorf("scopes %v, want %v", got, want)
	}
}

// TestExchange: the code and PKCE verifier reach the token endpoint (client secret in the body),
// the identity is read with the new token, and the legacy Fitbit id becomes the Predecessor.
func TestExchange(t *testing.T) {
	for _, tc := range []struct {
		name, identity string
		want           *providers.Account
	}{
		{"migrated", "identity.json", &providers.Account{Provider: "fitbit", User: testLegacy}},
		{"new user", "identity_new_user.json", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, map[string]providertest.Route{
				"POST /token grant_type=authorization_code": file("token_exchange.json"),
				"GET /v4/users/me/identity":                 file(tc.identity),
			}, fixtureOpts{})
			g, err := f.c.Exchange(t.Context(), "the-code", "the-verifier-0123456789012345678901234567890123")
			if err != nil {
				t.Fatal(err)
			}
			if g.UserID != testUser || !slices.Contains(g.Scopes, scopePrefix+"ecg.readonly") {
				t.Errorf("grant %s %v", g.UserID, g.Scopes)
			}
			if (g.Predecessor == nil) != (tc.want == nil) || g.Predecessor != nil && *g.Predecessor != *tc.want {
				t.Errorf("Predecessor %+v, want %+v", g.Predecessor, tc.want)
			}
			if g.Token.RefreshToken != "1//fixture-exchange-refresh" || !g.Token.Expiry.Equal(testNow.Add(3599*time.Second)) {
				t.Errorf("token refresh %q expiry %v", g.Token.RefreshToken, g.Token.Expiry)
			}
			tok := f.requests("/token")
			if len(tok) != 1 {
				t.Fatalf("%d token requests", len(tok))
			}
			form := tok[0].Form
			for k, want := range map[string]string{"code": "the-code", "code_verifier": "the-verifier-0123456789012345678901234567890123",
				"client_secret": "csecret", "client_id": "cid.apps.googleusercontent.com", "redirect_uri": testRedirect} {
				if form.Get(k) != want {
					t.Errorf("token request %s = %q, want %q", k, form.Get(k), want)
				}
			}
			id := f.requests("/v4/users/me/identity")
			if len(id) != 1 || id[0].Header.Get("Authorization") != "Bearer ya29.fixture-exchange-access" {
				t.Errorf("identity requests %d, want one with the new access token", len(id))
			}
		})
	}
}

// TestRefresh: without a new refresh token the old one is kept; invalid_grant is a revoked
// consent; a bad code at exchange is permanent, not a revoked consent.
func TestRefresh(t *testing.T) {
	f := newFixture(t, map[string]providertest.Route{"POST /token grant_type=refresh_token": file("token_refresh_no_rotation.json")}, fixtureOpts{})
	nt, err := f.c.Refresh(t.Context(), &oauth2.Token{AccessToken: "old", RefreshToken: "1//keep-me"})
	if err != nil {
		t.Fatal(err)
	}
	if nt.RefreshToken != "1//keep-me" || nt.AccessToken != "ya29.fixture-refreshed-access-2" {
		t.Errorf("refreshed %q/%q, want the new access token and the kept refresh token", nt.AccessToken, nt.RefreshToken)
	}
	if r := f.requests("/token"); len(r) != 1 || r[0].Form.Get("refresh_token") != "1//keep-me" || r[0].Form.Get("client_secret") != "csecret" {
		t.Errorf("refresh request %+v", r)
	}

	refused := providertest.Route{Status: http.StatusBadRequest, File: "googlehealth/token_invalid_grant.json"}
	f = newFixture(t, map[string]providertest.Route{"POST /token": refused}, fixtureOpts{})
	_, err = f.c.Refresh(t.Context(), &oauth2.Token{RefreshToken: "1//gone"})
	if !errors.Is(err, providers.ErrConsentRevoked) || providers.KindOf(err) != providers.KindAuth {
		t.Errorf("invalid_grant on refresh: %v (kind %s), want ErrConsentRevoked of kind auth", err, providers.KindOf(err))
	}
	if strings.Contains(err.Error(), "expired or revoked") {
		t.Errorf("vendor text in the error: %v", err)
	}
	_, err = f.c.Exchange(t.Context(), "used-code", "v")
	if errors.Is(err, providers.ErrConsentRevoked) || providers.KindOf(err) != providers.KindPermanent {
		t.Errorf("invalid_grant on exchange: %v, want permanent", err)
	}
}

// TestRevoke posts the refresh token to the revoke endpoint.
func TestRevoke(t *testing.T) {
	f := newFixture(t, map[string]providertest.Route{"POST /revoke": file("revoke_ok.json")}, fixtureOpts{})
	if err := f.c.Revoke(t.Context(), testUser, &oauth2.Token{AccessToken: "a", RefreshToken: "1//r"}); err != nil {
		t.Fatal(err)
	}
	if r := f.requests("/revoke"); len(r) != 1 || r[0].Form.Get("token") != "1//r" {
		t.Errorf("revoke requests %+v", r)
	}
}
