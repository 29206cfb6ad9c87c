package googlehealthsim

import (
	"context"
	"slices"
	"testing"

	"golang.org/x/oauth2"
)

// TestConnect: the consent page driven over HTTP, then the adapter's code exchange (PKCE S256),
// gives a connection to the chosen account.
func TestConnect(t *testing.T) {
	h := newHarness(t, 42, "")
	p := h.world.People[1]
	verifier := oauth2.GenerateVerifier()
	nonce, accounts := consentForm(t, h.gh.AuthCodeURL("st", oauth2.S256ChallengeFromVerifier(verifier)))
	if want := []string{"sim-1", "sim-2", "sim-3"}; !slices.Equal(accounts, want) {
		t.Errorf("accounts %v, want %v", accounts, want)
	}
	loc := h.answer(t, nonce, p.Key, "allow")
	if loc.Scheme+"://"+loc.Host+loc.Path != testRedirect || loc.Query().Get("state") != "st" || loc.Query().Get("code") == "" {
		t.Fatalf("redirect %s: want %s with code and state", loc, testRedirect)
	}
	g, err := h.gh.Exchange(t.Context(), loc.Query().Get("code"), verifier)
	if err != nil {
		t.Fatal(err)
	}
	if want := h.sim.healthUserID(p); g.UserID != want {
		t.Errorf("user %q, want %q", g.UserID, want)
	}
	if g.Predecessor != nil {
		t.Errorf("predecessor %v, want none", g.Predecessor)
	}
	if g.Token.RefreshToken == "" || len(g.Scopes) == 0 {
		t.Errorf("grant without refresh token or scopes: %+v", g)
	}
	devs, err := h.gh.Devices(t.Context(), g.UserID, oauth2.StaticTokenSource(g.Token))
	if err != nil {
		t.Fatal(err)
	}
	if len(devs) != 2 || devs[0].Model != "Charge 6" || devs[0].Battery != itoa(h.world.Battery(p, "tracker", h.clock.Now())) || devs[1].Model != "Aria Air" {
		t.Errorf("devices %+v", devs)
	}
	// Google does not rotate refresh tokens; revoking ends the grant.
	tok, err := h.gh.Refresh(context.Background(), g.Token)
	if err != nil {
		t.Fatal(err)
	}
	if tok.RefreshToken != g.Token.RefreshToken || tok.AccessToken == g.Token.AccessToken {
		t.Errorf("refresh: rotated refresh token or same access token")
	}
	if got := h.sim.connected(); len(got) != 1 || got[0] != p {
		t.Errorf("connected %v, want [%s]", got, p.Key)
	}
	if err := h.gh.Revoke(t.Context(), g.UserID, tok); err != nil {
		t.Fatal(err)
	}
	if _, err := h.gh.Refresh(t.Context(), tok); upstreamKind(err) != "auth" {
		t.Errorf("refresh after revoke: %v, want an auth error (consent revoked)", err)
	}
	if got := h.sim.connected(); len(got) != 0 {
		t.Errorf("connected after revoke: %v", got)
	}
}
