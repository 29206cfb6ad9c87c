// Package viewer serves ohx's built-in SMART on FHIR app: a static single-page patient dashboard
// embedded in the binary. The app is plain ES modules with vendored libraries (web/vendor, see
// web/README.md), so the Go build needs no Node; it renders nothing on the server and reads health
// data only through the public FHIR API with the access token it gets from a SMART launch.
package viewer

import (
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"strconv"
	"strings"
)

//go:embed web/index.html web/app.js web/style.css web/vendor
var web embed.FS

// ClientID is the OAuth client id the app launches with (web/app.js); the command registers it
// as a public client whose redirect URI is the app's address.
const ClientID = "ohx-viewer"

// scopes are the scopes the app may ask for: a patient in context (launch/patient standalone,
// launch in an EHR launch), the signed-in user's identity, and read and search of what the user
// may see (SMART v2, https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html). No
// offline_access: a public browser client should not hold a long-lived refresh token
// (https://www.rfc-editor.org/rfc/rfc9700#section-2.2.2). TestScopesMatchApp keeps this in step
// with web/app.js.
var scopes = []string{"launch", "launch/patient", "openid", "fhirUser", "patient/*.rs", "user/*.rs"}

// Scopes returns the scopes the app's client is registered with; the slice is the caller's.
func Scopes() []string { return append([]string(nil), scopes...) }

// CSP is the app's Content-Security-Policy: script only from the app's own files (no inline
// script, no eval), fetches only to this origin (the FHIR API and the token endpoint), nothing may
// frame it, and DOM XSS sinks (innerHTML, script.src and the like) take only Trusted Types, which
// the app never makes: it and its vendored libraries build the DOM from nodes and text. The SMART
// launch leaves by navigation (location.href), which CSP does not restrict.
// https://www.w3.org/TR/CSP3/, https://www.w3.org/TR/trusted-types/
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'; require-trusted-types-for 'script'"

type asset struct {
	body        []byte
	contentType string
	etag        string
	cache       string
}

// Handler serves the app's files under a path prefix. It is safe for concurrent use.
type Handler struct {
	prefix string
	files  map[string]asset
}

// contentTypes are the only file types the app has; anything else is not served.
var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8", // https://www.rfc-editor.org/rfc/rfc9239
	".css":  "text/css; charset=utf-8",
	".txt":  "text/plain; charset=utf-8",
}

// New returns a Handler for requests whose path starts with prefix ("/app/"); prefix + "" is
// index.html. It returns an error if prefix does not start and end with "/".
func New(prefix string) (*Handler, error) {
	if !strings.HasPrefix(prefix, "/") || !strings.HasSuffix(prefix, "/") {
		return nil, fmt.Errorf("viewer: prefix %q must start and end with /", prefix)
	}
	h := &Handler{prefix: prefix, files: map[string]asset{}}
	err := fs.WalkDir(web, "web", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		ct, ok := contentTypes[path.Ext(p)]
		if !ok {
			return nil
		}
		b, err := web.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		name := strings.TrimPrefix(p, "web/")
		// The file names carry no content hash, so every file is revalidated (cheap: a strong
		// ETag answers 304); the pinned vendor files may be kept for an hour.
		cache := "no-cache"
		if strings.HasPrefix(name, "vendor/") {
			cache = "public, max-age=3600"
		}
		h.files[name] = asset{body: b, contentType: ct, cache: cache,
			etag: `"` + base64.RawURLEncoding.EncodeToString(sum[:12]) + `"`}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("viewer: %w", err)
	}
	if _, ok := h.files["index.html"]; !ok {
		return nil, errors.New("viewer: index.html is not embedded")
	}
	return h, nil
}

// ServeHTTP serves GET and HEAD of the app's files; index.html for the prefix itself (the SMART
// redirect URI, where the authorization code arrives in the query).
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", CSP)
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("X-Frame-Options", "DENY")
	// The redirect URI carries the authorization code in its query: never send it on as a
	// Referer (https://www.rfc-editor.org/rfc/rfc9700#section-4.2.4).
	hd.Set("Referrer-Policy", "no-referrer")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		hd.Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	name, ok := strings.CutPrefix(r.URL.Path, h.prefix)
	if !ok {
		if r.URL.Path+"/" == h.prefix {
			// Keep the query: an EHR launch arrives with launch and iss parameters.
			to := h.prefix
			if r.URL.RawQuery != "" {
				to += "?" + r.URL.RawQuery
			}
			http.Redirect(w, r, to, http.StatusMovedPermanently)
			return
		}
		http.NotFound(w, r)
		return
	}
	if name == "" {
		name = "index.html"
	}
	a, ok := h.files[name]
	if !ok {
		http.NotFound(w, r)
		return
	}
	hd.Set("Content-Type", a.contentType)
	hd.Set("Cache-Control", a.cache)
	hd.Set("ETag", a.etag)
	if match := r.Header.Get("If-None-Match"); match != "" && etagMatch(match, a.etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	hd.Set("Content-Length", strconv.Itoa(len(a.body)))
	if r.Method == http.MethodHead {
		return
	}
	w.Write(a.body)
}

// etagMatch reports whether an If-None-Match list names etag (weak comparison, RFC 9110 §13.1.2).
func etagMatch(header, etag string) bool {
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == "*" || t == etag {
			return true
		}
	}
	return false
}
