package fitbit

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/providers"
	"github.com/openhealthexchange/ohx/providers/fitbit/fitbittest"
	"github.com/openhealthexchange/ohx/providers/providertest"
)

// The signature worked example of the subscriptions guide (prior-art vector F11).
const (
	f11Body     = `[{"collectionType": "activities", "date": "2023-01-15", "ownerId": "ABC123"}]`
	f11Sig      = "/BIeYcDw2ab9esu3ACQxjqSqYf0="
	f11SigNoAmp = "nBopV1ZjruZBbAp4t5sTwrcRWLU="
)

func post(body, sig string) providers.WebhookRequest {
	h := http.Header{"Content-Type": {"application/json"}}
	if sig != "" {
		h.Set("X-Fitbit-Signature", sig)
	}
	return providers.WebhookRequest{Method: http.MethodPost, Header: h, Body: []byte(body), Received: time.Now()}
}

func verify(code string) providers.WebhookRequest {
	return providers.WebhookRequest{Method: http.MethodGet, Query: url.Values{"verify": {code}}, Received: time.Now()}
}

// TestConformance runs the adapter contract suite against the fake Fitbit over testdata/fitbit.
func TestConformance(t *testing.T) {
	kinds := map[fhir.SampleKind]map[string]providertest.Route{}
	for _, k := range SupportedKinds() {
		kinds[k] = fitbittest.Routes()
	}
	activities := []fhir.SampleKind{fhir.KindCalories, fhir.KindDistance, fhir.KindElevation, fhir.KindRestingHeartRate, fhir.KindSteps}
	f13 := `[{"collectionType":"activities","date":"2024-01-15","ownerId":"ABC123","ownerType":"user","subscriptionId":"s-7f3a"}]`
	revoked := `[{"collectionType":"userRevokedAccess","date":"2024-01-15","ownerId":"ABC123","ownerType":"user","subscriptionId":"s-7f3a"}]`
	dayWindow := func(d string) (time.Time, time.Time) {
		t0, _ := time.Parse(time.DateOnly, d)
		return t0.Add(-14 * time.Hour), t0.AddDate(0, 0, 1).Add(12 * time.Hour)
	}
	s11, e11 := dayWindow("2023-01-15")
	s13, e13 := dayWindow("2024-01-15")

	providertest.RunAdapter(t, providertest.AdapterHarness{
		New: func(t *testing.T, srv *providertest.Server) providers.Provider {
			t.Helper()
			cfg := ClientConfig(0)
			cfg.MaxRetries, cfg.CacheTTL, cfg.Timeout = -1, -1, 5*time.Second
			pc, err := providers.NewClient(cfg, srv.Client(), nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			c, err := New(Config{ClientID: fitbittest.ClientID, ClientSecret: fitbittest.ClientSecret, RedirectURL: testRedirect,
				APIURL: srv.URL(), VerificationCode: testVerify}, pc, nil)
			if err != nil {
				t.Fatal(err)
			}
			// The fixtures' clock, for the dates an incremental sync reads; the token subtests
			// check the expiry against the machine's clock, so they keep it.
			if !strings.Contains(t.Name(), "/Exchange") && !strings.Contains(t.Name(), "/Refresh") {
				c.now = func() time.Time { return fitbittest.Now }
			}
			return c
		},
		User:        testUser,
		RedirectURL: testRedirect,
		Scopes:      []string{"activity", "heartrate", "sleep", "weight", "profile", "settings", "electrocardiogram", "oxygen_saturation", "respiratory_rate", "temperature"},
		PKCE:        true, // https://dev.fitbit.com/build/reference/web-api/developer-guide/authorization/

		Exchange:       map[string]providertest.Route{"POST /oauth2/token grant_type=authorization_code": file("token_exchange.json")},
		Refresh:        map[string]providertest.Route{"POST /oauth2/token grant_type=refresh_token": file("token_refresh.json")},
		RefreshRefused: map[string]providertest.Route{"POST /oauth2/token grant_type=refresh_token": {File: "fitbit/token_refresh_invalid.json", Status: http.StatusBadRequest}},
		Revoke:         map[string]providertest.Route{"POST /oauth2/revoke": {Body: ""}},
		Devices:        base(nil),

		Kinds: kinds,
		// A day before Since is read too: local dates 2024-01-15 and 2024-01-16, the fixtures' window.
		Since: time.Date(2024, 1, 16, 6, 0, 0, 0, berlin),
		Paged: base(map[string]providertest.Route{
			"GET /1/user/-/ecg/list.json offset=0":  file("ecg_page1.json"),
			"GET /1/user/-/ecg/list.json offset=10": file("ecg_page2.json"),
		}),
		PagedQuery: providers.Query{Kinds: []fhir.SampleKind{fhir.KindECG}, Start: fitbittest.WindowStart, End: fitbittest.WindowEnd},
		Failure: func(status int, header http.Header) map[string]providertest.Route {
			return base(map[string]providertest.Route{
				"GET /1/user/-/activities/steps/date/2024-01-15/2024-01-16.json": {Status: status, Header: header,
					Body: `{"errors":[{"errorType":"system","message":"upstream failure"}],"success":false}`},
			})
		},
		FailureQuery: providers.Query{Kinds: []fhir.SampleKind{fhir.KindSteps}, Start: fitbittest.WindowStart, End: fitbittest.WindowEnd},

		Webhooks: []providertest.WebhookCase{
			{Name: "verification", Request: verify(testVerify), Status: http.StatusNoContent},
			{Name: "wrong verification code", Request: verify("guess"), Refused: true, Forged: true, Status: http.StatusNotFound},
			{Name: "F11 signed activities", Request: post(f11Body, f11Sig), Status: http.StatusNoContent,
				Want: []providers.Notification{{VendorUser: testUser, Event: providers.EventData, Kinds: activities, Start: s11, End: e11}}},
			{Name: "F13 notification", Request: post(f13, fitbittest.Sign([]byte(f13), fitbittest.ClientSecret)), Status: http.StatusNoContent,
				Want: []providers.Notification{{VendorUser: testUser, Event: providers.EventData, Kinds: activities, Start: s13, End: e13}}},
			{Name: "revoked access", Request: post(revoked, fitbittest.Sign([]byte(revoked), fitbittest.ClientSecret)), Status: http.StatusNoContent,
				Want: []providers.Notification{{VendorUser: testUser, Event: providers.EventRevoked}}},
			{Name: "F11 keyed without &", Request: post(f11Body, f11SigNoAmp), Refused: true, Forged: true, Status: http.StatusNotFound},
			{Name: "unsigned", Request: post(f11Body, ""), Refused: true, Forged: true, Status: http.StatusNotFound},
			{Name: "malformed after a valid signature", Request: post(`{"not":"an array"}`, fitbittest.Sign([]byte(`{"not":"an array"}`), fitbittest.ClientSecret)),
				Refused: true, Status: http.StatusBadRequest},
		},
	})
}
