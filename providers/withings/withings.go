// Package withings adapts the Withings Public Health Data API
// (https://developer.withings.com/api-reference): OAuth2 through
// authorize2 and the {status, body} envelope of /v2/oauth2, measures (getmeas), daily activity
// (getactivity), sleep summaries (getsummary), ECG recordings (heart list + get), devices
// (getdevice), webhook subscriptions (notify) and the notifications they deliver (HandleWebhook).
// It returns provider-neutral fhir.Samples; it never writes FHIR. Every request goes through a
// providers.Caller (rate limits, cache, retries, breaker).
package withings

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/providers"
)

// Name is the adapter's name, used in URLs, identifiers and storage.
const Name = "withings"

// Default endpoints and scopes
// (https://developer.withings.com/developer-guide/v3/integration-guide/public-health-data-api/get-access/access-and-refresh-tokens-no-recover).
const (
	DefaultAPIURL  = "https://wbsapi.withings.net"
	DefaultAuthURL = "https://account.withings.com/oauth2_user/authorize2"
)

// DefaultScopes are the scopes requested at connect time.
var DefaultScopes = []string{"user.info", "user.metrics", "user.activity", "user.sleepevents"}

// Config configures the adapter. ClientID, ClientSecret and RedirectURL are required.
type Config struct {
	ClientID     string
	ClientSecret string
	// RedirectURL is the connect callback registered with Withings.
	RedirectURL string
	// APIURL is the API host (default DefaultAPIURL; the US medical cloud is
	// https://wbsapi.us.withingsmed.net). The token, revoke and nonce services live under it too.
	APIURL string
	// AuthURL is the browser consent page (default DefaultAuthURL).
	AuthURL string
	// Scopes requested at connect time (default DefaultScopes).
	Scopes []string
	// Kinds are the data kinds this deployment reads (default: every kind SupportedKinds lists that
	// fhir.MapSample can code).
	Kinds []fhir.SampleKind
	// WebhookSecret is the secret path segment of the notification callback URL
	// (/webhooks/withings/{secret}): Withings signs no notification, so knowing it is what
	// authenticates a delivery. Empty refuses every delivery.
	WebhookSecret string
}

// Client is the Withings adapter. It is safe for concurrent use.
type Client struct {
	cfg    Config
	api    *url.URL
	caller providers.Caller
	log    *slog.Logger
	kinds  providers.KindSet // enabled kinds, component kinds folded into their parent
	now    func() time.Time

	locs         sync.Map // IANA name → *time.Location (nil value: unknown zone)
	seenStatuses sync.Map // unknown Withings status codes already logged
}

// Interface guards.
var (
	_ providers.Provider   = (*Client)(nil)
	_ providers.Subscriber = (*Client)(nil)
	_ providers.Revoker    = (*Client)(nil)
	_ providers.Webhooks   = (*Client)(nil)
	_ providers.Titled     = (*Client)(nil)
)

