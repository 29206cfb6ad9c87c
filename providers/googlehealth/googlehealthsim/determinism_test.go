package googlehealthsim

import (
	"bytes"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/openhealthexchange/ohx/providers/sim"
)

// TestDeterministic: two simulators on one seed serve byte-identical JSON for the same requests
// (each with its own token); another seed serves other values.
func TestDeterministic(t *testing.T) {
	a, b, c := newHarness(t, 7, ""), newHarness(t, 7, ""), newHarness(t, 8, "")
	p := func(h *harness) *sim.Person { return h.world.People[2] }
	ta, tb, tc := a.connect(t, p(a)).Token.AccessToken, b.connect(t, p(b)).Token.AccessToken, c.connect(t, p(c)).Token.AccessToken
	start := a.world.Start(p(a)).UTC().Format("2006-01-02T15:04:05Z")
	hr := url.Values{"filter": {`heart_rate.sample_time.physical_time >= "` + start + `"`}, "pageSize": {"50"}}
	gets := []string{
		"/v4/users/me/identity", "/v4/users/me/settings", "/v4/users/me/pairedDevices",
		"/v4/users/me/dataTypes/weight/dataPoints", "/v4/users/me/dataTypes/body-fat/dataPoints",
		"/v4/users/me/dataTypes/heart-rate/dataPoints?" + hr.Encode(),
		"/v4/users/me/dataTypes/daily-resting-heart-rate/dataPoints", "/v4/users/me/dataTypes/daily-oxygen-saturation/dataPoints",
		"/v4/users/me/dataTypes/sleep/dataPoints", "/v4/users/me/dataTypes/electrocardiogram/dataPoints",
	}
	for _, path := range gets {
		sa, ba := rawGet(t, a.srv.URL+path, ta)
		sb, bb := rawGet(t, b.srv.URL+path, tb)
		if sa != http.StatusOK || sb != http.StatusOK || !bytes.Equal(ba, bb) {
			t.Errorf("GET %s: %d/%d, identical %v", path, sa, sb, bytes.Equal(ba, bb))
		}
		if _, bc := rawGet(t, c.srv.URL+path, tc); bytes.Equal(ba, bc) {
			t.Errorf("GET %s: seeds 7 and 8 served the same bytes", path)
		}
	}
	// The second heart-rate page through the first page's token: identical too.
	_, first := rawGet(t, a.srv.URL+gets[5], ta)
	i := bytes.Index(first, []byte(`"nextPageToken": "`))
	if i < 0 {
		t.Fatal("heart-rate page without nextPageToken")
	}
	tok := string(first[i+len(`"nextPageToken": "`):])
	tok = tok[:strings.IndexByte(tok, '"')]
	hr.Set("pageToken", tok)
	_, pa := rawGet(t, a.srv.URL+"/v4/users/me/dataTypes/heart-rate/dataPoints?"+hr.Encode(), ta)
	_, pb := rawGet(t, b.srv.URL+"/v4/users/me/dataTypes/heart-rate/dataPoints?"+hr.Encode(), tb)
	if !bytes.Equal(pa, pb) || bytes.Equal(pa, first) {
		t.Error("second heart-rate pages differ, or repeat the first")
	}
	body := `{"range":{"start":{"date":{"year":2026,"month":10,"day":20}},"end":{"date":{"year":2026,"month":11,"day":21}}},"windowSizeDays":1}`
	post := func(h *harness, tok string) []byte {
		req, _ := http.NewRequest(http.MethodPost, h.srv.URL+"/v4/users/me/dataTypes/steps/dataPoints:dailyRollUp", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/json")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		if res.StatusCode != http.StatusOK {
			t.Fatalf("rollup: %d %s", res.StatusCode, b)
		}
		return b
	}
	if ra, rb := post(a, ta), post(b, tb); !bytes.Equal(ra, rb) || !bytes.Contains(ra, []byte("countSum")) {
		t.Errorf("steps rollups differ or are empty:\n%s\n%s", ra, rb)
	}
}
