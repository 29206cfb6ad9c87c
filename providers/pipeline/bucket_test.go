package pipeline

import (
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/openhealthexchange/ohx/providers"
	"github.com/openhealthexchange/ohx/providers/providertest"
	"github.com/openhealthexchange/ohx/providers/withings"
	"github.com/openhealthexchange/ohx/store"
)

func TestBucket(t *testing.T) {
	d := func(s string) time.Time {
		t.Helper()
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, tc := range []struct {
		name                     string
		start, end, wantS, wantE time.Time
	}{
		{"none", time.Time{}, time.Time{}, time.Time{}, time.Time{}},
		{"a second", d("2024-01-02T08:30:00Z"), d("2024-01-02T08:30:01Z"), d("2024-01-02T00:00:00Z"), d("2024-01-03T00:00:00Z")},
		{"midnight bounds stay", d("2024-01-02T00:00:00Z"), d("2024-01-03T00:00:00Z"), d("2024-01-02T00:00:00Z"), d("2024-01-03T00:00:00Z")},
		{"over midnight", d("2024-01-02T23:00:00Z"), d("2024-01-03T01:00:00Z"), d("2024-01-02T00:00:00Z"), d("2024-01-04T00:00:00Z")},
		{"another zone", d("2024-01-02T08:30:00+10:00"), d("2024-01-02T08:31:00+10:00"), d("2024-01-01T00:00:00Z"), d("2024-01-02T00:00:00Z")},
		{"start only", d("2024-01-02T08:30:00Z"), time.Time{}, d("2024-01-02T00:00:00Z"), time.Time{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, e := Bucket(tc.start, tc.end)
			if !s.Equal(tc.wantS) || !e.Equal(tc.wantE) {
				t.Errorf("Bucket(%v, %v) = %v, %v; want %v, %v", tc.start, tc.end, s, e, tc.wantS, tc.wantE)
			}
		})
	}
}

// TestNotificationStorm: a vendor's retry storm — duplicate deliveries and notifications of one
// patient with many different small windows on two days, for two kind families, decoded by the
// real Withings adapter from the vendor's form bodies — queues one job per kind family and day,
// and running the queue calls the fake Withings once per kind family and day: three calls for
// 60 notifications.
func TestNotificationStorm(t *testing.T) {
	g := newRig(t, map[string]providertest.Route{getmeas: {File: "withings/getmeas_page2.json"}})
	ctx := t.Context()
	caller, err := providers.NewClient(providers.ClientConfig{Provider: withings.Name, CacheTTL: -1, MaxRetries: -1}, g.fake.Client(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	hooks, err := withings.New(withings.Config{ClientID: "c", ClientSecret: "s", RedirectURL: "https://ohx.test/cb", APIURL: g.fake.URL(), WebhookSecret: "hook"}, caller, nil)
	if err != nil {
		t.Fatal(err)
	}
	day1 := time.Date(2024, 1, 2, 0, 0, 0, 0, time.UTC).Unix()
	day2 := day1 + 86400
	nf := g.r.Notifier()
	deliver := func(appli int, start, end int64) {
		t.Helper()
		form := url.Values{"userid": {"12345"}, "appli": {fmt.Sprint(appli)}, "startdate": {fmt.Sprint(start)}, "enddate": {fmt.Sprint(end)}}
		resp, err := hooks.HandleWebhook(ctx, providers.WebhookRequest{Method: "POST", Body: []byte(form.Encode()), Secret: "hook", Received: time.Now()})
		if err != nil || len(resp.Notifications) != 1 {
			t.Fatalf("HandleWebhook: %+v, %v", resp, err)
		}
		if err := nf.Notify(ctx, withings.Name, resp.Notifications); err != nil {
			t.Fatal(err)
		}
	}
	n := 0
	for i := range 20 { // weight on day 1, every window different, each delivered twice
		deliver(1, day1+int64(i)*3600, day1+int64(i)*3600+60)
		deliver(1, day1+int64(i)*3600, day1+int64(i)*3600+60)
		n += 2
	}
	for i := range 10 { // weight on day 2
		deliver(1, day2+int64(i)*600, day2+int64(i)*600+1)
		n++
	}
	for i := range 10 { // blood pressure on day 1
		deliver(4, day1+int64(i)*60, day1+int64(i)*60+1)
		n++
	}
	if got := g.notifications("queued") + g.notifications("coalesced"); got != float64(n) {
		t.Fatalf("%v notifications counted, want %d", got, n)
	}
	if q := g.notifications("queued"); q != 3 {
		t.Errorf("%v jobs queued for %d notifications, want 3 (kind family × day)", q, n)
	}
	var windows []string
	for _, j := range g.pending(t) {
		windows = append(windows, jobWindow(t, j))
	}
	slices.Sort(windows)
	want := []string{
		"2024-01-02T00:00:00Z/2024-01-03T00:00:00Z/blood-pressure",
		"2024-01-02T00:00:00Z/2024-01-03T00:00:00Z/bone-mass",
		"2024-01-03T00:00:00Z/2024-01-04T00:00:00Z/bone-mass",
	}
	if d := cmp.Diff(want, windows); d != "" {
		t.Errorf("queued windows (-want +got):\n%s", d)
	}
	for {
		ran, err := g.r.RunOnce(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if ran == 0 {
			break
		}
	}
	var calls []string
	for _, r := range g.fake.Requests() {
		calls = append(calls, r.Route+" "+r.Form.Get("startdate")+"-"+r.Form.Get("enddate")+" "+r.Form.Get("meastypes"))
	}
	slices.Sort(calls)
	if len(calls) != 3 || len(slices.Compact(slices.Clone(calls))) != 3 {
		t.Errorf("vendor calls for %d notifications:\n%v\nwant 3 distinct: one per kind family and day", n, calls)
	}
	if d := g.dead(t); len(d) != 0 {
		t.Errorf("dead letters: %+v", d)
	}
}

// jobWindow names a fetch job by its window and first kind.
func jobWindow(t *testing.T, j store.Job) string {
	t.Helper()
	w := decodeWork(t, j)
	return w.Start.Format(time.RFC3339) + "/" + w.End.Format(time.RFC3339) + "/" + string(w.Kinds[0])
}

func decodeWork(t *testing.T, j store.Job) Work {
	t.Helper()
	var w Work
	if err := json.Unmarshal(j.Payload, &w); err != nil {
		t.Fatalf("job %s payload: %v", j.ID, err)
	}
	return w
}
