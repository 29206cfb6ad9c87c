package api_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/gin-gonic/gin"

	"github.com/openhealthexchange/ohx/api"
	"github.com/openhealthexchange/ohx/fhir/search"
	"github.com/openhealthexchange/ohx/store/sqlite"
)

// TestClientAddressNotForgeable: the client address the authorization server throttles by is the
// TCP peer unless the peer is a configured reverse proxy.
func TestClientAddressNotForgeable(t *testing.T) {
	st, err := sqlite.Open(t.Context(), t.TempDir(), sqlite.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	for _, tc := range []struct {
		proxies []string
		want    string
	}{
		{nil, "127.0.0.1"},
		{[]string{"10.0.0.0/8"}, "127.0.0.1"},
		{[]string{"127.0.0.1"}, "203.0.113.7"},
	} {
		srv := httptest.NewServer(nil)
		s, err := api.New(api.Config{BaseURL: srv.URL + "/fhir", CursorKey: bytes.Repeat([]byte("k"), 32), TrustedProxies: tc.proxies,
			AuthRoutes: func(r gin.IRouter) {
				r.GET("/auth/whoami", func(c *gin.Context) { c.String(http.StatusOK, c.ClientIP()) })
			}},
			st, search.DefaultRegistry(), nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		srv.Config.Handler = s.Handler()
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/auth/whoami", nil)
		req.Header.Set("X-Forwarded-For", "203.0.113.7")
		req.Header.Set("X-Real-IP", "203.0.113.8")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(res.Body)
		res.Body.Close()
		srv.Close()
		if string(got) != tc.want {
			t.Errorf("trusted proxies %v: client address %q, want %q", tc.proxies, got, tc.want)
		}
	}
	if _, err := api.New(api.Config{BaseURL: "http://x/fhir", CursorKey: bytes.Repeat([]byte("k"), 32), TrustedProxies: []string{"not-an-ip"}},
		st, search.DefaultRegistry(), nil, nil); err == nil {
		t.Error("a malformed trusted proxy was accepted")
	}
}
