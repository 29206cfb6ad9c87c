// Package connect links a patient to a vendor account: an EHR (or the patient's own app) asks
// for a one-time link, the patient opens it, consents at the vendor (OAuth 2.0 authorization
// code grant, https://www.rfc-editor.org/rfc/rfc6749#section-4.1, with PKCE,
// https://www.rfc-editor.org/rfc/rfc7636), and the connection is stored in the vault and
// handed to the sync pipeline. The patient is always the one the link was made for, never a
// parameter of the browser steps.
//
// The package knows nothing of HTTP: the api package turns requests into calls of Service and
// its typed errors into pages, redirects and OperationOutcomes.
package connect

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/openhealthexchange/ohx/providers"
	"github.com/openhealthexchange/ohx/store"
)

// Errors of the flow, matched with errors.Is. A vendor account that another patient holds is
// reported as providers.ErrVendorUserLinked, the vault's rule.
var (
	// ErrUnknownProvider means no provider of that name is configured.
	ErrUnknownProvider = errors.New("connect: provider not configured")
	// ErrUnknownPatient means the link was asked for a Patient that does not exist.
	ErrUnknownPatient = errors.New("connect: patient does not exist")
	// ErrRedirectNotAllowed means the deep link is not among Config.Redirects.
	ErrRedirectNotAllowed = errors.New("connect: redirect is not an allowed deep link")
	// ErrLinkExpired means the link is unknown, expired, already used or for another provider.
	ErrLinkExpired = errors.New("connect: link unknown, expired or used")
	// ErrStateExpired means the state is unknown, expired, already used or for another provider.
	ErrStateExpired = errors.New("connect: state unknown, expired or used")
	// ErrWrongBrowser means the callback came from another browser than the one that opened
	// the link. The state is used up.
	ErrWrongBrowser = errors.New("connect: state belongs to another browser")
	// ErrDenied means the patient did not allow access at the vendor.
	ErrDenied = errors.New("connect: access denied at the vendor")
	// ErrVendorRefused means the vendor did not exchange the authorization code for tokens.
	ErrVendorRefused = errors.New("connect: vendor refused the code exchange")
)

// Vault is what the flow needs of the connection vault (*providers.Vault).
type Vault interface {
	// Get returns the patient's connection to provider, or an error matching
	// providers.ErrNotConnected.
	Get(ctx context.Context, provider, patientID string) (*providers.Connection, error)
	// Save creates or updates the connection. It returns an error matching
	// providers.ErrVendorUserLinked, and stores nothing, if the vendor account is connected to
	// another patient (and not revoked): the one rule of who holds a vendor account.
	Save(ctx context.Context, c *providers.Connection) error
	// ByVendorUser returns the connection holding a vendor account (without its token), or an
	// error matching providers.ErrNotConnected.
	ByVendorUser(ctx context.Context, provider, vendorUserID string) (*providers.Connection, error)
}

// Syncer starts and ends the sync work of connections (providers/pipeline.Runner).
type Syncer interface {
	// Connected schedules the first syncs of a new or renewed connection.
	Connected(ctx context.Context, provider, patient string) error
	// Disconnect ends the connection's sync work, forgets its tokens and, with purge, deletes
	// the data read through it. Disconnecting an absent connection is not an error.
	Disconnect(ctx context.Context, provider, patient string, purge bool) error
	// Retire queues the end of a connection that a newer connection of the same patient
	// continues (like a Disconnect without purge, without calling the superseded vendor). It
	// returns an error only when the work could not be queued; a connection that is already
	// gone when the work runs is no error.
	Retire(ctx context.Context, provider, patient string) error
}

// Store is what the flow needs of the store (every store.Store satisfies it).
type Store interface {
	// Read returns the current version of a resource, or an error matching store.ErrNotFound or
	// store.ErrDeleted.
	Read(ctx context.Context, typ, id string) (store.Entry, error)
	// PutRecord stores a record that expires at expires.
	PutRecord(ctx context.Context, kind, id string, doc []byte, expires time.Time) error
	// TakeRecord deletes a live record and returns it, atomically; store.ErrNotFound if none.
	TakeRecord(ctx context.Context, kind, id string) ([]byte, error)
	// DeleteCoverage forgets what was synced of a patient's connection to provider.
	DeleteCoverage(ctx context.Context, provider, patient string) error
}

