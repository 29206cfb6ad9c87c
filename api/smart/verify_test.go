package smart

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func TestVerifierRevocationCache(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	var calls atomic.Int32
	revoked := map[string]bool{}
	v, err := NewVerifier(VerifierConfig{Issuer: "https://i", Audience: "https://a/fhir", RequireTyp: true,
		Keyfunc:         func(*jwt.Token) (any, error) { return &key.PublicKey, nil },
		Revoked:         func(_ context.Context, jti string) bool { calls.Add(1); return revoked[jti] },
		RevokedCacheTTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	mint := func(jti, patientClaim string) string {
		c := jwt.MapClaims{"iss": "https://i", "aud": "https://a/fhir", "exp": time.Now().Add(time.Hour).Unix(), "iat": time.Now().Unix(), "jti": jti, "client_id": "c", "scope": "system/*.rs"}
		if patientClaim != "" {
			c[patientClaim] = "p9"
		}
		tok := jwt.NewWithClaims(jwt.SigningMethodES256, c)
		tok.Header["kid"], tok.Header["typ"] = "k", TokenType
		s, _ := tok.SignedString(key)
		return s
	}
	ok := mint("a", "")
	for range 3 {
		if _, err := v.Verify(t.Context(), ok); err != nil {
			t.Fatal(err)
		}
	}
	if calls.Load() != 1 {
		t.Errorf("revocation store read %d times for one token, want 1", calls.Load())
	}
	revoked["b"] = true
	for range 2 {
		if _, err := v.Verify(t.Context(), mint("b", "")); !errors.Is(err, ErrInvalidToken) {
			t.Errorf("revoked token accepted: %v", err)
		}
	}
	if calls.Load() != 3 {
		t.Errorf("revoked answers must not be cached: %d reads", calls.Load())
	}
	// An external issuer naming the patient differently.
	v2, _ := NewVerifier(VerifierConfig{Issuer: "https://i", Audience: "https://a/fhir", PatientClaim: "patient_id",
		Keyfunc: func(*jwt.Token) (any, error) { return &key.PublicKey, nil }})
	c, err := v2.Verify(t.Context(), mint("c", "patient_id"))
	if err != nil || c.Patient != "p9" {
		t.Errorf("patient_id claim: %v %+v", err, c)
	}
}

func TestDiscover(t *testing.T) {
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/.well-known/smart-configuration":
			http.NotFound(w, r)
		case "/.well-known/openid-configuration", "/other/.well-known/openid-configuration":
			json.NewEncoder(w).Encode(map[string]any{"issuer": srv.URL, "jwks_uri": srv.URL + "/jwks", "token_endpoint": srv.URL + "/token"})
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	md, err := Discover(t.Context(), srv.URL, srv.Client())
	if err != nil || md.JWKSURI != srv.URL+"/jwks" {
		t.Fatalf("Discover: %v %+v", err, md)
	}
	if _, err := Discover(t.Context(), srv.URL+"/other", srv.Client()); err == nil || !strings.Contains(err.Error(), "names issuer") {
		t.Errorf("a document naming another issuer must be refused: %v", err)
	}
}
