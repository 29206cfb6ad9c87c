package api_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"golang.org/x/oauth2"

	"github.com/openhealthexchange/ohx/api"
	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/fhir/search"
	"github.com/openhealthexchange/ohx/providers"
	"github.com/openhealthexchange/ohx/store/sqlite"
)

// fakeVendor is a provider whose consent page is never visited: tests read the state from the
// consent URL and call the callback themselves, as the vendor would send the browser.
type fakeVendor struct {
	mu        sync.Mutex
	exchanges []string // codes
}

var _ providers.Provider = (*fakeVendor)(nil)

func (f *fakeVendor) Name() string { return "vendor" }

func (f *fakeVendor) Kinds() []fhir.SampleKind { return []fhir.SampleKind{fhir.KindWeight} }

func (f *fakeVendor) AuthCodeURL(state, codeChallenge string) string {
	return "https://vendor.test/authorize?" + url.Values{"state": {state}, "code_challenge": {codeChallenge}}.Encode()
}

// Exchange links the vendor account "user-<code>".
func (f *fakeVendor) Exchange(_ context.Context, code, _ string) (*providers.Grant, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.exchanges = append(f.exchanges, code)
	return &providers.Grant{Token: &oauth2.Token{AccessToken: "at-" + code, RefreshToken: "rt-" + code}, UserID: "user-" + code}, nil
}

func (f *fakeVendor) codes() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.exchanges...)
}

func (f *fakeVendor) Refresh(context.Context, *oauth2.Token) (*oauth2.Token, error) {
	return nil, errors.New("fakeVendor: Refresh not used")
}

func (f *fakeVendor) Devices(context.Context, string, oauth2.TokenSource) ([]fhir.DeviceInfo, error) {
	return nil, errors.New("fakeVendor: Devices not used")
}

func (f *fakeVendor) Fetch(context.Context, string, oauth2.TokenSource, providers.Query) (*providers.Page, error) {
	return nil, errors.New("fakeVendor: Fetch not used")
}

type nopSyncer struct{}

func (nopSyncer) Connected(context.Context, string, string) error        { return nil }
func (nopSyncer) Disconnect(context.Context, string, string, bool) error { return nil }
func (nopSyncer) Retire(context.Context, string, string) error           { return nil }

type connectEnv struct {
	*env
	vendor *fakeVendor
	vault  *providers.Vault
}

// connectDeepLink is the deep link the connect flow of newConnectEnv may end on.
const connectDeepLink = "https://app.example/connected?from=ohx"

