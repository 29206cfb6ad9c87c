package withings

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/providers"
	"github.com/openhealthexchange/ohx/providers/providertest"
)

func delivery(body string) providers.WebhookRequest {
	return providers.WebhookRequest{Method: http.MethodPost, Secret: testWebhookSecret, Body: []byte(body),
		Header: http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, Received: testNow}
}

// refused asserts err is a *providers.WebhookError with status and returns it.
func refused(t *testing.T, err error, status int) *providers.WebhookError {
	t.Helper()
	var we *providers.WebhookError
	if !errors.As(err, &we) || we.Status != status {
		t.Fatalf("error %v, want a *WebhookError with status %d", err, status)
	}
	return we
}

// TestHandleWebhookAuth: only the configured secret path segment authenticates a request, for
// the URL check as for a delivery; without a configured secret nothing does.
func TestHandleWebhookAuth(t *testing.T) {
	f := newFixture(t, nil, fixtureOpts{})
	for _, secret := range []string{"", "wrong", testWebhookSecret + "x", testWebhookSecret[:len(testWebhookSecret)-1], strings.ToUpper(testWebhookSecret)} {
		for _, m := range []string{http.MethodHead, http.MethodGet, http.MethodPost} {
			r := delivery("userid=12345&appli=1")
			r.Method, r.Secret = m, secret
			resp, err := f.c.HandleWebhook(t.Context(), r)
			we := refused(t, err, http.StatusNotFound)
			if !errors.Is(we, providers.ErrWebhookAuth) || len(resp.Notifications) != 0 {
				t.Errorf("%s with secret %q: %v %+v, want ErrWebhookAuth and nothing", m, secret, err, resp)
			}
		}
	}
	unset, err := New(Config{ClientID: "cid", ClientSecret: "cs", RedirectURL: "https://ohx.example/cb"}, f.rec, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := delivery("userid=12345&appli=1")
	r.Secret = ""
	if _, err := unset.HandleWebhook(t.Context(), r); !errors.Is(err, providers.ErrWebhookAuth) {
		t.Errorf("no configured secret, empty path secret: %v, want ErrWebhookAuth", err)
	}
	if n := len(f.srv.Requests()); n != 0 {
		t.Errorf("%d vendor requests on the webhook path", n)
	}
}

// TestHandleWebhookURLCheck: Withings checks the callback URL with HEAD (and GET) while
// subscribing: 200, no body, no notification.
func TestHandleWebhookURLCheck(t *testing.T) {
	f := newFixture(t, nil, fixtureOpts{})
	for _, m := range []string{http.MethodHead, http.MethodGet} {
		r := delivery("")
		r.Method = m
		resp, err := f.c.HandleWebhook(t.Context(), r)
		if err != nil || resp.Status != http.StatusOK || len(resp.Body) != 0 || len(resp.Notifications) != 0 {
			t.Errorf("%s: %+v %v, want 200 and nothing else", m, resp, err)
		}
	}
	r := delivery("")
	r.Method = http.MethodPut
	_, err := f.c.HandleWebhook(t.Context(), r)
	refused(t, err, http.StatusMethodNotAllowed)
}

// TestHandleWebhookDeliveries decodes every kind of delivery: categories to the enabled kinds
// they announce, windows, profile events, and what is acknowledged without a notification.
func TestHandleWebhookDeliveries(t *testing.T) {
	f := newFixture(t, nil, fixtureOpts{kinds: []fhir.SampleKind{
		fhir.KindWeight, fhir.KindFatRatio, fhir.KindBloodPressure, fhir.KindSteps, fhir.KindSleep, fhir.KindECG,
	}})
	unix := func(s int64) time.Time { return time.Unix(s, 0).UTC() }
	day := func(d string) (time.Time, time.Time) {
		t0, _ := time.Parse(time.DateOnly, d)
		return t0.Add(-14 * time.Hour), t0.Add(38 * time.Hour)
	}
	d15s, d15e := day("2024-01-15")
	for _, tc := range []struct {
		name string
		body string
		want *providers.Notification // Key not compared
	}{
		{"weight", "userid=12345&appli=1&startdate=1530576000&enddate=1530698753",
			&providers.Notification{VendorUser: "12345", Event: providers.EventData, Kinds: []fhir.SampleKind{fhir.KindFatRatio, fhir.KindWeight},
				Start: unix(1530576000), End: unix(1530698754)}},
		{"equal start and end", "userid=12345&appli=4&startdate=1530576000&enddate=1530576000",
			&providers.Notification{VendorUser: "12345", Event: providers.EventData, Kinds: []fhir.SampleKind{fhir.KindBloodPressure},
				Start: unix(1530576000), End: unix(1530576001)}},
		{"activity day", "userid=12345&appli=16&date=2024-01-15",
			&providers.Notification{VendorUser: "12345", Event: providers.EventData, Kinds: []fhir.SampleKind{fhir.KindSteps}, Start: d15s, End: d15e}},
		{"activity day as unix", "userid=12345&appli=16&date=1705320000", // 2024-01-15T12:00Z
			&providers.Notification{VendorUser: "12345", Event: providers.EventData, Kinds: []fhir.SampleKind{fhir.KindSteps}, Start: d15s, End: d15e}},
		{"sleep night, widened to every zone's local day", "userid=12345&appli=44&startdate=1704139200&enddate=1704168000",
			&providers.Notification{VendorUser: "12345", Event: providers.EventData, Kinds: []fhir.SampleKind{fhir.KindSleep},
				Start: unix(1704139200).Add(-14 * time.Hour), End: unix(1704168001).Add(14 * time.Hour)}},
		{"sleep without window", "userid=12345&appli=44",
			&providers.Notification{VendorUser: "12345", Event: providers.EventData, Kinds: []fhir.SampleKind{fhir.KindSleep}}},
		{"ecg", "userid=12345&appli=54&startdate=1720143000&enddate=1720143605&deviceid=abc",
			&providers.Notification{VendorUser: "12345", Event: providers.EventData, Kinds: []fhir.SampleKind{fhir.KindECG},
				Start: unix(1720143000), End: unix(1720143606)}},
		{"unlink", "userid=12345&appli=46&action=unlink",
			&providers.Notification{VendorUser: "12345", Event: providers.EventRevoked}},
		{"delete", "userid=12345&appli=46&action=delete",
			&providers.Notification{VendorUser: "12345", Event: providers.EventRevoked}},
		{"profile update", "userid=12345&appli=46&action=update", nil},
		{"temperature not enabled", "userid=12345&appli=2&startdate=1&enddate=2", nil},
		{"bed in", "userid=12345&appli=50&startdate=1&enddate=2", nil},
		{"no userid", "appli=1&startdate=1&enddate=2", nil},
		{"empty body", "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := f.c.HandleWebhook(t.Context(), delivery(tc.body))
			if err != nil || resp.Status != http.StatusOK {
				t.Fatalf("HandleWebhook: %+v %v, want 200", resp, err)
			}
			if tc.want == nil {
				if len(resp.Notifications) != 0 {
					t.Errorf("notifications %+v, want none", resp.Notifications)
				}
				return
			}
			if len(resp.Notifications) != 1 {
				t.Fatalf("notifications %+v, want one", resp.Notifications)
			}
			got := resp.Notifications[0]
			if got.Key == "" || strings.Contains(got.Key, "12345") {
				t.Errorf("Key %q: want a hash that carries no user id", got.Key)
			}
			got.Key = ""
			if diff := cmp.Diff(*tc.want, got); diff != "" {
				t.Errorf("notification (-want +got):\n%s", diff)
			}
		})
	}
	for _, body := range []string{
		"userid=%zz&appli=1", "userid=abc&appli=1", "userid=12345&appli=x", "userid=12345",
		"userid=12345&appli=1&startdate=x&enddate=2", "userid=12345&appli=1&startdate=5&enddate=4",
		"userid=12345&appli=1&startdate=-5&enddate=4", "userid=12345&appli=16&date=2024-13-01", "userid=12345&appli=16&date=soon",
	} {
		_, err := f.c.HandleWebhook(t.Context(), delivery(body))
		refused(t, err, http.StatusBadRequest)
	}
	if n := len(f.srv.Requests()); n != 0 {
		t.Errorf("%d vendor requests on the webhook path", n)
	}
}

