package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// The browser tests drive Debian's Chromium headless through the flows that only a real browser
// checks: the authorization pages' Content-Security-Policy on the redirect to the app, and CORS
// for a SMART app on another origin. They are skipped when Chromium is not installed, unless
// OHX_REQUIRE_BROWSER=1 (CI) makes that a failure.

const chromiumPath = "/usr/bin/chromium"

func requireChromium(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err == nil {
		return
	}
	if os.Getenv("OHX_REQUIRE_BROWSER") == "1" {
		t.Fatalf("OHX_REQUIRE_BROWSER=1 but %s is missing (apt-get install chromium)", chromiumPath)
	}
	t.Skipf("%s is missing: browser test skipped (apt-get install chromium; OHX_REQUIRE_BROWSER=1 makes this a failure)", chromiumPath)
}

// console collects what the browser logs (a CSP or CORS refusal is reported only there), for
// failure messages.
type console struct {
	mu   sync.Mutex
	msgs []string
}

func (c *console) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.Join(c.msgs, "\n")
}

// newBrowser starts a fresh headless Chromium (own profile, so no cookies are shared between
// flows) and returns a context for its first tab, which ends after 30 s at the latest.
func newBrowser(t *testing.T) (context.Context, *console) {
	t.Helper()
	return newBrowserFor(t, 30*time.Second)
}

// newBrowserFor is newBrowser with the tab ending after timeout.
func newBrowserFor(t *testing.T, timeout time.Duration) (context.Context, *console) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox, // root in CI
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(t.TempDir()),
		// Without these Chromium calls home, and the closed network refuses its connections.
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
	)
	bctx, cancelTab := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelTab(); cancelAlloc(); cancel() })
	con := &console{}
	msgs := chromedp.Console(bctx)
	go func() {
		for m, err := range msgs {
			if err != nil {
				return
			}
			con.mu.Lock()
			con.msgs = append(con.msgs, m.String())
			con.mu.Unlock()
		}
	}()
	return bctx, con
}

// appServer is a SMART app on its own origin: its redirect URI records the requests that
// reach it, and its start page is where scripts run cross-origin.
type appServer struct {
	url       string
	callbacks chan url.Values
}

func newAppServer(t *testing.T) *appServer {
	t.Helper()
	// Another loopback address makes the app another site, not just another origin (port);
	// Linux routes all of 127/8 to lo, other systems may not.
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		ln, err = net.Listen("tcp", "127.0.0.1:0")
	}
	if err != nil {
		t.Fatal(err)
	}
	a := &appServer{callbacks: make(chan url.Values, 4)}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /cb", func(w http.ResponseWriter, r *http.Request) {
		select {
		case a.callbacks <- r.URL.Query():
		default:
			t.Errorf("unexpected extra callback %s", r.URL.RawQuery)
		}
		fmt.Fprint(w, `<!doctype html><title>app</title><p id="callback">back in the app</p>`)
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `<!doctype html><title>app</title><p id="app">app</p>`)
	})
	srv := httptest.NewUnstartedServer(mux)
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	a.url = srv.URL
	return a
}

