package googlehealth

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"time"

	"github.com/openhealthexchange/ohx/providers"
)

// googleError is Google's JSON error model
// (https://cloud.google.com/apis/design/errors#http_mapping):
// {"error": {"code": 400, "message": "…", "status": "INVALID_ARGUMENT", "details": [{"@type": "…ErrorInfo", "reason": "…"}]}}.
// Only status and reason names are kept: the message is vendor text that may echo request data.
type googleError struct {
	Error struct {
		Code    int    `json:"code"`
		Status  string `json:"status"`
		Details []struct {
			Reason string `json:"reason"`
		} `json:"details"`
	} `json:"error"`
}

// enumRE matches status and reason names (INVALID_ARGUMENT, INVALID_DATA_POINT_FILTER).
var enumRE = regexp.MustCompile(`^[A-Z][A-Z0-9_]{0,63}$`)

// statusError is the cause inside an *UpstreamError for a Google error answer: the HTTP status,
// the canonical status name and the ErrorInfo reason, never the message.
type statusError struct {
	HTTP   int
	Status string
	Reason string
}

func (e *statusError) Error() string {
	s := fmt.Sprintf("google health http %d", e.HTTP)
	if e.Status != "" {
		s += " " + e.Status
	}
	if e.Reason != "" {
		s += " (" + e.Reason + ")"
	}
	return s
}

// parseGoogleError extracts the status and reason names of a Google error body ("" when the
// body is not one).
func parseGoogleError(status int, body []byte) *statusError {
	se := &statusError{HTTP: status}
	var ge googleError
	if json.Unmarshal(body, &ge) == nil {
		if enumRE.MatchString(ge.Error.Status) {
			se.Status = ge.Error.Status
		}
		for _, d := range ge.Error.Details {
			if enumRE.MatchString(d.Reason) {
				se.Reason = d.Reason
				break
			}
		}
	}
	return se
}

// errScopeDenied marks a 403 PERMISSION_DENIED that means the user's token lacks the scope of
// the data (ErrorInfo reason ACCESS_TOKEN_SCOPE_INSUFFICIENT, https://cloud.google.com/apis/design/errors#error_info): Google's
// consent screen lets the user untick single scopes
// (https://developers.google.com/identity/protocols/oauth2/web-server#partial-consent), and
// neither a refresh nor a new consent the user answers the same way grants it. It is not an auth
// error; Fetch skips the data type.
var errScopeDenied = errors.New("the user did not grant the scope of this data")

// scopeDenied reports a 403 that says it only lacks a scope (see errScopeDenied). Any other 403
// (no reason, no body, an account Google cannot serve) stays an auth failure: skipping the data
// quietly would leave a dead connection answering empty pages forever.
func scopeDenied(status int, se *statusError) bool {
	return status == http.StatusForbidden && se.Reason == "ACCESS_TOKEN_SCOPE_INSUFFICIENT"
}

func upstream(kind providers.ErrorKind, status int, err error) *providers.UpstreamError {
	return &providers.UpstreamError{Provider: Name, Kind: kind, Status: status, Err: err}
}

// classify is the Call.Classify of every API request (the token endpoint has its own):
// 2xx → nil; 429 → throttled with Retry-After; 401 (UNAUTHENTICATED) → auth; 403
// PERMISSION_DENIED for a scope the user did not grant → permanent wrapping errScopeDenied (a
// refresh or re-consent cannot add it); any other 403 → auth; 408 and 5xx → transient (503 may
// carry Retry-After); any other 4xx (400 INVALID_*, 404 NOT_FOUND, …) → permanent
// (https://cloud.google.com/apis/design/errors#handling_errors).
func classify(status int, header http.Header, body []byte) error {
	if status >= 200 && status < 300 {
		return nil
	}
	se := parseGoogleError(status, body)
	if scopeDenied(status, se) {
		return upstream(providers.KindPermanent, status, fmt.Errorf("%w: %w", errScopeDenied, se))
	}
	e := upstream(providers.KindPermanent, status, se)
	switch {
	case status == http.StatusTooManyRequests:
		e.Kind = providers.KindThrottled
		e.RetryAfter = providers.RetryAfter(header, time.Now())
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		e.Kind = providers.KindAuth
	case status == http.StatusRequestTimeout || status >= 500:
		e.Kind = providers.KindTransient
		e.RetryAfter = providers.RetryAfter(header, time.Now())
	}
	return e
}
