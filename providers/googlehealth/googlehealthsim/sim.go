// Package googlehealthsim simulates the Google Health API (https://developers.google.com/health),
// the service Fitbit data flows through today, for `ohx demo`: Google's OAuth 2.0 consent page
// and token endpoints (PKCE S256), the user's identity and settings, paired devices, data points
// (list with AIP-160 filters and page tokens, dailyRollUp) and webhook deliveries with the
// subscriber's Authorization header. Every value it serves comes from a sim.World (history
// before its Epoch) or from the live measurements Push adds; the JSON has the shapes of the
// recorded payloads in testdata/googlehealth, which the real adapter parses.
//
// One shortcut: Google delivers webhooks only to a subscriber that the project registered through
// the projects.subscribers API (the AUTOMATIC subscriber `ohx googlehealth subscriber …`
// creates). The simulator has no subscriber API: it behaves as if that subscriber already existed
// with Config.WebhookURL as its endpointUri and Config.WebhookAuthorization as its secret, and Push
// posts there for every consenting user. Registering a subscriber is therefore not part of
// `ohx demo`, and `ohx googlehealth subscriber …` cannot be tried against the simulator.
package googlehealthsim

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/openhealthexchange/ohx/providers/sim"
	"github.com/openhealthexchange/ohx/providers/sim/simweb"
)

// Config configures the simulator.
type Config struct {
	World *sim.World
	// People are the Google accounts this simulator holds (a subset of World.People).
	People []*sim.Person
	// ClientID and ClientSecret are the OAuth client the simulator accepts (others get Google's
	// invalid_client).
	ClientID, ClientSecret string
	// Now is the clock of live data and token expiry; nil: time.Now.
	Now func() time.Time
	// Log receives the simulator's events (never tokens); nil: discard.
	Log *slog.Logger
	// HTTPClient delivers pushes; nil: a client with a 10 s timeout.
	HTTPClient *http.Client
	// WebhookURL is ohx's notification endpoint (http://127.0.0.1:8080/webhooks/googlehealth):
	// the endpointUri of the project's subscriber, which Google delivers every consenting user's
	// changes to. Empty: Push delivers nothing.
	WebhookURL string
	// WebhookAuthorization is the whole Authorization header value Google sends with every
	// delivery (the subscriber's endpointAuthorization.secret, e.g. "Bearer …"); ohx checks it
	// against OHX_GOOGLEHEALTH_WEBHOOK_SECRET.
	WebhookAuthorization string
	// RedirectURIs are the redirect URIs registered for the client, as the vendor's developer
	// console holds them; empty: any absolute http(s) URI, for tests. An authorize request whose
	// redirect_uri is not exactly one of them gets the 400 error page (redirect_uri_mismatch),
	// never a redirect, as Google refuses a redirect URI not authorized for the OAuth client.
	RedirectURIs []string
}

// Simulator is a simulated Google Health API. It is safe for concurrent use.
type Simulator struct {
	cfg    Config
	world  *sim.World
	people []*sim.Person
	byKey  map[string]*sim.Person
	ids    map[string]string // Person.Key → healthUserId
	now    func() time.Time
	log    *slog.Logger
	hc     *http.Client
	mux    *http.ServeMux

	mu      sync.Mutex
	pending map[string]*authRequest // consent nonce → the authorize request it answers
	codes   map[string]*authCode
	grants  map[string]*grant  // refresh token → grant
	access  map[string]*access // access token → its grant
	live    map[string]*liveData
	pushes  int
}

// liveData is what Push added for one person.
type liveData struct {
	weights []sim.Weight
	// until is the instant up to which today's activity has been recorded (zero: the Epoch).
	until time.Time
}

