package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestPublishConfig: publishing is off by default; its settings are validated with errors naming
// what the user set.
func TestPublishConfig(t *testing.T) {
	parse := func(args []string, env map[string]string) (Config, error) {
		return parseConfig("ohx serve", args, func(k string) string { return env[k] }, io.Discard)
	}
	cfg, err := parse(nil, nil)
	if err != nil || cfg.PublishURL != "" {
		t.Fatalf("default: %q %v", cfg.PublishURL, err)
	}
	cfg, err = parse(nil, map[string]string{"OHX_PUBLISH_URL": "https://ehr.test/fhir"})
	if err != nil || cfg.PublishFHIRVersion != "R4" {
		t.Errorf("default version: got %q, %v, want R4", cfg.PublishFHIRVersion, err)
	}
	cfg, err = parse(nil, map[string]string{"OHX_PUBLISH_URL": "https://ehr.test/fhir", "OHX_PUBLISH_FHIR_VERSION": "r5",
		"OHX_PUBLISH_CLIENT_ID": "ohx", "OHX_PUBLISH_TOKEN_URL": "https://ehr.test/token", "OHX_PUBLISH_KEY_FILE": "/k.pem"})
	if err != nil || cfg.PublishFHIRVersion != "R5" {
		t.Errorf("R5 with a key: got %q, %v", cfg.PublishFHIRVersion, err)
	}
	// Without a token URL, the EHR's SMART configuration names it (publish.Auth.FHIRBase).
	if _, err := parse(nil, map[string]string{"OHX_PUBLISH_URL": "https://ehr.test/fhir", "OHX_PUBLISH_CLIENT_ID": "x", "OHX_PUBLISH_CLIENT_SECRET": "s"}); err != nil {
		t.Errorf("a client without a token URL: %v, want it accepted (discovered)", err)
	}
	for _, c := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{nil, map[string]string{"OHX_PUBLISH_CLIENT_ID": "x"}, "OHX_PUBLISH_CLIENT_ID is set but OHX_PUBLISH_URL"},
		{nil, map[string]string{"OHX_PUBLISH_URL": "http://ehr.test/fhir"}, "OHX_PUBLISH_URL"},
		{[]string{"-publish-url", "ehr.test"}, nil, "-publish-url"},
		{nil, map[string]string{"OHX_PUBLISH_URL": "https://ehr.test/fhir", "OHX_PUBLISH_FHIR_VERSION": "STU3"}, "OHX_PUBLISH_FHIR_VERSION"},
		{nil, map[string]string{"OHX_PUBLISH_URL": "https://ehr.test/fhir", "OHX_PUBLISH_TOKEN_URL": "https://ehr.test/token"}, "OHX_PUBLISH_TOKEN_URL needs OHX_PUBLISH_CLIENT_ID"},
		{nil, map[string]string{"OHX_PUBLISH_URL": "https://ehr.test/fhir", "OHX_PUBLISH_CLIENT_ID": "x", "OHX_PUBLISH_TOKEN_URL": "https://ehr.test/token"}, "exactly one of OHX_PUBLISH_CLIENT_SECRET and OHX_PUBLISH_KEY_FILE"},
		{nil, map[string]string{"OHX_PUBLISH_URL": "https://ehr.test/fhir", "OHX_PUBLISH_CLIENT_ID": "x", "OHX_PUBLISH_TOKEN_URL": "https://ehr.test/token",
			"OHX_PUBLISH_CLIENT_SECRET": "s", "OHX_PUBLISH_KEY_FILE": "/k.pem"}, "exactly one of"},
		{nil, map[string]string{"OHX_PUBLISH_URL": "https://ehr.test/fhir", "OHX_PUBLISH_CLIENT_ID": "x", "OHX_PUBLISH_TOKEN_URL": "https://ehr.test/token",
			"OHX_PUBLISH_CLIENT_SECRET": "s", "OHX_PUBLISH_KEY_ID": "k1"}, "OHX_PUBLISH_KEY_ID needs OHX_PUBLISH_KEY_FILE"},
	} {
		if _, err := parse(c.args, c.env); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v %v: got %v, want an error containing %q", c.args, c.env, err, c.want)
		}
	}
}

// fakeEHRServer accepts transactions from clients holding the token its token endpoint issued.
type fakeEHRServer struct {
	srv     *httptest.Server
	mu      sync.Mutex
	bundles []map[string]any
	tokens  int
	refused int
}