// Config configures a Service.
type Config struct {
	Providers *providers.Registry
	// Vault and Sync may be nil only when no provider is configured.
	Vault Vault
	Sync  Syncer
	// Store keeps the link and state records and knows the Patients.
	Store Store
	// Redirects lists the deep links a flow may end on (exact match).
	Redirects []string
	// LinkTTL is how long a link is valid (default 15 min).
	LinkTTL time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Log receives the flow's own failures that are not returned (nil discards).
	Log *slog.Logger
}

// StateTTL is how long the patient has to consent at the vendor: the lifetime of a state and of
// the browser binding cookie.
const StateTTL = 15 * time.Minute

const (
	kindLink  = "connect-link"
	kindState = "connect-state"
)

// Service runs the connect flow. It is safe for concurrent use, and several instances may share
// one store.
type Service struct {
	cfg Config
	log *slog.Logger
}

// New returns a Service.
func New(cfg Config) (*Service, error) {
	if cfg.Providers == nil {
		return nil, errors.New("connect: no provider registry")
	}
	if cfg.Store == nil {
		return nil, errors.New("connect: no store")
	}
	if len(cfg.Providers.Names()) > 0 && (cfg.Vault == nil || cfg.Sync == nil) {
		return nil, errors.New("connect: a vault and a syncer are needed to connect providers")
	}
	if cfg.LinkTTL <= 0 {
		cfg.LinkTTL = 15 * time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg.Redirects = slices.Clone(cfg.Redirects)
	return &Service{cfg: cfg, log: log}, nil
}

// record is the stored form of a link (Verifier and Browser empty) and of a state.
type record struct {
	Patient  string `json:"patient"`
	Provider string `json:"provider"`
	Redirect string `json:"redirect,omitempty"`
	// Verifier is the PKCE code verifier (state records only).
	Verifier string `json:"verifier,omitempty"`
	// Browser is Challenge(binding) of the browser's binding cookie (state records only).
	Browser string `json:"browser,omitempty"`
}

// Link is a one-time connect link.
type Link struct {
	Token   string // the link's secret, for the URL
	Expires time.Time
}

func (s *Service) provider(name string) (providers.Provider, error) {
	p, ok := s.cfg.Providers.Get(name)
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownProvider, name)
	}
	return p, nil
}

// CreateLink makes a one-time link for patient to connect provider, ending on redirect ("" for
// none). The caller checks that its client may manage the patient. Errors: ErrUnknownProvider,
// ErrRedirectNotAllowed, ErrUnknownPatient, or a store error.
func (s *Service) CreateLink(ctx context.Context, patient, provider, redirect string) (*Link, error) {
	if _, err := s.provider(provider); err != nil {
		return nil, err
	}
	if redirect != "" && !slices.Contains(s.cfg.Redirects, redirect) {
		return nil, ErrRedirectNotAllowed
	}
	if _, err := s.cfg.Store.Read(ctx, "Patient", patient); err != nil {
		if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrDeleted) {
			return nil, fmt.Errorf("%w: Patient/%s", ErrUnknownPatient, patient)
		}
		return nil, fmt.Errorf("connect: read patient: %w", err)
	}
	doc, err := json.Marshal(record{Patient: patient, Provider: provider, Redirect: redirect})
	if err != nil {
		return nil, fmt.Errorf("connect: link: %w", err)
	}
	l := &Link{Token: randomToken(), Expires: s.cfg.Now().Add(s.cfg.LinkTTL)}
	if err := s.cfg.Store.PutRecord(ctx, kindLink, l.Token, doc, l.Expires); err != nil {
		return nil, fmt.Errorf("connect: store link: %w", err)
	}
	return l, nil
}

// Start uses up the link and returns the vendor's consent URL, with a fresh single-use state
// bound to the browser by binding (the value of its binding cookie, see NewBinding) and a PKCE
// S256 challenge. Errors: ErrUnknownProvider (the link is not used up), ErrLinkExpired, a
// store error.
func (s *Service) Start(ctx context.Context, provider, link, binding string) (authURL string, err error) {
	p, err := s.provider(provider)
	if err != nil {
		return "", err
	}
	if !ValidBinding(binding) {
		return "", errors.New("connect: invalid browser binding")
	}
	doc, err := s.cfg.Store.TakeRecord(ctx, kindLink, link)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return "", ErrLinkExpired
		}
		return "", fmt.Errorf("connect: take link: %w", err)
	}
	var r record
	if err := json.Unmarshal(doc, &r); err != nil || r.Provider != provider {
		return "", ErrLinkExpired
	}
	r.Verifier = randomToken()
	r.Browser = Challenge(binding)
	state := randomToken()
	b, err := json.Marshal(r)
	if err != nil {
		return "", fmt.Errorf("connect: state: %w", err)
	}
	if err := s.cfg.Store.PutRecord(ctx, kindState, state, b, s.cfg.Now().Add(StateTTL)); err != nil {
		return "", fmt.Errorf("connect: store state: %w", err)
	}
	return p.AuthCodeURL(state, Challenge(r.Verifier)), nil
}

