package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/store/sqlite"
)

// authServer runs `ohx serve` with the built-in authorization server on a data dir that already
// holds two patients with an Observation each. The base URL is the real listening address, so
// that token audiences and endpoints are the ones clients use.
func authServer(t *testing.T, extra ...string) (origin string, env map[string]string) {
	t.Helper()
	return authServerAt(t, time.Time{}, extra...)
}

// authServerAt is authServer with the sync pipeline's clock shifted to at (zero: the real
// clock), the time of the recorded vendor payloads a test serves; the clock keeps moving.
func authServerAt(t *testing.T, at time.Time, extra ...string) (origin string, env map[string]string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	dir := t.TempDir()
	st, err := sqlite.Open(t.Context(), dir, sqlite.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"p1", "p2"} {
		v := fhir.Decimal("71.0")
		if _, err := st.Upsert(t.Context(), []fhir.Resource{
			&fhir.Patient{Base: fhir.Base{ResourceType: "Patient", ID: p}, Identifier: []fhir.Identifier{{System: "urn:mrn", Value: p}},
				Name: []fhir.HumanName{{Family: "Smith", Given: []string{"Ann-" + p}}}},
			&fhir.Observation{Base: fhir.Base{ResourceType: "Observation", ID: "w-" + p}, Identifier: []fhir.Identifier{{System: "urn:obs", Value: p}},
				Status: "final", Code: fhir.CodeableConcept{Coding: []fhir.Coding{{System: "http://loinc.org", Code: "29463-7"}}},
				Subject: &fhir.Reference{Reference: "Patient/" + p}, EffectiveDateTime: "2026-01-01T08:00:00Z",
				Value: fhir.Value{ValueQuantity: &fhir.Quantity{Value: &v, Unit: "kg", System: "http://unitsofmeasure.org", Code: "kg"}}},
		}); err != nil {
			t.Fatal(err)
		}
	}
	st.Close()
	env = map[string]string{"OHX_ADDR": addr, "OHX_DATA_DIR": dir, "OHX_BASE_URL": "http://" + addr + "/fhir", "OHX_LOG_LEVEL": "error"}
	for i := 0; i+1 < len(extra); i += 2 {
		env[extra[i]] = extra[i+1]
	}
	cfg, err := parseConfig("ohx serve", nil, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !at.IsZero() {
		shift := time.Until(at)
		cfg.pipelineClock = func() time.Time { return time.Now().Add(shift) }
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- serve(ctx, cfg, logSink(t), ready) }()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("serve: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("server did not start")
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return "http://" + addr, env
}

func getJSON(t *testing.T, u, token string, out any) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if out != nil {
		json.NewDecoder(res.Body).Decode(out)
	}
	return res.StatusCode
}

type bundle struct {
	Entry []struct {
		Resource struct{ ResourceType, ID string }
	}
}

// of returns the ids of the entries of a resource type, "Type/id": a searchset's OperationOutcome
// entries (search.mode outcome, a read-through warning) are not matches.
func (b bundle) of(typ string) []string {
	var out []string
	for _, e := range b.Entry {
		if e.Resource.ResourceType == typ {
			out = append(out, typ+"/"+e.Resource.ID)
		}
	}
	return out
}

func (b bundle) ids() []string {
	var out []string
	for _, e := range b.Entry {
		out = append(out, e.Resource.ResourceType+"/"+e.Resource.ID)
	}
	return out
}

// TestBackendServicesEndToEnd: signed client assertion → token endpoint → FHIR search, all over
// HTTP against the running server, with the demo client `make run` creates.
func TestBackendServicesEndToEnd(t *testing.T) {
	origin, env := authServer(t)
	getenv := func(k string) string { return env[k] }
	if st := getJSON(t, origin+"/fhir/Patient", "", nil); st != http.StatusUnauthorized {
		t.Fatalf("search without a token: %d, want 401", st)
	}
	var conf map[string]any
	if st := getJSON(t, origin+"/fhir/.well-known/smart-configuration", "", &conf); st != 200 || conf["token_endpoint"] != origin+"/auth/token" {
		t.Fatalf("smart-configuration: %d %v", st, conf)
	}
	var out, errOut bytes.Buffer
	if err := run(t.Context(), []string{"token", "-token-url", origin + "/auth/token"}, getenv, nil, &out, &errOut); err != nil {
		t.Fatalf("ohx token: %v (%s)", err, errOut.String())
	}
	token := strings.TrimSpace(out.String())
	var b bundle
	if st := getJSON(t, origin+"/fhir/Observation?code=http://loinc.org|29463-7", token, &b); st != 200 || len(b.Entry) != 2 {
		t.Errorf("system search: %d %v", st, b.ids())
	}
	var cs struct {
		Rest []struct {
			Security struct {
				Extension []struct {
					URL       string
					Extension []struct{ URL, ValueURI string }
				}
			}
		}
	}
	getJSON(t, origin+"/fhir/metadata", "", &cs)
	if len(cs.Rest) == 0 || len(cs.Rest[0].Security.Extension) == 0 || cs.Rest[0].Security.Extension[0].Extension[1].ValueURI != origin+"/auth/token" {
		t.Errorf("CapabilityStatement oauth-uris: %+v", cs)
	}
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// launchClient is a browser-like client of the built-in authorization server: it keeps cookies
// across authorization requests (a reused sign-in) and does not follow redirects.
type launchClient struct {
	t        *testing.T
	origin   string
	redirect string
	c        *http.Client
}

func newLaunchClient(t *testing.T, origin, redirect string) *launchClient {
	jar, _ := cookiejar.New(nil)
	return &launchClient{t: t, origin: origin, redirect: redirect,
		c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (l *launchClient) do(method, path string, form url.Values) (*http.Response, string) {
	l.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, _ := http.NewRequest(method, l.origin+path, body)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	res, err := l.c.Do(req)
	if err != nil {
		l.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

func (l *launchClient) csrf(page string) string {
	l.t.Helper()
	m := csrfField.FindStringSubmatch(page)
	if m == nil {
		l.t.Fatalf("no CSRF field:\n%s", page)
	}
	return m[1]
}

type launchToken struct {
	AccessToken string `json:"access_token"`
	IDToken     string `json:"id_token"`
	Patient     string `json:"patient"`
	Scope       string `json:"scope"`
}

// launch runs a standalone launch for scope as the given user (signing in unless the browser
// already is) and exchanges the code; consent is the consent page it approved.
func (l *launchClient) launch(scope, user string) (tok launchToken, consent string) {
	t := l.t
	t.Helper()
	verifier := "e2e-verifier-with-enough-entropy-0123456789abcdef" + user
	sum := sha256.Sum256([]byte(verifier))
	q := url.Values{"response_type": {"code"}, "client_id": {"app"}, "redirect_uri": {l.redirect},
		"scope": {scope}, "state": {"s1"}, "aud": {l.origin + "/fhir"},
		"code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"}}
	res, _ := l.do(http.MethodGet, "/auth/authorize?"+q.Encode(), nil)
	if res.StatusCode != http.StatusSeeOther {
		t.Fatalf("authorize: %d", res.StatusCode)
	}
	if res.Header.Get("Location") == "/auth/login" {
		_, page := l.do(http.MethodGet, "/auth/login", nil)
		res, _ = l.do(http.MethodPost, "/auth/login", url.Values{"csrf": {l.csrf(page)}, "username": {user}, "password": {"correct horse battery"}})
		if res.StatusCode != http.StatusSeeOther {
			t.Fatalf("login: %d", res.StatusCode)
		}
	}
	_, consent = l.do(http.MethodGet, res.Header.Get("Location"), nil)
	res, _ = l.do(http.MethodPost, "/auth/consent", url.Values{"csrf": {l.csrf(consent)}, "action": {"approve"}})
	loc, err := url.Parse(res.Header.Get("Location"))
	if err != nil || !strings.HasPrefix(loc.String(), l.redirect) || loc.Query().Get("state") != "s1" || loc.Query().Get("code") == "" {
		t.Fatalf("approve: %d → %q", res.StatusCode, res.Header.Get("Location"))
	}
	r, err := http.PostForm(l.origin+"/auth/token", url.Values{"grant_type": {"authorization_code"}, "code": {loc.Query().Get("code")},
		"redirect_uri": {l.redirect}, "code_verifier": {verifier}, "client_id": {"app"}})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	json.NewDecoder(r.Body).Decode(&tok)
	if r.StatusCode != 200 || tok.AccessToken == "" {
		t.Fatalf("token: %d", r.StatusCode)
	}
	return tok, consent
}

// addLaunchApp registers the public client "app" with the CLI's default scopes and the patient
// user ann (Patient p1).
func addLaunchApp(t *testing.T, env map[string]string, redirect string) {
	t.Helper()
	getenv := func(k string) string { return env[k] }
	var out, errOut bytes.Buffer
	if err := run(t.Context(), []string{"clients", "add", "-id", "app", "-type", "public", "-redirect-uri", redirect, "-name", "Weight app"}, getenv, nil, &out, &errOut); err != nil {
		t.Fatalf("clients add: %v %s", err, errOut.String())
	}
	if err := run(t.Context(), []string{"users", "add", "-username", "ann", "-role", "patient", "-patient", "p1", "-password-stdin"}, getenv, strings.NewReader("correct horse battery\n"), &out, &errOut); err != nil {
		t.Fatalf("users add: %v %s", err, errOut.String())
	}
}

// TestStandaloneLaunchEndToEnd drives a patient's standalone launch over HTTP: authorize → login
// → consent → code → token → FHIR search confined to the patient.
func TestStandaloneLaunchEndToEnd(t *testing.T) {
	origin, env := authServer(t)
	const redirect = "https://app.example/cb"
	addLaunchApp(t, env, redirect)
	tr, consent := newLaunchClient(t, origin, redirect).launch("launch/patient openid fhirUser patient/*.rs offline_access", "ann")
	if !strings.Contains(consent, "Weight app") {
		t.Errorf("consent page does not name the app:\n%s", consent)
	}
	if tr.Patient != "p1" || tr.IDToken == "" {
		t.Fatalf("token: patient %q, id_token %v", tr.Patient, tr.IDToken != "")
	}
	var b bundle
	if st := getJSON(t, origin+"/fhir/Observation?patient=p1", tr.AccessToken, &b); st != 200 || len(b.Entry) != 1 || b.ids()[0] != "Observation/w-p1" {
		t.Errorf("own observations: %d %v", st, b.ids())
	}
	b = bundle{}
	if st := getJSON(t, origin+"/fhir/Observation?patient=p2", tr.AccessToken, &b); st != 200 || len(b.Entry) != 0 {
		t.Errorf("another patient's observations: %d %v", st, b.ids())
	}
	if st := getJSON(t, origin+"/fhir/Patient/p2", tr.AccessToken, nil); st != http.StatusNotFound {
		t.Errorf("reading another patient: %d, want 404", st)
	}
}

// TestPatientUserScopesEndToEnd is the audit's escape: a public client registered with the
// CLI's defaults (which include user/*.rs) and a patient user who asks for user/ scopes, in a
// browser that reuses its sign-in. Every token stays inside the patient's compartment.
func TestPatientUserScopesEndToEnd(t *testing.T) {
	origin, env := authServer(t)
	const redirect = "https://app.example/cb"
	addLaunchApp(t, env, redirect)
	l := newLaunchClient(t, origin, redirect)
	for _, scope := range []string{"user/*.rs", "patient/*.rs user/*.rs", "launch/patient user/*.read", "openid fhirUser user/*.rs"} {
		tr, consent := l.launch(scope, "ann") // the first signs in, the others reuse the sign-in
		if !strings.Contains(consent, "your") || strings.Contains(consent, "every patient") {
			t.Errorf("%s: the consent page does not say it is the user's own record:\n%s", scope, consent)
		}
		var b bundle
		if st := getJSON(t, origin+"/fhir/Patient", tr.AccessToken, &b); st != 200 || !slices.Equal(b.ids(), []string{"Patient/p1"}) {
			t.Errorf("%s: GET /fhir/Patient: %d %v", scope, st, b.ids())
		}
		b = bundle{}
		if st := getJSON(t, origin+"/fhir/Observation?patient=p2", tr.AccessToken, &b); st != 200 || len(b.Entry) != 0 {
			t.Errorf("%s: another patient's observations: %d %v", scope, st, b.ids())
		}
		if st := getJSON(t, origin+"/fhir/Observation/w-p2", tr.AccessToken, nil); st != http.StatusNotFound {
			t.Errorf("%s: reading another patient's observation: %d, want 404", scope, st)
		}
	}
}

// logSink shows the server's logs with -v when OHX_TEST_LOGS is set.
func logSink(t *testing.T) io.Writer {
	if os.Getenv("OHX_TEST_LOGS") != "" {
		return os.Stderr
	}
	return io.Discard
}
