package publish_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/openhealthexchange/ohx/providers/pipeline/publish"
)

// fakeTokenServer is an OAuth 2.0 token endpoint for the client credentials grant that checks
// client_secret_basic, or a SMART Backend Services client assertion signed with pub.
type fakeTokenServer struct {
	t        *testing.T
	srv      *httptest.Server
	clientID string
	secret   string           // client_secret_basic when set
	pub      crypto.PublicKey // private_key_jwt when set
	alg, kid string
	scope    string
	lifetime int // expires_in

	mu     sync.Mutex
	issued int
	jtis   map[string]bool
}

func newFakeTokenServer(t *testing.T, f *fakeTokenServer) *fakeTokenServer {
	f.t, f.jtis = t, map[string]bool{}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeTokenServer) URL() string { return f.srv.URL + "/token" }

func (f *fakeTokenServer) refuse(w http.ResponseWriter, format string, args ...any) {
	f.t.Errorf("token endpoint: "+format, args...)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusBadRequest)
	w.Write([]byte(`{"error":"invalid_client"}`))
}

func (f *fakeTokenServer) serve(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil || r.Method != http.MethodPost {
		f.refuse(w, "bad request %s %v", r.Method, err)
		return
	}
	if g := r.PostForm.Get("grant_type"); g != "client_credentials" {
		f.refuse(w, "grant_type %q", g)
		return
	}
	if s := r.PostForm.Get("scope"); s != f.scope {
		f.refuse(w, "scope %q, want %q", s, f.scope)
		return
	}
	if f.secret != "" {
		id, secret, ok := r.BasicAuth()
		if !ok || id != f.clientID || secret != f.secret {
			f.refuse(w, "client_secret_basic: got %q ok=%v", id, ok)
			return
		}
	} else {
		if _, _, ok := r.BasicAuth(); ok || r.PostForm.Has("client_secret") {
			f.refuse(w, "a secret was sent with private_key_jwt")
			return
		}
		if at := r.PostForm.Get("client_assertion_type"); at != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" {
			f.refuse(w, "client_assertion_type %q", at)
			return
		}
		var claims jwt.RegisteredClaims
		tok, err := jwt.ParseWithClaims(r.PostForm.Get("client_assertion"), &claims, func(tok *jwt.Token) (any, error) {
			if tok.Header["kid"] != f.kid {
				return nil, fmt.Errorf("kid %v, want %s", tok.Header["kid"], f.kid)
			}
			return f.pub, nil
		}, jwt.WithValidMethods([]string{f.alg}), jwt.WithAudience(f.URL()), jwt.WithIssuer(f.clientID),
			jwt.WithSubject(f.clientID), jwt.WithExpirationRequired())
		if err != nil || !tok.Valid {
			f.refuse(w, "client_assertion: %v", err)
			return
		}
		// SMART: exp no more than five minutes in the future; jti unique.
		if time.Until(claims.ExpiresAt.Time) > 5*time.Minute {
			f.refuse(w, "exp %v is more than 5 minutes ahead", claims.ExpiresAt)
			return
		}
		f.mu.Lock()
		dup := claims.ID == "" || f.jtis[claims.ID]
		f.jtis[claims.ID] = true
		f.mu.Unlock()
		if dup {
			f.refuse(w, "jti %q missing or reused", claims.ID)
			return
		}
	}
	f.mu.Lock()
	f.issued++
	n := f.issued
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"access_token": fmt.Sprintf("tok-%d", n), "token_type": "bearer", "expires_in": f.lifetime})
}

func (f *fakeTokenServer) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.issued
}

