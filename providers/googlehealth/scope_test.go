package googlehealth

import (
	"bytes"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/providers"
	"github.com/openhealthexchange/ohx/providers/providertest"
)

// TestScopeNotGranted: the user unticked the ECG scope on Google's consent screen. The ECG list
// answers 403 PERMISSION_DENIED; Fetch skips that data type (an empty page that moves on), the
// other data types still return their samples, no error reaches the pipeline (which would
// otherwise refresh and mark the connection as needing re-consent), and the skip is logged once
// per user and data type, without the user.
func TestScopeNotGranted(t *testing.T) {
	routes := map[string]providertest.Route{
		"GET /v4/users/me/dataTypes/weight/dataPoints":            file("weight.json"),
		"GET /v4/users/me/dataTypes/electrocardiogram/dataPoints": {Status: http.StatusForbidden, File: "googlehealth/error_permission_denied.json"},
		"GET /v4/users/me/dataTypes/body-fat/dataPoints":          file("body_fat.json"),
	}
	f := newFixture(t, routes, fixtureOpts{})
	var logs bytes.Buffer
	f.c.log = slog.New(slog.NewTextHandler(&logs, nil))
	q := providers.Query{Kinds: []fhir.SampleKind{fhir.KindECG, fhir.KindWeight, fhir.KindFatRatio}, Start: windowStart, End: windowEnd}
	for range 2 {
		ss, pages := fetchAll(t, f.c, q)
		got := map[fhir.SampleKind]int{}
		for _, s := range ss {
			got[s.Kind]++
		}
		if got[fhir.KindWeight] != 2 || got[fhir.KindFatRatio] != 1 || got[fhir.KindECG] != 0 {
			t.Errorf("samples per kind %v, want 2 weights, 1 body fat, no ECG", got)
		}
		if len(pages) != 3 {
			t.Errorf("%d pages, want one per data type (3)", len(pages))
		}
	}
	if n := len(f.requests("/v4/users/me/dataTypes/electrocardiogram/dataPoints")); n != 2 {
		t.Errorf("%d ECG requests over two queries, want 2 (no retry, no refresh)", n)
	}
	if n := strings.Count(logs.String(), "scope not granted"); n != 1 {
		t.Errorf("%d log lines for the missing scope over two queries, want 1:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "electrocardiogram") || strings.Contains(logs.String(), testUser) {
		t.Errorf("log %q: want the data type and not the user", logs.String())
	}

	// A 401 is still an auth error.
	routes["GET /v4/users/me/dataTypes/electrocardiogram/dataPoints"] = providertest.Route{Status: http.StatusUnauthorized, File: "googlehealth/error_unauthenticated.json"}
	f = newFixture(t, routes, fixtureOpts{})
	q.Kinds = []fhir.SampleKind{fhir.KindECG}
	if _, err := f.c.Fetch(t.Context(), testUser, bearer("a"), q); providers.KindOf(err) != providers.KindAuth {
		t.Errorf("401: %v, want an auth error", err)
	}
}

// TestClassifyForbidden: only a 403 that lacks a scope is not an auth error.
func TestClassifyForbidden(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
		body   string
		kind   providers.ErrorKind
		denied bool
	}{
		{"missing scope", 403, `{"error":{"code":403,"status":"PERMISSION_DENIED","details":[{"reason":"ACCESS_TOKEN_SCOPE_INSUFFICIENT"}]}}`, providers.KindPermanent, true},
		{"permission denied without reason", 403, `{"error":{"code":403,"status":"PERMISSION_DENIED"}}`, providers.KindAuth, false},
		{"403 without a body", 403, ``, providers.KindAuth, false},
		{"other 403 reason", 403, `{"error":{"code":403,"status":"PERMISSION_DENIED","details":[{"reason":"SERVICE_DISABLED"}]}}`, providers.KindAuth, false},
		{"401", 401, `{"error":{"code":401,"status":"UNAUTHENTICATED"}}`, providers.KindAuth, false},
	} {
		err := classify(tc.status, http.Header{}, []byte(tc.body))
		if k := providers.KindOf(err); k != tc.kind {
			t.Errorf("%s: kind %q, want %q", tc.name, k, tc.kind)
		}
		if got := errors.Is(err, errScopeDenied); got != tc.denied {
			t.Errorf("%s: scope denied %v, want %v", tc.name, got, tc.denied)
		}
	}
}

