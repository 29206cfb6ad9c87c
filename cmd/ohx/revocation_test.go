package main

import (
	"bytes"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRevocationCacheOff: with OHX_REVOCATION_CACHE=0 a Backend Services token that worked is
// refused on the very next request once the client revokes it at /auth/revoke.
func TestRevocationCacheOff(t *testing.T) {
	origin, env := authServer(t, "OHX_REVOCATION_CACHE", "0")
	getenv := func(k string) string { return env[k] }
	var out, errOut bytes.Buffer
	if err := run(t.Context(), []string{"token", "-token-url", origin + "/auth/token"}, getenv, nil, &out, &errOut); err != nil {
		t.Fatalf("ohx token: %v (%s)", err, errOut.String())
	}
	token := strings.TrimSpace(out.String())
	for i := range 2 { // the second use is served from the verifier's caches
		if st := getJSON(t, origin+"/fhir/Patient", token, nil); st != http.StatusOK {
			t.Fatalf("use %d before revocation: %d, want 200", i+1, st)
		}
	}
	key, err := loadPrivateJWK(filepath.Join(env["OHX_DATA_DIR"], demoKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	assertion, err := clientAssertion(key, demoClientID, origin+"/auth/token")
	if err != nil {
		t.Fatal(err)
	}
	res, err := http.PostForm(origin+"/auth/revoke", url.Values{"token": {token},
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {assertion}})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("revoke: %d %s", res.StatusCode, b)
	}
	if st := getJSON(t, origin+"/fhir/Patient", token, nil); st != http.StatusUnauthorized {
		t.Errorf("the request right after revocation: %d, want 401", st)
	}
}

func TestRevocationCacheConfig(t *testing.T) {
	for _, tt := range []struct {
		name string
		env  map[string]string
		args []string
		want time.Duration
	}{
		{"default", nil, nil, 30 * time.Second},
		{"off", map[string]string{"OHX_REVOCATION_CACHE": "0"}, nil, 0},
		{"flag wins", map[string]string{"OHX_REVOCATION_CACHE": "0"}, []string{"-revocation-cache", "5s"}, 5 * time.Second},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := parseConfig("ohx", tt.args, func(k string) string { return tt.env[k] }, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.RevocationCache != tt.want {
				t.Errorf("RevocationCache = %v, want %v", cfg.RevocationCache, tt.want)
			}
		})
	}
	for _, bad := range []string{"-1s", "soon"} {
		if _, err := parseConfig("ohx", nil, func(k string) string { return map[string]string{"OHX_REVOCATION_CACHE": bad}[k] }, io.Discard); err == nil {
			t.Errorf("OHX_REVOCATION_CACHE=%s: want an error", bad)
		}
	}
}
