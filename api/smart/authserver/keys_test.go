package authserver

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"

	"github.com/openhealthexchange/ohx/store/seal"
	"github.com/openhealthexchange/ohx/store/sqlite"
)

// legacySeal is how signing keys were sealed before store/seal: AES-256-GCM under
// HMAC-SHA256(secret, purpose), a random nonce, nonce ‖ ciphertext, the kid as associated data.
// It is kept here, verbatim in effect, so that keys stored by earlier releases are proven to open.
func legacySeal(t testing.TB, secret []byte, purpose string, plain, aad []byte) []byte {
	t.Helper()
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(purpose))
	block, err := aes.NewCipher(m.Sum(nil))
	if err != nil {
		t.Fatal(err)
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		t.Fatal(err)
	}
	nonce := make([]byte, gcm.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		t.Fatal(err)
	}
	return gcm.Seal(nonce, nonce, plain, aad)
}

// TestLegacySealedKeyOpens stores a signing key sealed the way keys.go sealed it before
// store/seal and checks that NewServer opens it, signs with it and publishes it.
func TestLegacySealedKeyOpens(t *testing.T) {
	ctx := t.Context()
	st, err := sqlite.Open(ctx, t.TempDir(), sqlite.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	secret := []byte(strings.Repeat("k", 32))

	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	const kid = "legacy-kid"
	pubJWK, err := jwkset.NewJWKFromKey(&priv.PublicKey, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{
		ALG: jwkset.AlgRS256, KID: kid, USE: jwkset.UseSig}})
	if err != nil {
		t.Fatal(err)
	}
	pub, err := json.Marshal(pubJWK.Marshal())
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	d := keyDoc{KID: kid, Alg: signingAlg, Created: time.Now().UTC(), Public: pub,
		Sealed: legacySeal(t, secret, "ohx smart signing keys", der, []byte(kid))}
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.CreateRecord(ctx, kindKey, kid, b, time.Time{}); err != nil {
		t.Fatal(err)
	}

	s, err := NewServer(ctx, Config{Issuer: "https://ohx.example/auth", FHIRBaseURL: "https://ohx.example/fhir", SecretKey: secret}, st, nil)
	if err != nil {
		t.Fatalf("NewServer over a legacy-sealed key: %v", err)
	}
	if s.keys.signKID != kid {
		t.Errorf("signing kid %q, want the stored %q", s.keys.signKID, kid)
	}
	raw, err := s.keys.signTyped(jwt.MapClaims{"sub": "x"}, "JWT")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := jwt.Parse(raw, func(*jwt.Token) (any, error) { return &priv.PublicKey, nil },
		jwt.WithValidMethods([]string{signingAlg})); err != nil {
		t.Errorf("token not signed by the legacy key: %v", err)
	}

	// The same value opens with seal.Key directly, and not under another purpose.
	k, err := seal.NewKey(seal.Derive(secret, "ohx smart signing keys"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.Open(d.Sealed, []byte(kid)); err != nil {
		t.Errorf("seal.Key.Open of a legacy value: %v", err)
	}
	other, err := seal.NewKey(seal.Derive(secret, "ohx smart csrf"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Open(d.Sealed, []byte(kid)); !errors.Is(err, seal.ErrOpen) {
		t.Errorf("opened under another purpose's key: got %v, want seal.ErrOpen", err)
	}
}