// newConnectEnv starts the API (authentication off) with the connect flow over fakeVendor; base is the public FHIR base URL ("" for the test server's own).
// Patients p1, p2 and p3 exist.
func newConnectEnv(t *testing.T, base string) *connectEnv {
	t.Helper()
	st, err := sqlite.Open(t.Context(), t.TempDir(), sqlite.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	vault, err := providers.NewVault(st, map[string][]byte{"k": bytes.Repeat([]byte{1}, 32)}, "k", nil)
	if err != nil {
		t.Fatal(err)
	}
	e := &connectEnv{env: &env{t: t, store: st}, vendor: &fakeVendor{}, vault: vault}
	e.srv = httptest.NewUnstartedServer(nil)
	e.base = "http://" + e.srv.Listener.Addr().String() + "/fhir"
	if base != "" {
		e.base = base
	}
	s, err := api.New(api.Config{BaseURL: e.base, CursorKey: bytes.Repeat([]byte("k"), 32), MaxBodyBytes: 64 << 10,
		Connect: &api.ConnectConfig{Providers: providers.NewRegistry(e.vendor), Vault: e.vault, Sync: nopSyncer{}, Redirects: []string{connectDeepLink}},
	}, st, search.DefaultRegistry(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.srv.Config.Handler = s.Handler()
	e.srv.Start()
	t.Cleanup(e.srv.Close)
	for _, id := range []string{"p1", "p2", "p3"} {
		if _, err := st.Create(t.Context(), &fhir.Patient{Base: fhir.Base{ResourceType: "Patient", ID: id}}); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

// browser is an HTTP client that keeps cookies (nil jar: none) and does not follow redirects.
func browser(t *testing.T, withJar bool) *http.Client {
	t.Helper()
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	if withJar {
		jar, err := cookiejar.New(nil)
		if err != nil {
			t.Fatal(err)
		}
		c.Jar = jar
	}
	return c
}

// link makes a one-time connect link for patient and returns its path and query.
func (e *connectEnv) link(patient string) string {
	e.t.Helper()
	return e.linkTo(patient, "")
}

// linkTo makes a one-time connect link for patient that ends on the deep link redirect.
func (e *connectEnv) linkTo(patient, redirect string) string {
	e.t.Helper()
	body, _ := json.Marshal(map[string]string{"patient": patient, "provider": "vendor", "redirect": redirect})
	r := e.do("POST", "/connect/links", string(body), "Content-Type", "application/json")
	var out struct{ URL string }
	if err := json.Unmarshal(r.body, &out); r.status != http.StatusCreated || err != nil {
		e.t.Fatalf("POST /connect/links: %d %s", r.status, r.body)
	}
	u, err := url.Parse(out.URL)
	if err != nil {
		e.t.Fatal(err)
	}
	return u.RequestURI()
}

// open opens a connect link in b and returns the state of the vendor consent URL it goes to and
// the binding cookie it got.
func (e *connectEnv) open(b *http.Client, link string) (state string, cookie *http.Cookie) {
	e.t.Helper()
	res, err := b.Get(e.srv.URL + link)
	if err != nil {
		e.t.Fatal(err)
	}
	res.Body.Close()
	consent, err := url.Parse(res.Header.Get("Location"))
	if res.StatusCode != http.StatusFound || err != nil || consent.Host != "vendor.test" || consent.Query().Get("state") == "" {
		e.t.Fatalf("GET %s: %d to %q", link, res.StatusCode, res.Header.Get("Location"))
	}
	for _, c := range res.Cookies() {
		if c.Name == "ohx_connect" {
			cookie = c
		}
	}
	return consent.Query().Get("state"), cookie
}

// callback sends b back from the vendor with code and state, as the vendor's redirect would.
func (e *connectEnv) callback(b *http.Client, state, code string) (int, string) {
	e.t.Helper()
	res, err := b.Get(e.srv.URL + "/connect/vendor/callback?" + url.Values{"state": {state}, "code": {code}}.Encode())
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return res.StatusCode, string(body)
}

func (e *connectEnv) connected(patient string) *providers.Connection {
	c, err := e.vault.Get(e.t.Context(), "vendor", patient)
	if err != nil {
		return nil
	}
	return c
}

// TestConnectStateBoundToBrowser: the consent URL a link leads to can only be completed by the
// browser that opened the link. Whoever else comes back with its state, without
// the binding cookie or with another one, links nothing and never reaches the vendor's token
// endpoint.
func TestConnectStateBoundToBrowser(t *testing.T) {
	e := newConnectEnv(t, "")
	const wrongBrowser = "This sign-in was started in another browser. Open the link again on this device."

	// The patient's own browser completes the flow.
	patient := browser(t, true)
	state, _ := e.open(patient, e.link("p1"))
	if code, body := e.callback(patient, state, "abc"); code != http.StatusOK || !strings.Contains(body, "Your account is connected") {
		t.Fatalf("callback in the browser that opened the link: %d %s", code, body)
	}
	if c := e.connected("p1"); c == nil || c.VendorUserID != "user-abc" {
		t.Fatalf("p1's connection: %v, want vendor user user-abc", c)
	}

	other := browser(t, true)
	e.open(other, e.link("p3")) // a browser with a binding cookie of its own
	forged := browser(t, true)
	u, _ := url.Parse(e.srv.URL)
	forged.Jar.SetCookies(u, []*http.Cookie{{Name: "ohx_connect", Value: base64.RawURLEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32)), Path: "/connect/"}})
	malformed := browser(t, true)
	malformed.Jar.SetCookies(u, []*http.Cookie{{Name: "ohx_connect", Value: "x", Path: "/connect/"}})
	for _, tc := range []struct {
		name string
		b    *http.Client
	}{
		{"no cookie", browser(t, false)},
		{"another browser's cookie", other},
		{"a forged cookie", forged},
		{"a malformed cookie", malformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			state, _ := e.open(patient, e.link("p2"))
			before := len(e.vendor.codes())
			code, body := e.callback(tc.b, state, "mallory")
			if code != http.StatusBadRequest || !strings.Contains(body, wrongBrowser) {
				t.Errorf("callback: %d %s, want 400 %q", code, body, wrongBrowser)
			}
			if got := e.vendor.codes(); len(got) != before {
				t.Errorf("the vendor's token endpoint was called: %v", got[before:])
			}
			if c := e.connected("p2"); c != nil {
				t.Errorf("p2 got connected: %v", c)
			}
		})
	}
	if got := e.vendor.codes(); len(got) != 1 {
		t.Errorf("code exchanges: %v, want only the patient's own", got)
	}
}

// TestConnectTwoFlowsOneBrowser: a browser that opens two links before finishing either keeps
// one binding cookie, and both flows complete.
func TestConnectTwoFlowsOneBrowser(t *testing.T) {
	e := newConnectEnv(t, "")
	b := browser(t, true)
	s2, c2 := e.open(b, e.link("p2"))
	s3, c3 := e.open(b, e.link("p3"))
	if c2 == nil || c3 == nil || c2.Value != c3.Value {
		t.Errorf("binding cookies: %v then %v, want the same value", c2, c3)
	}
	for _, f := range []struct{ state, code, patient string }{{s3, "three", "p3"}, {s2, "two", "p2"}} {
		if code, body := e.callback(b, f.state, f.code); code != http.StatusOK {
			t.Errorf("callback for %s: %d %s", f.patient, code, body)
		}
		if c := e.connected(f.patient); c == nil || c.VendorUserID != "user-"+f.code {
			t.Errorf("%s's connection: %v", f.patient, c)
		}
	}
}

// TestConnectBindingCookie: the binding cookie is 32 random bytes, for /connect/ only, HttpOnly,
// SameSite=Lax (sent on the vendor's top-level redirect back), Secure on an https base, and lives
// as long as the state.
func TestConnectBindingCookie(t *testing.T) {
	for _, tc := range []struct {
		base   string
		secure bool
	}{
		{"", false},
		{"https://ohx.example/fhir", true},
	} {
		t.Run("base "+tc.base, func(t *testing.T) {
			e := newConnectEnv(t, tc.base)
			b := browser(t, false)
			_, c := e.open(b, e.link("p1"))
			if c == nil {
				t.Fatal("no ohx_connect cookie")
			}
			raw, err := base64.RawURLEncoding.DecodeString(c.Value)
			if err != nil || len(raw) != 32 {
				t.Errorf("value %q: want 32 bytes base64url", c.Value)
			}
			if c.Path != "/connect/" || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.MaxAge != 15*60 || c.Secure != tc.secure {
				t.Errorf("cookie %+v: want Path=/connect/ HttpOnly SameSite=Lax Max-Age=900 Secure=%v", c, tc.secure)
			}
			if _, c2 := e.open(b, e.link("p2")); c2 == nil || c2.Value == c.Value {
				t.Errorf("a browser without the cookie got %v again, want a new value", c2)
			}
		})
	}
}

// TestConnectPageHeaders: the connect pages cannot be framed and leak no Referer.
func TestConnectPageHeaders(t *testing.T) {
	e := newConnectEnv(t, "")
	b := browser(t, true)
	state, _ := e.open(b, e.link("p1"))
	for _, tc := range []struct{ name, path string }{
		{"link expired", "/connect/vendor?link=unknown"},
		{"unknown service", "/connect/nobody?link=x"},
		{"connected", "/connect/vendor/callback?code=abc&state=" + state},
		{"state used up", "/connect/vendor/callback?code=abc&state=" + state},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := b.Get(e.srv.URL + tc.path)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			h := res.Header
			if !strings.HasPrefix(h.Get("Content-Type"), "text/html") {
				t.Fatalf("%d %s: not a page", res.StatusCode, h.Get("Content-Type"))
			}
			if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") || !strings.Contains(csp, "default-src 'none'") {
				t.Errorf("Content-Security-Policy %q", csp)
			}
			for k, want := range map[string]string{"X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"} {
				if got := h.Get(k); got != want {
					t.Errorf("%s: got %q, want %q", k, got, want)
				}
			}
		})
	}
}

