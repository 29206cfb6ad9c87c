package fitbit

import (
	"bytes"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/providers"
	"github.com/openhealthexchange/ohx/providers/fitbit/fitbittest"
	"github.com/openhealthexchange/ohx/providers/providertest"
)

const insufficientScope = `{"errors":[{"errorType":"insufficient_scope","message":"This application does not have permission to access electrocardiogram data."}],"success":false}`

// TestScopeNotGranted: the user unticked the electrocardiogram scope on Fitbit's consent screen.
// The ECG listing answers 403 insufficient_scope; Fetch skips it (an empty page that moves on),
// steps and weight still come back, no error reaches the pipeline (which would otherwise refresh
// and mark the connection as needing re-consent), and the skip is logged once per user and
// endpoint, without the user. A 401 stays an auth error.
func TestScopeNotGranted(t *testing.T) {
	routes := base(map[string]providertest.Route{
		"GET /1/user/-/activities/steps/date/2024-01-15/2024-01-16.json": file("activities_steps.json"),
		"GET /1/user/-/body/log/weight/date/2024-01-15/2024-01-16.json":  file("body_weight.json"),
		"GET /1/user/-/ecg/list.json offset=0":                           {Status: http.StatusForbidden, Body: insufficientScope},
	})
	f := newFixture(t, routes, opts{})
	var logs bytes.Buffer
	f.c.log = slog.New(slog.NewTextHandler(&logs, nil))
	q := providers.Query{Kinds: []fhir.SampleKind{fhir.KindSteps, fhir.KindWeight, fhir.KindECG}, Start: fitbittest.WindowStart, End: fitbittest.WindowEnd}
	for range 2 {
		ss, pages := fetchAll(t, f.c, q)
		got := map[fhir.SampleKind]int{}
		for _, s := range ss {
			got[s.Kind]++
		}
		if got[fhir.KindSteps] != 1 || got[fhir.KindWeight] != 1 || got[fhir.KindECG] != 0 {
			t.Errorf("samples per kind %v, want 1 steps, 1 weight, no ECG", got)
		}
		if len(pages) != 3 {
			t.Errorf("%d pages, want one per endpoint (3)", len(pages))
		}
	}
	if n := f.srv.Hits("GET /1/user/-/ecg/list.json offset=0"); n != 2 {
		t.Errorf("%d ECG requests over two queries, want 2 (no retry, no refresh)", n)
	}
	if n := strings.Count(logs.String(), "scope not granted"); n != 1 {
		t.Errorf("%d log lines for the missing scope over two queries, want 1:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "ecg/list") || strings.Contains(logs.String(), testUser) {
		t.Errorf("log %q: want the endpoint and not the user", logs.String())
	}

	routes["GET /1/user/-/ecg/list.json offset=0"] = providertest.Route{Status: http.StatusUnauthorized, Body: `{"errors":[{"errorType":"expired_token"}],"success":false}`}
	f = newFixture(t, routes, opts{})
	q.Kinds = []fhir.SampleKind{fhir.KindECG}
	if _, err := f.c.Fetch(t.Context(), testUser, bearer("a1"), q); providers.KindOf(err) != providers.KindAuth {
		t.Errorf("401: %v, want an auth error", err)
	}
}

// TestSettingsScopeNotGranted: without the settings scope devices.json answers 403; Fetch goes on
// without devices (no attribution, zeros dropped) and asks for them once.
func TestSettingsScopeNotGranted(t *testing.T) {
	f := newFixture(t, map[string]providertest.Route{
		"GET /1/user/-/profile.json":                                      file("profile.json"),
		"GET /1/user/-/devices.json":                                      {Status: http.StatusForbidden, Body: `{"errors":[{"errorType":"insufficient_permissions"}],"success":false}`},
		"GET /1/user/-/activities/steps/date/2024-01-15/2024-01-16.json":  file("activities_steps.json"),
		"GET /1/user/-/activities/floors/date/2024-01-15/2024-01-16.json": file("activities_floors.json"),
	}, opts{})
	ss, _ := fetchAll(t, f.c, providers.Query{Kinds: []fhir.SampleKind{fhir.KindSteps, fhir.KindElevation}, Start: fitbittest.WindowStart, End: fitbittest.WindowEnd})
	if len(ss) != 1 || ss[0].Kind != fhir.KindSteps || ss[0].DeviceID != "" {
		t.Errorf("samples %+v, want the steps of 2024-01-15 without device (the floors' zeros dropped)", ss)
	}
	if n := f.srv.Hits("GET /1/user/-/devices.json"); n != 1 {
		t.Errorf("%d devices requests, want 1", n)
	}
}

// TestClassifyForbidden: on a data request only a 403 for a missing scope is not an auth error;
// the token endpoint's 403 stays one.
func TestClassifyForbidden(t *testing.T) {
	f := newFixture(t, nil, opts{})
	for _, tc := range []struct {
		name   string
		body   string
		kind   providers.ErrorKind
		denied bool
	}{
		{"insufficient_scope", insufficientScope, providers.KindPermanent, true},
		{"insufficient_permissions", `{"errors":[{"errorType":"insufficient_permissions"}]}`, providers.KindPermanent, true},
		{"no body", ``, providers.KindAuth, false},
		{"not Fitbit's JSON", `<html>Forbidden</html>`, providers.KindAuth, false},
		{"another error type", `{"errors":[{"errorType":"invalid_token"}]}`, providers.KindAuth, false},
	} {
		err := f.c.classifyData(http.StatusForbidden, http.Header{}, []byte(tc.body))
		if k := providers.KindOf(err); k != tc.kind || errors.Is(err, errScopeDenied) != tc.denied {
			t.Errorf("%s: kind %q scope denied %v, want %q %v", tc.name, k, errors.Is(err, errScopeDenied), tc.kind, tc.denied)
		}
	}
	if err := f.c.classifyToken(true)(http.StatusForbidden, http.Header{}, []byte(insufficientScope)); providers.KindOf(err) != providers.KindAuth {
		t.Errorf("token endpoint 403: %v, want auth", err)
	}
	if err := f.c.classifyData(http.StatusUnauthorized, http.Header{}, nil); providers.KindOf(err) != providers.KindAuth {
		t.Errorf("401: %v, want auth", err)
	}
}

// TestUSUnitsNeverKilograms: an answer in US units (pounds) is refused when it arrives, so it is
// never cached: reading it twice through a response cache gives two refusals and two requests,
// never a weight labelled kg. A metric answer is cached and read from the cache the second time.
func TestUSUnitsNeverKilograms(t *testing.T) {
	const weight = "GET /1/user/-/body/log/weight/date/2024-01-15/2024-01-16.json"
	f := newFixture(t, base(map[string]providertest.Route{
		weight: {File: "fitbit/body_weight_lb.json", Header: http.Header{"Content-Language": {"en_US"}}},
	}), opts{cacheTTL: time.Minute})
	q := providers.Query{Kinds: []fhir.SampleKind{fhir.KindWeight}, Start: fitbittest.WindowStart, End: fitbittest.WindowEnd}
	for i := range 2 {
		p, err := f.c.Fetch(t.Context(), testUser, bearer("a1"), q)
		if ue := upstreamErr(t, err); ue.Kind != providers.KindPermanent || !errors.Is(err, errNotMetric) {
			t.Errorf("read %d: %v, want a permanent not-metric error", i+1, err)
		}
		if p != nil {
			for _, s := range p.Samples {
				t.Errorf("read %d: sample %s %s %s from a US-unit answer", i+1, s.Kind, s.Value, s.Unit)
			}
		}
	}
	hits := func() int {
		n := 0
		for _, r := range f.srv.Requests() {
			if r.Path == "/1/user/-/body/log/weight/date/2024-01-15/2024-01-16.json" {
				n++
			}
		}
		return n
	}
	if n := hits(); n != 2 {
		t.Errorf("%d requests, want 2 (a refused answer is not cached)", n)
	}

	f.srv.Set(weight, file("body_weight.json"))
	for range 2 {
		ss, _ := fetchAll(t, f.c, q)
		if len(ss) != 1 || ss[0].Unit != "kg" || ss[0].Value != "70.2" {
			t.Errorf("metric answer: %+v, want 70.2 kg", ss)
		}
	}
	if n := hits(); n != 3 {
		t.Errorf("%d requests, want 3 (the metric answer cached)", n)
	}
}

// TestUnexpectedShapesWithoutPHI: a resting heart rate that is not a number and an ECG reading
// without a scaling factor are permanent errors whose text names neither values nor times.
func TestUnexpectedShapesWithoutPHI(t *testing.T) {
	f := newFixture(t, base(map[string]providertest.Route{
		"GET /1/user/-/activities/heart/date/2024-01-15/2024-01-16.json": {Body: `{"activities-heart":[{"dateTime":"2024-01-15","value":{"restingHeartRate":"sixty-eight"}}]}`},
		"GET /1/user/-/ecg/list.json offset=0":                           {Body: `{"ecgReadings":[{"startTime":"2024-01-15T10:00:00.000","averageHeartRate":72,"waveformSamples":[1,2],"samplingFrequencyHz":"250"}],"pagination":{"next":""}}`},
	}), opts{})
	for kind, banned := range map[fhir.SampleKind][]string{
		fhir.KindRestingHeartRate: {"sixty-eight"},
		fhir.KindECG:              {"2024-01-15", "10:00", "72"},
	} {
		_, err := f.c.Fetch(t.Context(), testUser, bearer("a1"), providers.Query{Kinds: []fhir.SampleKind{kind}, Start: fitbittest.WindowStart, End: fitbittest.WindowEnd})
		if ue := upstreamErr(t, err); ue.Kind != providers.KindPermanent {
			t.Errorf("%s: %v, want permanent", kind, err)
		}
		for _, b := range banned {
			if strings.Contains(err.Error(), b) {
				t.Errorf("%s: error %q carries %q", kind, err, b)
			}
		}
	}
}
