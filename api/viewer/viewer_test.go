package viewer

import (
	"net/http"
	"net/http/httptest"
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
		{"/app/../go.mod", "GET", 404, ""},
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
