// Package authserver is ohx's built-in SMART App Launch authorization server
// (https://hl7.org/fhir/smart-app-launch/): the authorize, sign-in, consent and token endpoints
// (RFC 6749, PKCE per RFC 7636), SMART Backend Services with private_key_jwt client assertions
// (RFC 7523), introspection (RFC 7662), revocation (RFC 7009), EHR launch, and the registered
// clients, users and signing keys behind them. It issues RFC 9068 access tokens.
//
// It is a package of its own, apart from package smart, because a deployment whose tokens come
// from an external issuer needs only the resource-server side (scopes, claims, token
// verification against the issuer's JWKS): the FHIR API then links none of the sign-in pages,
// password hashing, session and consent code that lives here. authserver imports smart (it mints
// smart.Claims and grants smart scopes); smart never imports authserver.
package authserver

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/openhealthexchange/ohx/store"
	"github.com/openhealthexchange/ohx/store/seal"
)

// The built-in authorization server is written directly on golang-jwt and jwkset rather than on
// ory/fosite or zitadel/oidc: both libraries mint access tokens from their own claim types
// (fosite's JWTClaims map, zitadel's oidc.AccessTokenClaims) where SMART needs exactly smart.Claims
// with typ at+jwt; fosite allows one client-assertion alg per client and needs its Requester
// graph serialised into ~15 storage methods, zitadel returns a fixed token response without
// SMART launch context. Adapting either meant replacing the token strategy, the client
// authentication and the token response, i.e. most of what they offer.

//go:embed templates/*.html
var templateFS embed.FS

// Config configures the authorization server.
type Config struct {
	// Issuer is the absolute URL of the server, e.g. "https://ohx.example/auth"; its path
	// prefixes every endpoint and it is the iss of every access token.
	Issuer string
	// FHIRBaseURL is the FHIR (R5) base URL: an accepted aud at authorize and an aud of every
	// access token.
	FHIRBaseURL string
	// R4BaseURL is the FHIR R4 base of the same server (default FHIRBaseURL + "/r4", where ohx
	// serves it): accepted as aud too, and the other aud of every access token. Both bases serve
	// the same resources under the same access rules, so a token is valid on either.
	R4BaseURL string
	// SecretKey is at least 32 bytes of key material; sub-keys (private-key encryption at rest,
	// CSRF tokens) are derived from it with HMAC.
	SecretKey []byte
	// AccessTokenTTL is the lifetime of user access tokens (default and maximum 1 h).
	AccessTokenTTL time.Duration
	// BackendTokenTTL is the lifetime of client_credentials tokens (default and maximum 300 s).
	BackendTokenTTL time.Duration
	// RefreshTokenTTL is the lifetime of a refresh token; each rotation starts a new one
	// (default 30 days).
	RefreshTokenTTL time.Duration
	// CodeTTL is the lifetime of an authorization code (default and maximum 60 s).
	CodeTTL time.Duration
	// HTTPClient fetches client JWKS URLs (default: a client with a 10 s timeout).
	HTTPClient *http.Client
}

// Endpoints are the absolute URLs of the server's endpoints, for discovery.
type Endpoints struct {
	Issuer, Authorize, Token, JWKS, Introspect, Revoke, Launch string
}

// Server is the built-in SMART authorization server. It is safe for concurrent use.
type Server struct {
	cfg      Config
	st       store.Store
	log      *slog.Logger
	path     string // the issuer's path, e.g. "/auth"
	secure   bool   // cookies get Secure when the issuer is https
	ep       Endpoints
	keys     *keyring
	jwks     *jwksCache
	csrfKey  []byte
	tmpl     *template.Template
	now      func() time.Time
	pageSize int
	throttle *loginThrottle // failed sign-ins, in memory per instance
}