func newFakeEHRServer(t *testing.T) *fakeEHRServer {
	f := &fakeEHRServer{}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		switch r.URL.Path {
		case "/token":
			r.ParseForm()
			if id, secret, _ := r.BasicAuth(); id != "ohx" || secret != "pub-secret" || r.PostForm.Get("grant_type") != "client_credentials" {
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			f.tokens++
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"access_token":"ehr-token","token_type":"bearer","expires_in":3600}`))
		case "/fhir":
			if r.Header.Get("Authorization") != "Bearer ehr-token" {
				f.refused++
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			var b map[string]any
			if err := json.NewDecoder(r.Body).Decode(&b); err != nil {
				w.WriteHeader(http.StatusBadRequest)
				return
			}
			f.bundles = append(f.bundles, b)
			w.Header().Set("Content-Type", "application/fhir+json")
			w.Write([]byte(`{"resourceType":"Bundle","type":"transaction-response"}`))
		default:
			t.Errorf("fake EHR: %s %s", r.Method, r.URL.Path)
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	t.Cleanup(f.srv.Close)
	return f
}

// TestPublishEndToEnd: `ohx serve` with Withings and OHX_PUBLISH_URL: a patient connects, the
// pipeline syncs, and the EHR receives R4 transaction Bundles of conditional updates, the patient
// matched by MRN, through a client credentials token.
func TestPublishEndToEnd(t *testing.T) {
	fake := fakeWithings(t)
	ehr := newFakeEHRServer(t)
	origin, env := authServer(t,
		"OHX_WITHINGS_CLIENT_ID", "cid", "OHX_WITHINGS_CLIENT_SECRET", "csecret",
		"OHX_WITHINGS_API_URL", fake.URL(), "OHX_WITHINGS_AUTH_URL", fake.URL()+"/oauth2_user/authorize2", "OHX_BACKFILL_DAYS", "3650",
		"OHX_PUBLISH_URL", ehr.srv.URL+"/fhir", "OHX_PUBLISH_PATIENT_SYSTEM", "urn:mrn",
		"OHX_PUBLISH_CLIENT_ID", "ohx", "OHX_PUBLISH_CLIENT_SECRET", "pub-secret", "OHX_PUBLISH_TOKEN_URL", ehr.srv.URL+"/token")
	var out strings.Builder
	if err := run(t.Context(), []string{"token", "-token-url", origin + "/auth/token"}, func(k string) string { return env[k] }, nil, &out, io.Discard); err != nil {
		t.Fatalf("ohx token: %v", err)
	}
	token := strings.TrimSpace(out.String())
	res, link := postJSON(t, origin+"/connect/links", token, map[string]string{"patient": "p1", "provider": "withings"})
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("create link: %d %v", res.StatusCode, link)
	}
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	r, err := browser.Get(link["url"].(string))
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	consent, _ := url.Parse(r.Header.Get("Location"))
	r, err = browser.Get(origin + "/connect/withings/callback?code=abc&state=" + url.QueryEscape(consent.Query().Get("state")))
	if err != nil || r.StatusCode != http.StatusOK {
		t.Fatalf("callback: %v %v", r, err)
	}
	r.Body.Close()

	deadline := time.Now().Add(30 * time.Second)
	var obs, dev int
	for time.Now().Before(deadline) {
		obs, dev = 0, 0
		ehr.mu.Lock()
		bundles := append([]map[string]any(nil), ehr.bundles...)
		ehr.mu.Unlock()
		for _, b := range bundles {
			es, _ := b["entry"].([]any)
			for _, e := range es {
				en := e.(map[string]any)
				res := en["resource"].(map[string]any)
				req := en["request"].(map[string]any)
				switch res["resourceType"] {
				case "Observation":
					obs++
					subj, _ := res["subject"].(map[string]any)
					if subj["reference"] != "Patient?identifier=urn:mrn|p1" || req["method"] != "PUT" || !strings.HasPrefix(req["url"].(string), "Observation?identifier=") {
						t.Fatalf("observation entry: %v %v", subj, req)
					}
				case "Device":
					dev++
				case "DeviceAssociation":
					t.Fatal("a DeviceAssociation was sent to an R4 EHR")
				}
			}
		}
		if obs > 2 && dev > 0 {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if obs <= 2 || dev == 0 {
		t.Fatalf("the EHR received %d Observations and %d Devices", obs, dev)
	}
	ehr.mu.Lock()
	defer ehr.mu.Unlock()
	if ehr.tokens != 1 || ehr.refused != 0 {
		t.Errorf("tokens issued %d (want 1), transactions refused %d", ehr.tokens, ehr.refused)
	}
	for _, b := range ehr.bundles {
		if b["type"] != "transaction" {
			t.Errorf("bundle type %v", b["type"])
		}
	}
}

// TestPublishJWKS: `ohx publish-jwks` prints the public key of OHX_PUBLISH_KEY_FILE as a JWKS
// with the kid and alg the client assertions carry, and never the private part.
func TestPublishJWKS(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	file := filepath.Join(t.TempDir(), "publish.pem")
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"OHX_PUBLISH_KEY_FILE": file, "OHX_PUBLISH_KEY_ID": "ohx-1"}
	var out strings.Builder
	if err := run(t.Context(), []string{"publish-jwks"}, func(k string) string { return env[k] }, nil, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	var jwks struct{ Keys []map[string]string }
	if err := json.Unmarshal([]byte(out.String()), &jwks); err != nil || len(jwks.Keys) != 1 {
		t.Fatalf("output %q: %v", out.String(), err)
	}
	k := jwks.Keys[0]
	if k["kty"] != "EC" || k["crv"] != "P-384" || k["alg"] != "ES384" || k["kid"] != "ohx-1" || k["x"] == "" || k["y"] == "" || k["d"] != "" {
		t.Errorf("JWK %v", k)
	}
	if err := run(t.Context(), []string{"publish-jwks"}, func(string) string { return "" }, nil, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "OHX_PUBLISH_KEY_FILE") {
		t.Errorf("without a key file: %v", err)
	}
}
