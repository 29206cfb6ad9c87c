package providers_test

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"golang.org/x/oauth2"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/providers"
	"github.com/openhealthexchange/ohx/providers/providertest"
	"github.com/openhealthexchange/ohx/store/sqlite"
)

// httpProvider is a minimal adapter of a Withings-like fake vendor: the refresh and data calls
// go over HTTP through the resilient client, so tests count real vendor requests.
type httpProvider struct {
	base   string
	caller providers.Caller
}

func (p *httpProvider) Name() string             { return "fake" }
func (p *httpProvider) Kinds() []fhir.SampleKind { return []fhir.SampleKind{fhir.KindWeight} }
func (p *httpProvider) AuthCodeURL(state, _ string) string {
	return p.base + "/authorize?state=" + state
}
func (p *httpProvider) Exchange(context.Context, string, string) (*providers.Grant, error) {
	return nil, errors.New("not used")
}
func (p *httpProvider) Devices(context.Context, string, oauth2.TokenSource) ([]fhir.DeviceInfo, error) {
	return nil, errors.New("not used")
}

func (p *httpProvider) Refresh(ctx context.Context, t *oauth2.Token) (*oauth2.Token, error) {
	form := url.Values{"action": {"requesttoken"}, "grant_type": {"refresh_token"}, "refresh_token": {t.RefreshToken}}
	body, err := p.caller.Call(ctx, providers.Call{
		Endpoint: "oauth2/refresh",
		NewRequest: func(ctx context.Context) (*http.Request, error) {
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.base+"/v2/oauth2", strings.NewReader(form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			return req, err
		},
		Classify: envelopeClassify,
	})
	if err != nil {
		if providers.KindOf(err) == providers.KindAuth {
			return nil, fmt.Errorf("%w: %w", providers.ErrConsentRevoked, err)
		}
		return nil, err
	}
	var env struct {
		Body struct {
			AccessToken  string `json:"access_token"`
			RefreshToken string `json:"refresh_token"`
			ExpiresIn    int    `json:"expires_in"`
		} `json:"body"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		return nil, err
	}
	return &oauth2.Token{AccessToken: env.Body.AccessToken, RefreshToken: env.Body.RefreshToken, TokenType: "Bearer",
		Expiry: time.Now().Add(time.Duration(env.Body.ExpiresIn) * time.Second)}, nil
}

func (p *httpProvider) Fetch(ctx context.Context, user string, ts oauth2.TokenSource, q providers.Query) (*providers.Page, error) {
	_, err := p.caller.Call(ctx, providers.Call{
		User: user, Endpoint: "measure/getmeas",
		NewRequest: func(ctx context.Context) (*http.Request, error) {
			tok, err := ts.Token()
			if err != nil {
				return nil, err
			}
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.base+"/measure", strings.NewReader("action=getmeas"))
			if err != nil {
				return nil, err
			}
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			tok.SetAuthHeader(req)
			return req, nil
		},
		Classify: envelopeClassify,
	})
	if err != nil {
		return nil, err
	}
	return &providers.Page{}, nil
}

var _ providers.Provider = (*httpProvider)(nil)

const refreshRoute = "POST /v2/oauth2 action=requesttoken grant_type=refresh_token"

// refreshHandler answers refreshes of refresh token rN with aN+1/rN+1, slowly, and fails the
// test when an outdated refresh token is used.
func refreshHandler(t testing.TB, delay time.Duration) providertest.Route {
	var mu sync.Mutex
	current := 1
	return providertest.Route{Handler: func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(delay)
		mu.Lock()
		defer mu.Unlock()
		if got, want := r.FormValue("refresh_token"), fmt.Sprintf("r%d", current); got != want {
			t.Errorf("refresh with %q, want the latest refresh token %q", got, want)
			fmt.Fprint(w, `{"status":100}`)
			return
		}
		current++
		fmt.Fprintf(w, `{"status":0,"body":{"access_token":"a%d","refresh_token":"r%d","expires_in":10800}}`, current, current)
	}}
}

var testKeys = map[string][]byte{"k1": bytes.Repeat([]byte{1}, 32), "k2": bytes.Repeat([]byte{2}, 32)}

func openStore(t testing.TB, dir string) *sqlite.Store {
	t.Helper()
	st, err := sqlite.Open(t.Context(), dir, sqlite.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func newVault(t testing.TB, rec providers.Records, current string, opts ...providers.VaultOption) *providers.Vault {
	t.Helper()
	keys := map[string][]byte{}
	for id, k := range testKeys {
		keys[id] = k
	}
	v, err := providers.NewVault(rec, keys, current, nil, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func newConn(patient, vendorUser string, tok *oauth2.Token) *providers.Connection {
	return &providers.Connection{
		Provider: "fake", PatientID: patient, VendorUserID: vendorUser, Status: providers.StatusActive,
		Token: tok, Scopes: []string{"user.metrics"}, Created: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		SyncCursors: map[string]time.Time{"all": time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)},
	}
}

func expiredToken() *oauth2.Token {
	return &oauth2.Token{AccessToken: "a1", RefreshToken: "r1", TokenType: "Bearer", Expiry: time.Now().Add(-time.Minute)}
}

func validToken() *oauth2.Token {
	return &oauth2.Token{AccessToken: "a1", RefreshToken: "r1", TokenType: "Bearer", Expiry: time.Now().Add(3 * time.Hour)}
}

var connOpts = cmp.Options{cmpopts.IgnoreUnexported(providers.Connection{}, oauth2.Token{}), cmpopts.EquateApproxTime(time.Millisecond)}

func TestVaultSaveGetListDelete(t *testing.T) {
	st := openStore(t, t.TempDir())
	v := newVault(t, st, "k1")
	ctx := t.Context()

	c := newConn("p1", "u1", validToken())
	if err := v.Save(ctx, c); err != nil {
		t.Fatal(err)
	}
	if c.ID == "" {
		t.Fatal("Save assigned no id")
	}
	got, err := v.Get(ctx, "fake", "p1")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(c, got, connOpts); diff != "" {
		t.Errorf("Get (-want +got):\n%s", diff)
	}
	byUser, err := v.ByVendorUser(ctx, "fake", "u1")
	if err != nil {
		t.Fatal(err)
	}
	if byUser.Token != nil {
		t.Error("ByVendorUser returned the token: the webhook path must not decrypt it")
	}
	withoutToken := *c
	withoutToken.Token = nil
	if diff := cmp.Diff(&withoutToken, byUser, connOpts); diff != "" {
		t.Errorf("ByVendorUser (-want +got):\n%s", diff)
	}

	c2 := newConn("p2", "u2", validToken())
	if err := v.Save(ctx, c2); err != nil {
		t.Fatal(err)
	}
	list, err := v.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]*providers.Connection{c, c2}, list, connOpts); diff != "" {
		t.Errorf("List (-want +got):\n%s", diff)
	}

	// A vendor account linked to p1 is never moved to p3 silently.
	if err := v.Save(ctx, newConn("p3", "u1", validToken())); !errors.Is(err, providers.ErrVendorUserLinked) {
		t.Errorf("linking u1 to another patient: got %v, want ErrVendorUserLinked", err)
	}

	// p1 reconnects with another vendor account: the old index entry goes.
	c.VendorUserID = "u9"
	if err := v.Save(ctx, c); err != nil {
		t.Fatal(err)
	}
	if _, err := v.ByVendorUser(ctx, "fake", "u1"); !errors.Is(err, providers.ErrNotConnected) {
		t.Errorf("old vendor user after relinking: got %v, want ErrNotConnected", err)
	}

	if err := v.Delete(ctx, c); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Get(ctx, "fake", "p1"); !errors.Is(err, providers.ErrNotConnected) {
		t.Errorf("Get after Delete: got %v, want ErrNotConnected", err)
	}
	if _, err := v.ByVendorUser(ctx, "fake", "u9"); !errors.Is(err, providers.ErrNotConnected) {
		t.Errorf("ByVendorUser after Delete: got %v, want ErrNotConnected", err)
	}
	if _, err := st.GetRecord(ctx, "provider-token", c.ID); err == nil {
		t.Error("the token record survived Delete")
	}
	if err := v.Delete(ctx, c); err != nil {
		t.Errorf("deleting twice: %v", err)
	}
	// Now u1 is free again.
	if err := v.Save(ctx, newConn("p3", "u1", validToken())); err != nil {
		t.Errorf("linking a freed vendor account: %v", err)
	}
}

func TestVaultEncryption(t *testing.T) {
	st := openStore(t, t.TempDir())
	ctx := t.Context()
	v1 := newVault(t, st, "k1")
	tok := &oauth2.Token{AccessToken: "ACCESS-SECRET-123", RefreshToken: "REFRESH-SECRET-456", Expiry: time.Now().Add(time.Hour)}
	c := newConn("p1", "u1", tok)
	if err := v1.Save(ctx, c); err != nil {
		t.Fatal(err)
	}

	for _, kind := range []string{"provider-connection", "provider-token", "provider-vendor-user"} {
		recs, err := st.ListRecords(ctx, kind)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 0 {
			t.Errorf("no %s record", kind)
		}
		for _, r := range recs {
			if bytes.Contains(r.Doc, []byte("SECRET")) {
				t.Errorf("%s record %s holds token text: %s", kind, r.ID, r.Doc)
			}
		}
	}
	raw, err := st.GetRecord(ctx, "provider-token", c.ID)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		KeyID string `json:"kid"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil || doc.KeyID != "k1" {
		t.Errorf("token record key id: got %q (%v), want k1", doc.KeyID, err)
	}

	// A vault with another key under the same id cannot read it.
	wrong, err := providers.NewVault(st, map[string][]byte{"k1": bytes.Repeat([]byte{9}, 32)}, "k1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wrong.Get(ctx, "fake", "p1"); err == nil {
		t.Error("Get with the wrong key: want an error")
	} else if strings.Contains(err.Error(), "SECRET") {
		t.Errorf("error leaks the token: %v", err)
	}
	// A vault without the key id cannot either.
	only2, err := providers.NewVault(st, map[string][]byte{"k2": testKeys["k2"]}, "k2", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := only2.Get(ctx, "fake", "p1"); err == nil {
		t.Error("Get without the key id: want an error")
	}

	// The ciphertext is bound to its connection: copied to another, it does not decrypt.
	c2 := newConn("p2", "u2", validToken())
	if err := v1.Save(ctx, c2); err != nil {
		t.Fatal(err)
	}
	if err := st.PutRecord(ctx, "provider-token", c2.ID, raw, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if _, err := v1.Get(ctx, "fake", "p2"); err == nil {
		t.Error("a token record moved to another connection decrypted")
	}
}

// legacyTokenDoc is a token record as the vault wrote it before store/seal: AES-256-GCM with a
// 12-byte random nonce, the connection id as associated data, nonce and ciphertext apart.
type legacyTokenDoc struct {
	KeyID      string `json:"kid"`
	Gen        uint64 `json:"gen"`
	Nonce      []byte `json:"nonce"`
	Ciphertext []byte `json:"ct"`
}

func legacyGCM(t testing.TB, key []byte) cipher.AEAD {
	t.Helper()
	block, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		t.Fatal(err)
	}
	return aead
}

// TestVaultTokenFormat: a token record sealed the old way (crypto/cipher directly) still opens,
// and a record the vault writes now opens the old way, so instances of both can share a store.
func TestVaultTokenFormat(t *testing.T) {
	st := openStore(t, t.TempDir())
	ctx := t.Context()
	v := newVault(t, st, "k1")
	c := newConn("p1", "u1", validToken())
	if err := v.Save(ctx, c); err != nil {
		t.Fatal(err)
	}
	aead := legacyGCM(t, testKeys["k2"])

	// Written the old way, under the other key.
	expiry := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	plain := `{"a":"old-access","t":"Bearer","r":"old-refresh","e":"` + expiry.Format(time.RFC3339Nano) + `"}`
	nonce := make([]byte, aead.NonceSize())
	rand.Read(nonce)
	doc, err := json.Marshal(legacyTokenDoc{KeyID: "k2", Gen: 7, Nonce: nonce, Ciphertext: aead.Seal(nil, nonce, []byte(plain), []byte(c.ID))})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.PutRecord(ctx, "provider-token", c.ID, doc, time.Time{}); err != nil {
		t.Fatal(err)
	}
	got, err := newVault(t, st, "k1").Get(ctx, "fake", "p1")
	if err != nil {
		t.Fatalf("reading a record sealed the old way: %v", err)
	}
	want := &oauth2.Token{AccessToken: "old-access", TokenType: "Bearer", RefreshToken: "old-refresh", Expiry: expiry}
	if diff := cmp.Diff(want, got.Token, cmpopts.IgnoreUnexported(oauth2.Token{})); diff != "" {
		t.Errorf("token (-want +got):\n%s", diff)
	}

	// Written now, opened the old way.
	c2 := newConn("p2", "u2", &oauth2.Token{AccessToken: "new-access", RefreshToken: "new-refresh"})
	if err := newVault(t, st, "k2").Save(ctx, c2); err != nil {
		t.Fatal(err)
	}
	raw, err := st.GetRecord(ctx, "provider-token", c2.ID)
	if err != nil {
		t.Fatal(err)
	}
	var d legacyTokenDoc
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatal(err)
	}
	if d.KeyID != "k2" || len(d.Nonce) != aead.NonceSize() {
		t.Fatalf("record: key %q, nonce of %d bytes; want k2 and %d bytes", d.KeyID, len(d.Nonce), aead.NonceSize())
	}
	opened, err := aead.Open(nil, d.Nonce, d.Ciphertext, []byte(c2.ID))
	if err != nil {
		t.Fatalf("opening a new record the old way: %v", err)
	}
	var p struct {
		A string `json:"a"`
		R string `json:"r"`
	}
	if err := json.Unmarshal(opened, &p); err != nil || p.A != "new-access" || p.R != "new-refresh" {
		t.Errorf("plaintext %s (%v): want access new-access, refresh new-refresh", opened, err)
	}
}

// TestVaultVendorAccountLinkedOnce is the rule that a vendor account belongs to one patient at a
// time, which Vault.Save alone enforces (the connect flow relies on it).
func TestVaultVendorAccountLinkedOnce(t *testing.T) {
	ctx := t.Context()
	for _, tc := range []struct {
		name    string
		prepare func(t *testing.T, v *providers.Vault, st *sqlite.Store, p1 *providers.Connection)
		want    error
	}{
		{"another patient holds it", func(*testing.T, *providers.Vault, *sqlite.Store, *providers.Connection) {}, providers.ErrVendorUserLinked},
		{"the holder needs re-consent", func(t *testing.T, v *providers.Vault, _ *sqlite.Store, p1 *providers.Connection) {
			if err := v.MarkNeedsReauth(ctx, p1, "connect again"); err != nil {
				t.Fatal(err)
			}
		}, providers.ErrVendorUserLinked},
		{"the holder revoked it", func(t *testing.T, v *providers.Vault, _ *sqlite.Store, p1 *providers.Connection) {
			p1.Status = providers.StatusRevoked
			if err := v.Save(ctx, p1); err != nil {
				t.Fatal(err)
			}
		}, nil},
		{"the holder was deleted", func(t *testing.T, v *providers.Vault, _ *sqlite.Store, p1 *providers.Connection) {
			if err := v.Delete(ctx, p1); err != nil {
				t.Fatal(err)
			}
		}, nil},
		{"a stale index entry", func(t *testing.T, _ *providers.Vault, st *sqlite.Store, _ *providers.Connection) {
			if err := st.DeleteRecord(ctx, "provider-connection", "fake/p1"); err != nil {
				t.Fatal(err)
			}
		}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := openStore(t, t.TempDir())
			v := newVault(t, st, "k1")
			p1 := newConn("p1", "u1", validToken())
			if err := v.Save(ctx, p1); err != nil {
				t.Fatal(err)
			}
			tc.prepare(t, v, st, p1)
			err := v.Save(ctx, newConn("p2", "u1", validToken()))
			if !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
				t.Fatalf("linking u1 to p2: got %v, want %v", err, tc.want)
			}
			_, err = v.Get(ctx, "fake", "p2")
			if tc.want != nil && !errors.Is(err, providers.ErrNotConnected) {
				t.Errorf("p2 after the refusal: got %v, want ErrNotConnected (nothing written)", err)
			}
			if tc.want == nil && err != nil {
				t.Errorf("p2 after linking: %v", err)
			}
			// The holder itself may always save again.
			if tc.want != nil {
				if err := v.Save(ctx, p1); err != nil {
					t.Errorf("the holder saving again: %v", err)
				}
			}
		})
	}
}