// NewServer validates cfg, loads (or on first start generates) the signing keys and returns the
// server. st provides the Records where clients, users, keys and grants live, and the Patient
// resources for the patient picker.
func NewServer(ctx context.Context, cfg Config, st store.Store, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if st == nil {
		return nil, errors.New("authserver: nil store")
	}
	iss, err := parseBase(cfg.Issuer)
	if err != nil {
		return nil, fmt.Errorf("authserver: Issuer: %w", err)
	}
	if _, err := parseBase(cfg.FHIRBaseURL); err != nil {
		return nil, fmt.Errorf("authserver: FHIRBaseURL: %w", err)
	}
	cfg.Issuer = strings.TrimSuffix(cfg.Issuer, "/")
	cfg.FHIRBaseURL = strings.TrimSuffix(cfg.FHIRBaseURL, "/")
	if cfg.R4BaseURL == "" {
		cfg.R4BaseURL = cfg.FHIRBaseURL + "/r4"
	} else if _, err := parseBase(cfg.R4BaseURL); err != nil {
		return nil, fmt.Errorf("authserver: R4BaseURL: %w", err)
	}
	cfg.R4BaseURL = strings.TrimSuffix(cfg.R4BaseURL, "/")
	if len(cfg.SecretKey) < 32 {
		return nil, errors.New("authserver: SecretKey must be at least 32 bytes")
	}
	if err := defaultTTL(&cfg.AccessTokenTTL, time.Hour, time.Hour, "AccessTokenTTL"); err != nil {
		return nil, err
	}
	if err := defaultTTL(&cfg.BackendTokenTTL, 300*time.Second, 300*time.Second, "BackendTokenTTL"); err != nil {
		return nil, err
	}
	if err := defaultTTL(&cfg.CodeTTL, 60*time.Second, 60*time.Second, "CodeTTL"); err != nil {
		return nil, err
	}
	if err := defaultTTL(&cfg.RefreshTokenTTL, 30*24*time.Hour, 0, "RefreshTokenTTL"); err != nil {
		return nil, err
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	tmpl, err := template.New("").Funcs(template.FuncMap{}).ParseFS(templateFS, "templates/*.html")
	if err != nil {
		return nil, fmt.Errorf("authserver: parse templates: %w", err)
	}
	s := &Server{
		cfg:      cfg,
		st:       st,
		log:      log,
		path:     strings.TrimSuffix(iss.Path, "/"),
		secure:   iss.Scheme == "https",
		csrfKey:  seal.Derive(cfg.SecretKey, "ohx smart csrf"),
		tmpl:     tmpl,
		now:      time.Now,
		pageSize: 20,
	}
	s.throttle = newLoginThrottle(func() time.Time { return s.now() })
	s.ep = Endpoints{
		Issuer:     cfg.Issuer,
		Authorize:  cfg.Issuer + "/authorize",
		Token:      cfg.Issuer + "/token",
		JWKS:       cfg.Issuer + "/jwks",
		Introspect: cfg.Issuer + "/introspect",
		Revoke:     cfg.Issuer + "/revoke",
		Launch:     cfg.Issuer + "/launch",
	}
	s.jwks = newJWKSCache(cfg.HTTPClient, s.now)
	// The purpose strings are part of the stored format: keys sealed under them must keep opening.
	sealKey, err := seal.NewKey(seal.Derive(cfg.SecretKey, "ohx smart signing keys"))
	if err != nil {
		return nil, fmt.Errorf("authserver: signing-key encryption: %w", err)
	}
	s.keys = &keyring{st: st, sealKey: sealKey, now: s.now, log: log,
		overlap: max(cfg.AccessTokenTTL, cfg.BackendTokenTTL) + 5*time.Minute}
	if err := s.keys.load(ctx, true); err != nil {
		return nil, err
	}
	return s, nil
}

func parseBase(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, err
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("%q must be an absolute http(s) URL without query", raw)
	}
	return u, nil
}

