package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/openhealthexchange/ohx/providers/providertest"
	"github.com/openhealthexchange/ohx/store/sqlite"
)

// fakeWithings serves recorded Withings payloads for the whole connect-and-sync flow.
func fakeWithings(t *testing.T) *providertest.Server {
	return providertest.NewServer(t, map[string]providertest.Route{
		"POST /v2/oauth2 action=requesttoken": {File: "withings/token_exchange.json"},
		"POST /v2/user action=getdevice":      {File: "withings/getdevice_account.json"}, // the devices the measures name
		"POST /measure action=getmeas":        {Seq: []providertest.Route{{File: "withings/getmeas_page1.json"}, {File: "withings/getmeas_page2.json"}}},
		"POST /v2/measure action=getactivity": {File: "withings/getactivity.json"},
		"POST /v2/sleep action=getsummary":    {File: "withings/getsummary.json"},
		"POST /v2/heart action=list":          {File: "withings/heart_list.json"},
		"POST /v2/heart action=get":           {File: "withings/heart_get_500hz.json"},
		"POST /notify action=subscribe":       {File: "withings/ok_empty.json"},
		"POST /notify action=list":            {File: "withings/notify_list_empty.json"},
		"POST /notify action=revoke":          {File: "withings/ok_empty.json"},
		"POST /v2/signature action=getnonce":  {File: "withings/signature_getnonce.json"},
		"POST /v2/oauth2 action=revoke":       {File: "withings/ok_empty.json"},
	})
}

func postJSON(t *testing.T, u, token string, body any) (*http.Response, map[string]any) {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPost, u, bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var out map[string]any
	json.NewDecoder(res.Body).Decode(&out)
	return res, out
}