func TestVaultKeyRotation(t *testing.T) {
	st := openStore(t, t.TempDir())
	ctx := t.Context()
	old := newVault(t, st, "k1")
	c := newConn("p1", "u1", expiredToken())
	if err := old.Save(ctx, c); err != nil {
		t.Fatal(err)
	}

	// The new key becomes current; tokens under the old one are still read.
	s := providertest.NewServer(t, map[string]providertest.Route{refreshRoute: refreshHandler(t, 0)})
	client, _ := newClient(t, fastConfig())
	p := &httpProvider{base: s.URL(), caller: client}
	rotated := newVault(t, st, "k2")
	got, err := rotated.Get(ctx, "fake", "p1")
	if err != nil {
		t.Fatalf("reading a token under the old key: %v", err)
	}
	if got.Token.RefreshToken != "r1" {
		t.Errorf("refresh token: got %q, want r1", got.Token.RefreshToken)
	}
	// A refresh rewrites it under the current key.
	if _, err := rotated.TokenSource(ctx, got, p).Token(); err != nil {
		t.Fatal(err)
	}
	only2, err := providers.NewVault(st, map[string][]byte{"k2": testKeys["k2"]}, "k2", nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err = only2.Get(ctx, "fake", "p1")
	if err != nil {
		t.Fatalf("after the rewrite the old key is not needed: %v", err)
	}
	if got.Token.RefreshToken != "r2" {
		t.Errorf("refresh token: got %q, want r2", got.Token.RefreshToken)
	}
}

func TestNewVaultValidates(t *testing.T) {
	st := openStore(t, t.TempDir())
	for name, keys := range map[string]map[string][]byte{
		"no current key": {"k2": testKeys["k2"]},
		"short key":      {"k1": []byte("short")},
	} {
		if _, err := providers.NewVault(st, keys, "k1", nil); err == nil {
			t.Errorf("%s: want an error", name)
		}
	}
}

func TestConnectionRedactsToken(t *testing.T) {
	c := newConn("p1", "u1", &oauth2.Token{AccessToken: "ACCESS-SECRET", RefreshToken: "REFRESH-SECRET", Expiry: time.Now().Add(time.Hour)})
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("x", "conn", c)
	js, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, out := range []string{fmt.Sprint(c), fmt.Sprintf("%v %+v %#v %s", c, c, c, c), fmt.Sprintf("%v %+v", *c, *c), c.String(), logged.String(), string(js)} {
		if strings.Contains(out, "SECRET") {
			t.Errorf("token in output: %s", out)
		}
	}
	if !strings.Contains(logged.String(), `"patient":"p1"`) {
		t.Errorf("log value lacks the connection's identity: %s", logged.String())
	}
}

// refreshFixture is a vault over a fresh store with a connection whose access token expired,
// and a fake vendor that refreshes it and serves data.
type refreshFixture struct {
	dir   string
	st    *sqlite.Store
	vault *providers.Vault
	srv   *providertest.Server
	p     *httpProvider
	conn  *providers.Connection
}

func newRefreshFixture(t *testing.T, tok *oauth2.Token, routes map[string]providertest.Route) *refreshFixture {
	t.Helper()
	f := &refreshFixture{dir: t.TempDir()}
	f.st = openStore(t, f.dir)
	f.vault = newVault(t, f.st, "k1", providers.WithRefreshLease(5*time.Second, 10*time.Millisecond))
	f.srv = providertest.NewServer(t, routes)
	client, _ := newClient(t, fastConfig())
	f.p = &httpProvider{base: f.srv.URL(), caller: client}
	f.conn = newConn("p1", "u1", tok)
	if err := f.vault.Save(t.Context(), f.conn); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestConcurrentRefreshIsSingleFlight(t *testing.T) {
	var f *refreshFixture
	var checked atomic.Int32
	f = newRefreshFixture(t, expiredToken(), map[string]providertest.Route{
		refreshRoute: refreshHandler(t, 100*time.Millisecond),
		// The rotated pair is stored before its access token reaches the vendor.
		"POST /measure action=getmeas": {Handler: func(w http.ResponseWriter, r *http.Request) {
			if got := r.Header.Get("Authorization"); got != "Bearer a2" {
				t.Errorf("data call with %q, want the refreshed token", got)
			}
			other := newVault(t, f.st, "k1")
			c, err := other.Get(r.Context(), "fake", "p1")
			if err != nil || c.Token.RefreshToken != "r2" || c.Token.AccessToken != "a2" {
				t.Errorf("when the new access token is first used the store holds %v, %v; want a2/r2", c, err)
			}
			checked.Add(1)
			fmt.Fprint(w, `{"status":0,"body":{}}`)
		}},
	})

	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ts := f.vault.TokenSource(t.Context(), f.conn, f.p) // a source per goroutine
			if _, err := f.p.Fetch(t.Context(), "u1", ts, providers.Query{}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if got := f.srv.Hits(refreshRoute); got != 1 {
		t.Errorf("refresh calls: got %d, want 1", got)
	}
	if got := checked.Load(); got != 20 {
		t.Errorf("data calls: got %d, want 20", got)
	}
	got, err := f.vault.Get(t.Context(), "fake", "p1")
	if err != nil {
		t.Fatal(err)
	}
	if got.Token.RefreshToken != "r2" || got.Status != providers.StatusActive {
		t.Errorf("stored: %v refresh %q, want active with r2", got, got.Token.RefreshToken)
	}
}

func TestTwoInstancesRefreshOnce(t *testing.T) {
	f := newRefreshFixture(t, expiredToken(), map[string]providertest.Route{
		refreshRoute: refreshHandler(t, 200*time.Millisecond),
	})
	// A second instance: its own store handle on the same database, its own vault.
	st2 := openStore(t, f.dir)
	v2 := newVault(t, st2, "k1", providers.WithRefreshLease(5*time.Second, 10*time.Millisecond))
	c2, err := v2.Get(t.Context(), "fake", "p1")
	if err != nil {
		t.Fatal(err)
	}

	var wg sync.WaitGroup
	tokens := make(chan string, 20)
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ts := f.vault.TokenSource(t.Context(), f.conn, f.p)
			if i%2 == 1 {
				ts = v2.TokenSource(t.Context(), c2, f.p)
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
	for tok := range tokens {
		if tok != "a2" {
			t.Errorf("got access token %q, want a2", tok)
		}
	}
	if got := f.srv.Hits(refreshRoute); got != 1 {
		t.Errorf("refresh calls: got %d, want 1", got)
	}
}

func TestRefreshRefusedMarksNeedsReauth(t *testing.T) {
	f := newRefreshFixture(t, expiredToken(), map[string]providertest.Route{
		refreshRoute: {Body: `{"status":100,"body":{},"error":"invalid refresh_token"}`},
	})
	ts := f.vault.TokenSource(t.Context(), f.conn, f.p)
	_, err := ts.Token()
	if !errors.Is(err, providers.ErrConsentRevoked) {
		t.Fatalf("got %v, want ErrConsentRevoked", err)
	}
	if strings.Contains(err.Error(), "r1") && strings.Contains(err.Error(), "refresh_token=r1") {
		t.Errorf("error leaks the refresh token: %v", err)
	}
	got, err := f.vault.Get(t.Context(), "fake", "p1")
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != providers.StatusNeedsReauth || got.LastError == "" {
		t.Errorf("after a refusal: status %q, last error %q; want needs-reauth with a reason", got.Status, got.LastError)
	}
	// Known refused: no more vendor calls with the dead refresh token.
	if _, err := f.vault.TokenSource(t.Context(), f.conn, f.p).Token(); !errors.Is(err, providers.ErrConsentRevoked) {
		t.Errorf("second attempt: got %v, want ErrConsentRevoked", err)
	}
	if got := f.srv.Hits(refreshRoute); got != 1 {
		t.Errorf("refresh calls: got %d, want 1", got)
	}
	// A stale copy saved by a sync worker does not make it active again…
	if err := f.vault.Save(t.Context(), f.conn); err != nil {
		t.Fatal(err)
	}
	if got, _ := f.vault.Get(t.Context(), "fake", "p1"); got.Status != providers.StatusNeedsReauth {
		t.Errorf("a stale save turned the connection %q", got.Status)
	}
	// …a new grant does.
	fresh := newConn("p1", "u1", validToken())
	if err := f.vault.Save(t.Context(), fresh); err != nil {
		t.Fatal(err)
	}
	if got, _ := f.vault.Get(t.Context(), "fake", "p1"); got.Status != providers.StatusActive {
		t.Errorf("after reconnecting: status %q, want active", got.Status)
	}
}

func TestRefreshTransientFailureKeepsConnection(t *testing.T) {
	f := newRefreshFixture(t, expiredToken(), map[string]providertest.Route{
		refreshRoute: {Status: http.StatusServiceUnavailable},
	})
	_, err := f.vault.TokenSource(t.Context(), f.conn, f.p).Token()
	wantKind(t, err, providers.KindTransient)
	if errors.Is(err, providers.ErrConsentRevoked) {
		t.Errorf("a vendor outage reported as revoked consent: %v", err)
	}
	got, err := f.vault.Get(t.Context(), "fake", "p1")
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != providers.StatusActive || got.Token.RefreshToken != "r1" {
		t.Errorf("after an outage: %v refresh %q, want active with r1", got, got.Token.RefreshToken)
	}
}

func TestRetryOnAuthRefreshesOnce(t *testing.T) {
	f := newRefreshFixture(t, validToken(), map[string]providertest.Route{
		refreshRoute: refreshHandler(t, 0),
		"POST /measure action=getmeas": {Handler: func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") == "Bearer a1" {
				fmt.Fprint(w, `{"status":401,"body":{},"error":"invalid_token"}`)
				return
			}
			fmt.Fprint(w, `{"status":0,"body":{}}`)
		}},
	})
	ts := f.vault.TokenSource(t.Context(), f.conn, f.p)
	err := providers.RetryOnAuth(t.Context(), ts, func() error {
		_, err := f.p.Fetch(t.Context(), "u1", ts, providers.Query{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := f.srv.Hits(refreshRoute); got != 1 {
		t.Errorf("refresh calls: got %d, want 1", got)
	}
	if got := f.srv.Hits("POST /measure action=getmeas"); got != 2 {
		t.Errorf("data calls: got %d, want 2", got)
	}
	// The loaded copy is stale now; saving it keeps the rotated token.
	f.conn.LastSync = time.Now()
	if err := f.vault.Save(t.Context(), f.conn); err != nil {
		t.Fatal(err)
	}
	if f.conn.Token.RefreshToken != "r2" {
		t.Errorf("Save did not update the stale copy: refresh %q", f.conn.Token.RefreshToken)
	}
	got, err := f.vault.Get(t.Context(), "fake", "p1")
	if err != nil {
		t.Fatal(err)
	}
	if got.Token.RefreshToken != "r2" || got.LastSync.IsZero() {
		t.Errorf("after saving a stale copy: refresh %q, last sync %v; want r2 and the new sync time", got.Token.RefreshToken, got.LastSync)
	}
}

func TestRetryOnAuthSecondFailureNeedsReauth(t *testing.T) {
	f := newRefreshFixture(t, validToken(), map[string]providertest.Route{
		refreshRoute:                   refreshHandler(t, 0),
		"POST /measure action=getmeas": {Body: `{"status":401,"body":{}}`},
	})
	ts := f.vault.TokenSource(t.Context(), f.conn, f.p)
	err := providers.RetryOnAuth(t.Context(), ts, func() error {
		_, err := f.p.Fetch(t.Context(), "u1", ts, providers.Query{})
		return err
	})
	if !errors.Is(err, providers.ErrConsentRevoked) {
		t.Fatalf("got %v, want ErrConsentRevoked", err)
	}
	wantKind(t, err, providers.KindAuth)
	if got := f.srv.Hits(refreshRoute); got != 1 {
		t.Errorf("refresh calls: got %d, want 1", got)
	}
	if got := f.srv.Hits("POST /measure action=getmeas"); got != 2 {
		t.Errorf("data calls: got %d, want 2", got)
	}
	got, err := f.vault.Get(t.Context(), "fake", "p1")
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != providers.StatusNeedsReauth {
		t.Errorf("status: got %q, want needs-reauth", got.Status)
	}
}

func TestValidTokenNeedsNoRefresh(t *testing.T) {
	f := newRefreshFixture(t, validToken(), map[string]providertest.Route{refreshRoute: refreshHandler(t, 0)})
	tok, err := f.vault.TokenSource(t.Context(), f.conn, f.p).Token()
	if err != nil || tok.AccessToken != "a1" {
		t.Fatalf("got %v, %v; want a1", tok, err)
	}
	// Within the refresh skew (default 5 minutes) of expiry: refreshed proactively.
	f.conn.Token = &oauth2.Token{AccessToken: "a1", RefreshToken: "r1", Expiry: time.Now().Add(4 * time.Minute)}
	if err := f.vault.Save(t.Context(), f.conn); err != nil {
		t.Fatal(err)
	}
	tok, err = f.vault.TokenSource(t.Context(), f.conn, f.p).Token()
	if err != nil || tok.AccessToken != "a2" {
		t.Fatalf("got %v, %v; want a2", tok, err)
	}
	if got := f.srv.Hits(refreshRoute); got != 1 {
		t.Errorf("refresh calls: got %d, want 1", got)
	}
}

// TestRevocationSurvivesConcurrentSave: a sync that finishes while the vendor's revocation
// arrives saves the connection it loaded before (its last sync time); the revocation must win
// whichever way the two interleave, or the connection would go on using revoked tokens (the
// Fitbit end-to-end test once saw "active" after userRevokedAccess).
func TestRevocationSurvivesConcurrentSave(t *testing.T) {
	v := newVault(t, openStore(t, t.TempDir()), "k1")
	for i := range 40 {
		patient := fmt.Sprintf("p%d", i)
		if err := v.Save(t.Context(), newConn(patient, "u"+patient, validToken())); err != nil {
			t.Fatal(err)
		}
		start := make(chan struct{})
		var wg sync.WaitGroup
		// Each writer loads the connection, then writes once all have loaded.
		write := func(w func(*providers.Connection) error) {
			wg.Go(func() {
				c, err := v.Get(t.Context(), "fake", patient)
				if err != nil {
					t.Error(err)
					return
				}
				<-start
				if err := w(c); err != nil {
					t.Error(err)
				}
			})
		}
		for range 3 {
			write(func(c *providers.Connection) error { c.LastSync = time.Now().UTC(); return v.Save(t.Context(), c) })
		}
		write(func(c *providers.Connection) error { return v.MarkNeedsReauth(t.Context(), c, "revoked at the vendor") })
		close(start)
		wg.Wait()
		c, err := v.Get(t.Context(), "fake", patient)
		if err != nil {
			t.Fatal(err)
		}
		if c.Status != providers.StatusNeedsReauth {
			t.Fatalf("round %d: after a revocation and concurrent saves the connection is %s, want %s", i, c.Status, providers.StatusNeedsReauth)
		}
	}
}

// TestStaleSaveDoesNotUndoDisconnect: a copy loaded before the patient disconnected (a sync
// finishing after it) cannot bring the connection back; connecting again can.
func TestStaleSaveDoesNotUndoDisconnect(t *testing.T) {
	v := newVault(t, openStore(t, t.TempDir()), "k1")
	ctx := t.Context()
	if err := v.Save(ctx, newConn("p1", "u1", validToken())); err != nil {
		t.Fatal(err)
	}
	stale, err := v.Get(ctx, "fake", "p1")
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Delete(ctx, stale); err != nil {
		t.Fatal(err)
	}
	stale.LastSync = time.Now().UTC()
	if err := v.Save(ctx, stale); !errors.Is(err, providers.ErrNotConnected) {
		t.Errorf("saving a copy of a deleted connection: %v, want ErrNotConnected", err)
	}
	if c, err := v.Get(ctx, "fake", "p1"); !errors.Is(err, providers.ErrNotConnected) {
		t.Fatalf("after the stale save the connection is back: %+v, %v", c, err)
	}
	if _, err := v.ByVendorUser(ctx, "fake", "u1"); !errors.Is(err, providers.ErrNotConnected) {
		t.Errorf("after the stale save the vendor user resolves: %v", err)
	}
	// The patient connects again: a new grant.
	if err := v.Save(ctx, newConn("p1", "u1", validToken())); err != nil {
		t.Fatalf("reconnect: %v", err)
	}
	again, err := v.Get(ctx, "fake", "p1")
	if err != nil || again.Status != providers.StatusActive {
		t.Fatalf("after reconnecting: %+v, %v", again, err)
	}
	// A copy of the first connection cannot overwrite the new one either.
	if err := v.Save(ctx, stale); !errors.Is(err, providers.ErrNotConnected) {
		t.Errorf("saving a copy of the replaced connection: %v, want ErrNotConnected", err)
	}
	if c, err := v.Get(ctx, "fake", "p1"); err != nil || c.ID != again.ID {
		t.Errorf("the new connection was overwritten: %+v, %v (want id %s)", c, err, again.ID)
	}
}
