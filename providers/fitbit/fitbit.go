// Package fitbit adapts the legacy Fitbit Web API (https://dev.fitbit.com/build/reference/web-api/):
// OAuth2 with PKCE and HTTP Basic client authentication, daily activity time series, resting heart
// rate, weight, BMI and body-fat logs, sleep logs, SpO2, HRV, breathing rate, skin temperature
// variation, ECG readings, devices, subscriptions and the notifications they deliver
// (HandleWebhook). Google switched the API off on 2026-11-02; the adapter keeps connections made
// through it readable against recorded payloads and fakes.
//
// Fitbit sends user-local wall times without offsets: the adapter reads the user's IANA zone from
// the profile (cached per user) and emits instants in it. It returns provider-neutral fhir.Samples
// and never writes FHIR. Every request, the token endpoint included, goes through a
// providers.Caller.
package fitbit

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/patrickmn/go-cache"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/providers"
)

// Name is the adapter's name, used in URLs, identifiers and storage.
const Name = "fitbit"

// Default endpoints (https://dev.fitbit.com/build/reference/web-api/developer-guide/authorization/).
const (
	DefaultAPIURL  = "https://api.fitbit.com"
	DefaultAuthURL = "https://www.fitbit.com/oauth2/authorize"
)

// Config configures the adapter. ClientID, ClientSecret and RedirectURL are required.
type Config struct {
	ClientID     string
	ClientSecret string
	// RedirectURL is the connect callback registered with Fitbit.
	RedirectURL string
	// APIURL is the API host (default DefaultAPIURL); the token and revoke endpoints live under it.
	APIURL string
	// AuthURL is the browser consent page (default DefaultAuthURL).
	AuthURL string
	// Scopes requested at connect time (default: what the enabled kinds need, plus profile for the
	// time zone and settings for the devices).
	Scopes []string
	// Kinds are the data kinds this deployment reads (default: every kind SupportedKinds lists that
	// fhir.MapSample can code). An unsupported kind is an error from New.
	Kinds []fhir.SampleKind
	// IntradayHRV also reads the per-5-minute HRV series (…/hrv/date/{start}/{end}/all.json). Off by
	// default: reading other users' intraday data needs Fitbit's intraday approval, and without it
	// the endpoint refuses the token, which would look like a revoked consent
	// (https://dev.fitbit.com/build/reference/web-api/intraday/).
	IntradayHRV bool
	// VerificationCode is the subscriber verification code from the Fitbit app settings. Empty: every
	// verification request is answered 404 (fail closed).
	VerificationCode string
	// SubscriberID, when set, is sent as X-Fitbit-Subscriber-Id when subscribing and selects the
	// subscriptions Unsubscribe deletes.
	SubscriberID string
	// Rand is the source of subscription ids (default crypto/rand.Reader); fakes pass a
	// deterministic one.
	Rand io.Reader
}

// Client is the Fitbit adapter. It is safe for concurrent use.
type Client struct {
	cfg    Config
	api    *url.URL
	caller providers.Caller
	log    *slog.Logger
	kinds  providers.KindSet // enabled kinds, component kinds folded into their parent
	now    func() time.Time

	zones   *cache.Cache // user → *time.Location (from the profile)
	devices *cache.Cache // user → []device (from devices.json)
	limits  *rateLimits
	denied  sync.Map // user + "\x00" + endpoint → true once a missing scope was logged
}

// Interface guards.
var (
	_ providers.Provider   = (*Client)(nil)
	_ providers.Titled     = (*Client)(nil)
	_ providers.Subscriber = (*Client)(nil)
	_ providers.Revoker    = (*Client)(nil)
	_ providers.Webhooks   = (*Client)(nil)
)

// Cache lifetimes: a user's zone changes when they travel and adjust it, their devices when they
// pair one; an hour keeps both to a few requests of the 150 per hour.
const (
	zoneTTL   = time.Hour
	deviceTTL = time.Hour
)

