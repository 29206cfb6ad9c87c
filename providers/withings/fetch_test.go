package withings

import (
	"errors"
	"net/url"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/providers"
	"github.com/openhealthexchange/ohx/providers/providertest"
)

// TestFetchFamilies reads every family of a query in turn: one vendor page per Fetch, the cursor
// carrying family and offset, and one sync horizon (getmeas updatetime) on every page.
func TestFetchFamilies(t *testing.T) {
	routes := ecgRoutes()
	routes["POST /measure action=getmeas"] = file("getmeas_page1.json")
	routes["POST /measure action=getmeas offset=100"] = file("getmeas_page2.json")
	routes["POST /v2/measure action=getactivity"] = file("getactivity.json")
	routes["POST /v2/sleep action=getsummary"] = file("getsummary.json")
	f := newFixture(t, routes, fixtureOpts{})
	got, pages := fetchAll(t, f.c, providers.Query{Since: time.Unix(1704000000, 0)})
	var order []string
	for _, r := range f.srv.Requests() {
		order = append(order, r.Path+" "+r.Form.Get("action"))
	}
	wantOrder := []string{
		"/measure getmeas", "/measure getmeas", "/v2/measure getactivity", "/v2/sleep getsummary",
		"/v2/heart list", "/v2/heart get", "/v2/heart get",
	}
	if diff := cmp.Diff(wantOrder, order); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
	if len(pages) != 5 {
		t.Errorf("%d pages, want 5 (two getmeas pages, then one per family)", len(pages))
	}
	for i, p := range pages {
		if !p.SyncedUntil.Equal(time.Unix(1704240000, 0)) {
			t.Errorf("page %d SyncedUntil = %v, want the first updatetime", i, p.SyncedUntil)
		}
	}
	kinds := map[fhir.SampleKind]int{}
	for _, s := range got {
		kinds[s.Kind]++
	}
	// Default kinds: everything the mapper codes, daily distance and floors included.
	if kinds[fhir.KindDistance] == 0 || kinds[fhir.KindElevation] == 0 || kinds[fhir.KindSteps] == 0 || kinds[fhir.KindSleep] == 0 ||
		kinds[fhir.KindECG] != 2 || kinds[fhir.KindWeight] != 2 {
		t.Errorf("kinds %v", kinds)
	}
}

func TestFetchWithoutMeasuresUsesLocalHorizon(t *testing.T) {
	f := newFixture(t, map[string]providertest.Route{
		"POST /v2/sleep action=getsummary": file("getsummary.json"),
	}, fixtureOpts{})
	_, pages := fetchAll(t, f.c, providers.Query{Kinds: []fhir.SampleKind{fhir.KindSleep}, Since: time.Unix(1704000000, 0)})
	if want := testNow.Add(-5 * time.Minute); len(pages) != 1 || !pages[0].SyncedUntil.Equal(want) {
		t.Errorf("SyncedUntil = %v, want %v", pages[0].SyncedUntil, want)
	}
}

func TestFetchQueries(t *testing.T) {
	f := newFixture(t, map[string]providertest.Route{
		"POST /measure action=getmeas": file("getmeas_page2.json"),
	}, fixtureOpts{kinds: []fhir.SampleKind{fhir.KindWeight}})
	ctx, ts := t.Context(), bearer("a1")

	// A zero query reads everything (lastupdate 0).
	if _, err := f.c.Fetch(ctx, testUser, ts, providers.Query{}); err != nil {
		t.Fatal(err)
	}
	if r := f.requests("/measure")[0].Form; r.Get("lastupdate") != "0" {
		t.Errorf("zero query form %v", r)
	}
	// Kinds that are not enabled read nothing.
	p, err := f.c.Fetch(ctx, testUser, ts, providers.Query{Kinds: []fhir.SampleKind{fhir.KindSteps}, Since: time.Unix(1, 0)})
	if err != nil || len(p.Samples) != 0 || p.Next != "" {
		t.Errorf("disabled kind: page %+v, err %v", p, err)
	}
	// Systolic asks for the BP panel.
	g := newFixture(t, map[string]providertest.Route{"POST /measure action=getmeas": file("getmeas_page2.json")}, fixtureOpts{})
	if _, err := g.c.Fetch(ctx, testUser, ts, providers.Query{Kinds: []fhir.SampleKind{fhir.KindSystolic}, Since: time.Unix(1, 0)}); err != nil {
		t.Fatal(err)
	}
	if mt := g.requests("/measure")[0].Form.Get("meastypes"); mt != "9,10" {
		t.Errorf("meastypes for systolic = %q, want 9,10", mt)
	}
	for name, q := range map[string]providers.Query{
		"bad cursor":      {Since: time.Unix(1, 0), Cursor: "%%%"},
		"foreign family":  {Since: time.Unix(1, 0), Cursor: cursor{Family: famECG}.encode()},
		"inverted window": {Start: time.Unix(100, 0), End: time.Unix(50, 0)},
		"window no start": {End: time.Unix(50, 0)},
	} {
		_, err := f.c.Fetch(ctx, testUser, ts, q)
		var ue *providers.UpstreamError
		if !errors.As(err, &ue) || ue.Kind != providers.KindPermanent {
			t.Errorf("%s: err %v, want a permanent error", name, err)
		}
	}
}

