package authserver

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/gin-gonic/gin"
	"github.com/golang-jwt/jwt/v5"

	"github.com/openhealthexchange/ohx/api/smart"
	"github.com/openhealthexchange/ohx/store"
	"github.com/openhealthexchange/ohx/store/seal"
)

// signingAlg is the algorithm of our access tokens: RS256 is the one RFC 9068 and SMART
// require every resource server to support.
const signingAlg = "RS256"

// keyDoc is a signing key as stored: the private key is PKCS #8, sealed (seal.Key, AES-256-GCM)
// under a key derived from the deployment secret, with the kid as associated data.
type keyDoc struct {
	KID     string          `json:"kid"`
	Alg     string          `json:"alg"`
	Created time.Time       `json:"created"`
	Retired time.Time       `json:"retired,omitzero"` // zero while the key signs
	Public  json.RawMessage `json:"public"`           // public JWK
	Sealed  []byte          `json:"sealed"`           // nonce ‖ AES-GCM(PKCS #8), as seal.Key.Seal returns
}

type verifyKey struct {
	alg string
	pub crypto.PublicKey
}

// keyring holds the signing key and every key still accepted for verification.
type keyring struct {
	st      store.Records
	sealKey *seal.Key
	now     func() time.Time
	log     *slog.Logger
	overlap time.Duration // how long a retired key keeps verifying

	mu         sync.RWMutex
	signKID    string
	signer     crypto.Signer
	verify     map[string]verifyKey
	public     []json.RawMessage
	lastReload time.Time
}

// load reads the keys from the store; with create it generates the first key if there is none.
func (k *keyring) load(ctx context.Context, create bool) error {
	recs, err := k.st.ListRecords(ctx, kindKey)
	if err != nil {
		return fmt.Errorf("authserver: load signing keys: %w", err)
	}
	var docs []keyDoc
	for _, r := range recs {
		var d keyDoc
		if err := json.Unmarshal(r.Doc, &d); err != nil {
			return fmt.Errorf("authserver: decode signing key %s: %w", r.ID, err)
		}
		docs = append(docs, d)
	}
	active := -1
	for i, d := range docs {
		if d.Retired.IsZero() && (active < 0 || d.Created.After(docs[active].Created)) {
			active = i
		}
	}
	if active < 0 {
		if !create {
			return errors.New("authserver: no active signing key")
		}
		d, err := k.generate(ctx)
		if err != nil {
			return err
		}
		docs = append(docs, d)
		active = len(docs) - 1
	}
	signKID := docs[active].KID
	signer, err := k.open(docs[active])
	if err != nil {
		return err
	}
	verify := make(map[string]verifyKey, len(docs))
	sort.Slice(docs, func(i, j int) bool { return docs[i].Created.After(docs[j].Created) })
	var public []json.RawMessage
	for _, d := range docs {
		j, err := jwkset.NewJWKFromRawJSON(d.Public, jwkset.JWKMarshalOptions{}, jwkset.JWKValidateOptions{})
		if err != nil {
			return fmt.Errorf("authserver: signing key %s: %w", d.KID, err)
		}
		verify[d.KID] = verifyKey{alg: d.Alg, pub: j.Key()}
		public = append(public, d.Public)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.signKID, k.signer, k.verify, k.public, k.lastReload = signKID, signer, verify, public, k.now()
	return nil
}

func (k *keyring) generate(ctx context.Context) (keyDoc, error) {
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return keyDoc{}, fmt.Errorf("authserver: generate signing key: %w", err)
	}
	kid := randomToken(12)
	pubJWK, err := jwkset.NewJWKFromKey(&priv.PublicKey, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{
		ALG: jwkset.AlgRS256, KID: kid, USE: jwkset.UseSig}})
	if err != nil {
		return keyDoc{}, fmt.Errorf("authserver: encode signing key: %w", err)
	}
	pub, err := json.Marshal(pubJWK.Marshal())
	if err != nil {
		return keyDoc{}, fmt.Errorf("authserver: encode signing key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return keyDoc{}, fmt.Errorf("authserver: encode signing key: %w", err)
	}
	sealed := k.sealKey.Seal(der, []byte(kid))
	d := keyDoc{KID: kid, Alg: signingAlg, Created: k.now().UTC(), Public: pub, Sealed: sealed}
	b, err := json.Marshal(d)
	if err != nil {
		return keyDoc{}, fmt.Errorf("authserver: encode signing key: %w", err)
	}
	if err := k.st.CreateRecord(ctx, kindKey, kid, b, time.Time{}); err != nil {
		return keyDoc{}, fmt.Errorf("authserver: store signing key: %w", err)
	}
	k.log.Info("generated access-token signing key", "kid", kid)
	return d, nil
}

