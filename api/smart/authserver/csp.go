package authserver

import (
	"net/url"
	"regexp"
	"strings"
)

// pageCSP is the Content-Security-Policy of the authorization pages: nothing loads but their
// inline styles, nothing may frame them, and their forms go to us — and to the app. We answer
// the last form of a session (Allow, Deny, a refused sign-in) with a redirect to the app's
// redirect URI, and Chromium applies form-action to every redirect of the navigation a form
// submission starts ("violates … form-action 'self'"), so 'self' alone keeps the code from
// ever reaching a cross-origin app. redirectURI is the session's
// registered redirect URI; "" (pages outside a session) allows 'self' only.
func pageCSP(redirectURI string) string {
	formAction := "'self'"
	if src := redirectSource(redirectURI); src != "" {
		formAction += " " + src
	}
	return "default-src 'none'; style-src 'unsafe-inline'; form-action " + formAction + "; frame-ancestors 'none'"
}

var (
	// The scheme-source and host-source grammar of CSP3 source lists (host-char is ALPHA / DIGIT / "-"):
	// nothing else may reach the header, so no quote, space, ";" or "," can end the directive.
	cspSchemeRE = regexp.MustCompile(`^[a-z][a-z0-9+.-]*$`)
	cspHostRE   = regexp.MustCompile(`^[a-z0-9-]+(\.[a-z0-9-]+)*\.?(:[0-9]{1,5})?$`)
)

// redirectSource is the CSP source expression that matches redirectURI: its origin
// scheme://host[:port] for http and https (after a redirect CSP ignores paths anyway), and the
// scheme alone ("com.example.app:") for a native app's private-use scheme (RFC 8252 §7.1). It
// returns "" for anything outside the CSP grammar (an IPv6 literal, odd characters) and for
// schemes through which a form could run script or read local content.
func redirectSource(redirectURI string) string {
	u, err := url.Parse(redirectURI) // lowercases the scheme
	if err != nil || !cspSchemeRE.MatchString(u.Scheme) {
		return ""
	}
	switch u.Scheme {
	case "http", "https":
		host := strings.ToLower(u.Host) // CSP compares hosts case-insensitively
		if !cspHostRE.MatchString(host) {
			return ""
		}
		return u.Scheme + "://" + host
	case "javascript", "data", "blob", "filesystem", "file", "about":
		return ""
	}
	return u.Scheme + ":"
}