// TestHeartRateOptIn: intraday heart rate is read only when configured.
func TestHeartRateOptIn(t *testing.T) {
	f := newFixture(t, allRoutes(), fixtureOpts{})
	if slices.Contains(f.c.Kinds(), fhir.KindHeartRate) {
		t.Errorf("default kinds %v include heart-rate", f.c.Kinds())
	}
	ss, _ := fetchAll(t, f.c, providers.Query{Start: windowStart, End: windowEnd})
	for _, s := range ss {
		if s.Kind == fhir.KindHeartRate {
			t.Fatalf("a default query read heart rate %s", s.RecordID)
		}
	}
	if n := len(f.requests("/v4/users/me/dataTypes/heart-rate/dataPoints")); n != 0 {
		t.Errorf("%d heart-rate requests by default, want 0", n)
	}
	g := newFixture(t, allRoutes(), fixtureOpts{kinds: []fhir.SampleKind{fhir.KindHeartRate}})
	if !slices.Equal(g.c.Kinds(), []fhir.SampleKind{fhir.KindHeartRate}) {
		t.Errorf("configured kinds %v, want heart-rate", g.c.Kinds())
	}
}

// TestAdminParamsWithoutSecret: CreateSubscriber and UpdateSubscriber bodies carry
// endpointAuthorization.secret; the Call.Params a caller receives (the cache key, which may be
// logged) carry a digest of the body, never the body.
func TestAdminParamsWithoutSecret(t *testing.T) {
	const secret = "Bearer very-secret-webhook-value"
	srv := providertest.NewServer(t, map[string]providertest.Route{
		"POST " + subscribers:                    file("admin_operation.json"),
		"PATCH " + subscribers + "/ohx-webhooks": file("admin_operation.json"),
	})
	cc := ClientConfig()
	cc.MaxRetries, cc.CacheTTL, cc.AppRate, cc.UserRate, cc.Timeout = -1, -1, 0, 0, 5*time.Second
	pc, err := providers.NewClient(cc, srv.Client(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recordingCaller{next: pc}
	a, err := NewAdmin(AdminConfig{APIURL: srv.URL(), Project: "ohx-demo-project",
		TokenSource: oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "sa-token"})}, rec)
	if err != nil {
		t.Fatal(err)
	}
	spec := SubscriberSpec{ID: "ohx-webhooks", EndpointURI: "https://ohx.example/webhooks/googlehealth",
		DataTypes: []string{"steps"}, Policy: PolicyAutomatic, Secret: secret}
	if _, err := a.CreateSubscriber(t.Context(), spec); err != nil {
		t.Fatalf("create: %v", err)
	}
	spec.Secret = "Bearer another-secret-webhook-value"
	if _, err := a.UpdateSubscriber(t.Context(), spec); err != nil {
		t.Fatalf("update: %v", err)
	}
	calls := rec.calls()
	if len(calls) != 2 {
		t.Fatalf("%d calls, want 2", len(calls))
	}
	for _, c := range calls {
		for k, vs := range c.Params {
			for _, v := range vs {
				if strings.Contains(v, "secret-webhook-value") || strings.Contains(v, "endpointAuthorization") {
					t.Errorf("%s: param %s carries the body: %q", c.Endpoint, k, v)
				}
			}
		}
		if d := c.Params.Get("body_sha256"); len(d) != 64 {
			t.Errorf("%s: body digest %q, want 64 hex digits", c.Endpoint, d)
		}
	}
	if calls[0].Params.Get("body_sha256") == calls[1].Params.Get("body_sha256") {
		t.Error("two bodies share a digest: the cache would mix their answers")
	}
	if len(srv.Requests()) != 2 || !bytes.Contains(srv.Requests()[0].Body, []byte(secret)) {
		t.Error("the secret must still reach Google in the request body")
	}
}

// TestECGLenient: the scaling factor and sampling frequency are read as decimals ("250.0"), and
// a classification the adapter does not know becomes "other" with Google's value as the text.
func TestECGLenient(t *testing.T) {
	d, _ := typeByName("electrocardiogram")
	m := pointMapper{user: testUser, dt: d}
	raw := `{"name":"users/hu-7f3a9c/dataTypes/electrocardiogram/dataPoints/e1","electrocardiogram":{
		"interval":{"startTime":"2026-03-08T18:00:00Z","endTime":"2026-03-08T18:00:00Z"},
		"millivoltsScalingFactor":"1000.0","samplingFrequencyHertz":"250.0",
		"resultClassification":"SINUS_TACHYCARDIA","waveformSamples":[1,2,3]}}`
	ss, err := m.samples([]byte(raw))
	if err != nil || len(ss) != 1 {
		t.Fatalf("samples %v, %v", ss, err)
	}
	s := ss[0]
	if s.Waveform == nil || s.Waveform.Factor != "1" || s.Waveform.IntervalMS != "4" {
		t.Errorf("waveform %+v, want factor 1 µV and interval 4 ms", s.Waveform)
	}
	if s.Code != fhir.RhythmOther || s.CodeText != "SINUS_TACHYCARDIA" {
		t.Errorf("code %q text %q, want %q with Google's value", s.Code, s.CodeText, fhir.RhythmOther)
	}
}
