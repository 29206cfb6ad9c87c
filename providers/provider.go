// Package providers is the vendor side of ohx: the adapter contract every vendor implements, the
// connection and token vault, and the resilient HTTP client adapters call vendors through.
// Adapters live in sub-packages (providers/withings, …) and are registered explicitly in cmd/ohx.
package providers

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/oauth2"

	"github.com/openhealthexchange/ohx/fhir"
)

// Provider adapts one vendor API. Implementations are safe for concurrent use. They return
// provider-neutral samples; fhir.MapSample turns those into Observations.
type Provider interface {
	// Name is the adapter's stable name ("withings"), used in URLs, identifiers and storage.
	Name() string
	// Kinds lists the data kinds this deployment reads from the vendor (the enabled ones, top-level
	// kinds only), sorted. Every one of them must produce samples fhir.MapSample codes.
	Kinds() []fhir.SampleKind
	// AuthCodeURL is the vendor consent page URL for the connect flow. codeChallenge is the
	// PKCE S256 challenge, ignored by vendors without PKCE.
	AuthCodeURL(state, codeChallenge string) string
	// Exchange trades an authorization code for tokens and the vendor user id.
	// Errors are *UpstreamError.
	Exchange(ctx context.Context, code, codeVerifier string) (*Grant, error)
	// Refresh uses t.RefreshToken to get a new token (vendors rotate refresh tokens: the result
	// carries the new one). A definitive refusal returns an error matching ErrConsentRevoked.
	Refresh(ctx context.Context, t *oauth2.Token) (*oauth2.Token, error)
	// Devices lists the user's devices.
	Devices(ctx context.Context, user string, ts oauth2.TokenSource) ([]fhir.DeviceInfo, error)
	// Fetch reads one page of samples of the requested kinds. Errors are *UpstreamError (or
	// ctx.Err()); an auth error is reported, never retried here.
	Fetch(ctx context.Context, user string, ts oauth2.TokenSource, q Query) (*Page, error)
}

// Subscriber is implemented by vendors with webhook subscriptions.
type Subscriber interface {
	// Subscribe registers callbackURL for the kinds' notification categories.
	Subscribe(ctx context.Context, user string, ts oauth2.TokenSource, callbackURL string, kinds []fhir.SampleKind) error
	// Unsubscribe removes every subscription of the user for callbackURL.
	Unsubscribe(ctx context.Context, user string, ts oauth2.TokenSource, callbackURL string) error
}

// Revoker is implemented by vendors that can revoke tokens.
type Revoker interface {
	// Revoke invalidates the user's tokens at the vendor (and with them, at Withings, the user's
	// notification subscriptions). user is the vendor user id.
	Revoke(ctx context.Context, user string, t *oauth2.Token) error
}

// Authoritative is implemented by adapters that know where the complete answer to a window
// query lists every record the vendor holds. Vendors do not report deletions (a deleted Withings
// measure group simply no longer comes back from getmeas for its range,
// https://developer.withings.com/api-reference/#tag/measure/operation/measure-getmeas), so a record
// the sync stored before, inside such a range, that the answer no longer returns was withdrawn by
// the vendor: the pipeline writes its Observation again as entered-in-error
// (https://hl7.org/fhir/R5/valueset-observation-status.html). An adapter claims a range only where
// the vendor API's range semantics make that certain: a real measurement marked entered-in-error
// is worse than a deletion missed. Incremental answers (Since) list changes only and are never
// complete.
type Authoritative interface {
	// CompleteRanges returns the parts of the complete answer (every page) to q, a window query
	// (Start and End set, Since zero) read for the vendor user user, that list every record the
	// vendor holds; nil for none (for any other query too). It does no I/O and cannot fail.
	CompleteRanges(user string, q Query) []CompleteRange
}

// HeldRecord names a vendor record by fhir.Sample's System and RecordID.
type HeldRecord struct {
	System, RecordID string
}

