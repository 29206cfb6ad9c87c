package api_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/golang-jwt/jwt/v5"

	"github.com/openhealthexchange/ohx/api"
	"github.com/openhealthexchange/ohx/api/smart"
	"github.com/openhealthexchange/ohx/fhir/search"
	"github.com/openhealthexchange/ohx/providers"
	"github.com/openhealthexchange/ohx/store/sqlite"
)

const appOrigin = "https://app.example"

// newCORSEnv starts the API with token enforcement, stand-ins for the authorization server's
// routes (a script endpoint, /auth/token, and a browser page, /auth/authorize), the connect API
// and a webhook; origins is Config.CORSOrigins.
func newCORSEnv(t *testing.T, origins ...string) *authEnv {
	t.Helper()
	st, err := sqlite.Open(t.Context(), t.TempDir(), sqlite.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	e := &env{t: t, store: st}
	e.srv = httptest.NewUnstartedServer(nil)
	e.base = "http://" + e.srv.Listener.Addr().String() + "/fhir"
	v, err := smart.NewVerifier(smart.VerifierConfig{Issuer: testIssuer, Audience: e.base, RequireTyp: true,
		Keyfunc: func(*jwt.Token) (any, error) { return &key.PublicKey, nil }})
	if err != nil {
		t.Fatal(err)
	}
	page := func(c *gin.Context) { c.Data(http.StatusOK, "text/html; charset=utf-8", []byte("<p>page</p>")) }
	s, err := api.New(api.Config{BaseURL: e.base, CursorKey: bytes.Repeat([]byte("k"), 32), Auth: v,
		SMARTConfiguration: []byte(`{"token_endpoint":"x"}`),
		CORSOrigins:        origins,
		CORSPaths:          []string{"/auth/token"},
		AuthRoutes: func(r gin.IRouter) {
			r.POST("/auth/token", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"access_token": "x"}) })
			r.GET("/auth/authorize", page)
			r.POST("/auth/authorize", page)
		},
		Connect:  &api.ConnectConfig{Providers: providers.NewRegistry()},
		Webhooks: &api.WebhookConfig{Handlers: map[string]providers.Webhooks{}},
	}, st, search.DefaultRegistry(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.srv.Config.Handler = s.Handler()
	e.srv.Start()
	t.Cleanup(e.srv.Close)
	ae := &authEnv{env: e, key: key}
	ae.seedCompartments()
	return ae
}

func preflight(e *authEnv, path, method, headers string) response {
	e.t.Helper()
	h := []string{"Origin", appOrigin, "Access-Control-Request-Method", method}
	if headers != "" {
		h = append(h, "Access-Control-Request-Headers", headers)
	}
	return e.do(http.MethodOptions, path, "", h...)
}

// listed splits a comma-separated header value into lowercase names.
func listed(h http.Header, key string) []string {
	var out []string
	for _, v := range h.Values(key) {
		for f := range strings.SplitSeq(v, ",") {
			out = append(out, strings.ToLower(strings.TrimSpace(f)))
		}
	}
	return out
}