// TestBrowserStandaloneLaunch: a patient signs in and answers the consent page in Chromium, and
// the browser must land on the app's cross-origin redirect URI with the code (Allow) or
// access_denied (Deny) and the app's state. A form-action 'self' policy on the pages makes
// Chromium block that redirect, so the app would never get its answer.
func TestBrowserStandaloneLaunch(t *testing.T) {
	requireChromium(t)
	origin, env := authServer(t)
	getenv := func(k string) string { return env[k] }
	app := newAppServer(t)
	redirect := app.url + "/cb"
	var out, errOut bytes.Buffer
	if err := run(t.Context(), []string{"clients", "add", "-id", "app", "-type", "public", "-redirect-uri", redirect, "-name", "Weight app"}, getenv, nil, &out, &errOut); err != nil {
		t.Fatalf("clients add: %v %s", err, errOut.String())
	}
	const password = "correct horse battery"
	if err := run(t.Context(), []string{"users", "add", "-username", "ann", "-role", "patient", "-patient", "p1", "-password-stdin"}, getenv, strings.NewReader(password+"\n"), &out, &errOut); err != nil {
		t.Fatalf("users add: %v %s", err, errOut.String())
	}
	for _, tt := range []struct{ name, button string }{{"allow", "approve"}, {"deny", "deny"}} {
		t.Run(tt.name, func(t *testing.T) {
			ctx, con := newBrowser(t)
			verifier := "browser-verifier-with-enough-entropy-" + tt.name + "-0123456789"
			sum := sha256.Sum256([]byte(verifier))
			state := "state-" + tt.name
			q := url.Values{"response_type": {"code"}, "client_id": {"app"}, "redirect_uri": {redirect},
				"scope": {"launch/patient openid fhirUser patient/*.rs"}, "aud": {origin + "/fhir"}, "state": {state},
				"code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"}}
			if err := chromedp.Do(ctx,
				chromedp.Navigate(origin+"/auth/authorize?"+q.Encode()),
				chromedp.WaitVisible(chromedp.ID("username")),
				chromedp.SendKeys(chromedp.ID("username"), "ann"),
				chromedp.SendKeys(chromedp.ID("password"), password),
				chromedp.Click(chromedp.CSS(`button[type=submit]`)),
				chromedp.WaitVisible(chromedp.CSS(`button[value=`+tt.button+`]`)),
				chromedp.Click(chromedp.CSS(`button[value=`+tt.button+`]`)),
			); err != nil {
				t.Fatalf("sign-in and consent: %v\nbrowser console:\n%s", err, con)
			}
			var got url.Values
			select {
			case got = <-app.callbacks:
			case <-time.After(10 * time.Second):
				loc, _ := chromedp.Run(ctx, chromedp.Location())
				t.Fatalf("the browser never reached the app's redirect URI; it is at %s\nbrowser console:\n%s", loc, con)
			}
			wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			if err := chromedp.Do(wctx, chromedp.WaitVisible(chromedp.ID("callback"))); err != nil {
				t.Fatalf("app page: %v\nbrowser console:\n%s", err, con)
			}
			loc, err := chromedp.Run(ctx, chromedp.Location())
			if err != nil {
				t.Fatal(err)
			}
			final, err := url.Parse(loc)
			if err != nil || final.Scheme+"://"+final.Host+final.Path != redirect {
				t.Fatalf("browser is at %q, want the redirect URI %s", loc, redirect)
			}
			if final.Query().Encode() != got.Encode() {
				t.Errorf("browser location %q and the request the app got (%q) differ", final.RawQuery, got.Encode())
			}
			if got.Get("state") != state {
				t.Errorf("state = %q, want %q", got.Get("state"), state)
			}
			if tt.button == "deny" {
				if got.Get("error") != "access_denied" || got.Has("code") {
					t.Errorf("deny: got %v, want error=access_denied and no code", got)
				}
				return
			}
			if got.Get("code") == "" || got.Has("error") {
				t.Fatalf("allow: got %v, want a code", got)
			}
			res, err := http.PostForm(origin+"/auth/token", url.Values{"grant_type": {"authorization_code"}, "code": {got.Get("code")},
				"redirect_uri": {redirect}, "code_verifier": {verifier}, "client_id": {"app"}})
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			var tr struct {
				AccessToken string `json:"access_token"`
				Patient     string `json:"patient"`
			}
			if err := json.NewDecoder(res.Body).Decode(&tr); err != nil || res.StatusCode != http.StatusOK || tr.AccessToken == "" || tr.Patient != "p1" {
				t.Fatalf("token exchange: %d %+v (%v)", res.StatusCode, tr, err)
			}
			if st := getJSON(t, origin+"/fhir/Patient/p1", tr.AccessToken, nil); st != http.StatusOK {
				t.Errorf("reading the patient with the new token: %d, want 200", st)
			}
		})
	}
}

// fetchResult is what the page's script reports of one fetch.
type fetchResult struct {
	Status       int    `json:"status"`
	ResourceType string `json:"resourceType"`
	RequestID    string `json:"requestID"` // X-Request-ID: readable only if exposed
	Error        string `json:"error"`
}