func defaultTTL(p *time.Duration, def, maxTTL time.Duration, name string) error {
	if *p == 0 {
		*p = def
	}
	if *p < 0 || (maxTTL > 0 && *p > maxTTL) {
		return fmt.Errorf("authserver: %s must be between 0 and %s", name, maxTTL)
	}
	return nil
}

// Endpoints returns the absolute URLs of the endpoints.
func (s *Server) Endpoints() Endpoints { return s.ep }

// Register mounts the endpoints under the issuer's path (e.g. /auth/token) on r.
func (s *Server) Register(r gin.IRouter) {
	p := s.path
	r.GET(p+"/authorize", s.authorize)
	r.POST(p+"/authorize", s.authorize)
	r.GET(p+"/login", s.loginPage)
	r.POST(p+"/login", s.login)
	r.GET(p+"/consent", s.consentPage)
	r.POST(p+"/consent", s.consent)
	r.POST(p+"/token", s.token)
	r.GET(p+"/jwks", s.jwksHandler)
	r.POST(p+"/introspect", s.introspect)
	r.POST(p+"/revoke", s.revoke)
	r.POST(p+"/launch", s.launch)
	r.GET(p+"/.well-known/openid-configuration", s.openIDConfiguration)
}

// CORSPaths returns the paths of the endpoints that browser apps on other origins call from
// script (token, revoke, introspection, JWKS, OpenID configuration), for CORS. The authorize,
// login and consent pages are not among them: they are navigations carrying the session cookie.
func (s *Server) CORSPaths() []string {
	p := s.path
	return []string{p + "/token", p + "/revoke", p + "/introspect", p + "/jwks", p + "/.well-known/openid-configuration"}
}

// openIDConfiguration is the OpenID Connect discovery document of the issuer
// (https://openid.net/specs/openid-connect-discovery-1_0.html#ProviderConfig): SMART apps
// asking for openid fhirUser read it.
func (s *Server) openIDConfiguration(c *gin.Context) {
	c.Header("Cache-Control", "public, max-age=300")
	c.JSON(http.StatusOK, gin.H{
		"issuer":                                s.cfg.Issuer,
		"authorization_endpoint":                s.ep.Authorize,
		"token_endpoint":                        s.ep.Token,
		"jwks_uri":                              s.ep.JWKS,
		"introspection_endpoint":                s.ep.Introspect,
		"revocation_endpoint":                   s.ep.Revoke,
		"response_types_supported":              []string{"code"},
		"grant_types_supported":                 []string{"authorization_code", "refresh_token", "client_credentials"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{signingAlg},
		"code_challenge_methods_supported":      []string{"S256"},
		"token_endpoint_auth_methods_supported": []string{"client_secret_basic", "private_key_jwt"},
		"scopes_supported":                      []string{"openid", "fhirUser", "launch", "launch/patient", "offline_access"},
		"claims_supported":                      []string{"iss", "sub", "aud", "exp", "iat", "nonce", "fhirUser"},

		// RFC 8414 §2: without it the default would be client_secret_basic alone. Bearer tokens
		// and public clients cannot introspect (introspectionAllowed).
		"introspection_endpoint_auth_methods_supported": []string{"client_secret_basic", "private_key_jwt"},
	})
}

// Revoked reports whether the access token with this jti was revoked (explicitly, through its
// refresh-token family, or because its authorization code was replayed). The FHIR resource
// server calls it for every request. It fails closed: a store error counts as revoked.
func (s *Server) Revoked(ctx context.Context, jti string) bool {
	if jti == "" {
		return true
	}
	_, err := s.st.GetRecord(ctx, kindRevoked, jti)
	switch {
	case err == nil:
		return true
	case errors.Is(err, store.ErrNotFound):
		return false
	}
	s.log.Error("revocation check failed", "err", err)
	return true
}

// limitForm parses a form body of at most 64 KiB.
func limitForm(c *gin.Context) error {
	c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, 64<<10)
	return c.Request.ParseForm()
}
