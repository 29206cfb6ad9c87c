package authserver

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/gin-gonic/gin"
	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp"

	"github.com/openhealthexchange/ohx/api/smart"
	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/store"
	"github.com/openhealthexchange/ohx/store/sqlite"
)

const (
	appRedirect = "https://app.example/cb"
	password    = "correct horse battery"
)

// env is an authorization server on a real sqlite store behind a real HTTP server.
type env struct {
	t      *testing.T
	s      *Server
	url    string // server origin
	fhir   string // FHIR base (the only accepted aud)
	secret string // the confidential client's secret
	ecKey  *ecdsa.PrivateKey
	rsaKey *rsa.PrivateKey
}

func newEnv(t *testing.T) *env {
	t.Helper()
	gin.SetMode(gin.ReleaseMode)
	ctx := t.Context()
	st, err := sqlite.Open(ctx, t.TempDir(), sqlite.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	var h http.Handler
	var mu sync.Mutex
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hh := h
		mu.Unlock()
		hh.ServeHTTP(w, r)
	}))
	t.Cleanup(ts.Close)
	e := &env{t: t, url: ts.URL, fhir: ts.URL + "/fhir"}
	e.s, err = NewServer(ctx, Config{Issuer: ts.URL + "/auth", FHIRBaseURL: e.fhir, SecretKey: []byte(strings.Repeat("k", 32))}, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	eng := gin.New()
	e.s.Register(eng)
	mu.Lock()
	h = eng
	mu.Unlock()

	for _, p := range []*fhir.Patient{
		{Base: fhir.Base{ResourceType: "Patient", ID: "p1"}, Name: []fhir.HumanName{{Family: "Smith", Given: []string{"Ann"}}}},
		{Base: fhir.Base{ResourceType: "Patient", ID: "p2"}, Name: []fhir.HumanName{{Family: "Jones", Given: []string{"Bob"}}}},
	} {
		if _, _, err := st.Put(ctx, p, store.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	e.ecKey, _ = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	e.rsaKey, _ = rsa.GenerateKey(rand.Reader, 2048)
	jwks := jwksOf(t, map[string]any{"ec1": &e.ecKey.PublicKey, "rsa1": &e.rsaKey.PublicKey})
	e.must(e.s.AddClient(ctx, Client{ID: "backend", Type: ClientBackend, Scopes: []string{"system/*.rs"}, JWKS: jwks}))
	e.must(e.s.AddClient(ctx, Client{ID: "app", Name: "Test App", Type: ClientPublic, RedirectURIs: []string{appRedirect},
		Scopes: []string{"launch", "launch/patient", "openid", "fhirUser", "offline_access", "patient/*.rs", "user/*.rs"}}))
	e.secret = e.must(e.s.AddClient(ctx, Client{ID: "conf", Type: ClientConfidential, RedirectURIs: []string{appRedirect},
		Scopes: []string{"launch/patient", "offline_access", "patient/*.rs"}, LaunchMinter: true}))
	if err := e.s.AddUser(ctx, User{Username: "doc", Role: RolePractitioner, FHIRUser: "Practitioner/d1"}, password); err != nil {
		t.Fatal(err)
	}
	if err := e.s.AddUser(ctx, User{Username: "ann", Role: RolePatient, Patient: "p1"}, password); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) must(s string, err error) string {
	e.t.Helper()
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

func jwksOf(t testing.TB, keys map[string]any) json.RawMessage {
	t.Helper()
	var set jwkset.JWKSMarshal
	for kid, k := range keys {
		alg := jwkset.AlgES384
		if _, ok := k.(*rsa.PublicKey); ok {
			alg = jwkset.AlgRS384
		}
		j, err := jwkset.NewJWKFromKey(k, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: kid, ALG: alg}})
		if err != nil {
			t.Fatal(err)
		}
		set.Keys = append(set.Keys, j.Marshal())
	}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// assertion builds a client assertion; mod may change claims and header before signing.
func (e *env) assertion(method jwt.SigningMethod, key any, kid string, mod func(*jwt.RegisteredClaims, map[string]any)) string {
	e.t.Helper()
	now := time.Now()
	c := jwt.RegisteredClaims{Issuer: "backend", Subject: "backend", Audience: jwt.ClaimStrings{e.s.Endpoints().Token},
		ExpiresAt: jwt.NewNumericDate(now.Add(4 * time.Minute)), IssuedAt: jwt.NewNumericDate(now), ID: randomToken(12)}
	tok := jwt.NewWithClaims(method, &c)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	if mod != nil {
		mod(&c, tok.Header)
	}
	s, err := tok.SignedString(key)
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

type resp struct {
	status int
	header http.Header
	body   map[string]any
}

func (e *env) post(path string, form url.Values, basic ...string) resp {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.url+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if len(basic) == 2 {
		req.SetBasicAuth(basic[0], basic[1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	r := resp{status: res.StatusCode, header: res.Header}
	if len(b) > 0 {
		if err := json.Unmarshal(b, &r.body); err != nil {
			e.t.Fatalf("POST %s: %d non-JSON body %q", path, res.StatusCode, b)
		}
	}
	return r
}

func backendForm(assertion string) url.Values {
	return url.Values{"grant_type": {"client_credentials"}, "scope": {"system/Observation.rs"},
		"client_assertion_type": {assertionType}, "client_assertion": {assertion}}
}

func (e *env) introspect(token string) map[string]any {
	e.t.Helper()
	r := e.post("/auth/introspect", url.Values{"token": {token}}, "conf", e.secret)
	if r.status != http.StatusOK {
		e.t.Fatalf("introspect: status %d %v", r.status, r.body)
	}
	return r.body
}

func TestBackendServices(t *testing.T) {
	e := newEnv(t)
	hsKey := x509PublicDER(t, &e.rsaKey.PublicKey)
	tests := []struct {
		name      string
		assertion func() string
		wantOK    bool
	}{
		{"ES384", func() string { return e.assertion(jwt.SigningMethodES384, e.ecKey, "ec1", nil) }, true},
		{"RS384", func() string { return e.assertion(jwt.SigningMethodRS384, e.rsaKey, "rsa1", nil) }, true},
		{"exp more than five minutes ahead", func() string {
			return e.assertion(jwt.SigningMethodES384, e.ecKey, "ec1", func(c *jwt.RegisteredClaims, _ map[string]any) {
				c.ExpiresAt = jwt.NewNumericDate(time.Now().Add(10 * time.Minute))
			})
		}, false},
		{"expired", func() string {
			return e.assertion(jwt.SigningMethodES384, e.ecKey, "ec1", func(c *jwt.RegisteredClaims, _ map[string]any) {
				c.ExpiresAt = jwt.NewNumericDate(time.Now().Add(-2 * time.Minute))
			})
		}, false},
		{"wrong aud", func() string {
			return e.assertion(jwt.SigningMethodES384, e.ecKey, "ec1", func(c *jwt.RegisteredClaims, _ map[string]any) {
				c.Audience = jwt.ClaimStrings{e.fhir}
			})
		}, false},
		{"sub differs from iss", func() string {
			return e.assertion(jwt.SigningMethodES384, e.ecKey, "ec1", func(c *jwt.RegisteredClaims, _ map[string]any) { c.Subject = "app" })
		}, false},
		{"no jti", func() string {
			return e.assertion(jwt.SigningMethodES384, e.ecKey, "ec1", func(c *jwt.RegisteredClaims, _ map[string]any) { c.ID = "" })
		}, false},
		{"unknown kid", func() string { return e.assertion(jwt.SigningMethodES384, e.ecKey, "nope", nil) }, false},
		{"no kid", func() string { return e.assertion(jwt.SigningMethodES384, e.ecKey, "", nil) }, false},
		{"kid of the other key type", func() string { return e.assertion(jwt.SigningMethodES384, e.ecKey, "rsa1", nil) }, false},
		{"ES256 not allowed", func() string {
			k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			return e.assertion(jwt.SigningMethodES256, k, "ec1", nil)
		}, false},
		{"HS256 with the public key as secret", func() string { return e.assertion(jwt.SigningMethodHS256, hsKey, "rsa1", nil) }, false},
		{"alg none", func() string {
			return e.assertion(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, "ec1", nil)
		}, false},
		{"signed by another key", func() string {
			k, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
			return e.assertion(jwt.SigningMethodES384, k, "ec1", nil)
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.post("/auth/token", backendForm(tt.assertion()))
			if !tt.wantOK {
				if r.status != http.StatusUnauthorized || r.body["error"] != "invalid_client" {
					t.Errorf("got %d %v, want 401 invalid_client", r.status, r.body)
				}
				return
			}
			if r.status != http.StatusOK {
				t.Fatalf("got %d %v, want 200", r.status, r.body)
			}
			if got := r.body["expires_in"].(float64); got <= 0 || got > 300 {
				t.Errorf("expires_in = %v, want (0, 300]", got)
			}
			if r.body["scope"] != "system/Observation.rs" || !strings.EqualFold(r.body["token_type"].(string), "bearer") {
				t.Errorf("body = %v", r.body)
			}
			if _, ok := r.body["refresh_token"]; ok {
				t.Error("backend services must not get a refresh token")
			}
			checkNoStore(t, r.header)
			claims := e.verify(r.body["access_token"].(string))
			if claims.Subject != "backend" || claims.ClientID != "backend" || claims.ExpiresAt.Sub(claims.IssuedAt.Time) > 300*time.Second {
				t.Errorf("claims = %+v", claims)
			}
		})
	}
}

func x509PublicDER(t testing.TB, k *rsa.PublicKey) []byte {
	t.Helper()
	j, err := jwkset.NewJWKFromKey(k, jwkset.JWKOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(j.Marshal())
	return b
}

func checkNoStore(t *testing.T, h http.Header) {
	t.Helper()
	if h.Get("Cache-Control") != "no-store" || h.Get("Pragma") != "no-cache" {
		t.Errorf("Cache-Control %q Pragma %q, want no-store, no-cache", h.Get("Cache-Control"), h.Get("Pragma"))
	}
}

// verify checks an access token the way a resource server does: golang-jwt with Keyfunc.
func (e *env) verify(raw string) *smart.Claims {
	e.t.Helper()
	var c smart.Claims
	tok, err := jwt.ParseWithClaims(raw, &c, e.s.Keyfunc(), jwt.WithValidMethods(smart.AllowedAlgs),
		jwt.WithIssuer(e.s.Endpoints().Issuer), jwt.WithAudience(e.fhir), jwt.WithExpirationRequired())
	if err != nil {
		e.t.Fatalf("access token does not verify: %v", err)
	}
	if tok.Header["typ"] != smart.TokenType {
		e.t.Errorf("typ = %v, want %s", tok.Header["typ"], smart.TokenType)
	}
	if c.ID == "" || c.IssuedAt == nil || c.ClientID == "" {
		e.t.Errorf("missing RFC 9068 claims: %+v", c)
	}
	return &c
}

func TestAssertionReplay(t *testing.T) {
	e := newEnv(t)
	a := e.assertion(jwt.SigningMethodES384, e.ecKey, "ec1", nil)
	if r := e.post("/auth/token", backendForm(a)); r.status != http.StatusOK {
		t.Fatalf("first use: %d %v", r.status, r.body)
	}
	if r := e.post("/auth/token", backendForm(a)); r.status != http.StatusUnauthorized || r.body["error"] != "invalid_client" {
		t.Errorf("replay: got %d %v, want 401 invalid_client", r.status, r.body)
	}
}

func TestBackendBadAssertionType(t *testing.T) {
	e := newEnv(t)
	f := backendForm(e.assertion(jwt.SigningMethodES384, e.ecKey, "ec1", nil))
	f.Set("client_assertion_type", "urn:wrong")
	if r := e.post("/auth/token", f); r.status != http.StatusUnauthorized {
		t.Errorf("got %d, want 401", r.status)
	}
}

func TestJWKSURL(t *testing.T) {
	e := newEnv(t)
	var hits int
	var mu sync.Mutex
	jwks := jwksOf(t, map[string]any{"ec2": &e.ecKey.PublicKey})
	ks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hits++
		mu.Unlock()
		w.Header().Set("Cache-Control", "max-age=600")
		w.Write(jwks)
	}))
	defer ks.Close()
	u := strings.Replace(ks.URL, "127.0.0.1", "localhost", 1)
	if _, err := e.s.AddClient(t.Context(), Client{ID: "byurl", Type: ClientBackend, Scopes: []string{"system/*.rs"}, JWKSURL: u}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		a := e.assertion(jwt.SigningMethodES384, e.ecKey, "ec2", func(c *jwt.RegisteredClaims, _ map[string]any) { c.Issuer, c.Subject = "byurl", "byurl" })
		if r := e.post("/auth/token", backendForm(a)); r.status != http.StatusOK {
			t.Fatalf("got %d %v", r.status, r.body)
		}
	}
	if hits != 1 {
		t.Errorf("JWKS fetched %d times, want 1 (max-age=600)", hits)
	}
}

func TestCacheTTL(t *testing.T) {
	for cc, want := range map[string]time.Duration{
		"":                       jwksDefaultTTL,
		"no-store":               0,
		"public, no-cache":       0,
		"max-age=60":             time.Minute,
		"public, max-age=999999": time.Hour,
		"max-age=x":              0,
	} {
		if got := cacheTTL(cc); got != want {
			t.Errorf("cacheTTL(%q) = %v, want %v", cc, got, want)
		}
	}
}

func TestClientSecretBasic(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name       string
		id, secret string
		wantStatus int
	}{
		{"good", "conf", e.secret, http.StatusBadRequest}, // authenticated, then invalid_grant for the bad code
		{"bad secret", "conf", e.secret + "x", http.StatusUnauthorized},
		{"unknown client", "nobody", e.secret, http.StatusUnauthorized},
		{"public client with a secret", "app", "x", http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.post("/auth/token", url.Values{"grant_type": {"authorization_code"}, "code": {"nope"}}, tt.id, tt.secret)
			if r.status != tt.wantStatus {
				t.Errorf("got %d %v, want %d", r.status, r.body, tt.wantStatus)
			}
			if tt.wantStatus == http.StatusUnauthorized && (r.body["error"] != "invalid_client" || r.header.Get("WWW-Authenticate") == "") {
				t.Errorf("got %v %q, want invalid_client with WWW-Authenticate", r.body, r.header.Get("WWW-Authenticate"))
			}
			if tt.wantStatus == http.StatusBadRequest && r.body["error"] != "invalid_grant" {
				t.Errorf("got %v, want invalid_grant", r.body)
			}
		})
	}
	// A confidential client that does not authenticate is refused too.
	if r := e.post("/auth/token", url.Values{"grant_type": {"authorization_code"}, "code": {"x"}, "client_id": {"conf"}}); r.status != http.StatusUnauthorized {
		t.Errorf("unauthenticated confidential client: got %d", r.status)
	}
}

// browser drives the authorization pages like a user agent that does not follow redirects.
type browser struct {
	e *env
	c *http.Client
}

func (e *env) browser() *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{e: e, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (b *browser) do(method, path string, form url.Values) (*http.Response, string) {
	b.e.t.Helper()
	u := path
	if strings.HasPrefix(path, "/") {
		u = b.e.url + path
	}
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, _ := http.NewRequest(method, u, body)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	res, err := b.c.Do(req)
	if err != nil {
		b.e.t.Fatal(err)
	}
	defer res.Body.Close()
	text, _ := io.ReadAll(res.Body)
	return res, string(text)
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func csrfOf(t *testing.T, page string) string {
	t.Helper()
	m := csrfRE.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no CSRF token in page:\n%s", page)
	}
	return m[1]
}

func pkce() (verifier, challenge string) {
	verifier = randomToken(32)
	sum := sha256.Sum256([]byte(verifier))
	return verifier, base64.RawURLEncoding.EncodeToString(sum[:])
}

func (e *env) authorizeQuery(clientID, scope, challenge string) url.Values {
	return url.Values{"response_type": {"code"}, "client_id": {clientID}, "redirect_uri": {appRedirect}, "scope": {scope},
		"state": {"st-123"}, "aud": {e.fhir}, "code_challenge": {challenge}, "code_challenge_method": {"S256"}, "nonce": {"n-123"}}
}

// login runs authorize → login (with CSRF) → optional patient pick → consent and returns the code.
func (e *env) login(clientID, user, scope, challenge, pickPatient string) string {
	e.t.Helper()
	t := e.t
	b := e.browser()
	res, _ := b.do(http.MethodGet, "/auth/authorize?"+e.authorizeQuery(clientID, scope, challenge).Encode(), nil)
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/auth/login" {
		t.Fatalf("authorize: %d → %q", res.StatusCode, res.Header.Get("Location"))
	}
	res, page := b.do(http.MethodGet, "/auth/login", nil)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("login page: %d", res.StatusCode)
	}
	res, _ = b.do(http.MethodPost, "/auth/login", url.Values{"csrf": {csrfOf(t, page)}, "username": {user}, "password": {password}})
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/auth/consent" {
		t.Fatalf("login: %d → %q", res.StatusCode, res.Header.Get("Location"))
	}
	res, page = b.do(http.MethodGet, "/auth/consent", nil)
	if pickPatient != "" {
		if !strings.Contains(page, "Choose a patient") || !strings.Contains(page, "Ann Smith") {
			t.Fatalf("want the patient picker, got:\n%s", page)
		}
		res, _ = b.do(http.MethodPost, "/auth/consent", url.Values{"csrf": {csrfOf(t, page)}, "action": {"pick"}, "patient": {pickPatient}})
		if res.StatusCode != http.StatusSeeOther {
			t.Fatalf("pick: %d", res.StatusCode)
		}
		res, page = b.do(http.MethodGet, "/auth/consent", nil)
	}
	if res.StatusCode != http.StatusOK || !strings.Contains(page, "Allow access?") {
		t.Fatalf("consent page: %d\n%s", res.StatusCode, page)
	}
	res, _ = b.do(http.MethodPost, "/auth/consent", url.Values{"csrf": {csrfOf(t, page)}, "action": {"approve"}})
	loc, err := url.Parse(res.Header.Get("Location"))
	if res.StatusCode != http.StatusFound || err != nil || !strings.HasPrefix(loc.String(), appRedirect) {
		t.Fatalf("approve: %d → %q", res.StatusCode, res.Header.Get("Location"))
	}
	if got := loc.Query().Get("state"); got != "st-123" {
		t.Errorf("state = %q, want st-123", got)
	}
	return loc.Query().Get("code")
}

