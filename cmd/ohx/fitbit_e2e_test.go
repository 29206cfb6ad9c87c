package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/providers/fitbit/fitbittest"
	"github.com/openhealthexchange/ohx/providers/googlehealth/googlehealthtest"
	"github.com/openhealthexchange/ohx/providers/providertest"
)

// fitbitDates is the date range of a Fitbit time-series path, fitbitSubscription the path of one
// subscription (its id is random).
var (
	fitbitDates        = regexp.MustCompile(`/date/\d{4}-\d{2}-\d{2}/\d{4}-\d{2}-\d{2}\.json$`)
	fitbitSubscription = regexp.MustCompile(`/(activities|body|sleep|userRevokedAccess)/apiSubscriptions/[0-9a-zA-Z-]+\.json$`)
)

// fakeFitbit serves the recorded Fitbit payloads (2024-01-15 and -16). The test's pipeline clock
// stands at the end of those days (authServerAt), so the backfill's window covers them; as the
// clock moves on during the test the window's last local date becomes the 17th, so the front
// rewrites each range to the recorded one (the adapter still keeps only values inside the range
// it asked for), and each new subscription's random id to the recorded one.
func fakeFitbit(t *testing.T) (front string, fake *providertest.Server) {
	fake = providertest.NewServer(t, fitbittest.Routes())
	target, _ := url.Parse(fake.URL())
	proxy := httputil.NewSingleHostReverseProxy(target)
	director := proxy.Director
	proxy.Director = func(r *http.Request) {
		director(r)
		r.URL.Path = fitbitDates.ReplaceAllString(r.URL.Path, "/date/2024-01-15/2024-01-16.json")
		if m := fitbitSubscription.FindStringSubmatch(r.URL.Path); m != nil {
			r.URL.Path = fitbitSubscription.ReplaceAllString(r.URL.Path, "/"+m[1]+"/apiSubscriptions/"+fitbittest.SubscriptionIDs[m[1]]+".json")
		}
	}
	srv := httptest.NewServer(proxy)
	t.Cleanup(srv.Close)
	return srv.URL, fake
}

// fitbitEnv configures the legacy Fitbit adapter against the fake.
func fitbitEnv(front string) []string {
	return []string{"OHX_FITBIT_CLIENT_ID", fitbittest.ClientID, "OHX_FITBIT_CLIENT_SECRET", fitbittest.ClientSecret,
		"OHX_FITBIT_VERIFICATION_CODE", "verify-code-1", "OHX_FITBIT_API_URL", front, "OHX_FITBIT_AUTH_URL", front + "/oauth2/authorize"}
}

// googleHealthEnv configures the Google Health adapter against the fake.
func googleHealthEnv(fake *providertest.Server) []string {
	return []string{"OHX_GOOGLEHEALTH_CLIENT_ID", "cid.apps.googleusercontent.com", "OHX_GOOGLEHEALTH_CLIENT_SECRET", "gsecret",
		"OHX_GOOGLEHEALTH_WEBHOOK_SECRET", "Bearer hook-1", "OHX_GOOGLEHEALTH_API_URL", fake.URL(),
		"OHX_GOOGLEHEALTH_AUTH_URL", fake.URL() + "/o/oauth2/v2/auth", "OHX_GOOGLEHEALTH_TOKEN_URL", fake.URL() + googlehealthtest.TokenPath}
}

func post(t *testing.T, u string, header http.Header, body []byte) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, u, bytes.NewReader(body))
	req.Header = header
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res.StatusCode
}

func status(t *testing.T, origin, token, patient string) map[string]string {
	t.Helper()
	var st struct {
		Connections []struct{ Provider, Status string }
	}
	if code := getJSON(t, origin+"/connect/status?patient="+patient, token, &st); code != http.StatusOK {
		t.Fatalf("connect status: %d", code)
	}
	out := map[string]string{}
	for _, c := range st.Connections {
		out[c.Provider] = c.Status
	}
	return out
}

