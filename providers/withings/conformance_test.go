package withings_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/providers"
	"github.com/openhealthexchange/ohx/providers/providertest"
	"github.com/openhealthexchange/ohx/providers/withings"
)

const (
	confUser     = "12345" // the userid of the testdata/withings fixtures
	confSecret   = "conformance-webhook-secret"
	confRedirect = "https://ohx.example/connect/withings/callback"
)

func fixture(name string) providertest.Route { return providertest.Route{File: "withings/" + name} }

// TestConformance runs the adapter contract suite against a fake Withings serving the recorded
// testdata/withings answers.
func TestConformance(t *testing.T) {
	measures := map[string]providertest.Route{"POST /measure action=getmeas": fixture("getmeas_types.json")}
	activity := map[string]providertest.Route{"POST /v2/measure action=getactivity": fixture("getactivity.json")}
	sleep := map[string]providertest.Route{"POST /v2/sleep action=getsummary": fixture("getsummary.json")}
	ecg := map[string]providertest.Route{
		"POST /v2/heart action=list":               fixture("heart_list.json"),
		"POST /v2/heart action=get signalid=12345": fixture("heart_get_500hz.json"),
		"POST /v2/heart action=get signalid=67890": fixture("heart_get_300hz.json"),
	}
	kinds := map[fhir.SampleKind]map[string]providertest.Route{}
	for _, k := range withings.SupportedKinds() {
		switch k {
		case fhir.KindSteps, fhir.KindDistance, fhir.KindElevation, fhir.KindCalories:
			kinds[k] = activity
		case fhir.KindSleep, fhir.KindRespiratoryRate:
			kinds[k] = sleep
		case fhir.KindECG:
			kinds[k] = ecg
		default:
			kinds[k] = measures
		}
	}
	form := func(body string) providers.WebhookRequest {
		return providers.WebhookRequest{Method: http.MethodPost, Secret: confSecret, Body: []byte(body),
			Header: http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, Received: time.Now()}
	}
	head := form("")
	head.Method = http.MethodHead
	forged := form("userid=12345&appli=1&startdate=1704153600&enddate=1704153600")
	forged.Secret = "guessed"
	unsigned := forged
	unsigned.Secret = ""

	providertest.RunAdapter(t, providertest.AdapterHarness{
		New: func(t *testing.T, srv *providertest.Server) providers.Provider {
			t.Helper()
			pc, err := providers.NewClient(providers.ClientConfig{Provider: withings.Name, MaxRetries: -1, CacheTTL: -1,
				Timeout: 5 * time.Second}, srv.Client(), nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			c, err := withings.New(withings.Config{ClientID: "cid", ClientSecret: "csecret", RedirectURL: confRedirect,
				APIURL: srv.URL(), WebhookSecret: confSecret}, pc, nil)
			if err != nil {
				t.Fatal(err)
			}
			return c
		},
		User:        confUser,
		RedirectURL: confRedirect,
		Scopes:      withings.DefaultScopes,
		PKCE:        false, // https://developer.withings.com/developer-guide/v3/integration-guide/public-health-data-api/get-access/access-and-refresh-tokens-no-recover

		Exchange:       map[string]providertest.Route{"POST /v2/oauth2 action=requesttoken grant_type=authorization_code": fixture("token_exchange.json")},
		Refresh:        map[string]providertest.Route{"POST /v2/oauth2 action=requesttoken grant_type=refresh_token": fixture("token_refresh.json")},
		RefreshRefused: map[string]providertest.Route{"POST /v2/oauth2 action=requesttoken grant_type=refresh_token": fixture("token_refresh_invalid.json")},
		Revoke: map[string]providertest.Route{
			"POST /v2/signature action=getnonce": fixture("signature_getnonce.json"),
			"POST /v2/oauth2 action=revoke":      fixture("ok_empty.json"),
		},
		Devices: map[string]providertest.Route{"POST /v2/user action=getdevice": fixture("getdevice.json")},

		Kinds: kinds,
		Since: time.Unix(1704000000, 0),
		Paged: map[string]providertest.Route{
			"POST /measure action=getmeas":            fixture("getmeas_page1.json"),
			"POST /measure action=getmeas offset=100": fixture("getmeas_page2.json"),
		},
		PagedQuery: providers.Query{Kinds: []fhir.SampleKind{fhir.KindWeight}, Since: time.Unix(1704000000, 0)},
		Failure: func(status int, header http.Header) map[string]providertest.Route {
			return map[string]providertest.Route{"POST /measure": {Status: status, Header: header, Body: "upstream failure"}}
		},
		FailureQuery: providers.Query{Kinds: []fhir.SampleKind{fhir.KindWeight}, Since: time.Unix(1704000000, 0)},

		Webhooks: []providertest.WebhookCase{
			{Name: "URL check", Request: head, Status: http.StatusOK},
			{Name: "weight", Request: form("userid=12345&appli=1&startdate=1704153600&enddate=1704153600"), Status: http.StatusOK,
				Want: []providers.Notification{{VendorUser: confUser, Event: providers.EventData,
					Kinds: []fhir.SampleKind{fhir.KindBoneMass, fhir.KindFatFreeMass, fhir.KindFatMass, fhir.KindFatRatio, fhir.KindHeight,
						fhir.KindHydration, fhir.KindMuscleMass, fhir.KindPulseWaveVelocity, fhir.KindVO2Max, fhir.KindWeight},
					Start: time.Unix(1704153600, 0), End: time.Unix(1704153601, 0)}}},
			{Name: "unlink", Request: form("userid=12345&appli=46&action=unlink"), Status: http.StatusOK,
				Want: []providers.Notification{{VendorUser: confUser, Event: providers.EventRevoked}}},
			{Name: "forged secret", Request: forged, Refused: true, Forged: true, Status: http.StatusNotFound},
			{Name: "no secret", Request: unsigned, Refused: true, Forged: true, Status: http.StatusNotFound},
			{Name: "malformed", Request: form("userid=12345&appli=1&startdate=soon"), Refused: true, Status: http.StatusBadRequest},
		},
	})
}
