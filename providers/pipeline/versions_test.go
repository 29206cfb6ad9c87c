package pipeline

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/providers"
	"github.com/openhealthexchange/ohx/providers/providertest"
	"github.com/openhealthexchange/ohx/providers/withings"
	"github.com/openhealthexchange/ohx/store"
)

// These tests follow a vendor value that changes after it was synced end to end: fake Withings
// (HTTP) → notification → fetch job run by the runner → store → read back, current version and
// history. Observation.status: the mapping writes final, and clinical-mapping.md §1 keeps final
// until the value has been published to an EHR ("amended when the vendor changes a value we
// already published"); no publisher is configured here, so an updated value stays final.

// syncNotified queues the notifications (the webhook sink) and runs the queue dry.
func (g *rig) syncNotified(t *testing.T, ns ...providers.Notification) {
	t.Helper()
	ctx := t.Context()
	if err := g.r.Notifier().Notify(ctx, withings.Name, ns); err != nil {
		t.Fatal(err)
	}
	g.drain(t)
	if p, d := g.pending(t), g.dead(t); len(p) != 0 || len(d) != 0 {
		t.Fatalf("after the sync: %d pending and %d dead jobs, want none: %+v %+v", len(p), len(d), p, d)
	}
}

// observationCoded returns p1's Observations whose first coding is code, and fails unless
// there is exactly one.
func (g *rig) observationCoded(t *testing.T, code string) fhir.Observation {
	t.Helper()
	var out []fhir.Observation
	for _, o := range g.observations(t) {
		if len(o.Code.Coding) > 0 && o.Code.Coding[0].Code == code {
			out = append(out, o)
		}
	}
	if len(out) != 1 {
		t.Fatalf("%d Observations coded %s, want exactly one: %+v", len(out), code, out)
	}
	return out[0]
}

// history returns the stored versions of an Observation, newest first.
func (g *rig) history(t *testing.T, id string) []store.Entry {
	t.Helper()
	es, err := g.st.History(t.Context(), store.HistoryQuery{Type: "Observation", ID: id, Count: 100})
	if err != nil {
		t.Fatal(err)
	}
	return es
}

// calls counts the fake vendor's requests of a route (Set resets Hits).
func (g *rig) calls(route string) int {
	n := 0
	for _, r := range g.fake.Requests() {
		if r.Route == route {
			n++
		}
	}
	return n
}

func quantity(o fhir.Observation) string {
	if o.Value.ValueQuantity == nil || o.Value.ValueQuantity.Value == nil {
		return "<none>"
	}
	return string(*o.Value.ValueQuantity.Value)
}

func metaVersion(o fhir.Observation) string {
	if o.Meta == nil {
		return ""
	}
	return o.Meta.VersionID
}

// weightBody is a getmeas answer with measure group 2 of 2 January 2024 (as in
// getmeas_page2.json) weighing grams/1000 kg, last modified at modified.
func weightBody(grams, modified int64) string {
	return fmt.Sprintf(`{"status":0,"body":{"updatetime":%d,"timezone":"Europe/Paris","more":0,"offset":0,"measuregrps":[
 {"grpid":2,"attrib":0,"date":1704153600,"created":1704153660,"modified":%d,"category":1,"deviceid":"device-123","hash_deviceid":"device-123","model":"Body+","model_id":5,
  "measures":[{"value":%d,"type":1,"unit":-3,"algo":0,"fm":131}],"comment":null}]}}`, modified+10, modified, grams)
}

// TestChangedVendorValueVersions: a measure group the vendor changes after it was synced (a
// corrected weight) updates the same Observation to version 2 with the new value, status
// amended, and the history keeps version 1 with the old one; the same answer synced again
// writes nothing.
func TestChangedVendorValueVersions(t *testing.T) { onStores(t, testChangedVendorValueVersions) }

func testChangedVendorValueVersions(t *testing.T, open storeOpener) {
	g := newRigOn(t, open, map[string]providertest.Route{getmeas: {Body: weightBody(74800, 1704153660)}})
	g.syncNotified(t, weightNotification())
	first := g.observationCoded(t, "29463-7")
	if quantity(first) != "74.800" || metaVersion(first) != "1" || first.Status != "final" {
		t.Fatalf("first sync: value %s, version %q, status %q; want 74.800 (the vendor's digits), 1, final", quantity(first), metaVersion(first), first.Status)
	}

	// The user edits the weight in the Withings app: the group keeps its grpid, its value and
	// modified change, and Withings notifies the same day again.
	g.fake.Set(getmeas, providertest.Route{Body: weightBody(75100, 1704200000)})
	g.syncNotified(t, weightNotification())
	second := g.observationCoded(t, "29463-7")
	if second.ID != first.ID {
		t.Fatalf("the changed value is Observation/%s, want the same Observation/%s", second.ID, first.ID)
	}
	if quantity(second) != "75.100" || metaVersion(second) != "2" {
		t.Errorf("after the change: value %s, version %q; want 75.100, version 2", quantity(second), metaVersion(second))
	}
	// Version 1 was stored final, and so could have been read: the change is an amendment
	// (store.SetAmended).
	if second.Status != "amended" {
		t.Errorf("status after the change: %q, want amended", second.Status)
	}
	es := g.history(t, first.ID)
	if len(es) != 2 || es[0].VersionID != 2 || es[1].VersionID != 1 {
		t.Fatalf("history: %d versions %+v, want 2 and 1", len(es), es)
	}
	var v1 fhir.Observation
	if err := json.Unmarshal(es[1].JSON, &v1); err != nil {
		t.Fatal(err)
	}
	if quantity(v1) != "74.800" || v1.Status != "final" {
		t.Errorf("version 1 in the history: value %s, status %q; want the original 74.800, final", quantity(v1), v1.Status)
	}

	// A redelivery with nothing changed at the vendor makes no version 3.
	g.syncNotified(t, weightNotification())
	if got := g.observationCoded(t, "29463-7"); metaVersion(got) != "2" || len(g.history(t, first.ID)) != 2 {
		t.Errorf("re-sync of an unchanged value: version %q, %d versions; want 2 and 2", metaVersion(got), len(g.history(t, first.ID)))
	}
	if h := g.calls(getmeas); h != 3 {
		t.Errorf("getmeas calls: %d, want one per sync (3)", h)
	}
}

