// Package fitbitsim simulates the legacy Fitbit Web API (https://dev.fitbit.com/build/reference/web-api/)
// for `ohx demo`: the OAuth 2.0 consent page, token and revoke endpoints, the data endpoints the
// fitbit adapter reads (activity and heart-rate time series, weight and body-fat logs, sleep logs
// with stages, SpO2, HRV, breathing rate, skin temperature, ECG readings, devices, profile) and
// subscriptions, all serving the deterministic people of a sim.World. Push records live
// measurements and delivers the signed subscriber notifications Fitbit sends
// (https://dev.fitbit.com/build/reference/web-api/developer-guide/using-subscriptions/).
//
// Fitbit writes every date and time as the user's local wall time without an offset; the
// simulator renders the world's instants in each person's zone, which the profile reports.
package fitbitsim

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/openhealthexchange/ohx/providers/sim"
	"github.com/openhealthexchange/ohx/providers/sim/simweb"
)

// Config configures the simulator.
type Config struct {
	World *sim.World
	// People are the vendor accounts this simulator holds (a subset of World.People).
	People []*sim.Person
	// ClientID and ClientSecret are the OAuth client the simulator accepts (others get Fitbit's
	// invalid_client error); the secret also keys the notification signatures.
	ClientID, ClientSecret string
	// Now is the clock (nil: time.Now): token and code expiry, rate-limit windows and the
	// instants of live measurements.
	Now func() time.Time
	// Log receives the simulator's events (nil: discard). It never logs tokens or health data.
	Log *slog.Logger
	// HTTPClient delivers the notifications (nil: a client with a 10 s timeout).
	HTTPClient *http.Client
	// RedirectURIs are the redirect URIs registered for the client, as the vendor's developer
	// console holds them; empty: any absolute http(s) URI, for tests. An authorize request whose
	// redirect_uri is not exactly one of them gets the 400 error page, never a redirect: Fitbit
	// redirects only to a callback URL of the application's settings.
	RedirectURIs []string

	// SubscriberURL is ohx's subscriber endpoint (e.g. http://127.0.0.1:8080/webhooks/fitbit),
	// configured in a real Fitbit app's settings; empty: Push delivers nothing.
	SubscriberURL string
	// VerificationCode is the subscriber verification code of the app settings, sent to the
	// subscriber before the first notification (Env gives it as OHX_FITBIT_VERIFICATION_CODE).
	VerificationCode string
	// SubscriberID is the id of the app's subscriber (default "1", Env gives it as
	// OHX_FITBIT_SUBSCRIBER_ID); subscriptions naming another are refused.
	SubscriberID string
	// HourlyLimit is the per-user request quota per clock hour (0: 150, Fitbit's,
	// https://dev.fitbit.com/build/reference/web-api/developer-guide/application-design/#Rate-Limits).
	HourlyLimit int
}

// Simulator is a simulated Fitbit Web API. It is safe for concurrent use.
type Simulator struct {
	cfg    Config
	w      *sim.World
	log    *slog.Logger
	hc     *http.Client
	people []*sim.Person
	byUser map[string]*sim.Person // Fitbit user id → person
	userOf map[string]string      // Person.Key → Fitbit user id

	mu       sync.Mutex
	pending  map[string]*pending    // consent nonce → the authorize request it answers
	codes    map[string]*authCode   // authorization code → what it grants
	used     map[string]*spentCode  // spent authorization code → what it produced
	access   map[string]*accessTok  // access token → its grant
	refresh  map[string]*grant      // refresh token → grant
	subs     map[subKey]string      // (user, collection) → subscription id
	live     map[string]*liveState  // Person.Key → what Push added
	quota    map[string]*quotaState // user → requests in the current hour
	verified bool                   // the subscriber passed verification
}

// New returns a simulator for cfg. It returns an error when the world, people or client are
// missing, a person is not of the world, or the subscriber URL or a registered redirect URI is
// not an absolute http(s) URL.
func New(cfg Config) (*Simulator, error) {
	if cfg.World == nil {
		return nil, errors.New("fitbitsim: a world is required")
	}
	if len(cfg.People) == 0 {
		return nil, errors.New("fitbitsim: at least one person is required")
	}
	if cfg.ClientID == "" || cfg.ClientSecret == "" {
		return nil, errors.New("fitbitsim: client id and client secret are required")
	}
	if cfg.SubscriberURL != "" {
		u, err := url.Parse(cfg.SubscriberURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("fitbitsim: subscriber URL %q is not an absolute http(s) URL", cfg.SubscriberURL)
		}
	}
	redirects, err := simweb.NewRedirects("fitbitsim", cfg.RedirectURIs)
	if err != nil {
		return nil, err
	}
	cfg.RedirectURIs = redirects
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.SubscriberID == "" {
		cfg.SubscriberID = "1"
	}
	if cfg.HourlyLimit <= 0 {
		cfg.HourlyLimit = hourlyLimit
	}
	s := &Simulator{
		cfg: cfg, w: cfg.World, log: cfg.Log.With("simulator", "fitbit"), hc: cfg.HTTPClient,
		byUser: map[string]*sim.Person{}, userOf: map[string]string{},
		pending: map[string]*pending{}, codes: map[string]*authCode{}, used: map[string]*spentCode{},
		access: map[string]*accessTok{}, refresh: map[string]*grant{}, subs: map[subKey]string{},
		live: map[string]*liveState{}, quota: map[string]*quotaState{},
	}
	for _, p := range cfg.People {
		if p == nil || cfg.World.Person(p.Key) != p {
			return nil, errors.New("fitbitsim: every person must be one of the world's")
		}
		id := userID(p)
		if _, dup := s.byUser[id]; dup {
			return nil, fmt.Errorf("fitbitsim: two people share the user id %s", id)
		}
		s.byUser[id], s.userOf[p.Key] = p, id
		s.people = append(s.people, p)
		s.live[p.Key] = &liveState{}
	}
	return s, nil
}

// Env returns the OHX_… settings that point ohx's fitbit adapter at the simulator served at
// baseURL (scheme://host:port, no trailing slash). The token and revoke endpoints live under the
// API URL, as at api.fitbit.com, so there is no token URL setting.
func (s *Simulator) Env(baseURL string) map[string]string {
	return map[string]string{
		"OHX_FITBIT_CLIENT_ID":         s.cfg.ClientID,
		"OHX_FITBIT_CLIENT_SECRET":     s.cfg.ClientSecret,
		"OHX_FITBIT_API_URL":           baseURL,
		"OHX_FITBIT_AUTH_URL":          baseURL + authorizePath,
		"OHX_FITBIT_VERIFICATION_CODE": s.cfg.VerificationCode,
		"OHX_FITBIT_SUBSCRIBER_ID":     s.cfg.SubscriberID,
	}
}

// UserID returns the Fitbit user id (encodedId, ownerId) of a person.
func (s *Simulator) UserID(p *sim.Person) string { return s.userOf[p.Key] }

// now is the simulator's clock.
func (s *Simulator) now() time.Time { return s.cfg.Now() }