func (e *env) exchange(clientID, code, verifier string) resp {
	e.t.Helper()
	f := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {appRedirect}, "code_verifier": {verifier}}
	if clientID == "conf" {
		return e.post("/auth/token", f, "conf", e.secret)
	}
	f.Set("client_id", clientID)
	return e.post("/auth/token", f)
}

func TestStandaloneLaunch(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name, user, pick, wantPatient, wantFHIRUser string
	}{
		{"practitioner picks a patient", "doc", "p2", "p2", "Practitioner/d1"},
		{"patient is bound to their own record", "ann", "", "p1", "Patient/p1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			verifier, challenge := pkce()
			code := e.login("app", tt.user, "launch/patient openid fhirUser offline_access patient/*.rs patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|vital-signs system/*.rs", challenge, tt.pick)
			r := e.exchange("app", code, verifier)
			if r.status != http.StatusOK {
				t.Fatalf("token: %d %v", r.status, r.body)
			}
			checkNoStore(t, r.header)
			want := map[string]any{"token_type": "Bearer", "patient": tt.wantPatient, "need_patient_banner": true, "expires_in": float64(3600),
				"scope": "launch/patient openid fhirUser offline_access patient/*.rs patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|vital-signs"}
			got := map[string]any{}
			for k := range want {
				got[k] = r.body[k]
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("token response (-want +got):\n%s", diff)
			}
			if r.body["refresh_token"] == nil {
				t.Error("no refresh_token despite offline_access")
			}
			c := e.verify(r.body["access_token"].(string))
			if c.Patient != tt.wantPatient || c.FHIRUser != tt.wantFHIRUser || c.Subject != tt.user || c.ClientID != "app" {
				t.Errorf("claims = %+v", c)
			}
			// openid fhirUser: an OpenID Connect id_token for the app, naming the user's resource.
			raw, _ := r.body["id_token"].(string)
			var idc IDClaims
			tok, err := jwt.ParseWithClaims(raw, &idc, e.s.Keyfunc(), jwt.WithValidMethods(smart.AllowedAlgs),
				jwt.WithIssuer(e.s.Endpoints().Issuer), jwt.WithAudience("app"), jwt.WithExpirationRequired())
			if err != nil {
				t.Fatalf("id_token does not verify: %v", err)
			}
			if tok.Header["typ"] != "JWT" || idc.Subject != tt.user || idc.Nonce != "n-123" || idc.FHIRUser != e.fhir+"/"+tt.wantFHIRUser {
				t.Errorf("id_token = %v %+v", tok.Header, idc)
			}
		})
	}
}