// TestFitbitEndToEnd: connect (PKCE, Basic client auth) → devices → backfill → signed webhook →
// FHIR search, against the recorded legacy Fitbit Web API.
func TestFitbitEndToEnd(t *testing.T) {
	front, fake := fakeFitbit(t)
	// Fitbit allows 150 requests per user per hour (a burst of 10, then one every 24 s): four kinds
	// keep connect, devices, subscriptions, backfill and one notification within the burst.
	origin, env := authServerAt(t, fitbittest.WindowEnd, append(fitbitEnv(front), "OHX_BACKFILL_DAYS", "2", "OHX_FITBIT_KINDS", "weight,bmi,steps,resting-heart-rate")...)
	token := ehrToken(t, origin, env)

	if _, code := connectInBrowser(t, origin, token, "fitbit", "p1", front+"/oauth2/authorize", "fitbit-code"); code != http.StatusOK {
		t.Fatalf("callback: %d", code)
	}
	ex := slices.IndexFunc(fake.Requests(), func(r providertest.Recorded) bool { return r.Form.Get("grant_type") == "authorization_code" })
	if ex < 0 {
		t.Fatal("no code exchange reached Fitbit")
	}
	if r := fake.Requests()[ex]; r.Form.Get("code_verifier") == "" || !strings.HasPrefix(r.Header.Get("Authorization"), "Basic ") {
		t.Errorf("code exchange without the PKCE verifier or HTTP Basic client authentication")
	}
	var obs []observation
	waitFor(t, "the Fitbit backfill", func() bool {
		obs = observations(t, origin, token, "p1")
		return len(obs) >= 4
	})
	var weight *observation
	for i, o := range obs {
		if len(o.Code.Coding) > 0 && o.Code.Coding[0].Code == "29463-7" && o.hasIdentifierUnder(fhir.DefaultNamespace.ProviderIdentifierPrefix("fitbit")) {
			weight = &obs[i]
		}
	}
	// Metric, and the local 07:15:30 in Europe/Berlin, not stamped UTC.
	if weight == nil || weight.ValueQuantity == nil || weight.ValueQuantity.Value != "70.2" || weight.ValueQuantity.Code != "kg" ||
		weight.EffectiveDateTime != "2024-01-15T07:15:30+01:00" || weight.Device == nil {
		t.Fatalf("the Aria weight: %+v", weight)
	}
	var da bundle
	waitFor(t, "the Fitbit devices", func() bool {
		da = bundle{}
		getJSON(t, origin+"/fhir/DeviceAssociation?patient=p1&_include=DeviceAssociation:device", token, &da)
		return len(da.Entry) >= 4
	})
	if !slices.Contains(da.ids(), weight.Device.Reference) {
		t.Errorf("the weight's device %s is not among the patient's devices %v", weight.Device.Reference, da.ids())
	}

	// The subscriber endpoint: verification, then signed notifications only.
	for code, want := range map[string]int{"verify-code-1": http.StatusNoContent, "guess": http.StatusNotFound} {
		if r, _ := http.Get(origin + "/webhooks/fitbit?verify=" + code); r.StatusCode != want {
			t.Errorf("verify=%s: %d, want %d", code, r.StatusCode, want)
		}
	}
	body := []byte(`[{"collectionType":"body","date":"2024-01-15","ownerId":"ABC123","ownerType":"user","subscriptionId":"` + fitbittest.SubscriptionIDs["body"] + `"}]`)
	json := http.Header{"Content-Type": {"application/json"}}
	if code := post(t, origin+"/webhooks/fitbit", json, body); code != http.StatusNotFound {
		t.Errorf("unsigned notification: %d, want 404", code)
	}
	forged := json.Clone()
	forged.Set("X-Fitbit-Signature", fitbittest.Sign(body, "not-the-secret"))
	if code := post(t, origin+"/webhooks/fitbit", forged, body); code != http.StatusNotFound {
		t.Errorf("notification signed with another key: %d, want 404", code)
	}
	before := fake.Hits("GET /1/user/-/body/log/weight/date/2024-01-15/2024-01-16.json")
	signed := json.Clone()
	signed.Set("X-Fitbit-Signature", fitbittest.Sign(body, fitbittest.ClientSecret))
	if code := post(t, origin+"/webhooks/fitbit", signed, body); code != http.StatusNoContent {
		t.Fatalf("signed notification: %d, want 204", code)
	}
	waitFor(t, "the weight re-fetch the notification announced", func() bool {
		return fake.Hits("GET /1/user/-/body/log/weight/date/2024-01-15/2024-01-16.json") > before
	})

	// userRevokedAccess ends the connection's use of its tokens.
	revoked := []byte(`[{"collectionType":"userRevokedAccess","date":"2024-01-16","ownerId":"ABC123","ownerType":"user","subscriptionId":"` + fitbittest.SubscriptionIDs["activities"] + `"}]`)
	signed.Set("X-Fitbit-Signature", fitbittest.Sign(revoked, fitbittest.ClientSecret))
	if code := post(t, origin+"/webhooks/fitbit", signed, revoked); code != http.StatusNoContent {
		t.Fatalf("userRevokedAccess: %d", code)
	}
	if s := status(t, origin, token, "p1")["fitbit"]; s == "active" {
		t.Errorf("after userRevokedAccess the connection is %s", s)
	}
}