// TestNotificationKey: a redelivery (same fields, in any order, with extra fields) gives the same
// key, so its job coalesces with the first; any field of the idempotency key changes it.
func TestNotificationKey(t *testing.T) {
	f := newFixture(t, nil, fixtureOpts{})
	key := func(body string) string {
		t.Helper()
		resp, err := f.c.HandleWebhook(t.Context(), delivery(body))
		if err != nil || len(resp.Notifications) != 1 {
			t.Fatalf("%s: %+v %v", body, resp, err)
		}
		return resp.Notifications[0].Key
	}
	base := key("userid=12345&appli=1&startdate=100&enddate=200")
	if k := key("enddate=200&startdate=100&appli=1&userid=12345&deviceid=d1"); k != base {
		t.Errorf("redelivery key %q, want %q", k, base)
	}
	seen := map[string]string{base: "base"}
	for _, body := range []string{
		"userid=12346&appli=1&startdate=100&enddate=200",
		"userid=12345&appli=4&startdate=100&enddate=200",
		"userid=12345&appli=1&startdate=101&enddate=200",
		"userid=12345&appli=1&startdate=100&enddate=201",
		"userid=12345&appli=16&date=2024-01-15",
		"userid=12345&appli=16&date=2024-01-16",
		"userid=12345&appli=46&action=unlink",
		"userid=12345&appli=46&action=delete",
	} {
		k := key(body)
		if prev, dup := seen[k]; dup {
			t.Errorf("%s: key %q already given to %s", body, k, prev)
		}
		seen[k] = body
	}
}

