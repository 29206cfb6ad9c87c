package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/openhealthexchange/ohx/fhir"
)

// TestViewerBrowser drives the built-in SMART app (/app/, api/viewer) in headless Chromium
// against `ohx demo`: a practitioner signs in through the app's standalone launch, picks a demo
// patient on the authorization server's picker, allows, and sees the weight chart with exactly
// the Observations the API holds for the range; picks another patient in the app's own picker;
// opens an ECG drawn from its SampledData. A sign-in whose grant does not cover Observations gets
// 403s, and the app says so instead of breaking.
func TestViewerBrowser(t *testing.T) {
	requireChromium(t)
	m, _ := startDemo(t, 14)
	origin := strings.TrimSuffix(m.FHIRBase, "/fhir")
	env := func(k string) string {
		if k == "OHX_DATA_DIR" {
			return m.DataDir
		}
		return ""
	}
	// The patient to look at: one with weigh-ins and ECGs; another one to switch to.
	var target, other demoManifestEntry
	for _, p := range m.Patients {
		switch {
		case target.ID == "" && p.Provider != "" && p.Served[fhir.KindWeight] > 0 && p.Served[fhir.KindECG] > 0:
			target = p
		case other.ID == "" && p.Provider != "":
			other = p
		}
	}
	if target.ID == "" || other.ID == "" {
		t.Fatalf("no demo patient with weights and ECGs, or no second one: %+v", m.Patients)
	}
	const docPassword = "a practitioner passphrase"
	var out, errOut strings.Builder
	if err := run(t.Context(), []string{"users", "add", "-username", "doc", "-role", "practitioner", "-practitioner", "doc-1",
		"-name", "Dr Doc", "-password-stdin"}, env, strings.NewReader(docPassword+"\n"), &out, &errOut); err != nil {
		t.Fatalf("users add: %v %s", err, errOut.String())
	}
	tok := demoToken(t, m)

	t.Run("practitioner", func(t *testing.T) {
		ctx, con := newViewerBrowser(t)
		fail := failWithShot(t, ctx, con, "viewer-practitioner-failed")
		if err := doStep(ctx,
			chromedp.Navigate(origin+"/app/"),
			chromedp.WaitVisible(chromedp.ID("username")),
			chromedp.SendKeys(chromedp.ID("username"), "doc"),
			chromedp.SendKeys(chromedp.ID("password"), docPassword),
			chromedp.Click(chromedp.CSS(`button[type=submit]`)),
			chromedp.WaitVisible(chromedp.CSS(`input[name=patient][value="`+target.ID+`"]`)),
			chromedp.Click(chromedp.CSS(`input[name=patient][value="`+target.ID+`"]`)),
			chromedp.Click(chromedp.CSS(`form[method=post] button[type=submit]`)),
			chromedp.WaitVisible(chromedp.CSS(`button[value=approve]`)),
			chromedp.Click(chromedp.CSS(`button[value=approve]`)),
			chromedp.WaitVisible(chromedp.CSS(`h1[data-patient="`+target.ID+`"]`)),
			chromedp.WaitVisible(chromedp.CSS(`#chart-weight:not([data-state=loading])`)),
		); err != nil {
			fail("sign-in, pick and consent: %v", err)
		}
		// The app asks for the last 30 days (the default range); the demo holds 14.
		since := time.Now().Add(-30 * 24 * time.Hour).UTC().Format(time.RFC3339)
		var bun struct{ Total int }
		getJSON(t, m.FHIRBase+"/Observation?_summary=count&code=http://loinc.org|29463-7&patient="+target.ID+"&date=ge"+url.QueryEscape(since), tok, &bun)
		points, err := runStep(ctx, chromedp.AttributeValue(chromedp.CSS(`#chart-weight`), "data-points"))
		if err != nil {
			fail("weight chart: %v", err)
		}
		if n, _ := strconv.Atoi(points.Value); bun.Total == 0 || n != bun.Total {
			fail("weight chart shows %q points, the API holds %d weights since %s", points.Value, bun.Total, since)
		}
		if err := doStep(ctx, chromedp.WaitVisible(chromedp.CSS(`#chart-weight .plot canvas`)),
			chromedp.WaitVisible(chromedp.CSS(`#devices td[data-battery]`))); err != nil {
			fail("chart canvas or devices: %v", err)
		}
		// The chart's text alternative lists the same Observations.
		rows, err := runStep(ctx, chromedp.Evaluate[int](`document.querySelectorAll('#chart-weight table tbody tr').length`))
		if err != nil || rows != bun.Total {
			fail("the weight table has %d rows (%v), want %d", rows, err, bun.Total)
		}
		shot(t, ctx, "viewer-patient", false)
		// Another range re-reads the charts: 90 days hold the same two weeks of weigh-ins.
		if err := doStep(ctx, chromedp.Click(chromedp.CSS(`button[data-range="90"]`)),
			chromedp.WaitVisible(chromedp.CSS(`button[data-range="90"][aria-pressed=true]`)),
			chromedp.WaitVisible(chromedp.CSS(`#chart-weight[data-state=ready]`))); err != nil {
			fail("90 days: %v", err)
		}
		if p, err := runStep(ctx, chromedp.AttributeValue(chromedp.CSS(`#chart-weight`), "data-points")); err != nil || p.Value != points.Value {
			fail("90 days: %q points (%v), want %s", p.Value, err, points.Value)
		}

		// The app's own picker: practitioners may switch patients (user/*.rs).
		if err := doStep(ctx,
			chromedp.Click(chromedp.CSS(`#nav a[href="#/patients"]`)),
			chromedp.WaitVisible(chromedp.CSS(`#patient-list a[data-patient="`+other.ID+`"]`)),
			chromedp.Click(chromedp.CSS(`#patient-list a[data-patient="`+other.ID+`"]`)),
			chromedp.WaitVisible(chromedp.CSS(`h1[data-patient="`+other.ID+`"]`)),
		); err != nil {
			fail("the app's patient picker: %v", err)
		}

		// An ECG: the canvas draws every sample of the SampledData. The list is the page's last
		// section: until every section above it has loaded, the charts' rendering moves it, and a
		// click lands where the link was (chromedp clicks at coordinates).
		if err := doStep(ctx,
			chromedp.Navigate(origin+"/app/#/patient/"+target.ID),
			chromedp.WaitVisible(chromedp.CSS(`#ecgs a[data-ecg]`)),
			chromedp.WaitNotPresent(chromedp.CSS(`#view [aria-busy]`)),
			chromedp.Click(chromedp.CSS(`#ecgs a[data-ecg]`)),
			chromedp.WaitVisible(chromedp.ID("ecg-canvas")),
		); err != nil {
			fail("ECG: %v", err)
		}
		loc, _ := runStep(ctx, chromedp.Location())
		id := loc[strings.LastIndex(loc, "/")+1:]
		var obs fhir.Observation
		getJSON(t, m.FHIRBase+"/Observation/"+id, tok, &obs)
		want := 0
		for _, c := range obs.Component {
			if c.ValueSampledData != nil {
				want = len(strings.Fields(c.ValueSampledData.Data))
			}
		}
		samples, err := runStep(ctx, chromedp.AttributeValue(chromedp.ID("ecg-canvas"), "data-samples"))
		if n, _ := strconv.Atoi(samples.Value); err != nil || want == 0 || n != want {
			fail("ECG %s: canvas has %q samples (%v), the Observation %d", id, samples.Value, err, want)
		}
		shot(t, ctx, "viewer-ecg", false)
		// Chromium reports what the app's Content-Security-Policy blocked only on the console.
		if c := con.String(); strings.Contains(c, "Content Security Policy") {
			fail("the app's Content-Security-Policy blocked something")
		}
	})

	t.Run("ehr launch", func(t *testing.T) {
		// An EHR (a confidential client allowed to mint launches) opens the app for its
		// patient: /app/?launch=…&iss=…; the practitioner signs in and the app opens on that
		// patient, with no picker.
		out.Reset()
		if err := run(t.Context(), []string{"clients", "add", "-id", "ehr", "-type", "confidential", "-launch-minter",
			"-redirect-uri", "https://ehr.example/cb"}, env, nil, &out, &errOut); err != nil {
			t.Fatalf("clients add: %v %s", err, errOut.String())
		}
		_, secret, _ := strings.Cut(out.String(), "store it now): ")
		secret = strings.TrimSpace(secret)
		req, _ := http.NewRequest(http.MethodPost, origin+"/auth/launch",
			strings.NewReader(url.Values{"patient": {other.ID}, "app_client_id": {"ohx-viewer"}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth("ehr", secret)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var launch struct{ Launch string }
		json.NewDecoder(res.Body).Decode(&launch)
		res.Body.Close()
		if res.StatusCode != http.StatusOK || launch.Launch == "" {
			t.Fatalf("mint a launch: %d (client output %q)", res.StatusCode, out.String())
		}
		ctx, con := newViewerBrowser(t)
		fail := failWithShot(t, ctx, con, "viewer-ehr-launch-failed")
		// Through /app (no slash): the redirect to /app/ keeps the launch parameters.
		if err := doStep(ctx,
			chromedp.Navigate(origin+"/app?"+url.Values{"launch": {launch.Launch}, "iss": {m.FHIRBase}}.Encode()),
			chromedp.WaitVisible(chromedp.ID("username")),
			chromedp.SendKeys(chromedp.ID("username"), "doc"),
			chromedp.SendKeys(chromedp.ID("password"), docPassword),
			chromedp.Click(chromedp.CSS(`button[type=submit]`)),
			chromedp.WaitVisible(chromedp.CSS(`button[value=approve]`)),
			chromedp.Click(chromedp.CSS(`button[value=approve]`)),
			chromedp.WaitVisible(chromedp.CSS(`h1[data-patient="`+other.ID+`"]`)),
			chromedp.WaitVisible(chromedp.CSS(`#chart-weight:not([data-state=loading])`)),
		); err != nil {
			fail("EHR launch: %v", err)
		}
		// A practitioner sees the connected services too (read access to the Patient).
		if n, err := runStep(ctx, chromedp.Evaluate[int](`document.querySelectorAll('#view .error').length`)); err != nil || n != 0 {
			fail("%d error messages on the launched patient's page (%v)", n, err)
		}
		if err := doStep(ctx, chromedp.WaitVisible(chromedp.CSS(`#connections li[data-provider]`))); err != nil {
			fail("connected services of the launched patient: %v", err)
		}
	})

	t.Run("patient", func(t *testing.T) {
		// The demo's sign-in is the patient not connected yet: the app offers the connect flow,
		// and after it (and the backfill) the chart shows what the simulator served.
		me := m.Patients[len(m.Patients)-1]
		ctx, con := newViewerBrowser(t)
		fail := failWithShot(t, ctx, con, "viewer-patient-user-failed")
		account := chromedp.CSS(`input[name="account"][value="` + me.Account + `"]`)
		if err := doStep(ctx,
			chromedp.Navigate(origin+"/app/"),
			chromedp.WaitVisible(chromedp.ID("username")),
			chromedp.SendKeys(chromedp.ID("username"), m.Login.Username),
			chromedp.SendKeys(chromedp.ID("password"), m.Login.Password),
			chromedp.Click(chromedp.CSS(`button[type=submit]`)),
			chromedp.WaitVisible(chromedp.CSS(`button[value=approve]`)),
			chromedp.Click(chromedp.CSS(`button[value=approve]`)),
			chromedp.WaitVisible(chromedp.CSS(`h1[data-patient="`+me.ID+`"]`)),
			chromedp.WaitVisible(chromedp.CSS(`#chart-weight[data-state=empty]`)),
			chromedp.WaitVisible(chromedp.CSS(`#connections .empty`)),
		); err != nil {
			fail("patient sign-in: %v", err)
		}
		shot(t, ctx, "viewer-patient-empty", false)
		if err := doStep(ctx,
			chromedp.Click(chromedp.CSS(`button[data-connect=withings]`)),
			chromedp.WaitVisible(account),
			chromedp.Click(account),
			chromedp.Click(chromedp.CSS(`button[value="allow"]`)),
		); err != nil {
			fail("connect Withings from the app: %v", err)
		}
		callback := origin + "/connect/withings/callback"
		loc := ""
		for end := time.Now().Add(10 * time.Second); time.Now().Before(end) && !strings.HasPrefix(loc, callback); time.Sleep(100 * time.Millisecond) {
			loc, _ = runStep(ctx, chromedp.Location())
		}
		if !strings.HasPrefix(loc, callback) {
			fail("after Allow the browser is at %s", loc)
		}
		// Back in the app (same tab: fhirclient kept the session), once the backfill is stored.
		want, got := me.Served[fhir.KindWeight], ""
		for end := time.Now().Add(30 * time.Second); time.Now().Before(end) && got != strconv.Itoa(want); time.Sleep(time.Second) {
			// A navigation to the same URL with a fragment does not reload the page: reload.
			load := chromedp.Navigate(origin + "/app/#/patient/" + me.ID)
			if strings.HasPrefix(loc, origin+"/app/") {
				load = chromedp.Reload()
			}
			if err := doStep(ctx, load,
				chromedp.WaitVisible(chromedp.CSS(`#chart-weight:not([data-state=loading])`)),
				chromedp.WaitVisible(chromedp.CSS(`#connections li[data-provider=withings]`))); err != nil {
				fail("back in the app: %v", err)
			}
			r, _ := runStep(ctx, chromedp.AttributeValue(chromedp.CSS(`#chart-weight`), "data-points"))
			got = r.Value
			loc, _ = runStep(ctx, chromedp.Location())
		}
		if want == 0 || got != strconv.Itoa(want) {
			fail("after connecting, the weight chart shows %q points, the simulator served %d, the API holds %d", got, want, demoCount(t, m, tok, me.ID, "29463-7"))
		}
		shot(t, ctx, "viewer-patient-connected", false)
		// Another patient's page: the patient user's token reaches only their own record, so the
		// app shows the refusal (404: the API does not say whether another patient exists).
		if err := doStep(ctx,
			chromedp.Navigate(origin+"/app/#/patient/"+target.ID),
			chromedp.WaitVisible(chromedp.CSS(`#view .error[data-status="404"], #view .error[data-status="403"]`)),
		); err != nil {
			fail("another patient's page: %v", err)
		}
		if n, err := runStep(ctx, chromedp.Evaluate[int](`document.querySelectorAll('h1[data-patient="`+target.ID+`"], #chart-weight').length`)); err != nil || n != 0 {
			fail("another patient's page shows %d of their elements (%v)", n, err)
		}
	})

	t.Run("403", func(t *testing.T) {
		// The viewer's client may now be granted Patient reads only. The app asks for
		// patient/*.rs, which that does not cover, so the grant holds no resource scope: the
		// patient user signs in and consents, and every FHIR read answers 403.
		if err := run(t.Context(), []string{"clients", "add", "-id", "ohx-viewer", "-type", "public", "-redirect-uri", origin + "/app/",
			"-scope", "openid fhirUser launch/patient patient/Patient.rs"}, env, nil, &out, &errOut); err != nil {
			t.Fatalf("clients add: %v %s", err, errOut.String())
		}
		ctx, con := newViewerBrowser(t)
		fail := failWithShot(t, ctx, con, "viewer-403-failed")
		if err := doStep(ctx,
			chromedp.Navigate(origin+"/app/"),
			chromedp.WaitVisible(chromedp.ID("username")),
			chromedp.SendKeys(chromedp.ID("username"), m.Login.Username),
			chromedp.SendKeys(chromedp.ID("password"), m.Login.Password),
			chromedp.Click(chromedp.CSS(`button[type=submit]`)),
			chromedp.WaitVisible(chromedp.CSS(`button[value=approve]`)),
			chromedp.Click(chromedp.CSS(`button[value=approve]`)),
			chromedp.WaitVisible(chromedp.CSS(`#view .error[data-status="403"]`)),
		); err != nil {
			fail("403 sign-in: %v", err)
		}
		msg, err := runStep(ctx, chromedp.Text(chromedp.CSS(`#view .error`)))
		if err != nil || !strings.Contains(msg, "You do not have access to this patient") {
			fail("the 403 message is %q (%v)", msg, err)
		}
		// The rest of the app still works: signing out is offered.
		if err := doStep(ctx, chromedp.WaitVisible(chromedp.CSS(`#nav button`))); err != nil {
			fail("no sign-out button after the 403: %v", err)
		}
		shot(t, ctx, "viewer-403", false)
	})
}

// viewerStep bounds one group of browser steps. A step that never completes then fails on its
// own, within the flow's time, and leaves the tab alive for the failure's screenshot and page
// text.
const viewerStep = 60 * time.Second

// doStep runs steps in ctx's tab within viewerStep.
func doStep(ctx context.Context, steps ...chromedp.Action[chromedp.Void]) error {
	ctx, cancel := context.WithTimeout(ctx, viewerStep)
	defer cancel()
	return chromedp.Do(ctx, steps...)
}

// runStep runs a in ctx's tab within viewerStep and returns its result.
func runStep[T any](ctx context.Context, a chromedp.Action[T]) (T, error) {
	ctx, cancel := context.WithTimeout(ctx, viewerStep)
	defer cancel()
	return chromedp.Run(ctx, a)
}

// failWithShot returns a Fatalf for one browser flow that first saves a screenshot named name
// and appends where the tab is, the text of the app's view (which section still loads or shows
// an error) and what the browser's console said.
func failWithShot(t *testing.T, ctx context.Context, con *console, name string) func(format string, args ...any) {
	return func(format string, args ...any) {
		t.Helper()
		shot(t, ctx, name, true)
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		loc, _ := chromedp.Run(sctx, chromedp.Location())
		text, err := chromedp.Run(sctx, chromedp.Evaluate[string](
			`(() => { const v = document.querySelector('#view'); return v ? v.innerText.slice(0, 2000) : '(no #view)'; })()`))
		if err != nil {
			text = err.Error()
		}
		t.Fatalf(format+"\nat %s, the view says:\n%s\nbrowser console:\n%s", append(args, loc, text, con)...)
	}
}

// newViewerBrowser is newBrowser with more time (a sign-in, a launch and a dashboard of a dozen
// searches under -race on two cores, beside the other packages' tests) and a phone-sized window:
// the app must work there. Each group of steps has viewerStep of it; the first action runs in
// ctx itself, because the first Run on a context starts the browser and lives as long as its
// context (https://pkg.go.dev/github.com/chromedp/chromedp#Run).
func newViewerBrowser(t *testing.T) (context.Context, *console) {
	t.Helper()
	ctx, con := newBrowserFor(t, 4*time.Minute)
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(390, 844)); err != nil {
		t.Fatal(err)
	}
	return ctx, con
}

// shot saves a full-page screenshot as name-….png and logs its path: always on failure (under
// OHX_TEST_ARTIFACTS, else TMPDIR/ohx-test-artifacts, which outlives the test, unlike
// t.TempDir), and of every step when OHX_TEST_ARTIFACTS is set.
func shot(t *testing.T, ctx context.Context, name string, failed bool) {
	t.Helper()
	dir := os.Getenv("OHX_TEST_ARTIFACTS")
	if dir == "" {
		if !failed {
			return
		}
		dir = filepath.Join(os.TempDir(), "ohx-test-artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Logf("screenshot: %v", err)
		return
	}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	b, err := chromedp.Run(sctx, chromedp.FullScreenshot(100)) // 100: PNG (lower is JPEG)
	if err != nil {
		t.Logf("screenshot %s: %v", name, err)
		return
	}
	p := filepath.Join(dir, fmt.Sprintf("%s-%d.png", name, time.Now().UnixMilli()))
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Logf("screenshot: %v", err)
		return
	}
	t.Logf("screenshot: %s", p)
}