// TestGoogleHealthEndToEnd: connect (PKCE, offline access) → identity → paired devices →
// backfill → an authenticated notification → FHIR search, against the recorded Google Health
// API (data of 2026-03-07 to 09, the backfill's days).
func TestGoogleHealthEndToEnd(t *testing.T) {
	fake := providertest.NewServer(t, googlehealthtest.Routes())
	origin, env := authServerAt(t, googlehealthtest.WindowEnd, append(googleHealthEnv(fake), "OHX_BACKFILL_DAYS", "3")...)
	token := ehrToken(t, origin, env)

	consent, code := connectInBrowser(t, origin, token, "googlehealth", "p1", fake.URL()+"/o/oauth2/v2/auth", "google-code")
	if code != http.StatusOK {
		t.Fatalf("callback: %d", code)
	}
	if q := consent.Query(); q.Get("access_type") != "offline" || !strings.Contains(q.Get("scope"), "googlehealth.") || strings.Contains(q.Get("scope"), "writeonly") {
		t.Errorf("consent URL: access_type %q, scope %q", q.Get("access_type"), q.Get("scope"))
	}
	var obs []observation
	waitFor(t, "the Google Health backfill", func() bool {
		obs = observations(t, origin, token, "p1")
		return len(obs) >= 15
	})
	var weights []string
	for _, o := range obs {
		if len(o.Code.Coding) > 0 && o.Code.Coding[0].Code == "29463-7" && o.Meta.Source == fhir.DefaultNamespace.ProviderSource("googlehealth") {
			weights = append(weights, o.EffectiveDateTime+" "+string(o.ValueQuantity.Value)+" "+o.ValueQuantity.Code)
		}
	}
	slices.Sort(weights)
	// Grams → kg exactly, the physical time in the user's offset (PST, then PDT).
	if want := []string{"2026-03-07T07:30:12-08:00 70.250 kg", "2026-03-09T07:05:00-07:00 70.2155 kg"}; !slices.Equal(weights, want) {
		t.Errorf("weights %v, want %v", weights, want)
	}
	var da bundle
	waitFor(t, "the paired devices", func() bool {
		da = bundle{}
		getJSON(t, origin+"/fhir/DeviceAssociation?patient=p1&_include=DeviceAssociation:device", token, &da)
		return len(da.Entry) >= 4
	})
	if s := status(t, origin, token, "p1")["googlehealth"]; s != "active" {
		t.Errorf("connection status %q", s)
	}

	// Notifications carry the configured Authorization header, compared in constant time.
	body, err := os.ReadFile(providertest.TestdataPath(t, "googlehealth/webhook_steps.json"))
	if err != nil {
		t.Fatal(err)
	}
	hdr := func(auth string) http.Header {
		h := http.Header{"Content-Type": {"application/json"}}
		if auth != "" {
			h.Set("Authorization", auth)
		}
		return h
	}
	verification := []byte(`{"type":"verification"}`)
	if code := post(t, origin+"/webhooks/googlehealth", hdr("Bearer hook-1"), verification); code != http.StatusCreated {
		t.Errorf("verification with the secret: %d, want 201", code)
	}
	if code := post(t, origin+"/webhooks/googlehealth", hdr(""), verification); code != http.StatusUnauthorized && code != http.StatusForbidden {
		t.Errorf("verification without the secret: %d, want 401 or 403", code)
	}
	if code := post(t, origin+"/webhooks/googlehealth", hdr("Bearer guessed"), body); code != http.StatusForbidden {
		t.Errorf("notification with a wrong secret: %d, want 403", code)
	}
	before := fake.Hits(googlehealthtest.RollupKey("steps"))
	if code := post(t, origin+"/webhooks/googlehealth", hdr("Bearer hook-1"), body); code != http.StatusNoContent {
		t.Fatalf("notification: %d, want 204", code)
	}
	waitFor(t, "the steps re-fetch the notification announced", func() bool {
		return fake.Hits(googlehealthtest.RollupKey("steps")) > before
	})
}