// TestCORSPreflight: a SMART app on another origin may send its bearer token and FHIR headers
// to every endpoint made for script; the answer is a 2xx with the Allow-* headers, never the
// 405 the router gives other OPTIONS requests.
func TestCORSPreflight(t *testing.T) {
	e := newCORSEnv(t)
	tests := []struct{ path, method, headers string }{
		{"/fhir/Observation", http.MethodGet, "authorization,prefer"},
		{"/fhir/Patient/p1", http.MethodPut, "authorization,content-type,if-match"},
		{"/fhir/Patient", http.MethodPost, "authorization,content-type,if-none-exist,x-request-id"},
		{"/fhir/Observation/vs-p1", http.MethodGet, "authorization,if-modified-since,if-none-match"}, // browsers send them sorted (Fetch),
		{"/fhir/r4/Observation", http.MethodGet, "accept,authorization"},
		{"/fhir/metadata", http.MethodGet, "accept"},
		{"/fhir/.well-known/smart-configuration", http.MethodGet, ""},
		{"/fhir/Observation/vs-p1", http.MethodDelete, "authorization"},
		{"/auth/token", http.MethodPost, "content-type"},
		{"/connect/links", http.MethodPost, "authorization,content-type"},
		{"/connect/status", http.MethodGet, "authorization"},
		{"/connect/withings", http.MethodDelete, "authorization"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			r := preflight(e, tt.path, tt.method, tt.headers)
			if r.status != http.StatusNoContent && r.status != http.StatusOK {
				t.Fatalf("status %d, want 204 or 200", r.status)
			}
			if got := r.header.Get("Access-Control-Allow-Origin"); got != "*" {
				t.Errorf("Access-Control-Allow-Origin = %q, want *", got)
			}
			if got := listed(r.header, "Access-Control-Allow-Methods"); !slices.Contains(got, strings.ToLower(tt.method)) {
				t.Errorf("Access-Control-Allow-Methods = %q, want it to hold %s", got, tt.method)
			}
			if tt.headers != "" {
				got := listed(r.header, "Access-Control-Allow-Headers")
				for h := range strings.SplitSeq(tt.headers, ",") {
					if !slices.Contains(got, h) {
						t.Errorf("Access-Control-Allow-Headers = %q, want it to hold %s", got, h)
					}
				}
			}
			if got := r.header.Get("Access-Control-Allow-Credentials"); got != "" {
				t.Errorf("Access-Control-Allow-Credentials = %q, want none", got)
			}
		})
	}
	// A header we do not accept, and the browser flow's GET of /connect/{provider}, are refused:
	// no Allow-Origin, so the browser never sends the request.
	for _, r := range []response{
		preflight(e, "/fhir/Observation", http.MethodGet, "authorization,x-custom"),
		preflight(e, "/connect/withings", http.MethodGet, ""),
	} {
		if got := r.header.Get("Access-Control-Allow-Origin"); got != "" {
			t.Errorf("refused preflight: Access-Control-Allow-Origin = %q, want none", got)
		}
	}
}

// TestCORSActualRequest: responses to cross-origin requests let the script read them, including
// the headers it needs (ETag for If-Match, Location after a create, WWW-Authenticate on a 401).
func TestCORSActualRequest(t *testing.T) {
	e := newCORSEnv(t)
	token := e.mint("system/*.rs", "")
	tests := []struct {
		name, method, path string
		headers            []string
		wantStatus         int
	}{
		{"read", http.MethodGet, "/fhir/Patient/p1", []string{"Authorization", "Bearer " + token}, http.StatusOK},
		{"search", http.MethodGet, "/fhir/Observation?patient=p1", []string{"Authorization", "Bearer " + token, "Prefer", "handling=lenient"}, http.StatusOK},
		{"no token", http.MethodGet, "/fhir/Patient/p1", nil, http.StatusUnauthorized},
		{"metadata", http.MethodGet, "/fhir/metadata", nil, http.StatusOK},
		{"r4 metadata", http.MethodGet, "/fhir/r4/metadata", nil, http.StatusOK},
		{"smart-configuration", http.MethodGet, "/fhir/.well-known/smart-configuration", nil, http.StatusOK},
		{"token endpoint", http.MethodPost, "/auth/token", nil, http.StatusOK},
		{"connect status", http.MethodGet, "/connect/status?patient=p1", nil, http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.do(tt.method, tt.path, "", append([]string{"Origin", appOrigin}, tt.headers...)...)
			if r.status != tt.wantStatus {
				t.Fatalf("status %d, want %d: %s", r.status, tt.wantStatus, r.body)
			}
			if got := r.header.Get("Access-Control-Allow-Origin"); got != "*" {
				t.Errorf("Access-Control-Allow-Origin = %q, want *", got)
			}
			exposed := listed(r.header, "Access-Control-Expose-Headers")
			for _, h := range []string{"etag", "location", "content-location", "last-modified", "x-request-id", "www-authenticate"} {
				if !slices.Contains(exposed, h) {
					t.Errorf("Access-Control-Expose-Headers = %q, want it to hold %s", exposed, h)
				}
			}
			if got := r.header.Get("Access-Control-Allow-Credentials"); got != "" {
				t.Errorf("Access-Control-Allow-Credentials = %q, want none", got)
			}
		})
	}
}