// recordedNotifications are deliveries as Withings sends them, one per data category, whose
// windows cover records of the testdata/withings fixtures.
var recordedNotifications = []struct {
	appli  int
	body   string
	family family
}{
	{appliWeight, "userid=12345&appli=1&startdate=1704153600&enddate=1704153600", famMeasure},
	{appliTemperature, "userid=12345&appli=2&startdate=1704153600&enddate=1704153600", famMeasure},
	{appliCirculatory, "userid=12345&appli=4&startdate=1704153600&enddate=1704153600", famMeasure},
	{appliActivity, "userid=12345&appli=16&date=2024-01-15", famActivity},
	{appliSleep, "userid=12345&appli=44&startdate=1704067200&enddate=1704096000", famSleep},
	{appliECG, "userid=12345&appli=54&startdate=1720143000&enddate=1720143605", famECG},
}

func fetchRoutes() map[string]providertest.Route {
	routes := ecgRoutes()
	routes["POST /measure action=getmeas"] = file("getmeas_page2.json")
	routes["POST /v2/measure action=getactivity"] = file("getactivity.json")
	routes["POST /v2/sleep action=getsummary"] = file("getsummary.json")
	return routes
}

// vendorCalls counts a fixture's requests as "path action".
func vendorCalls(f *fixture) map[string]int {
	out := map[string]int{}
	for _, r := range f.srv.Requests() {
		out[r.Path+" "+r.Form.Get("action")]++
	}
	return out
}

// TestNotificationFetchCalls: the Fetch a notification leads to (its kinds and window as the
// Query) makes one vendor call for the category's family — one getmeas with the category's
// meastypes and the window, one getactivity, one getsummary, one heart list plus one heart get per
// recording in the window — where an incremental sync of every kind (Query{Since}) calls every
// family.
func TestNotificationFetchCalls(t *testing.T) {
	full := newFixture(t, fetchRoutes(), fixtureOpts{})
	fetchAll(t, full.c, providers.Query{Since: time.Unix(1704000000, 0)})
	wantFull := map[string]int{"/measure getmeas": 1, "/v2/measure getactivity": 1, "/v2/sleep getsummary": 1, "/v2/heart list": 1, "/v2/heart get": 2}
	if diff := cmp.Diff(wantFull, vendorCalls(full)); diff != "" {
		t.Errorf("Query{Since} calls (-want +got):\n%s", diff)
	}
	total := 0
	for _, n := range vendorCalls(full) {
		total += n
	}
	t.Logf("incremental sync of every kind: %d vendor calls", total)

	for _, rn := range recordedNotifications {
		t.Run(fmt.Sprintf("appli %d", rn.appli), func(t *testing.T) {
			f := newFixture(t, fetchRoutes(), fixtureOpts{})
			resp, err := f.c.HandleWebhook(t.Context(), delivery(rn.body))
			if err != nil || len(resp.Notifications) != 1 {
				t.Fatalf("HandleWebhook: %+v %v", resp, err)
			}
			n := resp.Notifications[0]
			samples, _ := fetchAll(t, f.c, providers.Query{Kinds: n.Kinds, Start: n.Start, End: n.End})
			for _, s := range samples {
				if !f.c.wanted(n.Kinds)[s.Kind] {
					t.Errorf("sample of kind %s, not announced by appli %d", s.Kind, rn.appli)
				}
			}
			got := vendorCalls(f)
			var want map[string]int
			switch rn.family {
			case famMeasure:
				want = map[string]int{"/measure getmeas": 1}
				form := f.requests("/measure")[0].Form
				wantTypes := joinInts(meastypes(f.c.wanted(n.Kinds)))
				if form.Get("meastypes") != wantTypes || form.Get("startdate") != "1704153600" || form.Get("enddate") != "1704153601" || form.Has("lastupdate") {
					t.Errorf("getmeas form %v, want meastypes %s and the notification's window", form, wantTypes)
				}
				if rn.appli == appliWeight && len(samples) == 0 {
					t.Errorf("no sample for the weight notification")
				}
			case famActivity:
				want = map[string]int{"/v2/measure getactivity": 1}
				form := f.requests("/v2/measure")[0].Form
				if form.Get("startdateymd") != "2024-01-14" || form.Get("enddateymd") != "2024-01-16" || form.Has("lastupdate") {
					t.Errorf("getactivity form %v, want the days around 2024-01-15", form)
				}
				if len(samples) == 0 {
					t.Errorf("no sample for 2024-01-15")
				}
			case famSleep:
				want = map[string]int{"/v2/sleep getsummary": 1}
				if len(samples) == 0 {
					t.Errorf("no sleep sample")
				}
			case famECG:
				// One recording of the window has an ECG; the other is a BP-only record.
				want = map[string]int{"/v2/heart list": 1, "/v2/heart get": 1}
				if len(samples) != 1 {
					t.Errorf("%d ECG samples, want 1", len(samples))
				}
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("vendor calls (-want +got):\n%s", diff)
			}
		})
	}
}
