package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openhealthexchange/ohx/store/mongo/mongotest"
)

func TestMain(m *testing.M) {
	if os.Getenv(serveChildEnv) != "" {
		os.Exit(serveChild()) // the kill test's `ohx serve` process (killburst_test.go)
	}
	code := m.Run()
	mongotest.Stop()
	os.Exit(code)
}

// startServer runs `ohx serve` with the given environment on a free port and returns its base
// URL; the server is shut down gracefully when the test ends and must exit cleanly.
func startServer(t *testing.T, env map[string]string) (string, *syncWriter) {
	t.Helper()
	env["OHX_ADDR"] = "127.0.0.1:0"
	env["OHX_DATA_DIR"] = t.TempDir()
	env["OHX_BASE_URL"] = "http://ohx.test/fhir"
	if env["OHX_AUTH"] == "" {
		env["OHX_AUTH"] = "off"
	}
	cfg, err := parseConfig("ohx serve", nil, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	logs := &syncWriter{w: &bytes.Buffer{}}
	go func() { done <- serve(ctx, cfg, logs, ready) }()
	var addr string
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatalf("serve: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("server did not start")
	}
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve returned %v after shutdown", err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("server did not shut down")
		}
	})
	return "http://" + addr, logs
}

// syncWriter serialises log writes from the server's goroutines into a buffer the test reads.
type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func (s *syncWriter) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.String()
}

func TestServeStores(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  func(t *testing.T) map[string]string
	}{
		{"sqlite", func(t *testing.T) map[string]string { return map[string]string{} }},
		{"mongodb", func(t *testing.T) map[string]string {
			return map[string]string{"OHX_MONGODB_URI": mongotest.URI(t), "OHX_MONGODB_DATABASE": mongotest.DBName(t)}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base, logs := startServer(t, tc.env(t))
			res, err := http.Get(base + "/fhir/metadata")
			if err != nil {
				t.Fatal(err)
			}
			var cs struct {
				ResourceType string
				Rest         []struct{ Resource []struct{ Type string } }
			}
			json.NewDecoder(res.Body).Decode(&cs)
			res.Body.Close()
			if cs.ResourceType != "CapabilityStatement" || len(cs.Rest) != 1 || len(cs.Rest[0].Resource) != 4 {
				t.Fatalf("metadata: %+v", cs)
			}
			body := `{"resourceType":"Patient","identifier":[{"system":"urn:mrn","value":"7"}],"name":[{"family":"Sensitive-Name"}]}`
			res, err = http.Post(base+"/fhir/Patient", "application/fhir+json", strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode != 201 {
				t.Fatalf("create: %d", res.StatusCode)
			}
			res, err = http.Get(base + "/fhir/Patient?family=sensitive")
			if err != nil {
				t.Fatal(err)
			}
			var b struct{ Entry []json.RawMessage }
			json.NewDecoder(res.Body).Decode(&b)
			res.Body.Close()
			if len(b.Entry) != 1 {
				t.Errorf("search after create: %d entries", len(b.Entry))
			}
			for _, path := range []string{"/healthz", "/readyz"} {
				res, err := http.Get(base + path)
				if err != nil || res.StatusCode != 200 {
					t.Errorf("%s: %v %v", path, err, res)
				}
				res.Body.Close()
			}
			time.Sleep(50 * time.Millisecond)
			if strings.Contains(logs.String(), "Sensitive") || strings.Contains(logs.String(), "sensitive") {
				t.Errorf("logs contain PHI:\n%s", logs.String())
			}
			if !strings.Contains(logs.String(), `"store":"`+tc.name+`"`) {
				t.Errorf("logs do not show the %s store:\n%s", tc.name, logs.String())
			}
		})
	}
}

