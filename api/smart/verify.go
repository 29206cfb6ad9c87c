package smart

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	gocache "github.com/patrickmn/go-cache"
	"golang.org/x/time/rate"
)

// ErrInvalidToken is returned (wrapped) for every token that must not be accepted. Its text is
// safe to log; the wrapped cause says why.
var ErrInvalidToken = errors.New("invalid access token")

// VerifierConfig configures access-token verification.
type VerifierConfig struct {
	// Issuer is the only accepted iss.
	Issuer string
	// Audience is our FHIR base URL, an accepted aud.
	Audience string
	// Audiences are further accepted aud values: the R4 base of the same FHIR server. A token
	// for either base is valid on both, since both serve the same resources under the same
	// access rules (see authserver.Config.R4BaseURL).
	Audiences []string
	// Keyfunc selects the verification key by kid (the built-in server's keys, or an external
	// issuer's JWKS; see RemoteKeyfunc).
	Keyfunc jwt.Keyfunc
	// RequireTyp demands the RFC 9068 header typ "at+jwt" (true for the built-in server; external
	// issuers often send "JWT").
	RequireTyp bool
	// PatientClaim names the claim carrying the patient id (default "patient"; Google's FHIR
	// gateway uses "patient_id").
	PatientClaim string
	// Revoked, if set, reports whether a token id was revoked before it expired.
	Revoked func(ctx context.Context, jti string) bool
	// RevokedCacheTTL, if positive, remembers "not revoked" answers that long, so that the
	// revocation store is not read on every request. A revocation then takes effect within this
	// time (SMART's ONC tests allow an hour).
	RevokedCacheTTL time.Duration
	// Leeway is the clock skew allowed on exp, nbf and iat (default and maximum 60 s).
	Leeway time.Duration
}

// Verifier verifies bearer access tokens for the FHIR resource server.
type Verifier struct {
	cfg        VerifierConfig
	parser     *jwt.Parser
	notRevoked *gocache.Cache // jti → struct{}
	// verified remembers tokens whose signature and claims checked out (raw token → *Claims), so
	// that a client reusing its token does not pay a signature verification per request. Time
	// claims and revocation are still checked on every use.
	verified *gocache.Cache
}

// maxVerified bounds the verified-token cache.
const maxVerified = 10000

// NewVerifier returns a Verifier.
func NewVerifier(cfg VerifierConfig) (*Verifier, error) {
	if cfg.Issuer == "" || cfg.Audience == "" || cfg.Keyfunc == nil {
		return nil, errors.New("smart: verifier needs an issuer, an audience and keys")
	}
	if cfg.PatientClaim == "" {
		cfg.PatientClaim = "patient"
	}
	if cfg.Leeway <= 0 || cfg.Leeway > time.Minute {
		cfg.Leeway = time.Minute
	}
	v := &Verifier{cfg: cfg, verified: gocache.New(5*time.Minute, 10*time.Minute)}
	if cfg.RevokedCacheTTL > 0 {
		v.notRevoked = gocache.New(cfg.RevokedCacheTTL, 2*cfg.RevokedCacheTTL)
	}
	v.parser = jwt.NewParser(
		jwt.WithValidMethods(AllowedAlgs), // never none, never HMAC
		jwt.WithIssuer(cfg.Issuer),
		jwt.WithAudience(append([]string{cfg.Audience}, cfg.Audiences...)...), // any one of them
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(cfg.Leeway),
	)
	return v, nil
}

// Verify checks the token's signature (key chosen by kid), algorithm, typ, iss, aud, exp, nbf
// and iat, and revocation, and returns its claims. Every failure wraps ErrInvalidToken.
func (v *Verifier) Verify(ctx context.Context, raw string) (*Claims, error) {
	if x, ok := v.verified.Get(raw); ok {
		c := x.(*Claims)
		now := time.Now()
		if c.ExpiresAt.Add(v.cfg.Leeway).Before(now) {
			v.verified.Delete(raw)
			return nil, fmt.Errorf("%w: expired", ErrInvalidToken)
		}
		if v.cfg.Revoked != nil && v.revoked(ctx, c.ID) {
			return nil, fmt.Errorf("%w: revoked", ErrInvalidToken)
		}
		cc := *c
		return &cc, nil
	}
	c, err := v.verify(ctx, raw)
	if err != nil {
		return nil, err
	}
	if ttl := time.Until(c.ExpiresAt.Time); ttl > 0 && v.verified.ItemCount() < maxVerified {
		v.verified.Set(raw, c, min(ttl, 5*time.Minute))
	}
	cc := *c
	return &cc, nil
}