// TestWithingsConnectEndToEnd: connect link → vendor consent (faked) → callback → encrypted
// connection → device sync and backfill by the pipeline → FHIR search of the patient's data.
func TestWithingsConnectEndToEnd(t *testing.T) {
	fake := fakeWithings(t)
	origin, env := authServer(t,
		"OHX_WITHINGS_CLIENT_ID", "cid", "OHX_WITHINGS_CLIENT_SECRET", "csecret",
		"OHX_WITHINGS_API_URL", fake.URL(), "OHX_WITHINGS_AUTH_URL", fake.URL()+"/oauth2_user/authorize2", "OHX_BACKFILL_DAYS", "3650") // the recorded payloads are from 2024
	getenv := func(k string) string { return env[k] }
	var out, errOut bytes.Buffer
	if err := run(t.Context(), []string{"token", "-token-url", origin + "/auth/token"}, getenv, nil, &out, &errOut); err != nil {
		t.Fatalf("ohx token: %v %s", err, errOut.String())
	}
	token := strings.TrimSpace(out.String())

	// The EHR asks for a one-time link for its patient.
	res, link := postJSON(t, origin+"/connect/links", token, map[string]string{"patient": "p1", "provider": "withings"})
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("create link: %d %v", res.StatusCode, link)
	}
	if res, _ := postJSON(t, origin+"/connect/links", "", map[string]string{"patient": "p1", "provider": "withings"}); res.StatusCode != 401 {
		t.Errorf("link without a token: %d", res.StatusCode)
	}
	// The browser keeps cookies: the callback must come from the browser that opened the link.
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	r, err := browser.Get(link["url"].(string))
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	consent, err := url.Parse(r.Header.Get("Location"))
	if r.StatusCode != http.StatusFound || err != nil || !strings.HasPrefix(consent.String(), fake.URL()+"/oauth2_user/authorize2") {
		t.Fatalf("link → %d %q", r.StatusCode, r.Header.Get("Location"))
	}
	state := consent.Query().Get("state")
	if consent.Query().Get("redirect_uri") != origin+"/connect/withings/callback" || state == "" {
		t.Fatalf("consent URL: %s", consent)
	}
	// The link is single use.
	if r, _ := browser.Get(link["url"].(string)); r.StatusCode != http.StatusNotFound {
		t.Errorf("reusing the link: %d", r.StatusCode)
	}
	// Withings sends the browser back with a code.
	r, err = browser.Get(origin + "/connect/withings/callback?code=abc&state=" + url.QueryEscape(state))
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != http.StatusOK || fake.Hits("POST /v2/oauth2 action=requesttoken") != 1 {
		t.Fatalf("callback: %d, token exchanges %d", r.StatusCode, fake.Hits("POST /v2/oauth2 action=requesttoken"))
	}
	if r, _ := browser.Get(origin + "/connect/withings/callback?code=abc&state=" + url.QueryEscape(state)); r.StatusCode != http.StatusBadRequest {
		t.Errorf("replayed state: %d", r.StatusCode)
	}

	// The pipeline syncs devices and the backfill in the background.
	// Wait (bounded) until all three first jobs have run.
	deadline := time.Now().Add(30 * time.Second)
	var obs, da bundle
	for time.Now().Before(deadline) {
		obs, da = bundle{}, bundle{}
		getJSON(t, origin+"/fhir/Observation?patient=p1&_count=200", token, &obs)
		getJSON(t, origin+"/fhir/DeviceAssociation?patient=p1&_include=DeviceAssociation:device", token, &da)
		if len(obs.of("Observation")) > 2 && len(da.Entry) > 0 && fake.Hits("POST /notify action=subscribe") > 0 {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if len(obs.of("Observation")) <= 2 {
		t.Fatalf("backfill stored %d Observations for p1", len(obs.of("Observation")))
	}
	var weights bundle
	getJSON(t, origin+"/fhir/Observation?patient=p1&code=http://loinc.org|29463-7&_include=Observation:device", token, &weights)
	var nw, nd int
	for _, id := range weights.ids() {
		if strings.HasPrefix(id, "Observation/") {
			nw++
		} else if strings.HasPrefix(id, "Device/") {
			nd++
		}
	}
	if os.Getenv("OHX_TEST_LOGS") != "" {
		var all struct {
			Entry []struct{ Resource json.RawMessage }
		}
		getJSON(t, origin+"/fhir/Observation?patient=p1&_count=200", token, &all)
		for _, e := range all.Entry {
			t.Logf("%.300s", e.Resource)
		}
	}
	if nw == 0 || nd == 0 {
		t.Errorf("body weights with their scale: %v", weights.ids())
	}
	var devices []string
	for _, id := range da.ids() {
		if strings.HasPrefix(id, "Device/") {
			devices = append(devices, id)
		}
	}
	if len(devices) == 0 || len(da.ids()) != 2*len(devices) {
		t.Errorf("devices through associations: %v", da.ids())
	}
	var st struct {
		Connections []struct{ Provider, Status, LastSync string }
	}
	if code := getJSON(t, origin+"/connect/status?patient=p1", token, &st); code != 200 || len(st.Connections) != 1 || st.Connections[0].Status != "active" || st.Connections[0].LastSync == "" {
		t.Errorf("status: %d %+v", code, st)
	}
	// One subscription per notification category of the enabled kinds, all to our secret URL.
	if fake.Hits("POST /notify action=subscribe") == 0 {
		t.Errorf("no webhook subscription")
	}
	sub := fake.Requests()
	i := slices.IndexFunc(sub, func(r providertest.Recorded) bool { return r.Form.Get("action") == "subscribe" })
	if i < 0 || !strings.HasPrefix(sub[i].Form.Get("callbackurl"), origin+"/webhooks/withings/") {
		t.Fatalf("callback URL registered: %d requests", len(sub))
	}

	// The vendor tokens are encrypted at rest: the raw store never holds them in clear.
	st2, err := sqlite.Open(context.Background(), env["OHX_DATA_DIR"], sqlite.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	rows, err := st2.DB().Query(`SELECT doc FROM records`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var doc []byte
		rows.Scan(&doc)
		if bytes.Contains(doc, []byte(`"a1"`)) || bytes.Contains(doc, []byte(`"r1"`)) {
			t.Errorf("a vendor token is stored in clear: %.80s", doc)
		}
	}

	// A webhook for the account queues a sync; a wrong secret is a 404.
	if r, _ := http.Post(origin+"/webhooks/withings/wrong", "application/x-www-form-urlencoded", strings.NewReader("userid=12345&appli=1")); r.StatusCode != http.StatusNotFound {
		t.Errorf("webhook with a wrong secret: %d", r.StatusCode)
	}
	cb := sub[i].Form.Get("callbackurl")
	if r, _ := http.Post(cb, "application/x-www-form-urlencoded", strings.NewReader("userid=12345&appli=1&startdate=1&enddate=2")); r.StatusCode != http.StatusOK {
		t.Errorf("webhook: %d", r.StatusCode)
	}

	// The same Withings account cannot be linked to another patient.
	_, link2 := postJSON(t, origin+"/connect/links", token, map[string]string{"patient": "p2", "provider": "withings"})
	r, err = browser.Get(link2["url"].(string))
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	consent2, _ := url.Parse(r.Header.Get("Location"))
	r, err = browser.Get(origin + "/connect/withings/callback?code=abc&state=" + url.QueryEscape(consent2.Query().Get("state")))
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != http.StatusConflict {
		t.Errorf("linking p1's Withings account to p2: %d, want 409", r.StatusCode)
	}
	var p2status struct{ Connections []struct{ Provider string } }
	if getJSON(t, origin+"/connect/status?patient=p2", token, &p2status); len(p2status.Connections) != 0 {
		t.Errorf("p2 got a connection: %+v", p2status)
	}
	// A deep link that is not allow-listed is refused when the link is made.
	if res, _ := postJSON(t, origin+"/connect/links", token, map[string]string{"patient": "p1", "provider": "withings", "redirect": "https://evil.example/"}); res.StatusCode != http.StatusBadRequest {
		t.Errorf("unlisted redirect: %d", res.StatusCode)
	}

	// Disconnect ends the associations and forgets the tokens; Observations stay.
	req, _ := http.NewRequest(http.MethodDelete, origin+"/connect/withings?patient=p1", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	if r, err := http.DefaultClient.Do(req); err != nil || r.StatusCode != http.StatusNoContent {
		t.Fatalf("disconnect: %v %v", err, r)
	}
	var after bundle
	getJSON(t, origin+"/fhir/DeviceAssociation?patient=p1&status=http://hl7.org/fhir/deviceassociation-status|attached", token, &after)
	if len(after.Entry) != 0 {
		t.Errorf("associations still attached after disconnect: %v", after.ids())
	}
	var kept bundle
	getJSON(t, origin+"/fhir/Observation?patient=p1&_count=200", token, &kept)
	// Every Observation found before is still there (the count alone would let an
	// OperationOutcome entry of the earlier search, a read-through warning, hide a loss).
	for _, id := range obs.of("Observation") {
		if !slices.Contains(kept.of("Observation"), id) {
			t.Errorf("disconnect without purge lost %s (%d Observations before, %d after)", id, len(obs.of("Observation")), len(kept.of("Observation")))
		}
	}
}
