// Package simweb is the HTTP plumbing the vendor simulators of `ohx demo` share
// (providers/withings/withingssim, providers/googlehealth/googlehealthsim,
// providers/fitbit/fitbitsim): checking redirect URIs the way OAuth servers do, and keeping URLs,
// which carry codes and secrets, out of error messages. What differs per vendor (error shapes,
// status codes, page wording) stays in each simulator.
package simweb

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
)

// AbsoluteHTTP reports whether raw is an absolute http(s) URL without a fragment, as a redirect
// URI must be (https://www.rfc-editor.org/rfc/rfc6749#section-3.1.2).
func AbsoluteHTTP(raw string) bool {
	u, err := url.Parse(raw)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" && u.Fragment == ""
}

// Redirects are the redirect URIs registered for a client, as a vendor's developer console
// holds them. Empty allows any absolute http(s) URI (for tests).
type Redirects []string

// NewRedirects checks and copies the registered URIs; name prefixes the error ("withingssim").
func NewRedirects(name string, uris []string) (Redirects, error) {
	for _, u := range uris {
		if !AbsoluteHTTP(u) {
			return nil, fmt.Errorf("%s: registered redirect URI %q is not an absolute http(s) URL", name, u)
		}
	}
	return slices.Clone(uris), nil
}

// Allow reports whether an authorization request may redirect to raw: an absolute http(s) URI
// that, when URIs are registered, is one of them exactly, without normalisation, as the
// vendors compare (https://www.rfc-editor.org/rfc/rfc9700#section-4.1.3).
func (r Redirects) Allow(raw string) bool {
	return AbsoluteHTTP(raw) && (len(r) == 0 || slices.Contains(r, raw))
}

// RedactURL drops the URL from an HTTP client error: a *url.Error names the request's URL,
// whose query may carry a verification code or a key. What went wrong stays, and errors.Is
// still finds context.Canceled or DeadlineExceeded.
func RedactURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
