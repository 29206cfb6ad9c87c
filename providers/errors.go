package providers

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// More sentinel errors (the contract's are in provider.go).
var (
	// ErrBreakerOpen means the vendor's circuit breaker is open after vendor-wide failures: the
	// call was not sent. It arrives wrapped in an *UpstreamError of kind transient.
	ErrBreakerOpen = errors.New("vendor circuit breaker open")
	// ErrVendorUserLinked means the vendor account is already connected to another patient
	// (and not revoked); ohx never moves it silently (the other connection must be deleted
	// first). Vault.Save enforces it, the one place of the rule; the connect flow reports it.
	ErrVendorUserLinked = errors.New("vendor account already linked to another patient")

	errAttemptTimeout = errors.New("vendor request timed out")
	errLocalLimit     = errors.New("rate limit would exceed the deadline")
	errTooLarge       = errors.New("vendor response too large")
)

// ClassifyHTTP classifies a response by its HTTP status alone, for vendors whose HTTP status is
// meaningful (Fitbit, Google) and as the fallback for adapters whose own Classify only
// understands their envelope: 2xx → nil; 429 → throttled (with Retry-After); 401, 403 → auth;
// 408 and 5xx → transient (503 may carry Retry-After); anything else → permanent.
func ClassifyHTTP(provider string, status int, header http.Header) error {
	if status >= 200 && status < 300 {
		return nil
	}
	e := &UpstreamError{Provider: provider, Status: status, Err: fmt.Errorf("http status %d", status)}
	switch {
	case status == http.StatusTooManyRequests:
		e.Kind = KindThrottled
		e.RetryAfter = RetryAfter(header, time.Now())
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		e.Kind = KindAuth
	case status == http.StatusRequestTimeout || status >= 500:
		e.Kind = KindTransient
		e.RetryAfter = RetryAfter(header, time.Now())
	default:
		e.Kind = KindPermanent
	}
	return e
}

// RetryAfter parses a Retry-After header (delay in seconds or an HTTP date, RFC 9110 §10.2.3);
// 0 when absent, unparsable or in the past.
func RetryAfter(h http.Header, now time.Time) time.Duration {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if secs, err := strconv.Atoi(v); err == nil {
		if secs <= 0 {
			return 0
		}
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// KindOf is the kind of an *UpstreamError in err's chain, or "" if there is none.
func KindOf(err error) ErrorKind {
	var ue *UpstreamError
	if errors.As(err, &ue) {
		return ue.Kind
	}
	return ""
}
