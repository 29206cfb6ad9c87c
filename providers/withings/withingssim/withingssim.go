// Package withingssim is a simulated Withings Public Health Data API for `ohx demo`: the
// authorize2 consent page, the /v2/oauth2 token service, measures (getmeas), daily activity
// (getactivity), sleep summaries (getsummary), ECGs (heart list + get), devices (getdevice),
// notification subscriptions (notify) and the signature nonce service, all answering with the
// Withings {"status", "body"} envelope (https://developer.withings.com/api-reference). The data
// comes from a sim.World; Push adds live measurements and delivers the Withings notification
// form to the subscribed callback URLs
// (https://developer.withings.com/developer-guide/v3/data-api/keep-user-data-up-to-date/).
package withingssim

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/openhealthexchange/ohx/providers/sim"
	"github.com/openhealthexchange/ohx/providers/sim/simweb"
)

// AuthorizePath is the consent page's path, as on account.withings.com.
const AuthorizePath = "/oauth2_user/authorize2"

// Config configures the simulator.
type Config struct {
	// World is the data; People are the Withings accounts this simulator holds (a subset of
	// World.People).
	World  *sim.World
	People []*sim.Person
	// ClientID and ClientSecret are the only OAuth client the simulator accepts.
	ClientID, ClientSecret string
	// Now is the clock (nil: time.Now). Live measurements are taken at Now.
	Now func() time.Time
	// Log receives the simulator's events (nil: discard). Tokens are never logged.
	Log *slog.Logger
	// HTTPClient delivers notifications (nil: a client with a 10 s timeout).
	HTTPClient *http.Client
	// RedirectURIs are the redirect URIs registered for the client, as the vendor's developer
	// console holds them; empty: any absolute http(s) URI, for tests. An authorize request whose
	// redirect_uri is not exactly one of them gets the 400 error page, never a redirect: Withings
	// only redirects to a callback URL registered for the application.
	RedirectURIs []string
}

// Simulator is a simulated Withings cloud. It is safe for concurrent use.
type Simulator struct {
	cfg      Config
	log      *slog.Logger
	http     *http.Client
	accounts []*account          // in Config.People order
	byKey    map[string]*account // Person.Key → account
	byUser   map[string]*account // Withings userid → account

	mu       sync.Mutex
	consents map[string]*consent      // consent-page nonce → the authorize request
	codes    map[string]*authCode     // authorization code → grant
	access   map[string]*accessToken  // access token → grant
	refresh  map[string]*refreshToken // refresh token → grant
	nonces   map[string]time.Time     // signature nonce → expiry
}

// New returns a simulator for cfg. It returns an error when the world, the people or the client
// are missing, a person is not in the world, or a registered redirect URI is not an absolute
// http(s) URL.
func New(cfg Config) (*Simulator, error) {
	if cfg.World == nil {
		return nil, errors.New("withingssim: a world is required")
	}
	if len(cfg.People) == 0 {
		return nil, errors.New("withingssim: at least one person is required")
	}
	if cfg.ClientID == "" || cfg.ClientSecret == "" {
		return nil, errors.New("withingssim: client id and client secret are required")
	}
	redirects, err := simweb.NewRedirects("withingssim", cfg.RedirectURIs)
	if err != nil {
		return nil, err
	}
	cfg.RedirectURIs = redirects
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Simulator{
		cfg:      cfg,
		log:      cfg.Log,
		http:     cfg.HTTPClient,
		byKey:    map[string]*account{},
		byUser:   map[string]*account{},
		consents: map[string]*consent{},
		codes:    map[string]*authCode{},
		access:   map[string]*accessToken{},
		refresh:  map[string]*refreshToken{},
		nonces:   map[string]time.Time{},
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.log = s.log.With("simulator", "withings")
	if s.http == nil {
		s.http = &http.Client{Timeout: 10 * time.Second}
	}
	for _, p := range cfg.People {
		if p == nil || cfg.World.Person(p.Key) != p {
			return nil, fmt.Errorf("withingssim: person %v is not in the world", p)
		}
		if s.byKey[p.Key] != nil {
			return nil, fmt.Errorf("withingssim: person %s listed twice", p.Key)
		}
		a := newAccount(cfg.World, p)
		s.accounts = append(s.accounts, a)
		s.byKey[p.Key] = a
		s.byUser[a.userID] = a
	}
	return s, nil
}

// Handler serves the Withings API, the OAuth services and the consent page on one origin.
func (s *Simulator) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc(AuthorizePath, s.serveAuthorize)
	mux.HandleFunc("/v2/oauth2", s.api(s.oauth2Actions))
	mux.HandleFunc("/v2/signature", s.api(s.signatureActions))
	mux.HandleFunc("/measure", s.api(s.authed(map[string]apiFunc{"getmeas": s.getmeas})))
	mux.HandleFunc("/v2/measure", s.api(s.authed(map[string]apiFunc{"getactivity": s.getactivity})))
	mux.HandleFunc("/v2/sleep", s.api(s.authed(map[string]apiFunc{"getsummary": s.getsummary})))
	mux.HandleFunc("/v2/heart", s.api(s.authed(map[string]apiFunc{"list": s.heartList, "get": s.heartGet})))
	mux.HandleFunc("/v2/user", s.api(s.authed(map[string]apiFunc{"getdevice": s.getdevice})))
	mux.HandleFunc("/notify", s.api(s.authedChecked(map[string]apiFunc{
		"subscribe": s.notifySubscribe, "list": s.notifyList, "revoke": s.notifyRevoke, "get": s.notifyGet,
	}, map[string]func(*http.Request) *apiError{"subscribe": s.checkCallback})))
	return mux
}

// Env returns the settings that point ohx at the simulator served at baseURL. Withings signs no
// notification: ohx authenticates deliveries by the secret path it registers itself through
// notify subscribe, so there is no webhook setting.
func (s *Simulator) Env(baseURL string) map[string]string {
	return map[string]string{
		"OHX_WITHINGS_CLIENT_ID":     s.cfg.ClientID,
		"OHX_WITHINGS_CLIENT_SECRET": s.cfg.ClientSecret,
		"OHX_WITHINGS_API_URL":       baseURL,
		"OHX_WITHINGS_AUTH_URL":      baseURL + AuthorizePath,
	}
}

func (s *Simulator) now() time.Time { return s.cfg.Now().Truncate(time.Second) }
