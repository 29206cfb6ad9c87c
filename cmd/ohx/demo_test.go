package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// syncBuffer is a bytes.Buffer safe for the demo's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// productionShell is a shell configured for a real deployment: the demo must ignore all of it
// (its own store, auth on, every kind, its simulators' URLs), or the counts below would differ.
func productionShell(k string) string {
	return map[string]string{
		"OHX_MONGODB_URI": "mongodb://db.prod.example:27017/?replicaSet=rs0", "OHX_AUTH": "off",
		"OHX_WITHINGS_KINDS": "weight", "OHX_WITHINGS_REDIRECT_URL": "https://fhir.prod.example/connect/withings/callback",
		"OHX_WITHINGS_CLIENT_ID": "prod-client", "OHX_BASE_URL": "https://fhir.prod.example/fhir", "OHX_MAX_COUNT": "5",
	}[k]
}

// startDemo runs `ohx demo` in process on a fresh directory until the test ends and returns its
// manifest and printed output once it is ready.
func startDemo(t *testing.T, days int) (demoManifest, *syncBuffer) {
	t.Helper()
	dir := t.TempDir()
	manifestPath := filepath.Join(dir, "demo.json")
	out, errOut := &syncBuffer{}, &syncBuffer{}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"demo", "-addr", "127.0.0.1:0", "-days", fmt.Sprint(days), "-seed", "3", "-push-every", "0",
			"-data-dir", filepath.Join(dir, "data"), "-manifest", manifestPath}, productionShell, nil, out, errOut)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("demo: %v", err)
		}
	})
	deadline := time.Now().Add(3 * time.Minute)
	for {
		if _, err := os.Stat(manifestPath); err == nil {
			break
		}
		select {
		case err := <-done:
			done <- err
			t.Fatalf("demo ended: %v\n%s\n%s", err, out.String(), errOut.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no manifest after 3 minutes:\n%s\n%s", out.String(), errOut.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	b, err := os.ReadFile(manifestPath)
	if err != nil {
		t.Fatal(err)
	}
	var m demoManifest
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if len(m.Patients) != 6 || len(m.Vendors) != 3 || m.ConnectLink == "" || m.Login.Password == "" {
		t.Fatalf("manifest: %s", b)
	}
	return m, out
}

// demoCount is the number of a patient's Observations of a LOINC code.
func demoCount(t *testing.T, m demoManifest, token, patient, loinc string) int {
	t.Helper()
	var bun struct{ Total int }
	getJSON(t, m.FHIRBase+"/Observation?_summary=count&code=http://loinc.org|"+loinc+"&patient="+patient, token, &bun)
	return bun.Total
}

// demoToken is a Backend Services token of the demo's client.
func demoToken(t *testing.T, m demoManifest) string {
	t.Helper()
	var tok, errOut bytes.Buffer
	if err := run(t.Context(), []string{"token", "-data-dir", m.DataDir, "-token-url", m.TokenURL}, func(string) string { return "" }, nil, &tok, &errOut); err != nil {
		t.Fatalf("token: %v %s", err, errOut.String())
	}
	return strings.TrimSpace(tok.String())
}

// TestDemo runs `ohx demo` in process: the simulators' accounts are connected through the real
// connect flow, the backfill reaches what each simulator served, the guided start names the
// patients and the commands, and a push brings a new weigh-in for every Withings account.
func TestDemo(t *testing.T) {
	m, out := startDemo(t, 14)
	providers := map[string]int{}
	for _, p := range m.Patients {
		providers[p.Provider]++
		var served int
		for _, n := range p.Served {
			served += n
		}
		if p.Provider != "" && (served == 0 || p.Observations != served) {
			t.Errorf("%s (%s): %d Observations stored, %d samples served", p.MRN, p.Provider, p.Observations, served)
		}
		if p.Provider == "" && p.Observations != 0 {
			t.Errorf("%s is not connected but has %d Observations", p.MRN, p.Observations)
		}
	}
	if providers["withings"] != 2 || providers["googlehealth"] != 2 || providers["fitbit"] != 1 || providers[""] != 1 {
		t.Errorf("connected accounts per provider: %v", providers)
	}
	guide := out.String()
	for _, want := range []string{"TOKEN=$(", " token -data-dir ", m.FHIRBase + "/Observation?patient=" + m.Patients[0].ID, m.ConnectLink,
		"curl -s -X POST " + m.PushURL, "username demo, password " + m.Login.Password, m.Patients[5].MRN,
		strings.TrimSuffix(m.FHIRBase, "/fhir") + "/app/ and sign in"} {
		if !strings.Contains(guide, want) {
			t.Errorf("the guided start lacks %q:\n%s", want, guide)
		}
	}

	// A push: one notification per connected account, and every Withings account's new
	// weigh-in is searchable within seconds.
	res, err := http.Post(m.PushURL, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	var pushed struct{ Notifications int }
	json.NewDecoder(res.Body).Decode(&pushed)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || pushed.Notifications < 5 {
		t.Fatalf("push: %d, %d notifications", res.StatusCode, pushed.Notifications)
	}
	tok := demoToken(t, m)
	for _, p := range m.Patients {
		if p.Provider != "withings" {
			continue
		}
		want := p.Served["weight"] + 1
		var got int
		for end := time.Now().Add(20 * time.Second); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
			if got = demoCount(t, m, tok, p.ID, "29463-7"); got == want {
				break
			}
		}
		if got != want {
			t.Errorf("%s: %d weights after the push, want %d", p.MRN, got, want)
		}
	}
}

// TestDemoDataDir: the demo starts afresh in a directory it made, and refuses one it did not.
func TestDemoDataDir(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "ohx.db"), []byte("someone's data"), 0o600)
	if _, _, err := demoDataDir(dir); err == nil || !strings.Contains(err.Error(), "did not create") {
		t.Errorf("a directory with other files: %v", err)
	}
	fresh := filepath.Join(t.TempDir(), "demo")
	got, _, err := demoDataDir(fresh)
	if err != nil || got != fresh {
		t.Fatalf("new directory: %q %v", got, err)
	}
	os.WriteFile(filepath.Join(fresh, "ohx.db"), []byte("old demo"), 0o600)
	if _, _, err := demoDataDir(fresh); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(fresh, "ohx.db")); !os.IsNotExist(err) {
		t.Errorf("an earlier demo's store survived: %v", err)
	}
	tmp, cleanup, err := demoDataDir("")
	if err != nil {
		t.Fatal(err)
	}
	cleanup()
	if _, err := os.Stat(tmp); !os.IsNotExist(err) {
		t.Errorf("the temporary directory survived: %v", err)
	}
}