// Callback is what the vendor sends the browser back with.
type Callback struct {
	State string
	Code  string
	// Error is the vendor's error parameter (the patient declined), "" if none
	// (https://www.rfc-editor.org/rfc/rfc6749#section-4.1.2.1).
	Error string
	// Bindings are the values of the browser's binding cookies.
	Bindings []string
}

// Flow is the flow a valid state belongs to.
type Flow struct {
	Patient  string
	Provider string
	// Redirect is the deep link to end on, "" for none (or if it is no longer allowed).
	Redirect string
}

// Finish completes the flow of cb.State: it checks the state and its browser, exchanges the
// code (with the PKCE verifier), stores the connection and schedules its first syncs. The Flow
// is set as soon as the state was valid, also when an error is returned.
// Errors: ErrUnknownProvider (the state is not used up), ErrStateExpired, ErrWrongBrowser,
// ErrDenied, ErrVendorRefused (wrapping the vendor's error), an error matching
// providers.ErrVendorUserLinked, a store or vault error. Only after a nil error is the patient
// connected.
func (s *Service) Finish(ctx context.Context, provider string, cb Callback) (Flow, error) {
	p, err := s.provider(provider)
	if err != nil {
		return Flow{}, err
	}
	doc, err := s.cfg.Store.TakeRecord(ctx, kindState, cb.State)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return Flow{}, ErrStateExpired
		}
		return Flow{}, fmt.Errorf("connect: take state: %w", err)
	}
	var r record
	if err := json.Unmarshal(doc, &r); err != nil || r.Provider != provider {
		return Flow{}, ErrStateExpired
	}
	if !sameBrowser(cb.Bindings, r.Browser) {
		// The state is used up either way: it was exposed outside the browser it belongs to.
		return Flow{}, ErrWrongBrowser
	}
	f := Flow{Patient: r.Patient, Provider: r.Provider}
	if r.Redirect != "" && slices.Contains(s.cfg.Redirects, r.Redirect) {
		f.Redirect = r.Redirect
	}
	if cb.Error != "" {
		return f, ErrDenied
	}
	grant, err := p.Exchange(ctx, cb.Code, r.Verifier)
	if err != nil {
		return f, fmt.Errorf("%w: %w", ErrVendorRefused, err)
	}
	if grant == nil || grant.Token == nil || grant.UserID == "" {
		return f, fmt.Errorf("%w: the exchange returned no token or user", ErrVendorRefused)
	}
	conn := &providers.Connection{Provider: provider, PatientID: r.Patient, VendorUserID: grant.UserID, Status: providers.StatusActive,
		Token: grant.Token, Scopes: grant.Scopes, Created: s.cfg.Now().UTC()}
	old, err := s.cfg.Vault.Get(ctx, provider, r.Patient)
	switch {
	case err == nil:
		conn.ID, conn.Created, conn.SyncCursors = old.ID, old.Created, old.SyncCursors
		if old.VendorUserID != grant.UserID {
			// Another account: sync it from scratch. What was synced of the old account (time
			// ranges, incremental cursors) says nothing about the new one.
			conn.SyncCursors = nil
			if err := s.cfg.Store.DeleteCoverage(ctx, provider, r.Patient); err != nil {
				return f, fmt.Errorf("connect: forget the previous account's sync coverage: %w", err)
			}
		}
	case !errors.Is(err, providers.ErrNotConnected):
		return f, fmt.Errorf("connect: read the connection: %w", err)
	}
	var retire *providers.Connection
	if pa := grant.Predecessor; pa != nil && pa.Provider != "" && pa.User != "" && pa.Provider != provider {
		retire, err = s.predecessor(ctx, *pa, r.Patient)
		if err != nil {
			return f, err
		}
		conn.Predecessor = &providers.Predecessor{Account: *pa, Until: s.cfg.Now().UTC()}
		if old != nil && old.Predecessor != nil && old.Predecessor.Account == *pa && old.Predecessor.Until.Before(conn.Predecessor.Until) {
			// A renewed consent keeps the moment of the move: measurements taken since then
			// were never stored by the predecessor's adapter.
			conn.Predecessor.Until = old.Predecessor.Until
		}
	} else if old != nil && old.VendorUserID == grant.UserID {
		// A renewed consent of the same account that names no predecessor this time (a vendor
		// answer without it) keeps the one recorded: the move happened all the same.
		conn.Predecessor = old.Predecessor
	}
	if err := s.cfg.Vault.Save(ctx, conn); err != nil {
		return f, fmt.Errorf("connect: save the connection: %w", err)
	}
	if retire != nil {
		// The patient moved to the new account (Fitbit to Google Health: the legacy API is
		// switched off and its tokens cannot be reused, https://developers.google.com/health/migration).
		// The old connection ends; its Observations stay and the new account updates them.
		if err := s.cfg.Sync.Retire(ctx, retire.Provider, r.Patient); err != nil {
			// The new connection stands; the old one stays until it is disconnected.
			s.log.Error("connect: queueing the end of the predecessor connection failed", "provider", retire.Provider, "err", err)
		}
	}
	if err := s.cfg.Sync.Connected(ctx, provider, r.Patient); err != nil {
		// The connection stands; the pipeline's periodic reconciliation picks it up later.
		s.log.Error("connect: scheduling the first sync failed", "provider", provider, "err", err)
	}
	return f, nil
}