func TestConfig(t *testing.T) {
	env := map[string]string{"OHX_ADDR": ":9999", "OHX_DEFAULT_COUNT": "20"}
	cfg, err := parseConfig("ohx", []string{"-default-count", "30"}, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DefaultCount != 30 || cfg.BaseURL != "http://localhost:9999/fhir" {
		t.Errorf("flags must override env and the base URL default to the port: %+v", cfg)
	}
	for _, bad := range []map[string]string{
		{"OHX_DEFAULT_COUNT": "x"},
		{"OHX_BASE_URL": "not a url"},
		{"OHX_DEFAULT_COUNT": "2000"},
		{"OHX_REQUEST_TIMEOUT": "soon"},
		{"OHX_RESULT_CACHE": "maybe"},
		{"OHX_RESULT_CACHE_BYTES": "-1"},
		{"OHX_PPROF_ADDR": ":6060"},
		{"OHX_PPROF_ADDR": "0.0.0.0:6060"},
		{"OHX_PPROF_ADDR": "10.1.2.3:6060"},
	} {
		if _, err := parseConfig("ohx", nil, func(k string) string { return bad[k] }, io.Discard); err == nil {
			t.Errorf("%v: want an error", bad)
		}
	}
}

// TestResultCacheSettings: OHX_RESULT_CACHE=off and a zero budget turn the cache off; the
// budget's former name OHX_CACHE_BYTES is still read, and the new name wins.
func TestResultCacheSettings(t *testing.T) {
	for _, c := range []struct {
		env  map[string]string
		want int64
	}{
		{map[string]string{}, 64 << 20},
		{map[string]string{"OHX_RESULT_CACHE": "off"}, -1},
		{map[string]string{"OHX_RESULT_CACHE_BYTES": "0"}, -1},
		{map[string]string{"OHX_RESULT_CACHE_BYTES": "1000"}, 1000},
		{map[string]string{"OHX_CACHE_BYTES": "2000"}, 2000},
		{map[string]string{"OHX_CACHE_BYTES": "2000", "OHX_RESULT_CACHE_BYTES": "3000"}, 3000},
		{map[string]string{"OHX_RESULT_CACHE": "off", "OHX_RESULT_CACHE_BYTES": "3000"}, -1},
	} {
		cfg, err := parseConfig("ohx serve", nil, func(k string) string { return c.env[k] }, io.Discard)
		if err != nil {
			t.Fatalf("%v: %v", c.env, err)
		}
		if got := cacheBytes(cfg); got != c.want {
			t.Errorf("%v: api cache budget %d, want %d", c.env, got, c.want)
		}
	}
	if _, err := parseConfig("ohx serve", nil, func(k string) string { return map[string]string{"OHX_CACHE_BYTES": "-1"}[k] }, io.Discard); err == nil ||
		!strings.Contains(err.Error(), "OHX_CACHE_BYTES") {
		t.Errorf("a negative budget under the former name: %v, want an error naming OHX_CACHE_BYTES", err)
	}
	if cfg, err := parseConfig("ohx serve", []string{"-cache-bytes", "4000"}, func(string) string { return "" }, io.Discard); err != nil || cacheBytes(cfg) != 4000 {
		t.Errorf("the former flag -cache-bytes: %v", err)
	}
	cfg, err := parseConfig("ohx serve", nil, func(k string) string { return map[string]string{"OHX_PPROF_ADDR": "127.0.0.1:6060"}[k] }, io.Discard)
	if err != nil || cfg.PprofAddr != "127.0.0.1:6060" {
		t.Errorf("a loopback profile address: %v %q", err, cfg.PprofAddr)
	}
}

// TestHelpHidesSecrets: -h prints every flag, and the secrets the environment set for them
// nowhere.
func TestHelpHidesSecrets(t *testing.T) {
	env := map[string]string{
		"OHX_SECRET_KEY": "c2VjcmV0LWtleS1tYXRlcmlhbC0xMjM0NTY3ODkwMTIzNDU2", "OHX_MONGODB_URI": "mongodb://u:db-password-1@h/x",
		"OHX_WITHINGS_CLIENT_SECRET": "withings-secret-1", "OHX_GOOGLEHEALTH_CLIENT_SECRET": "google-secret-1",
		"OHX_GOOGLEHEALTH_WEBHOOK_SECRET": "Bearer hook-secret-1", "OHX_FITBIT_CLIENT_SECRET": "fitbit-secret-1",
		"OHX_FITBIT_VERIFICATION_CODE": "verify-secret-1", "OHX_WITHINGS_CLIENT_ID": "withings-id-1",
	}
	var out bytes.Buffer
	if _, err := parseConfig("ohx serve", []string{"-h"}, func(k string) string { return env[k] }, &out); err == nil {
		t.Fatal("-h: want flag.ErrHelp")
	}
	for k, v := range env {
		if k != "OHX_WITHINGS_CLIENT_ID" && strings.Contains(out.String(), strings.TrimPrefix(v, "Bearer ")) {
			t.Errorf("-h prints the value of %s", k)
		}
	}
	if !strings.Contains(out.String(), "-fitbit-client-secret") || !strings.Contains(out.String(), "withings-id-1") {
		t.Errorf("-h output misses the flags or the non-secret defaults:\n%s", out.String())
	}
	// The secret flags still set their values.
	cfg, err := parseConfig("ohx serve", []string{"-fitbit-client-secret", "from-flag"}, func(k string) string { return env[k] }, &out)
	if err != nil || cfg.FitbitClientSecret != "from-flag" || cfg.GoogleHealthClientSecret != "google-secret-1" {
		t.Errorf("secret flags: %v %q %q", err, cfg.FitbitClientSecret, cfg.GoogleHealthClientSecret)
	}
}

// TestHelpAndVersion: ohx help and -h list the commands, --version works, a command's -h shows
// its flags (a success), and a wrong flag or command is one line with a hint, not a usage dump.
func TestHelpAndVersion(t *testing.T) {
	getenv := func(string) string { return "" }
	for _, args := range [][]string{{"help"}, {"-h"}, {"--help"}} {
		var out, errOut bytes.Buffer
		if err := run(t.Context(), args, getenv, nil, &out, &errOut); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		for _, c := range commands {
			if !strings.Contains(out.String(), "  "+c.name+" ") {
				t.Errorf("%v does not list %s:\n%s", args, c.name, out.String())
			}
		}
	}
	var out, errOut bytes.Buffer
	if err := run(t.Context(), []string{"--version"}, getenv, nil, &out, &errOut); err != nil || strings.TrimSpace(out.String()) != "ohx "+version {
		t.Errorf("--version: %v %q", err, out.String())
	}
	for _, args := range [][]string{{"serve", "-h"}, {"clients", "add", "-h"}, {"clients", "-h"}, {"connections", "-h"}, {"googlehealth", "subscriber", "create", "-h"}} {
		errOut.Reset()
		if err := run(t.Context(), args, getenv, nil, &out, &errOut); !errors.Is(err, flag.ErrHelp) || errOut.Len() == 0 {
			t.Errorf("%v: %v, %d bytes of help; want flag.ErrHelp (exit 0) and the help", args, err, errOut.Len())
		}
	}
	errOut.Reset()
	err := run(t.Context(), []string{"serve", "-bogus"}, getenv, nil, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "-bogus") || !strings.Contains(err.Error(), "ohx serve -h") || errOut.Len() != 0 {
		t.Errorf("a wrong flag: %v, and %d bytes on stderr; want one error naming it and the hint", err, errOut.Len())
	}
	if err := run(t.Context(), []string{"frobnicate"}, getenv, nil, &out, &errOut); err == nil || !strings.Contains(err.Error(), "ohx help") {
		t.Errorf("an unknown command: %v", err)
	}
}

// TestConfigErrorsNameWhatWasSet: a bad setting is named as the user gave it (the flag, or the
// variable), with a readable reason; `ohx token` before the first start says what to do.
func TestConfigErrorsNameWhatWasSet(t *testing.T) {
	env := map[string]string{}
	getenv := func(k string) string { return env[k] }
	if _, err := parseConfig("ohx serve", []string{"-default-count", "0"}, getenv, io.Discard); err == nil || !strings.Contains(err.Error(), "-default-count is 0") {
		t.Errorf("a flag: %v, want it named", err)
	}
	env["OHX_DEFAULT_COUNT"] = "0"
	if _, err := parseConfig("ohx serve", nil, getenv, io.Discard); err == nil || !strings.Contains(err.Error(), "OHX_DEFAULT_COUNT is 0") {
		t.Errorf("a variable: %v, want it named", err)
	}
	env = map[string]string{"OHX_REQUEST_TIMEOUT": "soon", "OHX_MAX_COUNT": "many"}
	_, err := parseConfig("ohx serve", nil, getenv, io.Discard)
	if err == nil || !strings.Contains(err.Error(), `OHX_REQUEST_TIMEOUT="soon" is not a duration`) || !strings.Contains(err.Error(), `OHX_MAX_COUNT="many" is not a whole number`) {
		t.Errorf("unparsable values: %v", err)
	}
	env = map[string]string{"OHX_DATA_DIR": t.TempDir()}
	var out bytes.Buffer
	if err := run(t.Context(), []string{"token"}, getenv, nil, &out, &out); err == nil || !strings.Contains(err.Error(), "make run") {
		t.Errorf("ohx token before the first start: %v, want a hint to start the server once", err)
	}
}