// TestHealth: `ohx health` succeeds against a serving ohx and fails, naming the URL, otherwise.
func TestHealth(t *testing.T) {
	origin, env := authServer(t)
	var out, errOut bytes.Buffer
	if err := run(t.Context(), []string{"health"}, func(k string) string { return env[k] }, nil, &out, &errOut); err != nil || out.String() != "ok\n" {
		t.Errorf("health of %s: %v %q", origin, err, out.String())
	}
	err := run(t.Context(), []string{"health", "-url", origin + "/nope"}, func(string) string { return "" }, nil, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "/nope answered 404") {
		t.Errorf("a 404: %v", err)
	}
}

// TestBrowserDemoConnect: in headless Chromium, the printed connect link leads to the simulated
// Withings consent page, choosing the account and Allow lands on ohx's callback page, and the
// account's history is then stored for the patient.
func TestBrowserDemoConnect(t *testing.T) {
	requireChromium(t)
	m, _ := startDemo(t, 7)
	me := m.Patients[len(m.Patients)-1]
	ctx, con := newBrowser(t)
	account := chromedp.CSS(`input[name="account"][value="` + me.Account + `"]`)
	if err := chromedp.Do(ctx, chromedp.Navigate(m.ConnectLink), chromedp.WaitVisible(account)); err != nil {
		t.Fatalf("the consent page: %v\nconsole:\n%s", err, con)
	}
	loc, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil || !strings.HasPrefix(loc, m.Vendors["withings"]) {
		t.Fatalf("the link led to %s (%v), not the simulated Withings", loc, err)
	}
	callback := strings.TrimSuffix(m.FHIRBase, "/fhir") + "/connect/withings/callback"
	if err := chromedp.Do(ctx, chromedp.Click(account), chromedp.Click(chromedp.CSS(`button[value="allow"]`))); err != nil {
		t.Fatalf("Allow: %v\nconsole:\n%s", err, con)
	}
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end) && !strings.HasPrefix(loc, callback); time.Sleep(100 * time.Millisecond) {
		loc, _ = chromedp.Run(ctx, chromedp.Location())
	}
	page, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`body`)))
	if !strings.HasPrefix(loc, callback) {
		t.Fatalf("after Allow the browser is at %s:\n%s\nconsole:\n%s", loc, page, con)
	}
	tok := demoToken(t, m)
	want := me.Served["weight"]
	var got int
	for end := time.Now().Add(30 * time.Second); time.Now().Before(end); time.Sleep(250 * time.Millisecond) {
		if got = demoCount(t, m, tok, me.ID, "29463-7"); got == want {
			break
		}
	}
	if want == 0 || got != want {
		t.Errorf("%s after connecting in the browser: %d weights, the simulator holds %d (page: %q)", me.MRN, got, want, page)
	}
}
