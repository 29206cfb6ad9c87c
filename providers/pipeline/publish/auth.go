package publish

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// Auth is how the publisher obtains access tokens from the EHR's authorization server with the
// OAuth 2.0 client credentials grant (RFC 6749 §4.4): with a client secret (client_secret_basic),
// or, when Key is set, with a signed JWT client assertion (private_key_jwt, RFC 7523) as SMART
// Backend Services prescribes (https://hl7.org/fhir/smart-app-launch/backend-services.html).
type Auth struct {
	// TokenURL is the token endpoint. When empty it is discovered: the token_endpoint of
	// {FHIRBase}/.well-known/smart-configuration
	// (https://hl7.org/fhir/smart-app-launch/conformance.html#using-well-known), read at the
	// first token request and again after a failed read.
	TokenURL string
	// FHIRBase is the EHR's FHIR base URL, where the token endpoint is discovered when TokenURL
	// is empty.
	FHIRBase string
	// ClientID is the client registered with the EHR.
	ClientID string
	// ClientSecret is the client's secret (client credentials with a shared secret).
	ClientSecret string
	// Key signs the client assertions (RS384 for an RSA key, ES384 for a P-384 key: the two
	// algorithms SMART Backend Services servers must support). Its public key is registered
	// with the EHR, usually as a JWKS.
	Key crypto.Signer
	// KeyID is the kid of the assertions (default the key's RFC 7638 JWK thumbprint).
	KeyID string
	// Scopes are requested with every token.
	Scopes []string
	// Now is the clock of the assertions (default time.Now).
	Now func() time.Time
}

// Enabled reports whether any client authentication is configured.
func (a Auth) Enabled() bool { return a.ClientID != "" || a.TokenURL != "" }

// Client returns an HTTP client that sends base's requests with a bearer token, fetched and
// renewed as it expires. Without client authentication configured it returns base. It
// returns an error for an incomplete configuration or an unusable key.
func (a Auth) Client(base *http.Client) (*http.Client, error) {
	if base == nil {
		base = &http.Client{}
	}
	if !a.Enabled() {
		return base, nil
	}
	ts, err := a.fetcher(base)
	if err != nil {
		return nil, err
	}
	rt := base.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	return &http.Client{Transport: &bearerTransport{src: &renewingSource{src: ts}, base: rt}, Timeout: base.Timeout,
		CheckRedirect: base.CheckRedirect, Jar: base.Jar}, nil
}

// TokenSource returns the source of access tokens, reused until they expire.
func (a Auth) TokenSource(hc *http.Client) (oauth2.TokenSource, error) {
	ts, err := a.fetcher(hc)
	if err != nil {
		return nil, err
	}
	return &renewingSource{src: ts}, nil
}

// fetcher returns a source that asks the token endpoint for a new token on every call.
func (a Auth) fetcher(hc *http.Client) (oauth2.TokenSource, error) {
	if a.ClientID == "" {
		return nil, errors.New("publish: client authentication needs a client id")
	}
	if a.TokenURL == "" && a.FHIRBase == "" {
		return nil, errors.New("publish: client authentication needs a token URL, or the EHR's FHIR base to discover it from")
	}
	if a.TokenURL != "" {
		if err := checkTokenURL(a.TokenURL); err != nil {
			return nil, err
		}
	}
	if a.Now == nil {
		a.Now = time.Now
	}
	// The token requests go through hc, with its timeout and transport.
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, hc)
	var method jwt.SigningMethod
	if a.Key == nil {
		if a.ClientSecret == "" {
			return nil, errors.New("publish: client authentication needs a client secret or a private key")
		}
	} else {
		if a.ClientSecret != "" {
			return nil, errors.New("publish: give a client secret or a private key, not both")
		}
		var err error
		if method, err = signingMethod(a.Key); err != nil {
			return nil, err
		}
		if a.KeyID == "" {
			if a.KeyID, err = Thumbprint(a.Key.Public()); err != nil {
				return nil, err
			}
		}
	}
	if a.TokenURL == "" {
		return &discoveringSource{a: a, hc: hc, method: method, ctx: ctx}, nil
	}
	return a.source(ctx, method), nil
}

// source returns the fetcher of a checked configuration with its TokenURL set.
func (a Auth) source(ctx context.Context, method jwt.SigningMethod) oauth2.TokenSource {
	if a.Key == nil {
		cc := &clientcredentials.Config{ClientID: a.ClientID, ClientSecret: a.ClientSecret, TokenURL: a.TokenURL,
			Scopes: a.Scopes, AuthStyle: oauth2.AuthStyleInHeader} // client_secret_basic: RFC 6749 §2.3.1 servers MUST support it
		return secretSource{cc: cc, ctx: ctx}
	}
	return &assertionSource{a: a, method: method, ctx: ctx}
}