// publishWith publishes the seeded patient through the client of auth to an EHR that accepts
// only the tokens ts issued, and (newData) once more after a new Observation.
func publishWith(t *testing.T, a publish.Auth, ts *fakeTokenServer, newData bool) *env {
	t.Helper()
	var e *env
	hc, err := a.Client(nil)
	if err != nil {
		t.Fatal(err)
	}
	e = newEnv(t, publish.R5, nil)
	p, err := publish.New(publish.Config{URL: e.ehr.URL(), Version: publish.R5, PatientSystem: mrnSystem, Delay: -1}, e.st, hc, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.p = p
	e.seed(t)
	e.ehr.accept = ts.valid
	if err := e.p.Publish(t.Context(), "p1"); err != nil {
		t.Fatal(err)
	}
	if newData {
		e.upsert(t, weight(t, "12345/9/1", "80.0", ""))
		if err := e.p.Publish(t.Context(), "p1"); err != nil {
			t.Fatal(err)
		}
	}
	if e.ehr.authFailed != 0 {
		t.Errorf("the EHR refused %d requests for their token", e.ehr.authFailed)
	}
	return e
}

// valid reports whether the token server issued tok.
func (f *fakeTokenServer) valid(tok string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	var n int
	_, err := fmt.Sscanf(tok, "tok-%d", &n)
	return err == nil && n >= 1 && n <= f.issued
}

// TestClientSecretToken: client credentials with client_secret_basic; the token is reused while
// it lasts.
func TestClientSecretToken(t *testing.T) {
	ts := newFakeTokenServer(t, &fakeTokenServer{clientID: "ohx", secret: "s3cret", scope: "system/Observation.cu system/Device.cu", lifetime: 3600})
	e := publishWith(t, publish.Auth{TokenURL: ts.URL(), ClientID: "ohx", ClientSecret: "s3cret", Scopes: []string{"system/Observation.cu", "system/Device.cu"}}, ts, true)
	if n := ts.count(); n != 1 {
		t.Errorf("tokens issued: %d, want 1 (reused)", n)
	}
	if n := len(e.ehr.received()); n != 2 {
		t.Errorf("transactions: %d, want 2", n)
	}
}

// TestRevokedTokenRenewed: the EHR stops accepting a token before its expiry (revoked); the
// delivery that meets the 401 fails as temporary, and the retry fetches a new token instead of
// sending the cached one again until it expires.
func TestRevokedTokenRenewed(t *testing.T) {
	ts := newFakeTokenServer(t, &fakeTokenServer{clientID: "ohx", secret: "s3cret", scope: "system/Observation.cu", lifetime: 3600})
	e := publishWith(t, publish.Auth{TokenURL: ts.URL(), ClientID: "ohx", ClientSecret: "s3cret", Scopes: []string{"system/Observation.cu"}}, ts, false)
	if n := ts.count(); n != 1 {
		t.Fatalf("tokens issued: %d, want 1", n)
	}
	e.ehr.mu.Lock()
	e.ehr.accept = func(tok string) bool { return tok != "tok-1" && ts.valid(tok) } // tok-1 revoked
	e.ehr.mu.Unlock()
	e.upsert(t, weight(t, "12345/9/1", "80.0", ""))
	err := e.p.Publish(t.Context(), "p1")
	var de *publish.DeliveryError
	if !errors.As(err, &de) || de.Status != http.StatusUnauthorized || !de.Temporary() {
		t.Fatalf("publish with the revoked token: %v, want a temporary 401", err)
	}
	if err := e.p.Publish(t.Context(), "p1"); err != nil {
		t.Fatalf("the retry: %v", err)
	}
	if n := ts.count(); n != 2 {
		t.Errorf("tokens issued: %d, want 2 (the refused one forgotten)", n)
	}
	if n := len(e.ehr.received()); n != 2 {
		t.Errorf("transactions accepted: %d, want 2", n)
	}
	if e.ehr.authFailed != 1 {
		t.Errorf("requests refused for their token: %d, want 1", e.ehr.authFailed)
	}
}

// TestPrivateKeyJWT: SMART Backend Services with RS384 and ES384 keys read from PEM files: the
// token endpoint verifies each assertion (signature, kid, iss, sub, aud, exp, a fresh jti); a
// short-lived token is fetched again with a new assertion.
func TestPrivateKeyJWT(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p8, _ := x509.MarshalPKCS8PrivateKey(rsaKey)
	sec1, _ := x509.MarshalECPrivateKey(ecKey)
	for _, c := range []struct {
		name, alg string
		pem       []byte
		pub       crypto.PublicKey
	}{
		{"RS384 PKCS8", "RS384", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8}), &rsaKey.PublicKey},
		{"ES384 SEC1", "ES384", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1}), &ecKey.PublicKey},
	} {
		t.Run(c.name, func(t *testing.T) {
			key, err := publish.ParseKey(c.pem)
			if err != nil {
				t.Fatal(err)
			}
			kid, err := publish.Thumbprint(key.Public())
			if err != nil {
				t.Fatal(err)
			}
			jwk, err := publish.PublicJWK(key, "")
			if err != nil || jwk["kid"] != kid || jwk["alg"] != c.alg {
				t.Fatalf("JWK %v %v", jwk, err)
			}
			ts := newFakeTokenServer(t, &fakeTokenServer{clientID: "ohx-backend", pub: c.pub, alg: c.alg, kid: kid,
				scope: "system/Observation.cu", lifetime: 5})
			publishWith(t, publish.Auth{TokenURL: ts.URL(), ClientID: "ohx-backend", Key: key, Scopes: []string{"system/Observation.cu"}}, ts, true)
			if n := ts.count(); n != 2 {
				t.Errorf("tokens issued: %d, want 2 (the first expired)", n)
			}
		})
	}
}

// smartConfig serves {base}/.well-known/smart-configuration naming tokenURL; the first
// failFirst reads answer 503.
type smartConfig struct {
	srv       *httptest.Server
	tokenURL  string
	failFirst int
	mu        sync.Mutex
	reads     int
}

