package providers_test

import (
	"errors"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/openhealthexchange/ohx/providers"
	"github.com/openhealthexchange/ohx/providers/providertest"
)

// TestRefreshAhead: a token expiring within the margin is refreshed (one vendor call, the
// rotated pair stored before RefreshAhead returns); a token good for longer, or without an
// expiry, is left alone.
func TestRefreshAhead(t *testing.T) {
	soon := &oauth2.Token{AccessToken: "a1", RefreshToken: "r1", TokenType: "Bearer", Expiry: time.Now().Add(10 * time.Minute)}
	f := newRefreshFixture(t, soon, map[string]providertest.Route{refreshRoute: refreshHandler(t, 0)})
	ctx := t.Context()
	if refreshed, err := f.vault.RefreshAhead(ctx, f.conn, f.p, 5*time.Minute); err != nil || refreshed {
		t.Fatalf("expiring in 10 min, margin 5 min: refreshed %v, %v; want untouched", refreshed, err)
	}
	if h := f.srv.Hits(refreshRoute); h != 0 {
		t.Fatalf("refresh calls: %d, want 0", h)
	}
	refreshed, err := f.vault.RefreshAhead(ctx, f.conn, f.p, 15*time.Minute)
	if err != nil || !refreshed {
		t.Fatalf("expiring in 10 min, margin 15 min: refreshed %v, %v; want refreshed", refreshed, err)
	}
	// Another instance reads the rotated pair from the store.
	got, err := newVault(t, openStore(t, f.dir), "k1").Get(ctx, "fake", "p1")
	if err != nil {
		t.Fatal(err)
	}
	if got.Token.AccessToken != "a2" || got.Token.RefreshToken != "r2" || !got.ExpiresWithin(time.Now(), 4*time.Hour) || got.ExpiresWithin(time.Now(), 2*time.Hour) {
		t.Errorf("stored after the refresh: %v, want a2/r2 for 3 h", got)
	}
	// The new token is good for 3 h: a pass with the same margin leaves it (and a stale copy
	// of the connection does not make it refresh again).
	if refreshed, err := f.vault.RefreshAhead(ctx, f.conn, f.p, 15*time.Minute); err != nil || refreshed {
		t.Errorf("after the refresh: refreshed %v, %v; want untouched", refreshed, err)
	}
	if h := f.srv.Hits(refreshRoute); h != 1 {
		t.Errorf("refresh calls: %d, want 1", h)
	}

	never := newRefreshFixture(t, &oauth2.Token{AccessToken: "a1", RefreshToken: "r1"}, map[string]providertest.Route{})
	if refreshed, err := never.vault.RefreshAhead(ctx, never.conn, never.p, 24*time.Hour); err != nil || refreshed {
		t.Errorf("a token without expiry: refreshed %v, %v; want untouched", refreshed, err)
	}
}

// TestRefreshAheadTwoInstances: two instances refreshing one connection ahead at once make one
// vendor call; both report the token replaced.
func TestRefreshAheadTwoInstances(t *testing.T) {
	soon := &oauth2.Token{AccessToken: "a1", RefreshToken: "r1", TokenType: "Bearer", Expiry: time.Now().Add(10 * time.Minute)}
	f := newRefreshFixture(t, soon, map[string]providertest.Route{refreshRoute: refreshHandler(t, 200*time.Millisecond)})
	v2 := newVault(t, openStore(t, f.dir), "k1", providers.WithRefreshLease(5*time.Second, 10*time.Millisecond))
	c2, err := v2.Get(t.Context(), "fake", "p1")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Go(func() {
			v, c := f.vault, f.conn
			if i == 1 {
				v, c = v2, c2
			}
			if _, err := v.RefreshAhead(t.Context(), c, f.p, 15*time.Minute); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if h := f.srv.Hits(refreshRoute); h != 1 {
		t.Errorf("refresh calls: %d, want 1", h)
	}
}

// TestRefreshAheadRefused: a refused refresh token marks the connection needs-reauth and returns
// ErrConsentRevoked; asking again does not call the vendor with the dead token.
func TestRefreshAheadRefused(t *testing.T) {
	soon := &oauth2.Token{AccessToken: "a1", RefreshToken: "r1", TokenType: "Bearer", Expiry: time.Now().Add(time.Minute)}
	f := newRefreshFixture(t, soon, map[string]providertest.Route{
		refreshRoute: {Body: `{"status":100,"body":{},"error":"invalid refresh_token"}`},
	})
	ctx := t.Context()
	if _, err := f.vault.RefreshAhead(ctx, f.conn, f.p, 15*time.Minute); !errors.Is(err, providers.ErrConsentRevoked) {
		t.Fatalf("got %v, want ErrConsentRevoked", err)
	}
	got, err := f.vault.Get(ctx, "fake", "p1")
	if err != nil || got.Status != providers.StatusNeedsReauth {
		t.Fatalf("after the refusal: %v, %v; want needs-reauth", got, err)
	}
	if _, err := f.vault.RefreshAhead(ctx, f.conn, f.p, 15*time.Minute); !errors.Is(err, providers.ErrConsentRevoked) {
		t.Errorf("again: got %v, want ErrConsentRevoked", err)
	}
	if h := f.srv.Hits(refreshRoute); h != 1 {
		t.Errorf("refresh calls: %d, want 1", h)
	}
	if err := f.vault.Delete(ctx, got); err != nil {
		t.Fatal(err)
	}
	if _, err := f.vault.RefreshAhead(ctx, f.conn, f.p, 15*time.Minute); !errors.Is(err, providers.ErrNotConnected) {
		t.Errorf("a deleted connection: got %v, want ErrNotConnected", err)
	}
}
