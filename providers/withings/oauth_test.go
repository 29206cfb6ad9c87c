package withings

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/oauth2"

	"github.com/openhealthexchange/ohx/providers"
	"github.com/openhealthexchange/ohx/providers/providertest"
)

func TestAuthCodeURL(t *testing.T) {
	f := newFixture(t, nil, fixtureOpts{})
	got := f.c.AuthCodeURL("st4te", "challenge-ignored")
	if !strings.HasPrefix(got, DefaultAuthURL+"?") {
		t.Fatalf("AuthCodeURL = %s, want the authorize2 page", got)
	}
	if !strings.Contains(got, "scope=user.info,user.metrics,user.activity,user.sleepevents") {
		t.Errorf("AuthCodeURL = %s, want literal comma-separated scopes", got)
	}
	u, _ := url.Parse(got)
	want := url.Values{
		"response_type": {"code"},
		"client_id":     {"cid"},
		"scope":         {"user.info,user.metrics,user.activity,user.sleepevents"},
		"redirect_uri":  {"https://ohx.example/connect/withings/callback"},
		"state":         {"st4te"},
	}
	if diff := cmp.Diff(want, u.Query()); diff != "" {
		t.Errorf("query (-want +got):\n%s", diff)
	}
}

func TestExchange(t *testing.T) {
	for _, fx := range []string{"token_exchange.json", "token_exchange_string_userid.json"} {
		t.Run(fx, func(t *testing.T) {
			f := newFixture(t, map[string]providertest.Route{
				"POST /v2/oauth2 action=requesttoken grant_type=authorization_code": file(fx),
			}, fixtureOpts{})
			g, err := f.c.Exchange(t.Context(), "c0de", "verifier-ignored")
			if err != nil {
				t.Fatal(err)
			}
			reqs := f.requests("/v2/oauth2")
			if len(reqs) != 1 {
				t.Fatalf("%d token requests, want 1", len(reqs))
			}
			wantForm := url.Values{
				"action": {"requesttoken"}, "grant_type": {"authorization_code"}, "client_id": {"cid"},
				"client_secret": {"csecret"}, "code": {"c0de"}, "redirect_uri": {"https://ohx.example/connect/withings/callback"},
			}
			if diff := cmp.Diff(wantForm, form(reqs[0])); diff != "" {
				t.Errorf("token request (-want +got):\n%s", diff)
			}
			if h := reqs[0].Header.Get("Authorization"); h != "" {
				t.Errorf("token request carries Authorization %q", h)
			}
			if g.UserID != testUser {
				t.Errorf("UserID = %q, want %q", g.UserID, testUser)
			}
			if g.Token.AccessToken != "a1" || g.Token.RefreshToken != "r1" || g.Token.TokenType != "Bearer" {
				t.Errorf("token = %+v", g.Token)
			}
			if want := testNow.Add(10800 * time.Second); !g.Token.Expiry.Equal(want) {
				t.Errorf("Expiry = %v, want %v", g.Token.Expiry, want)
			}
			if got := tokenUserID(g.Token); got != testUser {
				t.Errorf("token Extra userid = %q, want %q", got, testUser)
			}
			if len(g.Scopes) == 0 || g.Scopes[0] != "user.info" {
				t.Errorf("Scopes = %v", g.Scopes)
			}
			calls := f.rec.calls()
			if calls[0].User != "" || calls[0].Cacheable {
				t.Errorf("exchange call: user %q cacheable %v, want app-level and not cacheable", calls[0].User, calls[0].Cacheable)
			}
		})
	}
}

func TestExchangeInvalidCode(t *testing.T) {
	f := newFixture(t, map[string]providertest.Route{
		"POST /v2/oauth2 action=requesttoken": file("token_exchange_invalid_code.json"),
	}, fixtureOpts{maxRetries: 3})
	_, err := f.c.Exchange(t.Context(), "expired", "")
	ue := upstream(t, err)
	if ue.Kind != providers.KindPermanent || ue.Status != 503 {
		t.Errorf("got kind %s status %d, want permanent 503", ue.Kind, ue.Status)
	}
	if errors.Is(err, providers.ErrConsentRevoked) {
		t.Error("an invalid code is not a revoked consent")
	}
	if n := len(f.requests("/v2/oauth2")); n != 1 {
		t.Errorf("%d requests, want 1 (permanent errors are not retried)", n)
	}
}

func TestRefreshRotates(t *testing.T) {
	f := newFixture(t, map[string]providertest.Route{
		"POST /v2/oauth2 action=requesttoken grant_type=refresh_token": file("token_refresh.json"),
	}, fixtureOpts{})
	old := (&oauth2.Token{AccessToken: "a1", RefreshToken: "r1", Expiry: testNow.Add(-time.Minute)}).
		WithExtra(map[string]any{"userid": testUser})
	tok, err := f.c.Refresh(t.Context(), old)
	if err != nil {
		t.Fatal(err)
	}
	if tok.AccessToken != "new_access_token" || tok.RefreshToken != "new_refresh_token" {
		t.Errorf("token = %+v, want the rotated pair", tok)
	}
	if want := testNow.Add(time.Hour); !tok.Expiry.Equal(want) {
		t.Errorf("Expiry = %v, want %v", tok.Expiry, want)
	}
	if tokenUserID(tok) != testUser {
		t.Errorf("rotated token lost its userid")
	}
	reqs := f.requests("/v2/oauth2")
	if len(reqs) != 1 {
		t.Fatalf("%d refresh requests, want 1", len(reqs))
	}
	wantForm := url.Values{
		"action": {"requesttoken"}, "grant_type": {"refresh_token"}, "client_id": {"cid"},
		"client_secret": {"csecret"}, "refresh_token": {"r1"},
	}
	if diff := cmp.Diff(wantForm, form(reqs[0])); diff != "" {
		t.Errorf("refresh request (-want +got):\n%s", diff)
	}
	if c := f.rec.calls()[0]; c.User != testUser || c.Cacheable {
		t.Errorf("refresh call: user %q cacheable %v", c.User, c.Cacheable)
	}
}

