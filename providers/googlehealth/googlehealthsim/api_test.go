package googlehealthsim

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/oauth2"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/providers"
	"github.com/openhealthexchange/ohx/providers/googlehealth"
)

// TestEnv: the settings ohx reads, pointing at the simulator.
func TestEnv(t *testing.T) {
	h := newHarness(t, 1, "http://127.0.0.1:8080/webhooks/googlehealth")
	want := map[string]string{
		"OHX_GOOGLEHEALTH_CLIENT_ID":      testClientID,
		"OHX_GOOGLEHEALTH_CLIENT_SECRET":  testSecret,
		"OHX_GOOGLEHEALTH_API_URL":        "http://sim:1",
		"OHX_GOOGLEHEALTH_AUTH_URL":       "http://sim:1/o/oauth2/v2/auth",
		"OHX_GOOGLEHEALTH_TOKEN_URL":      "http://sim:1/token",
		"OHX_GOOGLEHEALTH_REVOKE_URL":     "http://sim:1/revoke",
		"OHX_GOOGLEHEALTH_WEBHOOK_SECRET": testHook,
		"OHX_GOOGLEHEALTH_KINDS":          "weight,fat-ratio,heart-rate,resting-heart-rate,spo2,steps,distance,elevation,calories,sleep,ecg",
	}
	if diff := cmp.Diff(want, h.sim.Env("http://sim:1/")); diff != "" {
		t.Errorf("Env (-want +got):\n%s", diff)
	}
	for _, k := range strings.Split(want["OHX_GOOGLEHEALTH_KINDS"], ",") {
		if !containsKind(googlehealth.SupportedKinds(), fhir.SampleKind(k)) {
			t.Errorf("kind %s is not one the adapter reads", k)
		}
	}
}

func containsKind(ks []fhir.SampleKind, k fhir.SampleKind) bool {
	for _, x := range ks {
		if x == k {
			return true
		}
	}
	return false
}

// TestScopes: a grant without a data type's scope gets Google's 403 for it, which the adapter
// skips, while the granted data types are served.
func TestScopes(t *testing.T) {
	h := newHarness(t, 3, "")
	caller, err := providers.NewClient(googlehealth.ClientConfig(), h.srv.Client(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	env := h.sim.Env(h.srv.URL)
	weightOnly, err := googlehealth.New(googlehealth.Config{ClientID: testClientID, ClientSecret: testSecret, RedirectURL: testRedirect,
		APIURL: h.srv.URL, AuthURL: env["OHX_GOOGLEHEALTH_AUTH_URL"], TokenURL: env["OHX_GOOGLEHEALTH_TOKEN_URL"],
		Kinds: []fhir.SampleKind{fhir.KindWeight}}, caller, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := h.world.People[0]
	code, verifier := h.code(t, weightOnly, p)
	g, err := weightOnly.Exchange(t.Context(), code, verifier)
	if err != nil {
		t.Fatal(err)
	}
	status, body := rawGet(t, h.srv.URL+"/v4/users/me/dataTypes/sleep/dataPoints", g.Token.AccessToken)
	var ge errorBody
	if status != http.StatusForbidden || json.Unmarshal(body, &ge) != nil || len(ge.Error.Details) != 1 || ge.Error.Details[0].Reason != "ACCESS_TOKEN_SCOPE_INSUFFICIENT" {
		t.Errorf("sleep without its scope: %d %s", status, body)
	}
	// The full adapter on the narrow grant: sleep is skipped, weights arrive.
	ss := fetchAll(t, h.gh, g, providers.Query{Start: h.world.Start(p), End: h.world.Epoch})
	got := countKinds(ss)
	if got[fhir.KindSleep] != 0 || got[fhir.KindWeight] != h.sim.Served(p)[fhir.KindWeight] {
		t.Errorf("fetched %v: want no sleep and every weight", got)
	}
}

// TestRollupLimits: a total-calories range over 14 days and an unknown data type are refused.
func TestRollupLimits(t *testing.T) {
	h := newHarness(t, 3, "")
	g := h.connect(t, h.world.People[0])
	post := func(path, body string) int {
		req, _ := http.NewRequest(http.MethodPost, h.srv.URL+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+g.Token.AccessToken)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	long := `{"range":{"start":{"date":{"year":2026,"month":10,"day":1}},"end":{"date":{"year":2026,"month":10,"day":16}}},"windowSizeDays":1}`
	if got := post("/v4/users/me/dataTypes/total-calories/dataPoints:dailyRollUp", long); got != http.StatusBadRequest {
		t.Errorf("15-day total-calories rollup: %d, want 400", got)
	}
	if got := post("/v4/users/me/dataTypes/steps/dataPoints:dailyRollUp", long); got != http.StatusOK {
		t.Errorf("15-day steps rollup: %d, want 200", got)
	}
	if got := post("/v4/users/me/dataTypes/glucose-ish/dataPoints:dailyRollUp", long); got != http.StatusNotFound {
		t.Errorf("unknown data type: %d, want 404", got)
	}
	if got := post("/v4/users/me/dataTypes/weight/dataPoints:dailyRollUp", long); got != http.StatusBadRequest {
		t.Errorf("weight rollup: %d, want 400", got)
	}
}

// TestConcurrentPush: pushes and API reads at once (run with -race).
func TestConcurrentPush(t *testing.T) {
	target := &hookTarget{}
	h := newHarness(t, 5, newHookServer(t, target))
	g := h.connect(t, h.world.People[0])
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			h.clock.Set(h.world.Epoch.Add(time.Duration(i+1) * time.Minute))
			if _, err := h.sim.Push(t.Context()); err != nil {
				t.Error(err)
			}
		}()
		go func() {
			defer wg.Done()
			if _, err := h.gh.Devices(t.Context(), g.UserID, oauth2.StaticTokenSource(g.Token)); err != nil {
				t.Error(err)
			}
			_ = h.sim.Served(h.world.People[0])
		}()
	}
	wg.Wait()
}
