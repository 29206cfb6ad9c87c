package api

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/gin-gonic/gin"
	"github.com/rs/cors"
)

// CORS (Fetch standard §3.2) lets SMART apps served from another origin call, from script, the
// endpoints made for script: the FHIR API with its metadata and smart-configuration, the
// authorization server's machine endpoints (Config.CORSPaths) and the bearer-protected connect
// API. Every one of them is authorized by a bearer token, client authentication or PKCE, never
// by a cookie, so credentials are not allowed cross-origin and any origin is a safe default.
// The browser pages (authorize, login, consent, the connect flow and its callback), the vendor
// webhooks and /metrics get no CORS headers: they are navigations carrying the session cookie,
// or not for browsers at all.

var (
	corsMethods = []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch,
		http.MethodHead, http.MethodOptions}
	// Request headers a SMART app sends beyond the CORS-safelisted ones (conditional reads and
	// writes, Prefer: handling=strict, a correlation id).
	corsRequestHeaders = []string{"Authorization", "Content-Type", "Accept", "Prefer", "If-None-Match", "If-Match",
		"If-None-Exist", "If-Modified-Since", "X-Request-ID"}
	// Response headers scripts may read besides the safelisted ones: versions, created
	// resources, the request id for support, the reason of a 401 and when to retry a 429/503.
	corsExposedHeaders = []string{"ETag", "Location", "Content-Location", "Last-Modified", "X-Request-ID", "WWW-Authenticate", "Retry-After", "Allow"}
)

// corsPolicy decides by path which CORS rules apply and applies them with rs/cors.
type corsPolicy struct {
	api *cors.Cors
	// disconnect serves /connect/{provider}, whose DELETE is the bearer-protected API while its
	// GET starts the browser flow: only DELETE is allowed cross-origin.
	disconnect *cors.Cors
	paths      map[string]bool // exact paths besides /fhir/…
	connect    bool
}

// newCORS validates origins (nil, or a list holding "*", allows any origin) and returns the
// policy for the FHIR API, the exact paths and, if connect, the connect API.
func newCORS(origins, paths []string, connect bool) (*corsPolicy, error) {
	if err := checkOrigins(origins); err != nil {
		return nil, err
	}
	opts := cors.Options{
		AllowedOrigins: origins,
		AllowedMethods: corsMethods,
		AllowedHeaders: corsRequestHeaders,
		ExposedHeaders: corsExposedHeaders,
		// Browsers cap this at 2 h (Chromium) or 24 h; 10 min keeps a configuration change quick.
		MaxAge:           600,
		AllowCredentials: false,
	}
	p := &corsPolicy{api: cors.New(opts), paths: map[string]bool{}, connect: connect}
	opts.AllowedMethods = []string{http.MethodDelete}
	p.disconnect = cors.New(opts)
	for _, path := range paths {
		p.paths[path] = true
	}
	return p, nil
}

// checkOrigins accepts "*" and serialised origins (scheme://host[:port], RFC 6454 §6.1), which
// are what browsers send in Origin and compare exactly; a path, even "/", would never match.
func checkOrigins(origins []string) error {
	for _, o := range origins {
		if o == "*" {
			continue
		}
		u, err := url.Parse(o)
		if err != nil || u.Scheme == "" || u.Host == "" || u.User != nil || u.Path != "" || u.RawQuery != "" ||
			u.Fragment != "" || strings.ContainsAny(o, "*?#") {
			return fmt.Errorf("api: CORS origin %q must be \"*\" or scheme://host[:port] without a path", o)
		}
	}
	return nil
}

// rules returns the CORS rules for a request path, or nil if the path gets no CORS.
func (p *corsPolicy) rules(path string) *cors.Cors {
	switch {
	case strings.HasPrefix(path, "/fhir/"), path == "/fhir", p.paths[path]: // "/fhir": batch and transaction
		return p.api
	case !p.connect:
		return nil
	case path == "/connect/links", path == "/connect/status":
		return p.api
	}
	if rest, ok := strings.CutPrefix(path, "/connect/"); ok && rest != "" && !strings.Contains(rest, "/") {
		return p.disconnect
	}
	return nil
}

// handle is the gin middleware: it answers preflights of covered paths itself (whatever routes
// exist for OPTIONS, so never 405) and adds the CORS headers to their actual requests.
func (p *corsPolicy) handle(c *gin.Context) {
	rules := p.rules(c.Request.URL.Path)
	if rules == nil {
		c.Next()
		return
	}
	// HandlerFunc answers a preflight (OPTIONS with Access-Control-Request-Method) and only
	// adds headers to any other request.
	rules.HandlerFunc(c.Writer, c.Request)
	if c.Request.Method == http.MethodOptions && c.GetHeader("Access-Control-Request-Method") != "" {
		c.AbortWithStatus(http.StatusNoContent)
		return
	}
	c.Next()
}
