package viewer_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/openhealthexchange/ohx/api"
	"github.com/openhealthexchange/ohx/api/viewer"
	"github.com/openhealthexchange/ohx/fhir/search"
	"github.com/openhealthexchange/ohx/store/sqlite"
)

// TestMounted: api.Config.App serves the app under /app/ with its own policy and no CORS, and
// leaves every other route alone.
func TestMounted(t *testing.T) {
	st, err := sqlite.Open(t.Context(), t.TempDir(), sqlite.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	app, err := viewer.New("/app/")
	if err != nil {
		t.Fatal(err)
	}
	s, err := api.New(api.Config{BaseURL: "http://ohx.test/fhir", CursorKey: bytes.Repeat([]byte("k"), 32), App: app},
		st, search.DefaultRegistry(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		method, path string
		status       int
		ctype        string
	}{
		{"GET", "/app", http.StatusMovedPermanently, ""},
		{"GET", "/app/", http.StatusOK, "text/html; charset=utf-8"},
		{"GET", "/app/?code=abc&state=xyz", http.StatusOK, "text/html; charset=utf-8"},
		{"HEAD", "/app/app.js", http.StatusOK, "text/javascript; charset=utf-8"},
		{"GET", "/app/vendor/fhir-client.pure.min.js", http.StatusOK, "text/javascript; charset=utf-8"},
		{"GET", "/app/nope.js", http.StatusNotFound, ""},
		// Through the server's mux too, a path out of /app/ reaches no file.
		{"GET", "/app/%2e%2e/go.mod", http.StatusNotFound, ""},
		{"GET", "/app/vendor/%2e%2e/%2e%2e/go.mod", http.StatusNotFound, ""},
		{"POST", "/app/", http.StatusMethodNotAllowed, ""},
		{"GET", "/fhir/metadata", http.StatusOK, ""},
	} {
		t.Run(tt.method+tt.path, func(t *testing.T) {
			req := httptest.NewRequest(tt.method, tt.path, nil)
			req.Header.Set("Origin", "https://elsewhere.example")
			rec := httptest.NewRecorder()
			s.Handler().ServeHTTP(rec, req)
			if rec.Code != tt.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tt.status, rec.Body)
			}
			if tt.ctype != "" && rec.Header().Get("Content-Type") != tt.ctype {
				t.Errorf("Content-Type %q, want %q", rec.Header().Get("Content-Type"), tt.ctype)
			}
			if strings.HasPrefix(tt.path, "/app") {
				if tt.status != http.StatusMethodNotAllowed && rec.Header().Get("Content-Security-Policy") != viewer.CSP {
					t.Errorf("Content-Security-Policy %q, want the app's", rec.Header().Get("Content-Security-Policy"))
				}
				if v := rec.Header().Get("Access-Control-Allow-Origin"); v != "" {
					t.Errorf("the app got CORS: Access-Control-Allow-Origin %q", v)
				}
			}
		})
	}
}