// activityFamily are the kinds a Withings activity notification (appli 16) announces.
var activityFamily = []fhir.SampleKind{fhir.KindSteps, fhir.KindDistance, fhir.KindElevation, fhir.KindCalories}

// activityNotification is what the Withings adapter makes of an activity notification of user
// 12345 for date=2024-01-15: the day widened by 14 h on both sides (every zone's local day).
func activityNotification() providers.Notification {
	day := time.Date(2024, 1, 15, 0, 0, 0, 0, time.UTC)
	return providers.Notification{VendorUser: "12345", Event: providers.EventData, Kinds: activityFamily,
		Start: day.Add(-14 * time.Hour), End: day.AddDate(0, 0, 1).Add(14 * time.Hour), Key: "12345/16/2024-01-15"}
}

// activityBody is a getactivity answer with the running totals of 15 January 2024 (Paris).
func activityBody(steps int, modified int64) string {
	return fmt.Sprintf(`{"status":0,"body":{"more":false,"offset":0,"activities":[
 {"date":"2024-01-15","timezone":"Europe/Paris","deviceid":"device-123","hash_deviceid":"device-123","brand":1,"is_tracker":true,"steps":%d,"distance":%d,"calories":%d,"elevation":3,"modified":%d,"model":"ScanWatch","model_id":93}]}}`,
		steps, steps*8/10, steps/30, modified)
}

// TestGrowingDailyStepsOneObservation: a day's step total synced three times through the day
// (1200, 5400, 9100) is one Observation of that local day, updated in place to version 3 with the
// final total, its history holding every partial value; a re-sync of the same total makes no
// new version.
func TestGrowingDailyStepsOneObservation(t *testing.T) {
	onStores(t, testGrowingDailyStepsOneObservation)
}

func testGrowingDailyStepsOneObservation(t *testing.T, open storeOpener) {
	const getactivity = "POST /v2/measure action=getactivity"
	g := newRigOn(t, open, map[string]providertest.Route{getactivity: {Body: activityBody(1200, 1705305600)}})
	g.syncNotified(t, activityNotification())
	first := g.observationCoded(t, "41950-7")
	if quantity(first) != "1200" || metaVersion(first) != "1" {
		t.Fatalf("morning sync: %s steps, version %q; want 1200, version 1", quantity(first), metaVersion(first))
	}
	if p := first.EffectivePeriod; p == nil || p.Start != "2024-01-15T00:00:00+01:00" || p.End != "2024-01-15T23:59:59+01:00" {
		t.Errorf("effective period %+v, want the local day of 15 January in Paris", first.EffectivePeriod)
	}
	for i, steps := range []int{5400, 9100} {
		g.fake.Set(getactivity, providertest.Route{Body: activityBody(steps, 1705305600+int64(i+1)*4*3600)})
		g.syncNotified(t, activityNotification())
	}
	last := g.observationCoded(t, "41950-7")
	if last.ID != first.ID {
		t.Fatalf("the evening total is Observation/%s, want the same Observation/%s", last.ID, first.ID)
	}
	if quantity(last) != "9100" || metaVersion(last) != "3" || last.Status != "amended" {
		t.Errorf("evening: %s steps, version %q, status %q; want 9100, version 3, amended (the morning's final total was stored)", quantity(last), metaVersion(last), last.Status)
	}
	var values []string
	for _, e := range g.history(t, first.ID) {
		var o fhir.Observation
		if err := json.Unmarshal(e.JSON, &o); err != nil {
			t.Fatal(err)
		}
		values = append(values, fmt.Sprintf("v%d:%s", e.VersionID, quantity(o)))
	}
	if fmt.Sprint(values) != "[v3:9100 v2:5400 v1:1200]" {
		t.Errorf("history %v, want [v3:9100 v2:5400 v1:1200]", values)
	}

	// The day is over: the same total synced again changes nothing.
	g.syncNotified(t, activityNotification())
	if got := g.observationCoded(t, "41950-7"); metaVersion(got) != "3" || quantity(got) != "9100" || len(g.history(t, first.ID)) != 3 {
		t.Errorf("re-sync of the same total: version %q, %s steps, %d versions; want 3, 9100, 3", metaVersion(got), quantity(got), len(g.history(t, first.ID)))
	}
	if h := g.calls(getactivity); h != 4 {
		t.Errorf("getactivity calls: %d, want one per sync (4)", h)
	}
}