// TestConnectAccountLinkedElsewhere: a vendor account connected to p1 cannot be connected to p2:
// the callback answers 409 with a page that says so, or, on a flow with a deep link, goes there
// with status=conflict; p2 gets no connection and p1 keeps its own.
func TestConnectAccountLinkedElsewhere(t *testing.T) {
	e := newConnectEnv(t, "")
	b := browser(t, true)
	state, _ := e.open(b, e.link("p1"))
	if code, body := e.callback(b, state, "abc"); code != http.StatusOK {
		t.Fatalf("p1's callback: %d %s", code, body)
	}

	const want = "This vendor account is already connected to another patient."
	state, _ = e.open(b, e.link("p2"))
	if code, body := e.callback(b, state, "abc"); code != http.StatusConflict || !strings.Contains(body, want) {
		t.Errorf("linking p1's account to p2: %d %s, want 409 %q", code, body, want)
	}

	state, _ = e.open(b, e.linkTo("p2", connectDeepLink))
	res, err := b.Get(e.srv.URL + "/connect/vendor/callback?" + url.Values{"state": {state}, "code": {"abc"}}.Encode())
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	loc, err := url.Parse(res.Header.Get("Location"))
	if res.StatusCode != http.StatusFound || err != nil {
		t.Fatalf("with a deep link: %d to %q, want 302", res.StatusCode, res.Header.Get("Location"))
	}
	if got, want := loc.Scheme+"://"+loc.Host+loc.Path, "https://app.example/connected"; got != want {
		t.Errorf("redirect to %s, want %s", got, want)
	}
	if q := loc.Query(); q.Get("status") != "conflict" || q.Get("provider") != "vendor" || q.Get("from") != "ohx" {
		t.Errorf("redirect query %v, want status=conflict provider=vendor and the deep link's own from=ohx", q)
	}

	if c := e.connected("p2"); c != nil {
		t.Errorf("p2 got connected: %v", c)
	}
	if c := e.connected("p1"); c == nil || c.VendorUserID != "user-abc" {
		t.Errorf("p1's connection: %v, want vendor user user-abc", c)
	}
}