// TestBrowserCrossOriginFetch: a page of an app on another origin reads the CapabilityStatement
// and searches with a bearer token (which needs a preflight) from script, as SMART apps do.
// Without CORS the browser refuses both ("Failed to fetch").
func TestBrowserCrossOriginFetch(t *testing.T) {
	requireChromium(t)
	origin, env := authServer(t)
	var out, errOut bytes.Buffer
	if err := run(t.Context(), []string{"token", "-token-url", origin + "/auth/token"}, func(k string) string { return env[k] }, nil, &out, &errOut); err != nil {
		t.Fatalf("ohx token: %v (%s)", err, errOut.String())
	}
	token := strings.TrimSpace(out.String())
	app := newAppServer(t)
	ctx, con := newBrowser(t)
	if err := chromedp.Do(ctx, chromedp.Navigate(app.url+"/"), chromedp.WaitVisible(chromedp.ID("app"))); err != nil {
		t.Fatalf("app page: %v\nbrowser console:\n%s", err, con)
	}
	script := fmt.Sprintf(`(async () => {
		const get = async (url, headers) => {
			try {
				const r = await fetch(url, {headers: headers || {}});
				const body = await r.json();
				return {status: r.status, resourceType: body.resourceType || "", requestID: r.headers.get("X-Request-ID") || "", error: ""};
			} catch (e) {
				return {status: 0, resourceType: "", requestID: "", error: String(e)};
			}
		};
		return {
			metadata: await get(%q),
			search: await get(%q, {Authorization: "Bearer " + %q, Prefer: "handling=lenient"}),
		};
	})()`, origin+"/fhir/metadata", origin+"/fhir/Patient?_count=1", token)
	got, err := chromedp.Run(ctx, chromedp.Evaluate[map[string]fetchResult](script, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("script: %v\nbrowser console:\n%s", err, con)
	}
	for name, want := range map[string]string{"metadata": "CapabilityStatement", "search": "Bundle"} {
		r := got[name]
		if r.Status != http.StatusOK || r.ResourceType != want || r.RequestID == "" {
			t.Errorf("%s from %s: %+v, want 200, a %s and a readable X-Request-ID\nbrowser console:\n%s", name, app.url, r, want, con)
		}
	}
}

// TestCORSConfigEndToEnd checks the wiring without a browser: OHX_CORS_ORIGINS narrows the
// origins, and the built-in authorization server's script endpoints (under the issuer's path)
// get CORS while its pages do not.
func TestCORSConfigEndToEnd(t *testing.T) {
	origin, _ := authServer(t, "OHX_CORS_ORIGINS", " https://app.example, http://localhost:3000 ")
	preflight := func(path, from, method string) http.Header {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodOptions, origin+path, nil)
		req.Header.Set("Origin", from)
		req.Header.Set("Access-Control-Request-Method", method)
		req.Header.Set("Access-Control-Request-Headers", "authorization,content-type")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.Header
	}
	for _, tt := range []struct{ path, from, method, want string }{
		{"/fhir/Patient", "https://app.example", "GET", "https://app.example"},
		{"/fhir/Patient", "http://localhost:3000", "POST", "http://localhost:3000"},
		{"/fhir/Patient", "https://other.example", "GET", ""},
		{"/auth/token", "https://app.example", "POST", "https://app.example"},
		{"/auth/revoke", "https://app.example", "POST", "https://app.example"},
		{"/auth/introspect", "https://app.example", "POST", "https://app.example"},
		{"/auth/jwks", "https://app.example", "GET", "https://app.example"},
		{"/auth/.well-known/openid-configuration", "https://app.example", "GET", "https://app.example"},
		{"/auth/authorize", "https://app.example", "POST", ""},
		{"/auth/login", "https://app.example", "POST", ""},
		{"/auth/consent", "https://app.example", "POST", ""},
	} {
		if got := preflight(tt.path, tt.from, tt.method).Get("Access-Control-Allow-Origin"); got != tt.want {
			t.Errorf("preflight %s %s from %s: Access-Control-Allow-Origin = %q, want %q", tt.method, tt.path, tt.from, got, tt.want)
		}
	}
}
