package fitbit

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/providers"
	"github.com/openhealthexchange/ohx/providers/fitbit/fitbittest"
	"github.com/openhealthexchange/ohx/providers/providertest"
)

func TestTokenRequests(t *testing.T) {
	f := newFixture(t, map[string]providertest.Route{
		"POST /oauth2/token grant_type=authorization_code": file("token_exchange.json"),
		"POST /oauth2/revoke":                              {Body: ""},
	}, opts{})
	g, err := f.c.Exchange(t.Context(), "code-1", "verifier-1")
	if err != nil {
		t.Fatal(err)
	}
	if g.UserID != testUser || g.Token.AccessToken != fitbittest.AccessToken || len(g.Scopes) == 0 {
		t.Errorf("grant user %q scopes %v", g.UserID, g.Scopes)
	}
	// expires_in 28800 from the client's clock (fitbittest.Now), not the machine's.
	if want := fitbittest.Now.Add(8 * time.Hour); !g.Token.Expiry.Equal(want) {
		t.Errorf("expiry %v, want %v (the client's clock + expires_in)", g.Token.Expiry, want)
	}
	if err := f.c.Revoke(t.Context(), testUser, g.Token); err != nil {
		t.Fatal(err)
	}
	reqs := f.srv.Requests()
	if len(reqs) != 2 {
		t.Fatalf("%d requests, want 2", len(reqs))
	}
	for _, r := range reqs {
		u, p, ok := (&http.Request{Header: r.Header}).BasicAuth()
		if !ok || u != fitbittest.ClientID || p != fitbittest.ClientSecret {
			t.Errorf("%s without Basic client authentication", r.Path)
		}
		if r.Header.Get("Authorization") == "" || strings.HasPrefix(r.Header.Get("Authorization"), "Bearer") {
			t.Errorf("%s: want Basic, not Bearer", r.Path)
		}
	}
	if f := reqs[0].Form; f.Get("code_verifier") != "verifier-1" || f.Get("redirect_uri") != testRedirect || f.Get("client_id") != fitbittest.ClientID {
		t.Errorf("exchange form lacks the PKCE verifier, redirect_uri or client_id")
	}
	if reqs[1].Form.Get("token") != fitbittest.RefreshToken {
		t.Errorf("revoke did not send the refresh token")
	}
}

func TestTokenErrors(t *testing.T) {
	f := newFixture(t, map[string]providertest.Route{
		"POST /oauth2/token grant_type=refresh_token": {Status: http.StatusUnauthorized, Body: `{"errors":[{"errorType":"invalid_client","message":"Invalid authorization header."}],"success":false}`},
	}, opts{})
	_, err := f.c.Refresh(t.Context(), &oauth2.Token{RefreshToken: "r"})
	if ue := upstreamErr(t, err); ue.Kind != providers.KindPermanent || errors.Is(err, providers.ErrConsentRevoked) {
		t.Errorf("invalid_client: %v, want permanent (our configuration, not the patient's consent)", err)
	}
	f.srv.Set("POST /oauth2/token grant_type=refresh_token", providertest.Route{Status: http.StatusUnauthorized, Body: `{"errors":[{"errorType":"invalid_token"}]}`})
	if _, err := f.c.Refresh(t.Context(), &oauth2.Token{RefreshToken: "r"}); !errors.Is(err, providers.ErrConsentRevoked) || providers.KindOf(err) != providers.KindAuth {
		t.Errorf("invalid_token: %v, want auth + ErrConsentRevoked", err)
	}
}

func TestNewAndConsentURL(t *testing.T) {
	f := newFixture(t, nil, opts{kinds: []fhir.SampleKind{fhir.KindWeight, fhir.KindSleepDeep}})
	u, err := url.Parse(f.c.AuthCodeURL("st", "ch"))
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	if got := q.Get("scope"); got != "profile settings sleep weight" {
		t.Errorf("scope %q, want what the kinds need plus profile and settings", got)
	}
	if q.Get("code_challenge") != "ch" || q.Get("code_challenge_method") != "S256" || q.Get("response_type") != "code" {
		t.Errorf("consent URL %s", u)
	}
	if got := f.c.Kinds(); len(got) != 2 || got[0] != fhir.KindSleep || got[1] != fhir.KindWeight {
		t.Errorf("Kinds %v, want [sleep weight]", got)
	}
	if _, err := New(Config{ClientID: "a", ClientSecret: "b", RedirectURL: "https://x", Kinds: []fhir.SampleKind{fhir.KindBloodPressure}}, f.rec, nil); err == nil {
		t.Error("New accepted an unsupported kind")
	}
	if f.c.Title() != "Fitbit" || providers.Title(f.c) != "Fitbit" || f.c.Name() != "fitbit" {
		t.Error("name or title")
	}
	if cc := ClientConfig(0); cc.Provider != Name || !cc.UserThrottle || cc.UserRate <= 0 || cc.AppRate != 0 {
		t.Errorf("ClientConfig %+v", cc)
	}
}

// TestExchangeWithoutProfile: a consent without the profile scope (no time zone: no correct
// instants) is refused at the exchange.
func TestExchangeWithoutProfile(t *testing.T) {
	f := newFixture(t, map[string]providertest.Route{
		"POST /oauth2/token grant_type=authorization_code": {Body: `{"access_token":"a","expires_in":28800,"refresh_token":"r","scope":"activity weight","token_type":"Bearer","user_id":"ABC123"}`},
	}, opts{})
	if _, err := f.c.Exchange(t.Context(), "code-1", "verifier-1"); providers.KindOf(err) != providers.KindPermanent {
		t.Errorf("exchange without profile: %v, want a permanent error", err)
	}
}