// TestCORSOriginList: with a configured list, only those origins get an Allow-Origin (their
// own, not *), on preflights and on actual requests.
func TestCORSOriginList(t *testing.T) {
	e := newCORSEnv(t, appOrigin, "http://localhost:3000")
	for _, origin := range []string{appOrigin, "http://localhost:3000"} {
		r := e.do(http.MethodOptions, "/fhir/Observation", "", "Origin", origin, "Access-Control-Request-Method", "GET",
			"Access-Control-Request-Headers", "authorization")
		if got := r.header.Get("Access-Control-Allow-Origin"); r.status != http.StatusNoContent || got != origin {
			t.Errorf("preflight from %s: %d, Access-Control-Allow-Origin = %q, want %q", origin, r.status, got, origin)
		}
		r = e.do(http.MethodGet, "/fhir/metadata", "", "Origin", origin)
		if got := r.header.Get("Access-Control-Allow-Origin"); got != origin {
			t.Errorf("GET from %s: Access-Control-Allow-Origin = %q, want %q", origin, got, origin)
		}
		if !slices.Contains(listed(r.header, "Vary"), "origin") {
			t.Errorf("GET from %s: Vary = %q, want Origin (the answer depends on it)", origin, r.header.Values("Vary"))
		}
	}
	for _, origin := range []string{"https://evil.example", "https://app.example.evil.example", "http://app.example", "null"} {
		r := e.do(http.MethodOptions, "/fhir/Observation", "", "Origin", origin, "Access-Control-Request-Method", "GET",
			"Access-Control-Request-Headers", "authorization")
		if got := r.header.Get("Access-Control-Allow-Origin"); got != "" {
			t.Errorf("preflight from %s: Access-Control-Allow-Origin = %q, want none", origin, got)
		}
		r = e.do(http.MethodGet, "/fhir/metadata", "", "Origin", origin)
		if got := r.header.Get("Access-Control-Allow-Origin"); r.status != http.StatusOK || got != "" {
			t.Errorf("GET from %s: %d, Access-Control-Allow-Origin = %q, want 200 and none", origin, r.status, got)
		}
	}
}

// TestCORSNotOnBrowserPages: the cookie-bearing authorization pages, the browser steps of the
// connect flow, webhooks and metrics get no CORS headers, on preflights or actual requests.
func TestCORSNotOnBrowserPages(t *testing.T) {
	e := newCORSEnv(t)
	for _, path := range []string{"/auth/authorize", "/connect/withings", "/connect/withings/callback", "/webhooks/withings/s3cret", "/metrics", "/healthz"} {
		t.Run(path, func(t *testing.T) {
			for _, r := range []response{
				e.do(http.MethodOptions, path, "", "Origin", appOrigin, "Access-Control-Request-Method", "POST"),
				e.do(http.MethodGet, path, "", "Origin", appOrigin),
				e.do(http.MethodPost, path, "", "Origin", appOrigin),
			} {
				for k := range r.header {
					if strings.HasPrefix(k, "Access-Control-") {
						t.Errorf("%s: %s = %q, want no CORS headers", path, k, r.header.Get(k))
					}
				}
			}
		})
	}
}

func TestCORSBadOrigins(t *testing.T) {
	for _, origins := range [][]string{{"https://app.example/"}, {"https://*.example"}, {"app.example"}, {"https://app.example/cb"}} {
		_, err := api.New(api.Config{BaseURL: "http://localhost/fhir", CursorKey: bytes.Repeat([]byte("k"), 32), CORSOrigins: origins},
			nil, search.DefaultRegistry(), nil, nil)
		if err == nil {
			t.Errorf("CORSOrigins %q: no error", origins)
		}
	}
}
