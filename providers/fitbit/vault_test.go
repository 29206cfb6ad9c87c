package fitbit

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/openhealthexchange/ohx/providers"
	"github.com/openhealthexchange/ohx/providers/fitbit/fitbittest"
	"github.com/openhealthexchange/ohx/providers/providertest"
	"github.com/openhealthexchange/ohx/store/sqlite"
)

// TestConcurrentRefreshSingleUse proves that a single-use refresh token is used once: many
// goroutines, through two vaults (two ohx instances) on one embedded store, need a refresh at the
// same time. The fake honours the old refresh token once and answers invalid_grant to any reuse.
func TestConcurrentRefreshSingleUse(t *testing.T) {
	fresh, err := os.ReadFile(filepath.Join(providertest.ModuleRoot(t), "testdata", "fitbit", "token_refresh.json"))
	if err != nil {
		t.Fatal(err)
	}
	invalid, err := os.ReadFile(filepath.Join(providertest.ModuleRoot(t), "testdata", "fitbit", "token_refresh_invalid.json"))
	if err != nil {
		t.Fatal(err)
	}
	var used atomic.Int32
	refresh := func(w http.ResponseWriter, r *http.Request) {
		if r.Form.Get("refresh_token") != fitbittest.RefreshToken || used.Add(1) > 1 {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write(invalid)
			return
		}
		if u, p, ok := r.BasicAuth(); !ok || u != fitbittest.ClientID || p != fitbittest.ClientSecret {
			t.Errorf("refresh without Basic client authentication")
		}
		time.Sleep(100 * time.Millisecond) // let every other caller pile up
		_, _ = w.Write(fresh)
	}
	const route = "POST /oauth2/token grant_type=refresh_token"
	f := newFixture(t, map[string]providertest.Route{route: {Handler: refresh}}, opts{})
	f.c.now = time.Now // the vault compares the refreshed tokens' expiry with the machine's clock

	dir := t.TempDir()
	open := func() *sqlite.Store {
		st, err := sqlite.Open(t.Context(), dir, sqlite.Options{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}
	keys := map[string][]byte{"k1": bytes.Repeat([]byte{7}, 32)}
	vault := func(st *sqlite.Store) *providers.Vault {
		v, err := providers.NewVault(st, keys, "k1", nil, providers.WithRefreshLease(5*time.Second, 10*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	v1 := vault(open())
	conn := &providers.Connection{Provider: Name, PatientID: testPatient, VendorUserID: testUser, Status: providers.StatusActive,
		Token: &oauth2.Token{AccessToken: "fitbit-access-0", RefreshToken: fitbittest.RefreshToken, TokenType: "Bearer", Expiry: time.Now().Add(-time.Minute)}}
	if err := v1.Save(t.Context(), conn); err != nil {
		t.Fatal(err)
	}
	v2 := vault(open())
	c2, err := v2.Get(t.Context(), Name, testPatient)
	if err != nil {
		t.Fatal(err)
	}

	const n = 16
	tokens := make(chan string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ts := v1.TokenSource(t.Context(), conn, f.c)
			if i%2 == 1 {
				ts = v2.TokenSource(t.Context(), c2, f.c)
			}
			tok, err := ts.Token()
			if err != nil {
				t.Error(err)
				return
			}
			tokens <- tok.AccessToken
		}()
	}
	wg.Wait()
	close(tokens)
	got := 0
	for tok := range tokens {
		got++
		if tok != fitbittest.RefreshedAccessToken {
			t.Errorf("a caller got %q, want the refreshed access token", tok)
		}
	}
	if got != n {
		t.Errorf("%d callers got a token, want %d", got, n)
	}
	if hits := f.srv.Hits(route); hits != 1 {
		t.Errorf("%d refresh requests reached Fitbit, want exactly 1", hits)
	}
	stored, err := vault(open()).Get(t.Context(), Name, testPatient)
	if err != nil {
		t.Fatal(err)
	}
	if stored.Token.RefreshToken != fitbittest.RefreshedRefreshToken || stored.Status != providers.StatusActive {
		t.Errorf("the vault holds refresh token %q (status %s), want the rotated one", stored.Token.RefreshToken, stored.Status)
	}
}