// CompleteRange is one part of a window query's answer that lists every record the vendor holds:
// the records of System whose ids start with Prefix, of the Kinds, whose effective time lies in
// the range. A stored Observation is inside when it carries the identifier
// {namespace}/sid/{System} | {Prefix}… and has the code of one of the Kinds, and
//   - a point value (effectiveDateTime with a time, or effectiveInstant): Start ≤ t < End;
//   - a daily value or a session (effectiveDateTime as a date, or effectivePeriod with both
//     bounds): every local date it is written in — the date, or the dates of the period's start
//     and end as written, in their own offsets — is strictly after After and strictly before
//     Before.
//
// Anything else (a period in an instant range, a partial date) is never inside.
type CompleteRange struct {
	// System is the identifier system path of the records (fhir.Sample.System,
	// "withings/measure"); Prefix starts the record id of every record of the vendor user
	// ("12345/"), so that records of another account of the patient are never part of it. Both
	// are required.
	System, Prefix string
	// Kinds are the top-level kinds whose records the part lists completely.
	Kinds []fhir.SampleKind
	// Start and End bound the instants of point values, [Start, End); zero: no point values.
	Start, End time.Time
	// After and Before ("2006-01-02") bound the local dates of daily values and sessions,
	// exclusively; "": none.
	After, Before string
}

// Titled is implemented by adapters whose name shown to patients is not their Name
// ("Fitbit (Google Health)" for "googlehealth"). Title reads it.
type Titled interface {
	// Title is the vendor's name as patients know it.
	Title() string
}

// Title is the name pages show for p: its Title when it has one, else its Name.
func Title(p Provider) string {
	if t, ok := p.(Titled); ok {
		if s := t.Title(); s != "" {
			return s
		}
	}
	return p.Name()
}

// Grant is the result of a code exchange.
type Grant struct {
	Token  *oauth2.Token
	UserID string // the vendor's user id, as a string
	Scopes []string
	// Predecessor is the account at an earlier vendor API that this account continues, nil for
	// none: a Google Health account carries the Fitbit user id it had at the legacy Fitbit Web
	// API (https://developers.google.com/health/reference/rest/v4/users/getIdentity). The
	// connect flow records it on the connection, so that measurements the predecessor's adapter
	// already stored for the patient are updated, not duplicated, when the new account delivers
	// them again.
	Predecessor *Account
}

// Account names one vendor account.
type Account struct {
	// Provider is the adapter's name ("fitbit"), User the vendor's user id there ("ABC123").
	Provider string `json:"provider"`
	User     string `json:"user"`
}

// Query selects what Fetch reads.
type Query struct {
	Kinds []fhir.SampleKind
	// Either a window [Start, End) …
	Start, End time.Time
	// … or everything created or modified after Since (incremental sync), when set.
	Since time.Time
	// Cursor continues a previous page ("" for the first page).
	Cursor string
	// Fresh bypasses the response cache: the sync pipeline reads what the vendor has now (a job
	// re-run because a notification arrived while it ran must not get the answer of its first
	// run), where an interactive read may share a recent identical answer.
	Fresh bool
}

// Page is one page of samples.
type Page struct {
	Samples []fhir.Sample
	// Held names the records of the answer that the adapter turned into no sample — a
	// blood-pressure group with one of its two values, a value out of range. The vendor still
	// holds them: a complete answer (Authoritative) that returns one has not withdrawn it.
	Held []HeldRecord
	// Next continues the same query; "" when this was the last page.
	Next string
	// SyncedUntil is the vendor's "updated up to" time, the Since of the next incremental sync.
	SyncedUntil time.Time
}

// Sentinel errors.
var (
	// ErrNotConnected means the patient has no connection to the provider.
	ErrNotConnected = errors.New("not connected to the provider")
	// ErrConsentRevoked means the vendor definitively refused the tokens (invalid_grant): the
	// patient must connect again.
	ErrConsentRevoked = errors.New("vendor consent revoked")
)

// ErrorKind classifies vendor failures by what the caller should do about them.
type ErrorKind string

// Error kinds.
const (
	KindAuth      ErrorKind = "auth"      // refresh, then re-consent
	KindThrottled ErrorKind = "throttled" // back off, honour RetryAfter; never feeds a breaker
	KindTransient ErrorKind = "transient" // retry with backoff; feeds the vendor breaker
	KindPermanent ErrorKind = "permanent" // do not retry; dead-letter
)

// UpstreamError is a classified vendor failure. Its text never contains tokens or PHI.
type UpstreamError struct {
	Provider   string
	Kind       ErrorKind
	Status     int // HTTP status or vendor status code
	RetryAfter time.Duration
	Err        error
}

func (e *UpstreamError) Error() string {
	return fmt.Sprintf("%s: %s error (status %d): %v", e.Provider, e.Kind, e.Status, e.Err)
}

func (e *UpstreamError) Unwrap() error { return e.Err }