// verify does the full check of a token not seen before.
func (v *Verifier) verify(ctx context.Context, raw string) (*Claims, error) {
	var c Claims
	tok, err := v.parser.ParseWithClaims(raw, &c, func(t *jwt.Token) (any, error) {
		if kid, _ := t.Header["kid"].(string); kid == "" {
			return nil, errors.New("token has no kid")
		}
		if v.cfg.RequireTyp {
			if typ, _ := t.Header["typ"].(string); !strings.EqualFold(typ, TokenType) && !strings.EqualFold(typ, "application/"+TokenType) {
				return nil, fmt.Errorf("token typ %q is not %s", typ, TokenType)
			}
		}
		return v.cfg.Keyfunc(t)
	})
	if err != nil || !tok.Valid {
		return nil, fmt.Errorf("%w: %v", ErrInvalidToken, err)
	}
	if c.IssuedAt == nil {
		return nil, fmt.Errorf("%w: no iat", ErrInvalidToken)
	}
	if c.ID == "" && v.cfg.Revoked != nil {
		return nil, fmt.Errorf("%w: no jti", ErrInvalidToken)
	}
	if v.cfg.Revoked != nil && v.revoked(ctx, c.ID) {
		return nil, fmt.Errorf("%w: revoked", ErrInvalidToken)
	}
	if v.cfg.PatientClaim != "patient" {
		p, err := claimString(raw, v.cfg.PatientClaim)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalidToken, err)
		}
		c.Patient = p
	}
	return &c, nil
}

func (v *Verifier) revoked(ctx context.Context, jti string) bool {
	if v.notRevoked != nil {
		if _, ok := v.notRevoked.Get(jti); ok {
			return false
		}
	}
	if v.cfg.Revoked(ctx, jti) {
		return true
	}
	if v.notRevoked != nil {
		v.notRevoked.SetDefault(jti, struct{}{})
	}
	return false
}

// claimString reads one string claim from an already verified token.
func claimString(raw, name string) (string, error) {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return "", errors.New("malformed token")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "", err
	}
	var m map[string]any
	if err := json.Unmarshal(payload, &m); err != nil {
		return "", err
	}
	s, _ := m[name].(string)
	return s, nil
}

// RemoteKeyfunc fetches an external issuer's JWKS and keeps it fresh: refreshed hourly and on an
// unknown kid, at most once every 30 s (so forged kids cannot hammer the issuer).
func RemoteKeyfunc(ctx context.Context, jwksURL string, hc *http.Client) (jwt.Keyfunc, error) {
	k, err := keyfunc.NewDefaultOverrideCtx(ctx, []string{jwksURL}, keyfunc.Override{
		Client:            hc,
		HTTPTimeout:       10 * time.Second,
		RefreshInterval:   time.Hour,
		RefreshUnknownKID: rate.NewLimiter(rate.Every(30*time.Second), 1),
	})
	if err != nil {
		return nil, fmt.Errorf("smart: load JWKS %s: %w", jwksURL, err)
	}
	return k.Keyfunc, nil
}

// ProviderMetadata is what ohx needs from an external issuer's discovery document.
type ProviderMetadata struct {
	Issuer                string   `json:"issuer"`
	JWKSURI               string   `json:"jwks_uri"`
	AuthorizationEndpoint string   `json:"authorization_endpoint"`
	TokenEndpoint         string   `json:"token_endpoint"`
	IntrospectionEndpoint string   `json:"introspection_endpoint"`
	RevocationEndpoint    string   `json:"revocation_endpoint"`
	Capabilities          []string `json:"capabilities"`
	GrantTypes            []string `json:"grant_types_supported"`
	ScopesSupported       []string `json:"scopes_supported"`
	AuthMethods           []string `json:"token_endpoint_auth_methods_supported"`
	AuthSigningAlgs       []string `json:"token_endpoint_auth_signing_alg_values_supported"`
}

// Discover reads an external issuer's metadata: its SMART configuration if it publishes one,
// else its OpenID Connect discovery document. The document's issuer must equal issuer.
func Discover(ctx context.Context, issuer string, hc *http.Client) (*ProviderMetadata, error) {
	base := strings.TrimSuffix(issuer, "/")
	var lastErr error
	for _, path := range []string{"/.well-known/smart-configuration", "/.well-known/openid-configuration"} {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
		if err != nil {
			return nil, fmt.Errorf("smart: discover %s: %w", issuer, err)
		}
		req.Header.Set("Accept", "application/json")
		res, err := hc.Do(req)
		if err != nil {
			lastErr = err
			continue
		}
		var m ProviderMetadata
		err = json.NewDecoder(http.MaxBytesReader(nil, res.Body, 1<<20)).Decode(&m)
		res.Body.Close()
		if res.StatusCode != http.StatusOK || err != nil {
			lastErr = fmt.Errorf("%s: status %d: %v", path, res.StatusCode, err)
			continue
		}
		if m.Issuer != "" && strings.TrimSuffix(m.Issuer, "/") != base {
			return nil, fmt.Errorf("smart: discover %s: document names issuer %q", issuer, m.Issuer)
		}
		if m.JWKSURI == "" || m.TokenEndpoint == "" {
			lastErr = fmt.Errorf("%s: no jwks_uri or token_endpoint", path)
			continue
		}
		return &m, nil
	}
	return nil, fmt.Errorf("smart: discover %s: %w", issuer, lastErr)
}