func TestPaginationMustAdvance(t *testing.T) {
	f := newFixture(t, map[string]providertest.Route{
		"POST /measure action=getmeas": body(`{"status":0,"body":{"updatetime":1,"timezone":"UTC","more":1,"offset":0,"measuregrps":[]}}`),
	}, fixtureOpts{kinds: []fhir.SampleKind{fhir.KindWeight}})
	_, err := f.c.Fetch(t.Context(), testUser, bearer("a1"), providers.Query{Since: time.Unix(1, 0)})
	if ue := upstream(t, err); ue.Kind != providers.KindPermanent {
		t.Errorf("kind %s, want permanent", ue.Kind)
	}
}

func TestDevices(t *testing.T) {
	f := newFixture(t, map[string]providertest.Route{"POST /v2/user action=getdevice": file("getdevice.json")}, fixtureOpts{})
	got, err := f.c.Devices(t.Context(), testUser, bearer("a1"))
	if err != nil {
		t.Fatal(err)
	}
	want := []fhir.DeviceInfo{
		{Provider: "withings", UserID: testUser, ID: "a1b2c3d4e5f6", Type: "Blood Pressure Monitor", Kind: fhir.DeviceKindBloodPressureMonitor, Model: "BPM Core", ModelID: "44",
			Manufacturer: "Withings", Battery: "high", LastSync: time.Unix(1704067200, 0), Timezone: "Europe/Paris", ECG: true},
		{Provider: "withings", UserID: testUser, ID: "7c1f0e2a9b4d", Type: "Scale", Kind: fhir.DeviceKindScale, Model: "Body Cardio", ModelID: "6",
			Manufacturer: "Withings", Firmware: "1720", Battery: "medium", LastSync: time.Unix(1720177120, 0), Timezone: "America/New_York"},
		{Provider: "withings", UserID: testUser, ID: "1234567890", Type: "Activity Tracker", Kind: fhir.DeviceKindActivityTracker, Model: "ScanWatch 2", ModelID: "94",
			Manufacturer: "Withings", Battery: "low", LastSync: time.Unix(1721020530, 0), Timezone: "Europe/Paris", ECG: true},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("devices (-want +got):\n%s", diff)
	}
	if g := got[0].LastSync.Format(time.RFC3339); g != "2024-01-01T01:00:00+01:00" {
		t.Errorf("LastSync = %s, want the device's zone", g)
	}
	if c := f.rec.calls()[0]; !c.Cacheable || c.User != testUser || c.Endpoint != "user/getdevice" {
		t.Errorf("getdevice call %+v", c)
	}
}