// New validates cfg and returns the simulator. It fails without a world, people, or client
// credentials, for a person not in the world, and for an invalid webhook URL or registered
// redirect URI.
func New(cfg Config) (*Simulator, error) {
	if cfg.World == nil || len(cfg.People) == 0 {
		return nil, errors.New("googlehealthsim: a world and at least one person are required")
	}
	if cfg.ClientID == "" || cfg.ClientSecret == "" {
		return nil, errors.New("googlehealthsim: client id and secret are required")
	}
	if cfg.WebhookURL != "" {
		u, err := url.Parse(cfg.WebhookURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("googlehealthsim: webhook URL %q is not an absolute http(s) URL", cfg.WebhookURL)
		}
	}
	redirects, err := simweb.NewRedirects("googlehealthsim", cfg.RedirectURIs)
	if err != nil {
		return nil, err
	}
	cfg.RedirectURIs = redirects
	s := &Simulator{cfg: cfg, world: cfg.World, byKey: map[string]*sim.Person{}, ids: map[string]string{},
		now: cfg.Now, log: cfg.Log, hc: cfg.HTTPClient,
		pending: map[string]*authRequest{}, codes: map[string]*authCode{}, grants: map[string]*grant{},
		access: map[string]*access{}, live: map[string]*liveData{}}
	for _, p := range cfg.People {
		if p == nil || cfg.World.Person(p.Key) != p {
			return nil, errors.New("googlehealthsim: every person must belong to the world")
		}
		if _, dup := s.byKey[p.Key]; dup {
			return nil, fmt.Errorf("googlehealthsim: person %s listed twice", p.Key)
		}
		s.byKey[p.Key] = p
		s.ids[p.Key] = s.healthUserID(p)
		s.people = append(s.people, p)
		s.live[p.Key] = &liveData{}
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.log = s.log.With("simulator", "googlehealth")
	if s.hc == nil {
		s.hc = &http.Client{Timeout: 10 * time.Second}
	}
	s.mux = s.routes()
	return s, nil
}

// Handler serves the API, the OAuth endpoints and the consent page, all on one origin.
func (s *Simulator) Handler() http.Handler { return s.mux }

// Paths of the simulator's OAuth endpoints (Google's live ones are on accounts.google.com and
// oauth2.googleapis.com).
const (
	AuthPath   = "/o/oauth2/v2/auth"
	TokenPath  = "/token"
	RevokePath = "/revoke"
)

// Env returns the settings that point ohx at the simulator served at baseURL: the client, the
// API, consent, token and revoke URLs, the webhook secret (when WebhookAuthorization is set) and
// the data kinds the simulator serves (intraday heart rate is opt-in in the adapter; listing it
// makes ohx read what Served counts). OHX_GOOGLEHEALTH_REVOKE_URL keeps a disconnect's revocation
// on the simulator rather than Google's live endpoint.
func (s *Simulator) Env(baseURL string) map[string]string {
	baseURL = strings.TrimRight(baseURL, "/")
	env := map[string]string{
		"OHX_GOOGLEHEALTH_CLIENT_ID":     s.cfg.ClientID,
		"OHX_GOOGLEHEALTH_CLIENT_SECRET": s.cfg.ClientSecret,
		"OHX_GOOGLEHEALTH_API_URL":       baseURL,
		"OHX_GOOGLEHEALTH_AUTH_URL":      baseURL + AuthPath,
		"OHX_GOOGLEHEALTH_TOKEN_URL":     baseURL + TokenPath,
		"OHX_GOOGLEHEALTH_REVOKE_URL":    baseURL + RevokePath,
		"OHX_GOOGLEHEALTH_KINDS":         servedKindList(),
	}
	if s.cfg.WebhookAuthorization != "" {
		env["OHX_GOOGLEHEALTH_WEBHOOK_SECRET"] = s.cfg.WebhookAuthorization
	}
	return env
}

func (s *Simulator) routes() *http.ServeMux {
	m := http.NewServeMux()
	m.HandleFunc("GET "+AuthPath, s.authorize)
	m.HandleFunc("POST "+AuthPath, s.consent)
	m.HandleFunc("POST "+TokenPath, s.token)
	m.HandleFunc("POST "+RevokePath, s.revoke)
	m.HandleFunc("GET /v4/users/{user}/identity", s.api("", s.identity))
	m.HandleFunc("GET /v4/users/{user}/settings", s.api(areaSettings, s.settings))
	m.HandleFunc("GET /v4/users/{user}/pairedDevices", s.api(areaSettings, s.pairedDevices))
	m.HandleFunc("GET /v4/users/{user}/dataTypes/{type}/dataPoints", s.dataAPI(s.list))
	m.HandleFunc("POST /v4/users/{user}/dataTypes/{type}/{method}", s.dataAPI(s.rollup))
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		googleError(w, http.StatusNotFound, "NOT_FOUND", "Requested entity was not found.", "")
	})
	return m
}

// person returns the simulator's person by key.
func (s *Simulator) person(key string) *sim.Person { return s.byKey[key] }

// liveOf returns a copy of a person's live data.
func (s *Simulator) liveOf(p *sim.Person) liveData {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.live[p.Key]
	return liveData{weights: append([]sim.Weight(nil), l.weights...), until: l.until}
}

// activityUntil is the instant up to which a person's activity is revealed: the Epoch, or the
// last push after it.
func (s *Simulator) activityUntil(l liveData) time.Time {
	if l.until.After(s.world.Epoch) {
		return l.until
	}
	return s.world.Epoch
}