// checkTokenURL refuses a token endpoint that would carry the client's credentials in clear
// text: an absolute https URL, or http to a loopback host.
func checkTokenURL(raw string) error {
	if u, err := url.Parse(raw); err != nil || u.Host == "" || (u.Scheme != "https" && !(u.Scheme == "http" && loopbackHost(u.Hostname()))) {
		return fmt.Errorf("publish: token URL %q must be an absolute https URL (http only for a loopback host)", raw)
	}
	return nil
}

// discoveringSource reads the token endpoint from the EHR's SMART configuration before its first
// token, keeps it once read, and reads it again on the next call after a failure (the EHR
// unreachable at start-up is a delivery that fails and is retried, not a server that cannot start).
type discoveringSource struct {
	a      Auth
	hc     *http.Client
	method jwt.SigningMethod
	ctx    context.Context

	mu  sync.Mutex
	src oauth2.TokenSource
}

func (d *discoveringSource) Token() (*oauth2.Token, error) {
	d.mu.Lock()
	src := d.src
	if src == nil {
		tokenURL, err := d.discover()
		if err != nil {
			d.mu.Unlock()
			return nil, err
		}
		a := d.a
		a.TokenURL = tokenURL
		src = a.source(d.ctx, d.method)
		d.src = src
	}
	d.mu.Unlock()
	return src.Token()
}

// maxSMARTConfig bounds the smart-configuration document read.
const maxSMARTConfig = 1 << 20

