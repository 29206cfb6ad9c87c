package fitbitsim

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
)

// get performs an API request on the simulator's handler directly, as from one fixed host.
func get(t testing.TB, s *Simulator, token, path string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, "http://api.fitbit.test"+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, req)
	return rec
}

// TestDeterminism: two simulators on one seed serve byte-identical answers.
func TestDeterminism(t *testing.T) {
	a, b := newEnv(t, envOpts{}), newEnv(t, envOpts{})
	p := a.people[1]
	ga, gb := a.connect(t, p), b.connect(t, b.people[1])
	if ga.UserID != gb.UserID {
		t.Fatalf("user ids %s and %s", ga.UserID, gb.UserID)
	}
	paths := []string{
		"/1/user/-/profile.json",
		"/1/user/-/devices.json",
		"/1/user/-/activities/steps/date/2026-01-10/2026-03-30.json",
		"/1/user/-/activities/distance/date/2026-03-01/2026-03-31.json",
		"/1/user/-/activities/calories/date/2026-03-01/2026-03-31.json",
		"/1/user/-/activities/floors/date/2026-03-01/2026-03-31.json",
		"/1/user/-/activities/heart/date/2026-03-01/2026-03-31.json",
		"/1/user/-/body/log/weight/date/2026-03-01/2026-03-31.json",
		"/1/user/-/body/log/fat/date/2026-03-01/2026-03-31.json",
		"/1.2/user/-/sleep/date/2026-03-01/2026-03-31.json",
		"/1/user/-/spo2/date/2026-03-01/2026-03-30.json",
		"/1/user/-/hrv/date/2026-03-01/2026-03-30.json",
		"/1/user/-/br/date/2026-03-01/2026-03-30.json",
		"/1/user/-/temp/skin/date/2026-03-01/2026-03-30.json",
		"/1/user/-/ecg/list.json?afterDate=2026-01-01&sort=asc&limit=10&offset=0",
	}
	for _, path := range paths {
		ra, rb := get(t, a.sim, ga.Token.AccessToken, path), get(t, b.sim, gb.Token.AccessToken, path)
		if ra.Code != http.StatusOK || rb.Code != http.StatusOK {
			t.Errorf("%s: status %d and %d", path, ra.Code, rb.Code)
			continue
		}
		if !json.Valid(ra.Body.Bytes()) {
			t.Errorf("%s: not JSON", path)
		}
		if !bytes.Equal(ra.Body.Bytes(), rb.Body.Bytes()) {
			t.Errorf("%s: the two simulators answer differently", path)
		}
		if ra.Header().Get("Fitbit-Rate-Limit-Remaining") == "" {
			t.Errorf("%s: no rate-limit headers", path)
		}
	}
}
