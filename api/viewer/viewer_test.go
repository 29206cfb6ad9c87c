package viewer

import (
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"
)

func TestHandler(t *testing.T) {
	h, err := New("/app/")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		path, method string
		status       int
		ctype        string
	}{
		{"/app/", "GET", 200, "text/html; charset=utf-8"},
		{"/app/index.html", "GET", 200, "text/html; charset=utf-8"},
		{"/app/app.js", "GET", 200, "text/javascript; charset=utf-8"},
		{"/app/style.css", "HEAD", 200, "text/css; charset=utf-8"},
		{"/app/vendor/fhir-client.pure.min.js", "GET", 200, "text/javascript; charset=utf-8"},
		{"/app/vendor/uPlot.esm.js", "GET", 200, "text/javascript; charset=utf-8"},
		{"/app/vendor/uPlot.min.css", "GET", 200, "text/css; charset=utf-8"},
		{"/app/vendor/uplot.LICENSE", "GET", 404, ""},
		{"/app/README.md", "GET", 404, ""},
		// Paths that try to leave the app's files: the handler serves only names of its embedded
		// files (a map lookup, no file system), so these 404 whether or not a mux cleaned them.
		{"/app/%2e%2e/go.mod", "GET", 404, ""},
		{"/app/%2E%2E/%2e%2e/go.mod", "GET", 404, ""},
		{"/app/vendor/../index.html", "GET", 404, ""},
		{"/app/vendor/%2e%2e/app.js", "GET", 404, ""},
		{"/app/./app.js", "GET", 404, ""},
		{"/app//app.js", "GET", 404, ""},
		{"/app/vendor%2fuPlot.esm.js", "GET", 200, "text/javascript; charset=utf-8"},
		{"/app/web/index.html", "GET", 404, ""},
		{"/app/viewer.go", "GET", 404, ""},
		{"/app/vendor/", "GET", 404, ""},
		{"/app", "GET", 301, ""},
		{"/app/", "POST", 405, ""},
	} {
		t.Run(tt.method+tt.path, func(t *testing.T) {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(tt.method, tt.path, nil))
			if rec.Code != tt.status {
				t.Fatalf("status %d, want %d", rec.Code, tt.status)
			}
			if got := rec.Header().Get("Content-Security-Policy"); got != CSP {
				t.Errorf("CSP %q, want %q", got, CSP)
			}
			if tt.ctype != "" {
				if got := rec.Header().Get("Content-Type"); got != tt.ctype {
					t.Errorf("Content-Type %q, want %q", got, tt.ctype)
				}
				if rec.Header().Get("ETag") == "" || rec.Header().Get("Cache-Control") == "" {
					t.Errorf("no ETag or Cache-Control: %v", rec.Header())
				}
			}
			if tt.status == 301 && rec.Header().Get("Location") != "/app/" {
				t.Errorf("Location %q, want /app/", rec.Header().Get("Location"))
			}
		})
	}
}

func TestHandlerConditional(t *testing.T) {
	h, err := New("/app/")
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/app/app.js", nil))
	etag := rec.Header().Get("ETag")
	req := httptest.NewRequest("GET", "/app/app.js", nil)
	req.Header.Set("If-None-Match", `"other", `+etag)
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusNotModified || rec.Body.Len() != 0 {
		t.Errorf("If-None-Match: status %d with %d bytes, want 304 and none", rec.Code, rec.Body.Len())
	}
}

// TestCSPStrict guards the policy's promises: no inline or eval'd script, fetches to us only.
func TestCSPStrict(t *testing.T) {
	for _, want := range []string{"script-src 'self';", "connect-src 'self';", "default-src 'none';", "frame-ancestors 'none'"} {
		if !strings.Contains(CSP, want) {
			t.Errorf("CSP %q lacks %q", CSP, want)
		}
	}
	if strings.Contains(CSP, "unsafe") {
		t.Errorf("CSP %q allows unsafe sources", CSP)
	}
	if _, err := New("app"); err == nil {
		t.Error(`New("app") succeeded, want an error`)
	}
}

// TestScopesMatchApp: every scope web/app.js asks for (SCOPE, and launch, which it asks for in an
// EHR launch) is one the client is registered with, so the two cannot drift apart; and none is
// offline_access (a public browser client gets no long-lived refresh token, RFC 9700 §2.2.2).
func TestScopesMatchApp(t *testing.T) {
	js, err := fs.ReadFile(web, "web/app.js")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^const SCOPE = '([^']*)';`).FindSubmatch(js)
	if m == nil {
		t.Fatal("web/app.js has no `const SCOPE = '…';` line")
	}
	asked := append(strings.Fields(string(m[1])), "launch")
	if len(asked) < 2 {
		t.Fatalf("SCOPE %q is empty", m[1])
	}
	for _, s := range asked {
		if !slices.Contains(Scopes(), s) {
			t.Errorf("app.js asks for %q, which viewer.Scopes() %q lacks", s, Scopes())
		}
	}
	for _, s := range append(asked, Scopes()...) {
		if s == "offline_access" {
			t.Errorf("scope offline_access is asked for or registered")
		}
	}
	// Scopes returns a copy: a caller cannot change what the next caller gets.
	a := Scopes()
	a[0] = "changed"
	if Scopes()[0] == "changed" {
		t.Error("Scopes() returns the package's own slice")
	}
}

// TestAppNoHTMLSinks: the app builds its DOM from nodes and text, never from HTML strings (the
// CSP's require-trusted-types-for 'script' would make any of these throw).
func TestAppNoHTMLSinks(t *testing.T) {
	js, err := fs.ReadFile(web, "web/app.js")
	if err != nil {
		t.Fatal(err)
	}
	for _, sink := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "srcdoc", "createContextualFragment", "DOMParser", "eval("} {
		if strings.Contains(string(js), sink) {
			t.Errorf("web/app.js uses %s", sink)
		}
	}
	if !strings.Contains(CSP, "require-trusted-types-for 'script'") {
		t.Errorf("CSP %q does not require Trusted Types", CSP)
	}
}