// discover returns the token_endpoint of {FHIRBase}/.well-known/smart-configuration.
func (d *discoveringSource) discover() (string, error) {
	u := strings.TrimSuffix(d.a.FHIRBase, "/") + "/.well-known/smart-configuration"
	req, err := http.NewRequestWithContext(d.ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", fmt.Errorf("publish: discover the token endpoint: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := d.hc.Do(req)
	if err != nil {
		return "", fmt.Errorf("publish: discover the token endpoint: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("publish: discover the token endpoint: %s answered %d", u, resp.StatusCode)
	}
	var conf struct {
		TokenEndpoint string `json:"token_endpoint"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxSMARTConfig)).Decode(&conf); err != nil {
		return "", fmt.Errorf("publish: discover the token endpoint: %s: %w", u, err)
	}
	if conf.TokenEndpoint == "" {
		return "", fmt.Errorf("publish: discover the token endpoint: %s has no token_endpoint", u)
	}
	if err := checkTokenURL(conf.TokenEndpoint); err != nil {
		return "", fmt.Errorf("publish: discover the token endpoint: %s: %w", u, err)
	}
	return conf.TokenEndpoint, nil
}

// secretSource fetches a token with the client secret each time.
type secretSource struct {
	cc  *clientcredentials.Config
	ctx context.Context
}

func (s secretSource) Token() (*oauth2.Token, error) { return s.cc.Token(s.ctx) }

// renewingSource reuses a token until it expires, like oauth2.ReuseTokenSource, and also
// forgets it when the EHR refuses it: an authorization server may revoke a token before its
// expiry (RFC 7009), and a resource server then answers 401 invalid_token (RFC 6750 §3.1), which
// a cached token would meet again on every retry until it expired.
type renewingSource struct {
	src oauth2.TokenSource // a new token per call

	mu  sync.Mutex
	tok *oauth2.Token
}

func (r *renewingSource) Token() (*oauth2.Token, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.tok.Valid() {
		return r.tok, nil
	}
	t, err := r.src.Token()
	if err != nil {
		return nil, err
	}
	r.tok = t
	return t, nil
}

// forget drops tok if it is still the cached token (a concurrent request may have renewed it).
func (r *renewingSource) forget(tok *oauth2.Token) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.tok == tok {
		r.tok = nil
	}
}

// bearerTransport sends each request with the source's token (RFC 6750 §2.1) and forgets a
// token the server answered 401 to, so that the next attempt (the job's retry) fetches another.
type bearerTransport struct {
	src  *renewingSource
	base http.RoundTripper
}

func (t *bearerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	tok, err := t.src.Token()
	if err != nil {
		if req.Body != nil {
			req.Body.Close() // RoundTrip must close the body, also on error
		}
		return nil, err
	}
	r2 := req.Clone(req.Context())
	tok.SetAuthHeader(r2)
	resp, err := t.base.RoundTrip(r2)
	if err == nil && resp.StatusCode == http.StatusUnauthorized {
		t.src.forget(tok)
	}
	return resp, err
}

// assertionSource fetches a token with a fresh client assertion each time: an assertion is
// single-use (its jti) and short-lived.
type assertionSource struct {
	a      Auth
	method jwt.SigningMethod
	ctx    context.Context
}

func (s *assertionSource) Token() (*oauth2.Token, error) {
	assertion, err := s.a.assertion(s.method)
	if err != nil {
		return nil, err
	}
	// No client_id parameter: the assertion names the client, and SMART lists only these
	// parameters (backend-services.html#request).
	cc := &clientcredentials.Config{TokenURL: s.a.TokenURL, Scopes: s.a.Scopes, AuthStyle: oauth2.AuthStyleInParams,
		EndpointParams: url.Values{
			"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
			"client_assertion":      {assertion},
		}}
	return cc.Token(s.ctx)
}

// assertion signs the client authentication JWT of SMART Backend Services: iss and sub the
// client id, aud the token URL, exp at most five minutes ahead, a unique jti; kid in the header.
func (a Auth) assertion(method jwt.SigningMethod) (string, error) {
	var jti [16]byte
	_, _ = rand.Read(jti[:]) // never fails (crypto/rand)
	now := a.Now()
	t := jwt.NewWithClaims(method, jwt.RegisteredClaims{
		Issuer:    a.ClientID,
		Subject:   a.ClientID,
		Audience:  jwt.ClaimStrings{a.TokenURL},
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(4 * time.Minute)),
		ID:        hex.EncodeToString(jti[:]),
	})
	t.Header["kid"] = a.KeyID
	s, err := t.SignedString(a.Key)
	if err != nil {
		return "", fmt.Errorf("publish: sign the client assertion: %w", err)
	}
	return s, nil
}

// signingMethod is RS384 for RSA keys and ES384 for P-384 keys.
func signingMethod(k crypto.Signer) (jwt.SigningMethod, error) {
	switch key := k.(type) {
	case *rsa.PrivateKey:
		if key.N.BitLen() < 2048 {
			return nil, errors.New("publish: the RSA key must have at least 2048 bits")
		}
		return jwt.SigningMethodRS384, nil
	case *ecdsa.PrivateKey:
		if key.Curve != elliptic.P384() {
			return nil, errors.New("publish: an EC key must be on the P-384 curve (ES384)")
		}
		return jwt.SigningMethodES384, nil
	}
	return nil, fmt.Errorf("publish: unsupported key type %T: want RSA or EC P-384", k)
}

// ParseKey reads a PEM private key: PKCS #8, PKCS #1 (RSA) or SEC 1 (EC).
func ParseKey(pemBytes []byte) (crypto.Signer, error) {
	blk, _ := pem.Decode(pemBytes)
	if blk == nil {
		return nil, errors.New("publish: the key file holds no PEM block")
	}
	var k any
	var err error
	switch blk.Type {
	case "PRIVATE KEY":
		k, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(blk.Bytes)
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(blk.Bytes)
	default:
		return nil, fmt.Errorf("publish: the key file holds a %q PEM block, not a private key", blk.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("publish: parse the private key: %w", err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("publish: unsupported key type %T", k)
	}
	if _, err := signingMethod(s); err != nil {
		return nil, err
	}
	return s, nil
}

// PublicJWK returns the public key as a JWK with its kid and alg, for the JWKS the EHR is
// given when the client is registered.
func PublicJWK(k crypto.Signer, kid string) (map[string]string, error) {
	m, err := jwkMembers(k.Public())
	if err != nil {
		return nil, err
	}
	method, err := signingMethod(k)
	if err != nil {
		return nil, err
	}
	if kid == "" {
		if kid, err = Thumbprint(k.Public()); err != nil {
			return nil, err
		}
	}
	m["kid"], m["alg"], m["use"] = kid, method.Alg(), "sig"
	return m, nil
}

// Thumbprint is the RFC 7638 JWK thumbprint (SHA-256, base64url) of a public key.
func Thumbprint(pub crypto.PublicKey) (string, error) {
	m, err := jwkMembers(pub)
	if err != nil {
		return "", err
	}
	b, err := json.Marshal(m) // the required members, keys sorted: RFC 7638 §3.2
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return base64.RawURLEncoding.EncodeToString(sum[:]), nil
}

// jwkMembers are the required members of a public JWK (RFC 7518 §6.2.1, §6.3.1).
func jwkMembers(pub crypto.PublicKey) (map[string]string, error) {
	b64 := func(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return map[string]string{"kty": "RSA", "n": b64(k.N.Bytes()), "e": b64(big.NewInt(int64(k.E)).Bytes())}, nil
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P384() {
			return nil, errors.New("publish: an EC key must be on the P-384 curve")
		}
		ecdh, err := k.ECDH()
		if err != nil {
			return nil, fmt.Errorf("publish: EC key: %w", err)
		}
		raw := ecdh.Bytes() // 0x04 ‖ X ‖ Y, each 48 bytes
		return map[string]string{"kty": "EC", "crv": "P-384", "x": b64(raw[1:49]), "y": b64(raw[49:])}, nil
	}
	return nil, fmt.Errorf("publish: unsupported public key type %T", pub)
}
