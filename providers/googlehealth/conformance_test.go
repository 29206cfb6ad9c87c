package googlehealth_test

import (
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/providers"
	"github.com/openhealthexchange/ohx/providers/googlehealth"
	gh "github.com/openhealthexchange/ohx/providers/googlehealth/googlehealthtest"
	"github.com/openhealthexchange/ohx/providers/providertest"
)

const (
	confSecret   = "Bearer conformance-webhook-secret"
	confRedirect = "https://ohx.example/connect/googlehealth/callback"
)

// kindTypes is the data type the conformance harness serves for each kind.
var kindTypes = map[fhir.SampleKind]string{
	fhir.KindWeight: "weight", fhir.KindFatRatio: "body-fat", fhir.KindHeartRate: "heart-rate",
	fhir.KindRestingHeartRate: "daily-resting-heart-rate", fhir.KindHRVRMSSD: "daily-heart-rate-variability",
	fhir.KindSpO2: "daily-oxygen-saturation", fhir.KindRespiratoryRate: "daily-respiratory-rate",
	fhir.KindSkinTemperatureVariation: "daily-sleep-temperature-derivations",
	fhir.KindSteps:                    "steps", fhir.KindDistance: "distance", fhir.KindElevation: "floors", fhir.KindCalories: "total-calories",
	fhir.KindSleep: "sleep", fhir.KindECG: "electrocardiogram",
}

// rollupTypes are read through dailyRollUp.
var rollupTypes = map[string]bool{"steps": true, "distance": true, "floors": true, "total-calories": true}

func body(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(providertest.TestdataPath(t, "googlehealth/"+name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestConformance runs the adapter contract suite against the fake Google Health API serving
// testdata/googlehealth.
func TestConformance(t *testing.T) {
	kinds := map[fhir.SampleKind]map[string]providertest.Route{}
	for _, k := range googlehealth.SupportedKinds() {
		dt := kindTypes[k]
		keys := []string{gh.DataPointsKey(dt)}
		if rollupTypes[dt] {
			keys = []string{gh.RollupKey(dt), gh.KeySettings}
		}
		if len(dt) > 6 && dt[:6] == "daily-" {
			keys = append(keys, gh.KeySettings)
		}
		if dt == "heart-rate" {
			keys = append(keys, gh.DataPointsKey(dt)+" pageToken=hr-page-2")
		}
		kinds[k] = gh.Subset(keys...)
	}
	post := func(auth string, b []byte) providers.WebhookRequest {
		h := http.Header{"Content-Type": {"application/json"}}
		if auth != "" {
			h.Set("Authorization", auth)
		}
		return providers.WebhookRequest{Method: http.MethodPost, Header: h, Body: b, Received: time.Now()}
	}
	steps := body(t, "webhook_steps.json")
	verification := body(t, "webhook_verification.json")

	providertest.RunAdapter(t, providertest.AdapterHarness{
		New: func(t *testing.T, srv *providertest.Server) providers.Provider {
			t.Helper()
			cc := googlehealth.ClientConfig()
			cc.MaxRetries, cc.CacheTTL, cc.Timeout = -1, -1, 5*time.Second
			cc.AppRate, cc.UserRate = 0, 0 // the suite counts requests, not time
			pc, err := providers.NewClient(cc, srv.Client(), nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			cfg := gh.Config(srv.URL(), confRedirect, confSecret)
			cfg.Kinds = googlehealth.SupportedKinds() // heart-rate is opt-in; the suite reads every kind
			c, err := googlehealth.New(cfg, pc, nil)
			if err != nil {
				t.Fatal(err)
			}
			return c
		},
		User:        gh.HealthUserID,
		RedirectURL: confRedirect,
		Scopes: []string{
			"https://www.googleapis.com/auth/googlehealth.activity_and_fitness.readonly",
			"https://www.googleapis.com/auth/googlehealth.health_metrics_and_measurements.readonly",
			"https://www.googleapis.com/auth/googlehealth.sleep.readonly",
			"https://www.googleapis.com/auth/googlehealth.ecg.readonly",
			"https://www.googleapis.com/auth/googlehealth.settings.readonly",
		},
		PKCE: true, // https://developers.google.com/identity/protocols/oauth2/web-server#creatingclient

		Exchange:         gh.Subset(gh.KeyExchange, gh.KeyIdentity),
		ExchangeRequests: 2, // the token, then users/me/identity
		Refresh:          gh.Subset(gh.KeyRefresh),
		RefreshRefused:   map[string]providertest.Route{gh.KeyRefresh: {File: "googlehealth/token_invalid_grant.json", Status: http.StatusBadRequest}},
		Revoke:           gh.Subset(gh.KeyRevoke),
		Devices:          gh.Subset(gh.KeyDevices),

		Kinds:      kinds,
		Since:      gh.WindowEnd,
		Paged:      gh.Subset(gh.DataPointsKey("heart-rate"), gh.DataPointsKey("heart-rate")+" pageToken=hr-page-2"),
		PagedQuery: providers.Query{Kinds: []fhir.SampleKind{fhir.KindHeartRate}, Start: gh.WindowStart, End: gh.WindowEnd},
		Failure: func(status int, header http.Header) map[string]providertest.Route {
			return map[string]providertest.Route{gh.DataPointsKey("weight"): {Status: status, Header: header, File: "googlehealth/error_unavailable.json"}}
		},
		FailureQuery: providers.Query{Kinds: []fhir.SampleKind{fhir.KindWeight}, Start: gh.WindowStart, End: gh.WindowEnd},

		Webhooks: []providertest.WebhookCase{
			{Name: "verification", Request: post(confSecret, verification), Status: http.StatusCreated},
			{Name: "steps", Request: post(confSecret, steps), Status: http.StatusNoContent,
				Want: []providers.Notification{{VendorUser: gh.HealthUserID, Event: providers.EventData, Kinds: []fhir.SampleKind{fhir.KindSteps},
					Start: time.Date(2026, 3, 7, 16, 30, 0, 0, time.UTC), End: time.Date(2026, 3, 9, 17, 15, 0, 0, time.UTC)}}},
			{Name: "verification without Authorization", Request: post("", verification), Refused: true, Forged: true, Status: http.StatusUnauthorized},
			{Name: "forged Authorization", Request: post("Bearer guessed", steps), Refused: true, Forged: true, Status: http.StatusForbidden},
			{Name: "malformed", Request: post(confSecret, []byte(`{"data": `)), Refused: true, Status: http.StatusBadRequest},
		},
	})
}