func TestRefreshFailures(t *testing.T) {
	tests := []struct {
		name    string
		route   providertest.Route
		revoked bool
		kind    providers.ErrorKind
		status  int
	}{
		{"invalid refresh token (503)", file("token_refresh_invalid.json"), true, providers.KindAuth, 503},
		{"401 invalid refresh token", file("token_refresh_401.json"), true, providers.KindAuth, 401},
		{"auth status 100", body(`{"status":100,"body":{}}`), true, providers.KindAuth, 100},
		{"unauthorized 214", body(`{"status":214,"body":{}}`), true, providers.KindAuth, 214},
		{"503 not about the refresh token", body(`{"status":503,"body":{},"error":"Invalid Params: missing client_id"}`), false, providers.KindPermanent, 503},
		{"throttled", file("status_601.json"), false, providers.KindThrottled, 601},
		{"unknown action", file("status_2554.json"), false, providers.KindPermanent, 2554},
		{"no new refresh token", file("token_refresh_no_refresh_token.json"), false, providers.KindTransient, 200},
		{"vendor outage", providertest.Route{Status: 502, Body: "<html>bad gateway</html>"}, false, providers.KindTransient, 502},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, map[string]providertest.Route{"POST /v2/oauth2 action=requesttoken": tt.route}, fixtureOpts{})
			_, err := f.c.Refresh(t.Context(), &oauth2.Token{AccessToken: "a1", RefreshToken: "r1"})
			if err == nil {
				t.Fatal("Refresh succeeded")
			}
			if got := errors.Is(err, providers.ErrConsentRevoked); got != tt.revoked {
				t.Errorf("errors.Is(err, ErrConsentRevoked) = %v, want %v (err %v)", got, tt.revoked, err)
			}
			ue := upstream(t, err)
			if ue.Kind != tt.kind || ue.Status != tt.status {
				t.Errorf("kind %s status %d, want %s %d", ue.Kind, ue.Status, tt.kind, tt.status)
			}
			if strings.Contains(err.Error(), "r1") {
				t.Errorf("error text %q carries the refresh token", err)
			}
		})
	}
	t.Run("no refresh token", func(t *testing.T) {
		f := newFixture(t, nil, fixtureOpts{})
		_, err := f.c.Refresh(t.Context(), &oauth2.Token{AccessToken: "a1"})
		if !errors.Is(err, providers.ErrConsentRevoked) {
			t.Errorf("err = %v, want ErrConsentRevoked", err)
		}
	})
}

func TestRevoke(t *testing.T) {
	f := newFixture(t, map[string]providertest.Route{
		"POST /v2/signature action=getnonce": file("signature_getnonce.json"),
		"POST /v2/oauth2 action=revoke":      file("ok_empty.json"),
	}, fixtureOpts{})
	tok := (&oauth2.Token{AccessToken: "a1", RefreshToken: "r1"}).WithExtra(map[string]any{"userid": float64(12345)})
	if err := f.c.Revoke(t.Context(), "", tok); err != nil {
		t.Fatal(err)
	}
	mac := func(msg string) string {
		m := hmac.New(sha256.New, []byte("csecret"))
		m.Write([]byte(msg))
		return hex.EncodeToString(m.Sum(nil))
	}
	reqs := f.srv.Requests()
	if len(reqs) != 2 {
		t.Fatalf("%d requests, want getnonce then revoke", len(reqs))
	}
	wantNonce := url.Values{
		"action": {"getnonce"}, "client_id": {"cid"}, "timestamp": {"1720267200"},
		"signature": {mac("getnonce,cid,1720267200")},
	}
	if testNow.Unix() != 1720267200 {
		t.Fatalf("test clock moved: %d", testNow.Unix())
	}
	if diff := cmp.Diff(wantNonce, form(reqs[0])); diff != "" {
		t.Errorf("getnonce (-want +got):\n%s", diff)
	}
	wantRevoke := url.Values{
		"action": {"revoke"}, "client_id": {"cid"}, "nonce": {"aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d"},
		"userid": {testUser}, "signature": {mac("revoke,cid,aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d")},
	}
	if diff := cmp.Diff(wantRevoke, form(reqs[1])); diff != "" {
		t.Errorf("revoke (-want +got):\n%s", diff)
	}
	for _, r := range reqs {
		if r.Header.Get("Authorization") != "" {
			t.Errorf("%s carries a bearer token; signed services do not take one", r.Path)
		}
	}

	t.Run("token without userid", func(t *testing.T) {
		f := newFixture(t, nil, fixtureOpts{})
		err := f.c.Revoke(t.Context(), "", &oauth2.Token{AccessToken: "a1"})
		if ue := upstream(t, err); ue.Kind != providers.KindPermanent {
			t.Errorf("kind %s, want permanent", ue.Kind)
		}
		if n := len(f.srv.Requests()); n != 0 {
			t.Errorf("%d requests, want none", n)
		}
	})
}