func newSMARTConfig(t *testing.T, tokenURL string, failFirst int) *smartConfig {
	c := &smartConfig{tokenURL: tokenURL, failFirst: failFirst}
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || r.URL.Path != "/fhir/.well-known/smart-configuration" {
			t.Errorf("discovery: %s %s", r.Method, r.URL.Path)
			http.NotFound(w, r)
			return
		}
		if r.Header.Get("Authorization") != "" {
			t.Errorf("discovery sent credentials: %q", r.Header.Get("Authorization"))
		}
		c.mu.Lock()
		c.reads++
		n := c.reads
		c.mu.Unlock()
		if n <= c.failFirst {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"token_endpoint": c.tokenURL, "grant_types_supported": []string{"client_credentials"},
			"token_endpoint_auth_methods_supported": []string{"client_secret_basic", "private_key_jwt"}})
	}))
	t.Cleanup(c.srv.Close)
	return c
}

func (c *smartConfig) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reads
}

// TestDiscoveredTokenEndpoint: without a TokenURL the token endpoint is read from the EHR's
// SMART configuration, without credentials, and kept once read; a failed read fails that token
// request and is tried again at the next; publishing works through the discovered endpoint; an
// endpoint that would carry the secret in clear text is refused.
func TestDiscoveredTokenEndpoint(t *testing.T) {
	ts := newFakeTokenServer(t, &fakeTokenServer{clientID: "ohx", secret: "s3cret", scope: "system/Observation.cu", lifetime: 1})
	conf := newSMARTConfig(t, ts.URL(), 1)
	a := publish.Auth{FHIRBase: conf.srv.URL + "/fhir/", ClientID: "ohx", ClientSecret: "s3cret", Scopes: []string{"system/Observation.cu"}}
	src, err := a.TokenSource(http.DefaultClient)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := src.Token(); err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("token with the configuration unreadable: %v, want an error naming the 503", err)
	}
	if n := ts.count(); n != 0 {
		t.Fatalf("tokens issued before the endpoint was known: %d", n)
	}
	for i := range 2 {
		tok, err := src.Token()
		if err != nil || !ts.valid(tok.AccessToken) {
			t.Fatalf("token %d: %v %v", i+1, tok, err)
		}
		time.Sleep(1100 * time.Millisecond) // lifetime 1 s: the next call fetches a new token
	}
	if n, r := ts.count(), conf.count(); n != 2 || r != 2 {
		t.Errorf("tokens issued %d, configuration read %d times; want 2 and 2 (the failed read, then kept)", n, r)
	}

	ts2 := newFakeTokenServer(t, &fakeTokenServer{clientID: "ohx", secret: "s3cret", scope: "system/Observation.cu", lifetime: 3600})
	conf2 := newSMARTConfig(t, ts2.URL(), 0)
	e := publishWith(t, publish.Auth{FHIRBase: conf2.srv.URL + "/fhir", ClientID: "ohx", ClientSecret: "s3cret", Scopes: []string{"system/Observation.cu"}}, ts2, true)
	if n, r := ts2.count(), conf2.count(); n != 1 || r != 1 {
		t.Errorf("publishing: tokens issued %d, configuration read %d times; want 1 and 1", n, r)
	}
	if n := len(e.ehr.received()); n != 2 {
		t.Errorf("transactions: %d, want 2", n)
	}

	plain := newSMARTConfig(t, "http://as.example/token", 0)
	src, err = publish.Auth{FHIRBase: plain.srv.URL + "/fhir", ClientID: "ohx", ClientSecret: "s3cret"}.TokenSource(http.DefaultClient)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := src.Token(); err == nil || !strings.Contains(err.Error(), "https") {
		t.Errorf("an http token endpoint discovered: %v, want refused", err)
	}
}

func TestAuthConfigErrors(t *testing.T) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	ec256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	for name, a := range map[string]publish.Auth{
		"no token URL":       {ClientID: "x", ClientSecret: "s"}, // nor a FHIR base to discover it from
		"no secret nor key":  {ClientID: "x", TokenURL: "https://as.example/token"},
		"secret and key":     {ClientID: "x", TokenURL: "https://as.example/token", ClientSecret: "s", Key: rsaKey},
		"http token URL":     {ClientID: "x", TokenURL: "http://as.example/token", ClientSecret: "s"},
		"small RSA key":      {ClientID: "x", TokenURL: "https://as.example/token", Key: small},
		"P-256 for an ES384": {ClientID: "x", TokenURL: "https://as.example/token", Key: ec256},
	} {
		if _, err := a.Client(nil); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := publish.ParseKey([]byte("not pem")); err == nil {
		t.Error("ParseKey accepted garbage")
	}
	if _, err := publish.ParseKey(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1}})); err == nil || !strings.Contains(err.Error(), "CERTIFICATE") {
		t.Errorf("ParseKey of a certificate: %v, want an error naming the block", err)
	}
}