// New returns the adapter. Every vendor request, the token endpoint included, goes through caller
// (the resilient client owns the HTTP client). log may be nil. It returns an error when a
// required setting is missing or a kind is not supported.
func New(cfg Config, caller providers.Caller, log *slog.Logger) (*Client, error) {
	if caller == nil {
		return nil, errors.New("withings: a caller is required")
	}
	if cfg.ClientID == "" || cfg.ClientSecret == "" {
		return nil, errors.New("withings: client id and client secret are required")
	}
	if cfg.RedirectURL == "" {
		return nil, errors.New("withings: redirect URL is required")
	}
	if cfg.APIURL == "" {
		cfg.APIURL = DefaultAPIURL
	}
	if cfg.AuthURL == "" {
		cfg.AuthURL = DefaultAuthURL
	}
	if len(cfg.Scopes) == 0 {
		cfg.Scopes = slices.Clone(DefaultScopes)
	}
	api, err := providers.AbsoluteURL("API", cfg.APIURL)
	if err != nil {
		return nil, fmt.Errorf("withings: %w", err)
	}
	if _, err := providers.AbsoluteURL("auth", cfg.AuthURL); err != nil {
		return nil, fmt.Errorf("withings: %w", err)
	}
	kinds, err := providers.EnableKinds(cfg.Kinds, parentKind)
	if err != nil {
		return nil, fmt.Errorf("withings: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Client{cfg: cfg, api: api, caller: caller, log: log.With("provider", Name), kinds: kinds, now: time.Now}, nil
}

// Title returns "Withings", the vendor's name on pages.
func (c *Client) Title() string { return "Withings" }

// Name returns "withings".
func (c *Client) Name() string { return Name }

// family is a group of kinds read by one Withings service.
type family string

// Families in the order Fetch reads them. Measures come first: their updatetime is the vendor
// clock that becomes Page.SyncedUntil for the whole query.
const (
	famMeasure  family = "measure"
	famActivity family = "activity"
	famSleep    family = "sleep"
	famECG      family = "ecg"
)

var families = []family{famMeasure, famActivity, famSleep, famECG}

// kindFamily is the family each top-level kind is read from.
var kindFamily = map[fhir.SampleKind]family{
	fhir.KindWeight:            famMeasure,
	fhir.KindHeight:            famMeasure,
	fhir.KindFatFreeMass:       famMeasure,
	fhir.KindFatRatio:          famMeasure,
	fhir.KindFatMass:           famMeasure,
	fhir.KindBloodPressure:     famMeasure,
	fhir.KindHeartRate:         famMeasure,
	fhir.KindSpO2:              famMeasure,
	fhir.KindBodyTemperature:   famMeasure,
	fhir.KindSkinTemperature:   famMeasure,
	fhir.KindMuscleMass:        famMeasure,
	fhir.KindHydration:         famMeasure,
	fhir.KindBoneMass:          famMeasure,
	fhir.KindPulseWaveVelocity: famMeasure,
	fhir.KindVO2Max:            famMeasure,
	fhir.KindSteps:             famActivity,
	fhir.KindDistance:          famActivity,
	fhir.KindElevation:         famActivity,
	fhir.KindCalories:          famActivity,
	fhir.KindSleep:             famSleep,
	fhir.KindRespiratoryRate:   famSleep,
	fhir.KindECG:               famECG,
}

// parentKind folds component kinds into the kind whose samples carry them (asking for systolic
// means asking for the blood-pressure panel).
var parentKind = func() map[fhir.SampleKind]fhir.SampleKind {
	m := map[fhir.SampleKind]fhir.SampleKind{
		fhir.KindSystolic:   fhir.KindBloodPressure,
		fhir.KindDiastolic:  fhir.KindBloodPressure,
		fhir.KindSleepLight: fhir.KindSleep,
		fhir.KindSleepDeep:  fhir.KindSleep,
		fhir.KindSleepREM:   fhir.KindSleep,
		fhir.KindSleepAwake: fhir.KindSleep,
	}
	for k := range kindFamily {
		m[k] = k
	}
	return m
}()

// SupportedKinds lists the top-level kinds the adapter reads, in a stable order.
func SupportedKinds() []fhir.SampleKind { return providers.TopLevelKinds(parentKind) }

// wanted resolves a query's kinds against the enabled kinds (providers.KindSet.Wanted).
func (c *Client) wanted(kinds []fhir.SampleKind) map[fhir.SampleKind]bool {
	return c.kinds.Wanted(kinds)
}

// location returns the IANA zone, or nil when name is empty or unknown (callers then fall back
// to UTC instants or day-precision dates, never to a guessed offset).
func (c *Client) location(name string) *time.Location {
	if name == "" {
		return nil
	}
	if v, ok := c.locs.Load(name); ok {
		loc, _ := v.(*time.Location)
		return loc
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		c.log.Warn("unknown time zone from Withings", "timezone", name)
		loc = nil
	}
	c.locs.Store(name, loc)
	return loc
}

// instant converts a Withings unix time to the user's zone (UTC when the zone is unknown).
func (c *Client) instant(unix int64, tz string) time.Time {
	t := time.Unix(unix, 0)
	if loc := c.location(tz); loc != nil {
		return t.In(loc)
	}
	return t.UTC()
}

// Kinds lists the enabled top-level kinds, sorted.
func (c *Client) Kinds() []fhir.SampleKind {
	return c.kinds.Sorted()
}