// TestFitbitToGoogleHealthMigration: a patient's measurements stored through the legacy Fitbit
// adapter, delivered again by the Google Health API after the patient connected the Google
// account that continues the Fitbit one (identity.legacyUserId), stay one Observation each:
// updated in place (same id, a new version, both identifiers), never duplicated.
func TestFitbitToGoogleHealthMigration(t *testing.T) {
	front, _ := fakeFitbit(t)
	routes := googlehealthtest.Subset(googlehealthtest.KeyExchange, googlehealthtest.KeyRefresh, googlehealthtest.KeyRevoke,
		googlehealthtest.KeyIdentity, googlehealthtest.KeyDevices)
	migrated := func(name string) providertest.Route {
		return providertest.Route{File: "googlehealth/migration/" + name}
	}
	routes[googlehealthtest.KeySettings] = migrated("settings.json")
	routes[googlehealthtest.DataPointsKey("weight")] = migrated("weight.json")
	routes[googlehealthtest.DataPointsKey("sleep")] = migrated("sleep.json")
	routes[googlehealthtest.RollupKey("steps")] = migrated("rollup_steps.json")
	google := providertest.NewServer(t, routes)
	// Few kinds keep the Fitbit side within its burst of 10 requests (150 per user per hour).
	origin, env := authServerAt(t, fitbittest.WindowEnd, append(append(fitbitEnv(front), googleHealthEnv(google)...),
		"OHX_BACKFILL_DAYS", "2", "OHX_FITBIT_KINDS", "weight,bmi,steps,sleep", "OHX_GOOGLEHEALTH_KINDS", "weight,steps,sleep")...)
	token := ehrToken(t, origin, env)

	// 1. The patient was connected through the legacy Fitbit Web API.
	if _, code := connectInBrowser(t, origin, token, "fitbit", "p1", front+"/oauth2/authorize", "fitbit-code"); code != http.StatusOK {
		t.Fatalf("fitbit callback: %d", code)
	}
	fitbitPrefix, googlePrefix := fhir.DefaultNamespace.ProviderIdentifierPrefix("fitbit"), fhir.DefaultNamespace.ProviderIdentifierPrefix("googlehealth")
	byCode := func(obs []observation) map[string]observation {
		m := map[string]observation{}
		for _, o := range obs {
			if (o.hasIdentifierUnder(fitbitPrefix) || o.hasIdentifierUnder(googlePrefix)) && len(o.Code.Coding) > 0 {
				m[o.Code.Coding[0].Code] = o
			}
		}
		return m
	}
	// weight 29463-7, BMI 39156-5, steps 41950-7, sleep 93832-4
	codes := []string{"29463-7", "39156-5", "41950-7", "93832-4"}
	var before map[string]observation
	var n int
	waitFor(t, "the Fitbit backfill", func() bool {
		obs := observations(t, origin, token, "p1")
		before, n = byCode(obs), len(obs)
		return len(before) >= 4
	})
	for _, c := range codes {
		if o, ok := before[c]; !ok || o.Meta.Source != fhir.DefaultNamespace.ProviderSource("fitbit") {
			t.Fatalf("before the move, %s: %+v", c, o)
		}
	}

	// 2. The patient connects the Google account that continues that Fitbit account.
	if _, code := connectInBrowser(t, origin, token, "googlehealth", "p1", google.URL()+"/o/oauth2/v2/auth", "google-code"); code != http.StatusOK {
		t.Fatalf("googlehealth callback: %d", code)
	}
	var after map[string]observation
	waitFor(t, "Google Health's delivery of the same measurements", func() bool {
		after = byCode(observations(t, origin, token, "p1"))
		for _, c := range []string{"29463-7", "41950-7", "93832-4"} {
			if after[c].Meta.Source != fhir.DefaultNamespace.ProviderSource("googlehealth") {
				return false
			}
		}
		return true
	})
	if got := len(observations(t, origin, token, "p1")); got != n {
		t.Errorf("%d Observations after the move, %d before: measurements were duplicated", got, n)
	}
	for _, c := range []string{"29463-7", "41950-7", "93832-4"} {
		b, a := before[c], after[c]
		if a.ID != b.ID || a.Meta.VersionID == b.Meta.VersionID {
			t.Errorf("%s: id %s version %s after, id %s version %s before: want the same Observation, a new version", c, a.ID, a.Meta.VersionID, b.ID, b.Meta.VersionID)
		}
		if len(a.Identifier) < 2 || !strings.HasPrefix(a.Identifier[0].System, fitbitPrefix) || !a.hasIdentifierUnder(googlePrefix) {
			t.Errorf("%s: identifiers %+v, want the Fitbit one first and the Google Health one", c, a.Identifier)
		}
	}
	// The day's step total grew at Google: the same Observation holds the new value.
	if v := after["41950-7"].ValueQuantity; v == nil || v.Value != "8612" {
		t.Errorf("steps after the move: %+v, want 8612", v)
	}
	if v := before["41950-7"].ValueQuantity; v == nil || v.Value != "8500" {
		t.Errorf("steps before the move: %+v, want 8500", v)
	}
	// Google has no BMI: the Fitbit BMI stays as it was.
	if a := after["39156-5"]; a.ID != before["39156-5"].ID || a.Meta.Source != fhir.DefaultNamespace.ProviderSource("fitbit") {
		t.Errorf("BMI after the move: %+v", a)
	}
	// The legacy connection ended; the new one records what it continues.
	waitFor(t, "the end of the legacy connection", func() bool { return status(t, origin, token, "p1")["fitbit"] == "" })
	if st := status(t, origin, token, "p1"); st["googlehealth"] != "active" {
		t.Errorf("connections after the move: %v, want googlehealth active", st)
	}
	var out, errOut bytes.Buffer
	if err := run(t.Context(), []string{"connections"}, func(k string) string { return env[k] }, nil, &out, &errOut); err != nil {
		t.Fatalf("ohx connections: %v %s", err, errOut.String())
	}
	if !strings.Contains(out.String(), "googlehealth") || !strings.Contains(out.String(), "fitbit ABC123 (until") || strings.Contains(out.String(), "\nfitbit ") {
		t.Errorf("ohx connections:\n%s", out.String())
	}

	// 3. A notification for the weight re-reads it: still the one Observation.
	body, err := os.ReadFile(providertest.TestdataPath(t, "googlehealth/migration/webhook_weight.json"))
	if err != nil {
		t.Fatal(err)
	}
	hits := google.Hits(googlehealthtest.DataPointsKey("weight"))
	if code := post(t, origin+"/webhooks/googlehealth", http.Header{"Content-Type": {"application/json"}, "Authorization": {"Bearer hook-1"}}, body); code != http.StatusNoContent {
		t.Fatalf("weight notification: %d", code)
	}
	waitFor(t, "the weight re-read", func() bool { return google.Hits(googlehealthtest.DataPointsKey("weight")) > hits })
	if got := len(observations(t, origin, token, "p1")); got != n {
		t.Errorf("%d Observations after the notification, want %d", got, n)
	}
	if w := byCode(observations(t, origin, token, "p1"))["29463-7"]; w.ID != before["29463-7"].ID {
		t.Errorf("weight after the notification: %s, want %s", w.ID, before["29463-7"].ID)
	}
}
