package publish

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/providers/pipeline"
)

// DeliveryError is a transaction the EHR did not accept. Its text names the status and the
// OperationOutcome's issue codes and locations, never the EHR's diagnostics (they may quote
// patient data); it becomes the job's error.
type DeliveryError struct {
	// Status is the HTTP status (0: no answer, a network error).
	Status int
	// Issues are "code at location" of the OperationOutcome's issues.
	Issues []string
	// Retry is when the EHR asked to be called again (Retry-After), zero if it did not.
	Retry time.Duration
	// Err is the network error, if any.
	Err error
}

func (e *DeliveryError) Error() string {
	var b strings.Builder
	if e.Status == 0 {
		b.WriteString("the EHR did not answer")
		if e.Err != nil {
			b.WriteString(": ")
			b.WriteString(e.Err.Error())
		}
		return b.String()
	}
	fmt.Fprintf(&b, "the EHR answered %d %s", e.Status, http.StatusText(e.Status))
	if len(e.Issues) > 0 {
		b.WriteString(" (")
		b.WriteString(strings.Join(e.Issues, "; "))
		b.WriteString(")")
	}
	return b.String()
}

func (e *DeliveryError) Unwrap() error { return e.Err }

// RetryAfter is the wait the EHR asked for (the Runner's backoff honours it).
func (e *DeliveryError) RetryAfter() time.Duration { return e.Retry }

// Temporary reports failures a later attempt may get past: no answer, 408, 429 and 5xx, and
// 401 (an access token the EHR stopped accepting early; the next attempt gets a new one).
func (e *DeliveryError) Temporary() bool {
	switch {
	case e.Status == 0, e.Status == http.StatusRequestTimeout, e.Status == http.StatusTooManyRequests,
		e.Status == http.StatusUnauthorized, e.Status >= 500:
		return true
	}
	return false
}

// deliver POSTs a transaction Bundle to the EHR's base. A failure the EHR will refuse again (any
// other 4xx: a malformed bundle, a patient it cannot match, missing scopes) is permanent.
func (p *Publisher) deliver(ctx context.Context, b *fhir.Bundle) error {
	body, err := json.Marshal(b)
	if err != nil {
		return fmt.Errorf("encode the transaction: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.base.String(), bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("build the request: %w", err)
	}
	// https://hl7.org/fhir/R5/http.html#version-parameter: the fhirVersion MIME parameter
	// names the version of the content (4.0 for R4, 5.0 for R5).
	mime := "application/fhir+json; fhirVersion=" + p.mimeVersion()
	req.Header.Set("Content-Type", mime)
	req.Header.Set("Accept", mime)
	req.Header.Set("Prefer", "return=minimal")
	resp, err := p.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil && errors.Is(err, context.Canceled) {
			return err // the job is stopping
		}
		p.transactions.WithLabelValues("retry").Inc()
		var re *oauth2.RetrieveError
		if errors.As(err, &re) {
			// Its text quotes the token endpoint's whole answer: keep the status and code.
			code := re.ErrorCode
			if code == "" {
				code = "no error code"
			}
			return &DeliveryError{Err: fmt.Errorf("getting an access token: the token endpoint answered %d (%s)", re.Response.StatusCode, clip(code))}
		}
		return &DeliveryError{Err: redact(err)}
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 == 2 {
		p.transactions.WithLabelValues("ok").Inc()
		return nil
	}
	de := &DeliveryError{Status: resp.StatusCode, Issues: issues(raw), Retry: retryAfter(resp.Header.Get("Retry-After"), p.cfg.Now())}
	if de.Temporary() {
		p.transactions.WithLabelValues("retry").Inc()
		return de
	}
	p.transactions.WithLabelValues("rejected").Inc()
	return pipeline.Permanent(de)
}

func (p *Publisher) mimeVersion() string {
	if p.cfg.Version == R5 {
		return "5.0"
	}
	return "4.0"
}

// issues summarises an OperationOutcome: "code at location" per issue, at most 5.
func issues(raw []byte) []string {
	var oo struct {
		ResourceType string `json:"resourceType"`
		Issue        []struct {
			Severity   string   `json:"severity"`
			Code       string   `json:"code"`
			Expression []string `json:"expression"`
			Location   []string `json:"location"`
		} `json:"issue"`
	}
	if json.Unmarshal(raw, &oo) != nil || oo.ResourceType != "OperationOutcome" {
		return nil
	}
	var out []string
	for _, is := range oo.Issue {
		if len(out) == 5 {
			break
		}
		s := clip(is.Severity) + " " + clip(is.Code)
		if at := append(is.Expression, is.Location...); len(at) > 0 {
			s += " at " + clip(at[0])
		}
		out = append(out, strings.TrimSpace(s))
	}
	return out
}

// clip keeps what the EHR wrote short and printable.
func clip(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return -1
		}
		return r
	}, s)
	if len(s) > 80 {
		s = s[:80]
	}
	return s
}

// retryAfter parses Retry-After: seconds or an HTTP date (RFC 9110 §10.2.3).
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// redact drops the URL from a transport error (it is the configured base, but a token URL
// error may carry query text) and keeps the cause.
func redact(err error) error {
	var ue interface{ Unwrap() error }
	if errors.As(err, &ue) {
		if inner := ue.Unwrap(); inner != nil {
			return inner
		}
	}
	return err
}

// loopbackHost reports whether host names the local machine.
func loopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