func TestOpenIDConfiguration(t *testing.T) {
	e := newEnv(t)
	res, err := http.Get(e.url + "/auth/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var doc map[string]any
	json.NewDecoder(res.Body).Decode(&doc)
	if res.StatusCode != 200 || doc["issuer"] != e.s.Endpoints().Issuer || doc["jwks_uri"] != e.s.Endpoints().JWKS {
		t.Errorf("openid-configuration: %d %v", res.StatusCode, doc)
	}
}

func TestEHRLaunch(t *testing.T) {
	e := newEnv(t)
	r := e.post("/auth/launch", url.Values{"patient": {"p2"}, "app_client_id": {"app"}}, "conf", e.secret)
	if r.status != http.StatusOK {
		t.Fatalf("mint launch: %d %v", r.status, r.body)
	}
	launch := r.body["launch"].(string)
	verifier, challenge := pkce()
	b := e.browser()
	q := e.authorizeQuery("app", "launch patient/*.rs", challenge)
	q.Set("launch", launch)
	b.do(http.MethodGet, "/auth/authorize?"+q.Encode(), nil)
	_, page := b.do(http.MethodGet, "/auth/login", nil)
	b.do(http.MethodPost, "/auth/login", url.Values{"csrf": {csrfOf(t, page)}, "username": {"doc"}, "password": {password}})
	_, page = b.do(http.MethodGet, "/auth/consent", nil)
	if !strings.Contains(page, "Bob Jones") {
		t.Fatalf("consent page does not show the launch patient:\n%s", page)
	}
	res, _ := b.do(http.MethodPost, "/auth/consent", url.Values{"csrf": {csrfOf(t, page)}, "action": {"approve"}})
	loc, _ := url.Parse(res.Header.Get("Location"))
	tr := e.exchange("app", loc.Query().Get("code"), verifier)
	if tr.status != http.StatusOK || tr.body["patient"] != "p2" || tr.body["scope"] != "launch patient/*.rs" {
		t.Errorf("token: %d %v", tr.status, tr.body)
	}
	// A public client cannot mint launches.
	if r := e.post("/auth/launch", url.Values{"patient": {"p2"}, "client_id": {"app"}}); r.status != http.StatusForbidden {
		t.Errorf("public client minting: got %d, want 403", r.status)
	}
}

func TestPKCEMismatch(t *testing.T) {
	e := newEnv(t)
	_, challenge := pkce()
	code := e.login("app", "ann", "patient/*.rs", challenge, "")
	other, _ := pkce()
	if r := e.exchange("app", code, other); r.status != http.StatusBadRequest || r.body["error"] != "invalid_grant" {
		t.Errorf("got %d %v, want 400 invalid_grant", r.status, r.body)
	}
}

func TestCodeReuseRevokes(t *testing.T) {
	e := newEnv(t)
	verifier, challenge := pkce()
	code := e.login("conf", "ann", "launch/patient offline_access patient/*.rs", challenge, "")
	first := e.exchange("conf", code, verifier)
	if first.status != http.StatusOK {
		t.Fatalf("first exchange: %d %v", first.status, first.body)
	}
	at, rt := first.body["access_token"].(string), first.body["refresh_token"].(string)
	if got := e.introspect(at); got["active"] != true {
		t.Fatalf("before reuse: %v", got)
	}
	if r := e.exchange("conf", code, verifier); r.status != http.StatusBadRequest || r.body["error"] != "invalid_grant" {
		t.Errorf("second exchange: got %d %v, want 400 invalid_grant", r.status, r.body)
	}
	if got := e.introspect(at); got["active"] != false {
		t.Errorf("access token after code reuse: %v, want inactive", got)
	}
	if got := e.introspect(rt); got["active"] != false {
		t.Errorf("refresh token after code reuse: %v, want inactive", got)
	}
	if !e.s.Revoked(t.Context(), e.verify(at).ID) {
		t.Error("Revoked = false for a token of a reused code")
	}
}

func TestRefreshRotation(t *testing.T) {
	e := newEnv(t)
	verifier, challenge := pkce()
	code := e.login("app", "ann", "offline_access patient/*.rs", challenge, "")
	r0 := e.exchange("app", code, verifier)
	rt0 := r0.body["refresh_token"].(string)
	refresh := func(rt string) resp {
		return e.post("/auth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {"app"}})
	}
	r1 := refresh(rt0)
	if r1.status != http.StatusOK || r1.body["refresh_token"] == rt0 || r1.body["refresh_token"] == nil || r1.body["patient"] != "p1" {
		t.Fatalf("refresh: %d %v", r1.status, r1.body)
	}
	checkNoStore(t, r1.header)
	rt1, at1 := r1.body["refresh_token"].(string), r1.body["access_token"].(string)
	// Reusing the rotated token fails and revokes the family.
	if r := refresh(rt0); r.status != http.StatusBadRequest || r.body["error"] != "invalid_grant" {
		t.Errorf("reuse: got %d %v", r.status, r.body)
	}
	if r := refresh(rt1); r.status != http.StatusBadRequest {
		t.Errorf("refresh after reuse detection: got %d %v, want 400", r.status, r.body)
	}
	if got := e.introspect(at1); got["active"] != false {
		t.Errorf("access token of the revoked family: %v", got)
	}
}

func TestNoRefreshWithoutOfflineAccess(t *testing.T) {
	e := newEnv(t)
	verifier, challenge := pkce()
	r := e.exchange("app", e.login("app", "ann", "patient/*.rs", challenge, ""), verifier)
	if r.status != http.StatusOK || r.body["refresh_token"] != nil {
		t.Errorf("got %d %v, want a token without refresh_token", r.status, r.body)
	}
}

func TestIntrospectionAndRevocation(t *testing.T) {
	e := newEnv(t)
	verifier, challenge := pkce()
	r := e.exchange("conf", e.login("conf", "ann", "launch/patient offline_access patient/*.rs", challenge, ""), verifier)
	at, rt := r.body["access_token"].(string), r.body["refresh_token"].(string)
	got := e.introspect(at)
	c := e.verify(at)
	want := map[string]any{"active": true, "scope": "launch/patient offline_access patient/*.rs", "client_id": "conf",
		"exp": float64(c.ExpiresAt.Unix()), "patient": "p1", "fhirUser": "Patient/p1", "sub": "ann"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("introspection %s = %v, want %v", k, got[k], v)
		}
	}
	// Public clients and bearer tokens may not introspect.
	if r := e.post("/auth/introspect", url.Values{"token": {at}, "client_id": {"app"}}); r.status != http.StatusUnauthorized {
		t.Errorf("public client introspection: got %d", r.status)
	}
	// Revoking the access token.
	if r := e.post("/auth/revoke", url.Values{"token": {at}}, "conf", e.secret); r.status != http.StatusOK {
		t.Fatalf("revoke: %d %v", r.status, r.body)
	}
	if got := e.introspect(at); got["active"] != false {
		t.Errorf("after revocation: %v", got)
	}
	if !e.s.Revoked(t.Context(), c.ID) {
		t.Error("Revoked = false after revocation")
	}
	// Revoking the refresh token ends the grant.
	if r := e.post("/auth/revoke", url.Values{"token": {rt}, "token_type_hint": {"refresh_token"}}, "conf", e.secret); r.status != http.StatusOK {
		t.Fatalf("revoke refresh: %d", r.status)
	}
	if r := e.post("/auth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}, "conf", e.secret); r.status != http.StatusBadRequest {
		t.Errorf("refresh after revocation: %d %v", r.status, r.body)
	}
	// Unknown tokens answer 200 (RFC 7009 §2.2).
	if r := e.post("/auth/revoke", url.Values{"token": {"garbage"}}, "conf", e.secret); r.status != http.StatusOK {
		t.Errorf("revoke garbage: %d", r.status)
	}
}

func TestAuthorizeErrors(t *testing.T) {
	e := newEnv(t)
	_, challenge := pkce()
	tests := []struct {
		name      string
		mod       func(url.Values)
		wantPage  bool   // an error page, never a redirect
		wantError string // the error in the redirect
	}{
		{"unregistered redirect URI", func(q url.Values) { q.Set("redirect_uri", "https://evil.example/cb") }, true, ""},
		{"redirect URI prefix only", func(q url.Values) { q.Set("redirect_uri", appRedirect+"/x") }, true, ""},
		{"unknown client", func(q url.Values) { q.Set("client_id", "nobody") }, true, ""},
		{"wrong aud", func(q url.Values) { q.Set("aud", "https://other.example/fhir") }, false, "invalid_request"},
		{"missing aud", func(q url.Values) { q.Del("aud") }, false, "invalid_request"},
		{"plain PKCE", func(q url.Values) { q.Set("code_challenge_method", "plain") }, false, "invalid_request"},
		{"no PKCE", func(q url.Values) { q.Del("code_challenge"); q.Del("code_challenge_method") }, false, "invalid_request"},
		{"implicit", func(q url.Values) { q.Set("response_type", "token") }, false, "unsupported_response_type"},
		{"backend client", func(q url.Values) { q.Set("client_id", "backend") }, true, ""},
		{"no grantable scope", func(q url.Values) { q.Set("scope", "system/*.rs") }, false, "invalid_scope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := e.authorizeQuery("app", "launch/patient patient/*.rs", challenge)
			tt.mod(q)
			res, _ := e.browser().do(http.MethodGet, "/auth/authorize?"+q.Encode(), nil)
			if tt.wantPage {
				if res.StatusCode != http.StatusBadRequest || res.Header.Get("Location") != "" {
					t.Errorf("got %d → %q, want a 400 page without redirect", res.StatusCode, res.Header.Get("Location"))
				}
				return
			}
			loc, _ := url.Parse(res.Header.Get("Location"))
			if res.StatusCode != http.StatusFound || loc.Query().Get("error") != tt.wantError || loc.Query().Get("code") != "" || loc.Query().Get("state") != "st-123" {
				t.Errorf("got %d → %q, want a redirect with error=%s and the state", res.StatusCode, loc, tt.wantError)
			}
		})
	}
}

func TestAuthorizePost(t *testing.T) {
	e := newEnv(t)
	_, challenge := pkce()
	res, _ := e.browser().do(http.MethodPost, "/auth/authorize", e.authorizeQuery("app", "patient/*.rs", challenge))
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/auth/login" {
		t.Errorf("got %d → %q", res.StatusCode, res.Header.Get("Location"))
	}
	ck := res.Cookies()
	if len(ck) != 1 || !ck[0].HttpOnly || ck[0].SameSite != http.SameSiteLaxMode {
		t.Errorf("session cookie = %+v, want HttpOnly SameSite=Lax", ck)
	}
}

func TestCSRF(t *testing.T) {
	e := newEnv(t)
	_, challenge := pkce()
	b := e.browser()
	b.do(http.MethodGet, "/auth/authorize?"+e.authorizeQuery("app", "patient/*.rs", challenge).Encode(), nil)
	_, page := b.do(http.MethodGet, "/auth/login", nil)
	good := csrfOf(t, page)
	for name, tok := range map[string]string{"missing": "", "wrong": good[:len(good)-2] + "AA"} {
		res, _ := b.do(http.MethodPost, "/auth/login", url.Values{"csrf": {tok}, "username": {"ann"}, "password": {password}})
		if res.StatusCode != http.StatusForbidden {
			t.Errorf("%s CSRF token: got %d, want 403", name, res.StatusCode)
		}
	}
	// Another browser (no session cookie) with a valid-looking token.
	res, _ := e.browser().do(http.MethodPost, "/auth/login", url.Values{"csrf": {good}, "username": {"ann"}, "password": {password}})
	if res.StatusCode != http.StatusForbidden {
		t.Errorf("without the session cookie: got %d, want 403", res.StatusCode)
	}
	res, page = b.do(http.MethodPost, "/auth/login", url.Values{"csrf": {good}, "username": {"ann"}, "password": {"wrong password"}})
	if res.StatusCode != http.StatusUnauthorized || !strings.Contains(page, "wrong password") {
		t.Errorf("bad password: got %d", res.StatusCode)
	}
}

func TestKeyRotation(t *testing.T) {
	e := newEnv(t)
	tok := func() string {
		r := e.post("/auth/token", backendForm(e.assertion(jwt.SigningMethodES384, e.ecKey, "ec1", nil)))
		if r.status != http.StatusOK {
			t.Fatalf("token: %d %v", r.status, r.body)
		}
		return r.body["access_token"].(string)
	}
	kid := func(raw string) string {
		tk, _, err := jwt.NewParser().ParseUnverified(raw, &smart.Claims{})
		if err != nil {
			t.Fatal(err)
		}
		return tk.Header["kid"].(string)
	}
	old := tok()
	if err := e.s.RotateKeys(t.Context()); err != nil {
		t.Fatal(err)
	}
	fresh := tok()
	if kid(old) == kid(fresh) {
		t.Fatal("rotation did not change the signing key")
	}
	e.verify(old) // still verifies during the overlap
	e.verify(fresh)
	res, err := http.Get(e.url + "/auth/jwks")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var set struct {
		Keys []struct{ Kid, Alg, D string }
	}
	json.NewDecoder(res.Body).Decode(&set)
	if len(set.Keys) != 2 || set.Keys[0].D != "" || set.Keys[1].D != "" {
		t.Errorf("JWKS = %+v, want two public keys", set)
	}
	// A server restarted on the same store (and secret) verifies both.
	s2, err := NewServer(t.Context(), e.s.cfg, e.s.st, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, raw := range []string{old, fresh} {
		if _, err := jwt.Parse(raw, s2.Keyfunc(), jwt.WithValidMethods(smart.AllowedAlgs)); err != nil {
			t.Errorf("restarted server: %v", err)
		}
	}
	// Unknown kid.
	forged := jwt.NewWithClaims(jwt.SigningMethodRS256, &smart.Claims{})
	forged.Header["kid"] = "nope"
	k, _ := rsa.GenerateKey(rand.Reader, 2048)
	raw, _ := forged.SignedString(k)
	if _, err := jwt.Parse(raw, e.s.Keyfunc()); err == nil {
		t.Error("unknown kid verified")
	}
}

func TestPrivateKeysEncryptedAtRest(t *testing.T) {
	e := newEnv(t)
	recs, err := e.s.st.ListRecords(t.Context(), kindKey)
	if err != nil || len(recs) != 1 {
		t.Fatalf("keys: %v %v", recs, err)
	}
	if strings.Contains(string(recs[0].Doc), `"d"`) || strings.Contains(string(recs[0].Doc), "PRIVATE") {
		t.Error("stored key document contains private key material in clear")
	}
	cfg := e.s.cfg
	cfg.SecretKey = []byte(strings.Repeat("z", 32))
	if _, err := NewServer(t.Context(), cfg, e.s.st, nil); err == nil {
		t.Error("a different secret opened the signing key")
	}
}

func TestHashSecret(t *testing.T) {
	h, err := hashSecret("s3cret-value")
	if err != nil {
		t.Fatal(err)
	}
	h2, _ := hashSecret("s3cret-value")
	if h == h2 {
		t.Error("same hash twice: no salt")
	}
	if !verifySecret(h, "s3cret-value") || verifySecret(h, "s3cret-valuf") || verifySecret("garbage", "") {
		t.Error("verifySecret is wrong")
	}
}

func TestDescribeScopes(t *testing.T) {
	got := describeScopes("launch/patient offline_access patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|vital-signs patient/*.read user/Patient.cruds", true)
	want := []string{
		"Know which patient's record is open",
		"Keep access after you close the app, until you revoke it",
		"Read and search your Observations (vital signs only)",
		"Read and search your health records",
		"Create, read, update, delete and search your patient details",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	// A practitioner's user/ scopes reach every patient, and the page says so.
	got = describeScopes("user/Observation.rs patient/Device.rs", false)
	want = []string{"Read and search every patient's Observations", "Read and search the selected patient's Devices"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("practitioner (-want +got):\n%s", diff)
	}
}

func TestGrantScopes(t *testing.T) {
	allowed := []string{"launch/patient", "patient/*.rs", "user/Observation.rs?category=laboratory"}
	got := grantScopes("launch/patient patient/Observation.r patient/Observation.cud user/Observation.rs?category=laboratory user/Observation.rs openid patient/Observation.r", allowed)
	want := []string{"launch/patient", "patient/Observation.r", "user/Observation.rs?category=laboratory"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// TestVerifierAcceptsOurTokens checks that the resource-server Verifier, configured for the
// built-in issuer, accepts our tokens and stops accepting a revoked one.
func TestVerifierAcceptsOurTokens(t *testing.T) {
	e := newEnv(t)
	v, err := smart.NewVerifier(smart.VerifierConfig{Issuer: e.s.Endpoints().Issuer, Audience: e.fhir, Keyfunc: e.s.Keyfunc(),
		RequireTyp: true, Revoked: e.s.Revoked})
	if err != nil {
		t.Fatal(err)
	}
	verifier, challenge := pkce()
	r := e.exchange("conf", e.login("conf", "ann", "launch/patient patient/*.rs", challenge, ""), verifier)
	at := r.body["access_token"].(string)
	c, err := v.Verify(t.Context(), at)
	if err != nil || c.Patient != "p1" {
		t.Fatalf("Verify = %+v, %v", c, err)
	}
	e.post("/auth/revoke", url.Values{"token": {at}}, "conf", e.secret)
	if _, err := v.Verify(t.Context(), at); !errors.Is(err, smart.ErrInvalidToken) {
		t.Errorf("revoked token: got %v, want smart.ErrInvalidToken", err)
	}
}