func (k *keyring) open(d keyDoc) (crypto.Signer, error) {
	der, err := k.sealKey.Open(d.Sealed, []byte(d.KID))
	if err != nil {
		return nil, fmt.Errorf("authserver: signing key %s: %w (was OHX_SECRET_KEY changed?)", d.KID, err)
	}
	priv, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("authserver: signing key %s: %w", d.KID, err)
	}
	signer, ok := priv.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("authserver: signing key %s is not a signer", d.KID)
	}
	return signer, nil
}

// sign signs claims as an RFC 9068 access token with the current key.
func (k *keyring) sign(c *smart.Claims) (string, error) {
	return k.signTyped(c, smart.TokenType)
}

// signTyped signs any claims with the current key and the given JWT typ ("JWT" for OpenID
// Connect id_tokens).
func (k *keyring) signTyped(c jwt.Claims, typ string) (string, error) {
	k.mu.RLock()
	kid, signer := k.signKID, k.signer
	k.mu.RUnlock()
	t := jwt.NewWithClaims(jwt.GetSigningMethod(signingAlg), c)
	t.Header["typ"] = typ
	t.Header["kid"] = kid
	s, err := t.SignedString(signer)
	if err != nil {
		return "", fmt.Errorf("authserver: sign access token: %w", err)
	}
	return s, nil
}

// lookup returns the verification key for kid, reloading from the store at most once a second
// when the kid is unknown (another instance may have rotated).
func (k *keyring) lookup(kid string) (verifyKey, bool) {
	k.mu.RLock()
	v, ok := k.verify[kid]
	stale := k.now().Sub(k.lastReload) > time.Second
	k.mu.RUnlock()
	if ok || !stale {
		return v, ok
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := k.load(ctx, false); err != nil {
		k.log.Warn("reload signing keys", "err", err)
		return verifyKey{}, false
	}
	k.mu.RLock()
	defer k.mu.RUnlock()
	v, ok = k.verify[kid]
	return v, ok
}

// Keyfunc returns the golang-jwt key function for our access tokens: the key is chosen by kid
// among the current and still-overlapping previous keys, and the token's alg must be the key's.
// An unknown or missing kid is an error.
func (s *Server) Keyfunc() jwt.Keyfunc {
	return func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		if kid == "" {
			return nil, errors.New("authserver: access token without kid")
		}
		v, ok := s.keys.lookup(kid)
		if !ok {
			return nil, fmt.Errorf("authserver: unknown kid %q", kid)
		}
		if t.Method == nil || t.Method.Alg() != v.alg {
			return nil, fmt.Errorf("authserver: kid %q does not sign with this alg", kid)
		}
		return v.pub, nil
	}
}

// RotateKeys makes a new signing key current. Previous keys keep verifying for the longest
// token lifetime plus five minutes, then expire from the store.
func (s *Server) RotateKeys(ctx context.Context) error {
	recs, err := s.st.ListRecords(ctx, kindKey)
	if err != nil {
		return fmt.Errorf("authserver: rotate keys: %w", err)
	}
	if _, err := s.keys.generate(ctx); err != nil {
		return err
	}
	now := s.now().UTC()
	for _, r := range recs {
		var d keyDoc
		if err := json.Unmarshal(r.Doc, &d); err != nil {
			return fmt.Errorf("authserver: rotate keys: decode %s: %w", r.ID, err)
		}
		if !d.Retired.IsZero() {
			continue
		}
		d.Retired = now
		b, err := json.Marshal(d)
		if err != nil {
			return fmt.Errorf("authserver: rotate keys: %w", err)
		}
		if err := s.st.PutRecord(ctx, kindKey, d.KID, b, now.Add(s.keys.overlap)); err != nil {
			return fmt.Errorf("authserver: rotate keys: %w", err)
		}
	}
	return s.keys.load(ctx, false)
}

// jwksHandler serves the public keys. The short max-age lets resource servers pick up a
// rotation; they also refetch on an unknown kid.
func (s *Server) jwksHandler(c *gin.Context) {
	s.keys.mu.RLock()
	keys := s.keys.public
	s.keys.mu.RUnlock()
	b, err := json.Marshal(struct {
		Keys []json.RawMessage `json:"keys"`
	}{keys})
	if err != nil {
		c.AbortWithStatus(http.StatusInternalServerError)
		return
	}
	c.Header("Cache-Control", "public, max-age=300")
	c.Data(http.StatusOK, "application/json", b)
}