// New returns the adapter. Every vendor request goes through caller (see ClientConfig for its
// limits). log may be nil. It returns an error when a required setting is missing, a URL is
// invalid or a kind is not supported.
func New(cfg Config, caller providers.Caller, log *slog.Logger) (*Client, error) {
	if caller == nil {
		return nil, errors.New("fitbit: a caller is required")
	}
	if cfg.ClientID == "" || cfg.ClientSecret == "" {
		return nil, errors.New("fitbit: client id and client secret are required")
	}
	if cfg.RedirectURL == "" {
		return nil, errors.New("fitbit: redirect URL is required")
	}
	if cfg.APIURL == "" {
		cfg.APIURL = DefaultAPIURL
	}
	if cfg.AuthURL == "" {
		cfg.AuthURL = DefaultAuthURL
	}
	api, err := providers.AbsoluteURL("API", cfg.APIURL)
	if err != nil {
		return nil, fmt.Errorf("fitbit: %w", err)
	}
	if _, err := providers.AbsoluteURL("auth", cfg.AuthURL); err != nil {
		return nil, fmt.Errorf("fitbit: %w", err)
	}
	kinds, err := providers.EnableKinds(cfg.Kinds, parentKind)
	if err != nil {
		return nil, fmt.Errorf("fitbit: %w", err)
	}
	if len(cfg.Scopes) == 0 {
		cfg.Scopes = scopesFor(kinds.Sorted())
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Client{
		cfg: cfg, api: api, caller: caller, log: log.With("provider", Name), kinds: kinds, now: time.Now,
		zones:   cache.New(zoneTTL, 2*zoneTTL),
		devices: cache.New(deviceTTL, 2*deviceTTL),
		limits:  newRateLimits(),
	}, nil
}

// DefaultHourlyLimit is Fitbit's quota of requests per user and hour
// (https://dev.fitbit.com/build/reference/web-api/developer-guide/application-design/#Rate-Limits).
const DefaultHourlyLimit = 150

// ClientConfig is the resilient client configuration for Fitbit: perHour requests per user and
// hour (0: DefaultHourlyLimit) as a strict per-user bucket and as the per-user quota shared by
// every instance when the caller sets Budgets, and throttling that pauses only the throttled
// user.
func ClientConfig(perHour int) providers.ClientConfig {
	if perHour <= 0 {
		perHour = DefaultHourlyLimit
	}
	return providers.ClientConfig{
		Provider:     Name,
		UserRate:     providers.StrictLimit(perHour, time.Hour, 10),
		UserBurst:    10,
		UserQuota:    providers.Quota{Limit: perHour, Window: time.Hour},
		UserThrottle: true,
	}
}

// Name returns "fitbit".
func (c *Client) Name() string { return Name }

// Title returns "Fitbit", the name patients know.
func (c *Client) Title() string { return "Fitbit" }

// Kinds lists the enabled top-level kinds, sorted.
func (c *Client) Kinds() []fhir.SampleKind {
	return c.kinds.Sorted()
}

// kindScope is the OAuth scope each kind needs
// (https://dev.fitbit.com/build/reference/web-api/developer-guide/application-design/#Scopes; the
// SpO2, breathing-rate and temperature pages name oxygen_saturation, respiratory_rate and
// temperature).
var kindScope = map[fhir.SampleKind]string{
	fhir.KindSteps:                    "activity",
	fhir.KindDistance:                 "activity",
	fhir.KindCalories:                 "activity",
	fhir.KindElevation:                "activity",
	fhir.KindRestingHeartRate:         "heartrate",
	fhir.KindWeight:                   "weight",
	fhir.KindBMI:                      "weight",
	fhir.KindFatRatio:                 "weight",
	fhir.KindSleep:                    "sleep",
	fhir.KindSpO2:                     "oxygen_saturation",
	fhir.KindHRVRMSSD:                 "heartrate",
	fhir.KindRespiratoryRate:          "respiratory_rate",
	fhir.KindSkinTemperatureVariation: "temperature",
	fhir.KindECG:                      "electrocardiogram",
}

// scopesFor is the consent the kinds need, plus profile (the time zone) and settings (devices).
func scopesFor(kinds []fhir.SampleKind) []string {
	set := map[string]bool{"profile": true, "settings": true}
	for _, k := range kinds {
		set[kindScope[k]] = true
	}
	out := make([]string, 0, len(set))
	for s := range set {
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

// parentKind folds component kinds into the kind whose samples carry them.
var parentKind = func() map[fhir.SampleKind]fhir.SampleKind {
	m := map[fhir.SampleKind]fhir.SampleKind{
		fhir.KindSleepLight:        fhir.KindSleep,
		fhir.KindSleepDeep:         fhir.KindSleep,
		fhir.KindSleepREM:          fhir.KindSleep,
		fhir.KindSleepAwake:        fhir.KindSleep,
		fhir.KindSleepEfficiency:   fhir.KindSleep,
		fhir.KindSleepLatency:      fhir.KindSleep,
		fhir.KindSleepTimeInBed:    fhir.KindSleep,
		fhir.KindHRVRMSSDDeepSleep: fhir.KindHRVRMSSD,
	}
	for k := range kindScope {
		m[k] = k
	}
	return m
}()

// SupportedKinds lists the top-level kinds the adapter reads, sorted.
func SupportedKinds() []fhir.SampleKind { return providers.TopLevelKinds(parentKind) }

// wanted resolves a query's kinds against the enabled kinds (providers.KindSet.Wanted).
func (c *Client) wanted(kinds []fhir.SampleKind) map[fhir.SampleKind]bool {
	return c.kinds.Wanted(kinds)
}

func upstream(kind providers.ErrorKind, status int, err error) *providers.UpstreamError {
	return &providers.UpstreamError{Provider: Name, Kind: kind, Status: status, Err: err}
}