func TestSubscribe(t *testing.T) {
	f := newFixture(t, map[string]providertest.Route{
		"POST /notify action=list":      file("notify_list.json"),
		"POST /notify action=subscribe": file("ok_empty.json"),
	}, fixtureOpts{})
	if err := f.c.Subscribe(t.Context(), testUser, bearer("a1"), testCallback, nil); err != nil {
		t.Fatal(err)
	}
	// Enabled by default: every mappable kind; 1 and 4 exist already for our URL.
	var applis []string
	for _, r := range f.requests("/notify") {
		if r.Form.Get("action") != "subscribe" {
			continue
		}
		want := url.Values{"action": {"subscribe"}, "callbackurl": {testCallback}, "appli": {r.Form.Get("appli")}, "comment": {"ohx"}}
		if diff := cmp.Diff(want, r.Form); diff != "" {
			t.Errorf("subscribe form (-want +got):\n%s", diff)
		}
		if r.Header.Get("Authorization") != "Bearer a1" {
			t.Errorf("subscribe without the user's token")
		}
		applis = append(applis, r.Form.Get("appli"))
	}
	if diff := cmp.Diff([]string{"2", "16", "44", "46", "54"}, applis); diff != "" {
		t.Errorf("subscribed applis (-want +got):\n%s", diff)
	}
	for _, c := range f.rec.calls() {
		if c.Cacheable {
			t.Errorf("%s is cacheable; notify calls decide what changes", c.Endpoint)
		}
	}

	t.Run("only the requested kinds", func(t *testing.T) {
		g := newFixture(t, map[string]providertest.Route{
			"POST /notify action=list":      file("notify_list_empty.json"),
			"POST /notify action=subscribe": file("ok_empty.json"),
		}, fixtureOpts{})
		err := g.c.Subscribe(t.Context(), testUser, bearer("a1"), testCallback, []fhir.SampleKind{fhir.KindWeight, fhir.KindSystolic})
		if err != nil {
			t.Fatal(err)
		}
		var applis []string
		for _, r := range g.requests("/notify")[1:] {
			applis = append(applis, r.Form.Get("appli"))
		}
		if diff := cmp.Diff([]string{"1", "4", "46"}, applis); diff != "" {
			t.Errorf("applis (-want +got):\n%s", diff)
		}
	})

	t.Run("errors are joined", func(t *testing.T) {
		g := newFixture(t, map[string]providertest.Route{
			"POST /notify action=list":              file("notify_list_empty.json"),
			"POST /notify action=subscribe":         file("ok_empty.json"),
			"POST /notify action=subscribe appli=1": body(`{"status":293,"body":{},"error":"Callback URL is unknown or invalid"}`),
		}, fixtureOpts{})
		err := g.c.Subscribe(t.Context(), testUser, bearer("a1"), testCallback, []fhir.SampleKind{fhir.KindWeight, fhir.KindSteps})
		if ue := upstream(t, err); ue.Kind != providers.KindPermanent || ue.Status != 293 {
			t.Errorf("got %s %d", ue.Kind, ue.Status)
		}
		if n := len(g.requests("/notify")); n != 4 {
			t.Errorf("%d notify requests, want list + 3 subscribes (the failure does not stop the others)", n)
		}
	})
}

func TestUnsubscribe(t *testing.T) {
	f := newFixture(t, map[string]providertest.Route{
		"POST /notify action=list":   file("notify_list.json"),
		"POST /notify action=revoke": file("ok_empty.json"),
	}, fixtureOpts{})
	if err := f.c.Unsubscribe(t.Context(), testUser, bearer("a1"), testCallback); err != nil {
		t.Fatal(err)
	}
	var got []url.Values
	for _, r := range f.requests("/notify") {
		if r.Form.Get("action") == "revoke" {
			got = append(got, r.Form)
		}
	}
	want := []url.Values{
		{"action": {"revoke"}, "callbackurl": {testCallback}, "appli": {"1"}},
		{"action": {"revoke"}, "callbackurl": {testCallback}, "appli": {"4"}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("revokes (-want +got):\n%s", diff)
	}
}

// TestSamplesMap feeds every sample the fixtures produce to the FHIR mapper: the adapter's units,
// systems and record ids must be ones fhir.MapSample accepts.
func TestSamplesMap(t *testing.T) {
	routes := ecgRoutes()
	routes["POST /measure action=getmeas"] = file("getmeas_types.json")
	routes["POST /v2/measure action=getactivity"] = file("getactivity.json")
	routes["POST /v2/sleep action=getsummary"] = file("getsummary.json")
	f := newFixture(t, routes, fixtureOpts{})
	got, _ := fetchAll(t, f.c, providers.Query{Since: time.Unix(1, 0)})
	p := newFixture(t, map[string]providertest.Route{"POST /measure action=getmeas": file("getmeas_prior_art.json")}, fixtureOpts{kinds: measureKinds})
	more, _ := fetchAll(t, p.c, providers.Query{Since: time.Unix(1, 0)})
	got = append(got, more...)
	if len(got) < 40 {
		t.Fatalf("only %d samples", len(got))
	}
	for _, s := range got {
		if _, err := fhir.MapSample(s, "p1"); err != nil {
			t.Errorf("%s (%s): %v", s.RecordID, s.Kind, err)
		}
	}
}
