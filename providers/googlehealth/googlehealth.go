// Package googlehealth adapts the Google Health API (https://developers.google.com/health), the
// service that serves Fitbit (and Pixel Watch) data since Google retired the legacy Fitbit Web
// API: Google OAuth 2.0 with PKCE, the user's identity (with the legacy Fitbit id for migrated
// accounts), data points (list with AIP-160 filters, dailyRollUp for daily totals), paired
// devices, webhook deliveries (HandleWebhook) and the project-level subscriber administration
// (Admin). It returns provider-neutral fhir.Samples; it never writes FHIR. Every request goes
// through a providers.Caller (rate limits, cache, retries, breaker).
package googlehealth

import (
	"crypto/ecdsa"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sync"
	"time"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/providers"
)

// Name is the adapter's name, used in URLs, identifiers and storage.
const Name = "googlehealth"

// title is the name patients know the vendor by.
const title = "Fitbit (Google Health)"

// Default endpoints (https://developers.google.com/identity/protocols/oauth2/web-server and
// https://developers.google.com/health/endpoints).
const (
	DefaultAPIURL    = "https://health.googleapis.com"
	DefaultAuthURL   = "https://accounts.google.com/o/oauth2/v2/auth"
	DefaultTokenURL  = "https://oauth2.googleapis.com/token"
	DefaultRevokeURL = "https://oauth2.googleapis.com/revoke"
)

// Config configures the adapter. ClientID, ClientSecret and RedirectURL are required.
type Config struct {
	ClientID     string
	ClientSecret string
	// RedirectURL is the connect callback registered for the OAuth client in the Google Cloud
	// console.
	RedirectURL string
	// APIURL is the Google Health API host (default DefaultAPIURL).
	APIURL string
	// AuthURL, TokenURL and RevokeURL are the Google OAuth endpoints (defaults DefaultAuthURL,
	// DefaultTokenURL, DefaultRevokeURL).
	AuthURL   string
	TokenURL  string
	RevokeURL string
	// Kinds are the data kinds this deployment reads (default: every kind SupportedKinds lists
	// that fhir.MapSample codes, except heart-rate). An unsupported kind is an error from New.
	// Intraday heart rate (fhir.KindHeartRate, the heart-rate data type: a sample every few
	// seconds to minutes) is opt-in: it is read only when listed here, because it costs many
	// requests per user against the per-user rate limit
	// (https://developers.google.com/health/rate-limits) and many Observations per day.
	Kinds []fhir.SampleKind
	// WebhookSecret is the complete Authorization header value Google sends with every webhook
	// delivery (the subscriber's endpointAuthorization.secret, e.g. "Bearer …"). Empty refuses
	// every delivery.
	WebhookSecret string
	// SignatureKey, when set, is Google Health API's ECDSA P-256 public key: deliveries must then
	// also carry a valid signature of the raw body in the SignatureHeader header.
	SignatureKey *ecdsa.PublicKey
}

// Client is the Google Health API adapter. It is safe for concurrent use.
type Client struct {
	cfg    Config
	api    *url.URL
	caller providers.Caller
	log    *slog.Logger
	kinds  providers.KindSet // enabled kinds, component kinds folded into their parent
	now    func() time.Time

	zones  sync.Map // IANA name → *time.Location (nil: unknown)
	denied sync.Map // user + "\x00" + data type → true once a missing scope was logged
}

// Interface guards.
var (
	_ providers.Provider = (*Client)(nil)
	_ providers.Revoker  = (*Client)(nil)
	_ providers.Webhooks = (*Client)(nil)
	_ providers.Titled   = (*Client)(nil)
)

// New returns the adapter. Every vendor request, the token endpoint included, goes through caller
// (the resilient client owns the HTTP client). log may be nil. It returns an error when a
// required setting is missing, a URL is invalid or a kind is not supported.
func New(cfg Config, caller providers.Caller, log *slog.Logger) (*Client, error) {
	if caller == nil {
		return nil, errors.New("googlehealth: a caller is required")
	}
	if cfg.ClientID == "" || cfg.ClientSecret == "" {
		return nil, errors.New("googlehealth: client id and client secret are required")
	}
	if cfg.RedirectURL == "" {
		return nil, errors.New("googlehealth: redirect URL is required")
	}
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&cfg.APIURL, DefaultAPIURL)
	def(&cfg.AuthURL, DefaultAuthURL)
	def(&cfg.TokenURL, DefaultTokenURL)
	def(&cfg.RevokeURL, DefaultRevokeURL)
	api, err := providers.AbsoluteURL("API", cfg.APIURL)
	if err != nil {
		return nil, fmt.Errorf("googlehealth: %w", err)
	}
	for name, raw := range map[string]string{"auth": cfg.AuthURL, "token": cfg.TokenURL, "revoke": cfg.RevokeURL} {
		if _, err := providers.AbsoluteURL(name, raw); err != nil {
			return nil, fmt.Errorf("googlehealth: %w", err)
		}
	}
	kinds, err := providers.EnableKinds(cfg.Kinds, parentKind, fhir.KindHeartRate)
	if err != nil {
		return nil, fmt.Errorf("googlehealth: %w", err)
	}
	if cfg.SignatureKey != nil && cfg.SignatureKey.Curve == nil {
		return nil, errors.New("googlehealth: signature key without a curve")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Client{cfg: cfg, api: api, caller: caller, log: log.With("provider", Name), kinds: kinds, now: time.Now}, nil
}

// Name returns "googlehealth".
func (c *Client) Name() string { return Name }

// Title returns "Fitbit (Google Health)", the name patients know.
func (c *Client) Title() string { return title }

// Kinds lists the enabled top-level kinds, sorted.
func (c *Client) Kinds() []fhir.SampleKind {
	return c.kinds.Sorted()
}

// wanted resolves a query's kinds against the enabled kinds (providers.KindSet.Wanted).
func (c *Client) wanted(kinds []fhir.SampleKind) map[fhir.SampleKind]bool {
	return c.kinds.Wanted(kinds)
}

// ClientConfig is the resilient client configuration for this vendor's documented limits
// (https://developers.google.com/health/rate-limits): 300 requests per minute per user (a strict
// token bucket with burst 10 that never exceeds 300 in any minute), throttling per user, and
// the per-project 120,000 requests per minute as the application limit (burst 100). Both are
// also quotas shared by every instance when the caller sets Budgets.
func ClientConfig() providers.ClientConfig {
	return providers.ClientConfig{
		Provider:     Name,
		AppRate:      providers.StrictLimit(120_000, time.Minute, 100),
		AppBurst:     100,
		UserRate:     providers.StrictLimit(300, time.Minute, 10),
		UserBurst:    10,
		AppQuota:     providers.Quota{Limit: 120_000, Window: time.Minute},
		UserQuota:    providers.Quota{Limit: 300, Window: time.Minute},
		UserThrottle: true,
	}
}