// TestConnectDeepLinkStatuses: a flow with a deep link ends there with its status; links are
// refused for unlisted deep links, unknown providers and unknown Patients.
func TestConnectDeepLinkStatuses(t *testing.T) {
	e := newConnectEnv(t, "")
	b := browser(t, true)
	for _, tc := range []struct{ name, patient, query, status string }{
		{"connected", "p1", "code=abc", "connected"},
		{"denied", "p2", "error=access_denied", "denied"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			state, _ := e.open(b, e.linkTo(tc.patient, connectDeepLink))
			res, err := b.Get(e.srv.URL + "/connect/vendor/callback?state=" + url.QueryEscape(state) + "&" + tc.query)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			loc, err := url.Parse(res.Header.Get("Location"))
			if res.StatusCode != http.StatusFound || err != nil || loc.Query().Get("status") != tc.status {
				t.Errorf("%d to %q, want 302 with status=%s", res.StatusCode, res.Header.Get("Location"), tc.status)
			}
		})
	}
	for _, tc := range []struct {
		body string
		want int
	}{
		{`{"patient":"p1","provider":"vendor","redirect":"https://evil.example/"}`, http.StatusBadRequest},
		{`{"patient":"p1","provider":"nobody"}`, http.StatusNotFound},
		{`{"patient":"p9","provider":"vendor"}`, http.StatusUnprocessableEntity},
	} {
		if r := e.do("POST", "/connect/links", tc.body, "Content-Type", "application/json"); r.status != tc.want {
			t.Errorf("POST /connect/links %s: %d %s, want %d", tc.body, r.status, r.body, tc.want)
		}
	}
}

// TestConnectWithoutVendors: a server with no vendor configured says so on the connect URLs
// (an OperationOutcome for API clients, a page for browsers), not a bare 404.
func TestConnectWithoutVendors(t *testing.T) {
	e := newEnv(t)
	r := e.do(http.MethodPost, "/connect/links", `{"patient":"p1","provider":"withings"}`, "Content-Type", "application/json")
	if r.status != http.StatusNotFound || !strings.Contains(string(r.body), "OperationOutcome") || !strings.Contains(string(r.body), "no vendor is configured") {
		t.Errorf("POST /connect/links: %d %s", r.status, r.body)
	}
	r = e.do(http.MethodGet, "/connect/withings?link=x", "")
	if r.status != http.StatusNotFound || !strings.Contains(string(r.body), "No device vendor can be connected") {
		t.Errorf("GET /connect/withings: %d %.200s", r.status, r.body)
	}
}