// predecessor returns the patient's live connection of the account a new account continues (to
// be retired once the new one is saved), nil when there is none. An account whose predecessor is
// held by another patient is refused like an account linked to another patient: both would
// claim one person's history.
func (s *Service) predecessor(ctx context.Context, pa providers.Account, patient string) (*providers.Connection, error) {
	c, err := s.cfg.Vault.ByVendorUser(ctx, pa.Provider, pa.User)
	switch {
	case errors.Is(err, providers.ErrNotConnected):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("connect: read the predecessor connection: %w", err)
	case c.Status == providers.StatusRevoked:
		return nil, nil
	case c.PatientID != patient:
		return nil, fmt.Errorf("connect: the account continues a %s account held by another patient: %w", pa.Provider, providers.ErrVendorUserLinked)
	}
	return c, nil
}

// Disconnect ends the patient's connection to provider (and, with purge, deletes the data read
// through it). The caller checks that its client may manage the patient. Errors:
// ErrUnknownProvider, or the syncer's.
func (s *Service) Disconnect(ctx context.Context, provider, patient string, purge bool) error {
	if _, err := s.provider(provider); err != nil {
		return err
	}
	if err := s.cfg.Sync.Disconnect(ctx, provider, patient, purge); err != nil {
		return fmt.Errorf("connect: disconnect: %w", err)
	}
	return nil
}

// Connections returns the patient's connections, by provider name, without their tokens.
func (s *Service) Connections(ctx context.Context, patient string) ([]*providers.Connection, error) {
	var out []*providers.Connection
	for _, name := range s.cfg.Providers.Names() {
		c, err := s.cfg.Vault.Get(ctx, name, patient)
		if errors.Is(err, providers.ErrNotConnected) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("connect: %s connection: %w", name, err)
		}
		cp := *c
		cp.Token = nil
		out = append(out, &cp)
	}
	return out, nil
}

// NewBinding returns a new browser binding: 32 random bytes, base64url. The HTTP layer keeps it
// in a cookie of the browser that opens a link; a state can then only be completed by that
// browser.
func NewBinding() string { return randomToken() }

// ValidBinding reports whether v has the form of a binding NewBinding returns.
func ValidBinding(v string) bool {
	b, err := base64.RawURLEncoding.DecodeString(v)
	return err == nil && len(b) == 32
}

// sameBrowser reports whether one of the bindings hashes to want. The state alone proves
// nothing about who comes back with it: a patient may forward the vendor's consent URL, and
// whoever signs in there would link their own vendor account into the patient's record.
func sameBrowser(bindings []string, want string) bool {
	if want == "" {
		return false // a state from before browsers were bound
	}
	ok := false
	for _, b := range bindings {
		if subtle.ConstantTimeCompare([]byte(Challenge(b)), []byte(want)) == 1 {
			ok = true
		}
	}
	return ok
}

// Challenge is BASE64URL(SHA256(v)): the PKCE S256 code challenge of verifier v
// (https://www.rfc-editor.org/rfc/rfc7636#section-4.2), and how states keep browser bindings.
func Challenge(v string) string {
	sum := sha256.Sum256([]byte(v))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// randomToken is 32 random bytes, base64url: 43 characters, a PKCE verifier of the minimum
// length and 256 bits of entropy (https://www.rfc-editor.org/rfc/rfc7636#section-4.1).
func randomToken() string {
	var b [32]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b[:])
}
