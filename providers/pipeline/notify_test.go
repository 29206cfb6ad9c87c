package pipeline

import (
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/providers"
	"github.com/openhealthexchange/ohx/providers/providertest"
	"github.com/openhealthexchange/ohx/providers/withings"
	"github.com/openhealthexchange/ohx/store"
)

const getmeas = "POST /measure action=getmeas"

// weightFamily are the kinds a Withings weight notification (appli 1) announces.
var weightFamily = []fhir.SampleKind{fhir.KindWeight, fhir.KindFatRatio, fhir.KindFatMass, fhir.KindFatFreeMass,
	fhir.KindMuscleMass, fhir.KindHydration, fhir.KindBoneMass, fhir.KindHeight}

// weightNotification is what the Withings adapter makes of a weight notification for user
// 12345 (appli=1, startdate and enddate).
func weightNotification() providers.Notification {
	return providers.Notification{VendorUser: "12345", Event: providers.EventData, Kinds: weightFamily,
		Start: time.Unix(1704153600, 0), End: time.Unix(1704153601, 0), Key: "12345/1/1704153600/1704153601"}
}

func (g *rig) notifications(outcome string) float64 {
	return testutil.ToFloat64(g.r.notifications.WithLabelValues(withings.Name, outcome))
}

// TestWithingsNotification: one weight notification makes one fetch job, which makes exactly
// one vendor call (getmeas over the notified window's day) and writes the Observation; the day
// is recorded as covered for each announced kind the deployment reads.
func TestWithingsNotification(t *testing.T) {
	g := newRig(t, map[string]providertest.Route{getmeas: {File: "withings/getmeas_page2.json"}})
	ctx := t.Context()
	n := weightNotification()
	if err := g.r.Notifier().Notify(ctx, withings.Name, []providers.Notification{n}); err != nil {
		t.Fatal(err)
	}
	p := g.pending(t)
	if len(p) != 1 || p[0].Type != TypeFetch || p[0].Priority != PriorityFetch {
		t.Fatalf("pending: %+v", p)
	}
	if got := g.notifications("queued"); got != 1 {
		t.Errorf("queued notifications: %v", got)
	}
	if n, err := g.r.RunOnce(ctx); n != 1 || err != nil {
		t.Fatalf("RunOnce: %d %v", n, err)
	}
	reqs := g.fake.Requests()
	if len(reqs) != 1 || reqs[0].Route != getmeas {
		t.Fatalf("vendor calls: %+v, want one getmeas", reqs)
	}
	if f := reqs[0].Form; f.Get("startdate") != "1704153600" || f.Get("enddate") == "" || f.Get("lastupdate") != "" {
		t.Errorf("getmeas form %v, want the notified window", f)
	}
	obs := g.observations(t)
	if len(obs) != 1 || obs[0].Code.Coding[0].Code != "29463-7" || obs[0].Subject.Reference != "Patient/p1" {
		t.Fatalf("observations: %+v", obs)
	}
	covs, err := g.r.Coverage(ctx, withings.Name, "p1")
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, c := range covs {
		kinds = append(kinds, c.Kind)
		// The notified second is widened to its UTC day (Bucket).
		want := []store.Interval{{Start: time.Unix(1704153600, 0).UTC(), End: time.Unix(1704153600+86400, 0).UTC()}}
		if diff := cmp.Diff(want, c.Intervals); diff != "" || c.Cursor != "" {
			t.Errorf("coverage of %s (-want +got):\n%s cursor %q", c.Kind, diff, c.Cursor)
		}
	}
	if want := coveredKinds(weightFamily, g.w.Kinds()); len(want) == 0 || !slices.Equal(kindStrings(want), kinds) {
		t.Errorf("covered kinds %v, want %v", kinds, want)
	}
	if p := g.pending(t); len(p) != 0 {
		t.Errorf("pending after the run: %+v", p)
	}
}

func kindStrings(ks []fhir.SampleKind) []string {
	out := make([]string, len(ks))
	for i, k := range ks {
		out[i] = string(k)
	}
	return out
}

// TestNotificationBurst: five identical notifications (redeliveries, a burst) queue one job,
// which calls the vendor once; unknown vendor users queue nothing.
func TestNotificationBurst(t *testing.T) {
	g := newRig(t, map[string]providertest.Route{getmeas: {File: "withings/getmeas_page2.json"}})
	ctx := t.Context()
	nf := g.r.Notifier()
	for range 4 {
		if err := nf.Notify(ctx, withings.Name, []providers.Notification{weightNotification()}); err != nil {
			t.Fatal(err)
		}
	}
	unknown := weightNotification()
	unknown.VendorUser = "99999"
	if err := nf.Notify(ctx, withings.Name, []providers.Notification{weightNotification(), unknown}); err != nil {
		t.Fatalf("a delivery with an unknown user: %v", err)
	}
	if p := g.pending(t); len(p) != 1 || p[0].Type != TypeFetch {
		t.Fatalf("pending: %+v, want one fetch", p)
	}
	if q, c, u := g.notifications("queued"), g.notifications("coalesced"), g.notifications("unknown_user"); q != 1 || c != 4 || u != 1 {
		t.Errorf("notifications queued %v coalesced %v unknown_user %v, want 1, 4, 1", q, c, u)
	}
	for {
		if n, _ := g.r.RunOnce(ctx); n == 0 {
			break
		}
	}
	if h := g.fake.Hits(getmeas); h != 1 {
		t.Errorf("getmeas calls: %d, want 1", h)
	}
	// A notification arriving while the job runs marks it to run once more (data announced
	// mid-run is fetched too); the store's Rerun semantics, not a second job.
	// The first vendor call of the run waits until the test has sent the notification (a
	// buffered signal and a Once: the handler never depends on the test being ready to receive).
	started := make(chan struct{}, 1)
	release := make(chan struct{})
	var first sync.Once
	g.fake.Set(getmeas, providertest.Route{Handler: func(w http.ResponseWriter, r *http.Request) {
		first.Do(func() {
			started <- struct{}{}
			<-release
		})
		http.ServeFile(w, r, "../../testdata/withings/getmeas_page2.json")
	}})
	nf.Notify(ctx, withings.Name, []providers.Notification{weightNotification()})
	done := make(chan struct{})
	go func() { defer close(done); g.r.RunOnce(ctx) }()
	<-started
	nf.Notify(ctx, withings.Name, []providers.Notification{weightNotification()})
	close(release)
	<-done
	if p := g.pending(t); len(p) != 1 {
		t.Fatalf("a notification during the run must requeue the job once: %+v", p)
	}
}

// TestNotificationRevoked: a revocation marks the connection needs-reauth and queues nothing;
// data notifications of such a connection queue nothing either.
func TestNotificationRevoked(t *testing.T) {
	g := newRig(t, nil)
	ctx := t.Context()
	nf := g.r.Notifier()
	if err := nf.Notify(ctx, withings.Name, []providers.Notification{{VendorUser: "12345", Event: providers.EventRevoked, Key: "k"}}); err != nil {
		t.Fatal(err)
	}
	conn, err := g.vault.Get(ctx, withings.Name, "p1")
	if err != nil || conn.Status != providers.StatusNeedsReauth || conn.LastError == "" {
		t.Errorf("connection after a revocation: %v %+v", err, conn)
	}
	if err := nf.Notify(ctx, withings.Name, []providers.Notification{weightNotification()}); err != nil {
		t.Fatal(err)
	}
	if p := g.pending(t); len(p) != 0 {
		t.Errorf("pending: %+v", p)
	}
	if r, i := g.notifications("revoked"), g.notifications("inactive"); r != 1 || i != 1 {
		t.Errorf("notifications revoked %v inactive %v, want 1 and 1", r, i)
	}
}

// TestIncrementalCoverage: a notification without a window syncs each kind incrementally from
// its cursor (kinds sharing a cursor in one vendor call) and moves the cursors to the vendor's
// horizon; a kind without a cursor starts from the connection's old all-kinds cursor.
func TestIncrementalCoverage(t *testing.T) {
	g := newRig(t, map[string]providertest.Route{getmeas: {File: "withings/getmeas_page2.json"}})
	ctx := t.Context()
	nf := g.r.Notifier()
	run := func() {
		t.Helper()
		for {
			n, err := g.r.RunOnce(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if n == 0 {
				return
			}
		}
	}
	lastupdates := func() []string {
		var out []string
		for _, r := range g.fake.Requests() {
			out = append(out, r.Form.Get("lastupdate"))
		}
		slices.Sort(out)
		g.fake.Reset()
		return out
	}
	notify := func(kinds ...fhir.SampleKind) {
		t.Helper()
		if err := nf.Notify(ctx, withings.Name, []providers.Notification{{VendorUser: "12345", Event: providers.EventData, Kinds: kinds}}); err != nil {
			t.Fatal(err)
		}
	}
	notify(fhir.KindWeight, fhir.KindFatRatio)
	run()
	if diff := cmp.Diff([]string{"0"}, lastupdates()); diff != "" {
		t.Errorf("first sync lastupdate (-want +got):\n%s", diff)
	}
	horizon := formatCursor(time.Unix(1704240003, 0))
	cursors := func() map[string]string {
		covs, err := g.r.Coverage(ctx, withings.Name, "p1")
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]string{}
		for _, c := range covs {
			m[c.Kind] = c.Cursor
		}
		return m
	}
	if diff := cmp.Diff(map[string]string{"weight": horizon, "fat-ratio": horizon}, cursors()); diff != "" {
		t.Errorf("cursors (-want +got):\n%s", diff)
	}
	// The old connection-level cursor is the start of kinds without a cursor of their own.
	conn, _ := g.vault.Get(ctx, withings.Name, "p1")
	conn.SyncCursors = map[string]time.Time{"all": time.Unix(1704000000, 0)}
	if err := g.vault.Save(ctx, conn); err != nil {
		t.Fatal(err)
	}
	notify(fhir.KindWeight, fhir.KindHeight)
	run()
	if diff := cmp.Diff([]string{"1704000000", "1704240003"}, lastupdates()); diff != "" {
		t.Errorf("lastupdate per cursor group (-want +got):\n%s", diff)
	}
	if got := cursors()["height"]; got != horizon {
		t.Errorf("height cursor %q, want %q", got, horizon)
	}
	if len(g.observations(t)) != 1 {
		t.Errorf("re-fetched data must upsert in place")
	}
}

// TestConnectedBackfillDisconnect: a new connection queues its subscription, device sync and
// backfill, behind a patient's fresh data; the backfill covers every enabled kind over its
// window and starts their cursors; a disconnect unsubscribes, revokes and forgets the coverage.
func TestConnectedBackfillDisconnect(t *testing.T) {
	g := newRig(t, map[string]providertest.Route{
		getmeas:                               {File: "withings/getmeas_page2.json"},
		"POST /v2/measure action=getactivity": {File: "withings/getactivity.json"},
		"POST /v2/sleep action=getsummary":    {File: "withings/getsummary.json"},
		"POST /v2/heart action=list":          {File: "withings/ok_empty.json"},
		"POST /v2/user action=getdevice":      {File: "withings/getdevice_account.json"},
		"POST /notify action=subscribe":       {File: "withings/ok_empty.json"},
		"POST /notify action=list":            {File: "withings/notify_list.json"},
		"POST /notify action=revoke":          {File: "withings/ok_empty.json"},
		"POST /v2/signature action=getnonce":  {File: "withings/signature_getnonce.json"},
		"POST /v2/oauth2 action=revoke":       {File: "withings/ok_empty.json"},
	})
	ctx := t.Context()
	if err := g.r.Connected(ctx, withings.Name, "p1"); err != nil {
		t.Fatal(err)
	}
	if err := g.r.Notifier().Notify(ctx, withings.Name, []providers.Notification{weightNotification()}); err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, j := range g.pending(t) {
		order = append(order, j.Type)
	}
	if diff := cmp.Diff([]string{TypeFetch, TypeSubscribe, TypeDeviceSync, TypeBackfill}, order); diff != "" {
		t.Errorf("claim order (-want +got):\n%s", diff)
	}
	g.r.cfg.Workers = 1
	for {
		n, err := g.r.RunOnce(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
	}
	if d := g.dead(t); len(d) != 0 {
		t.Fatalf("dead letters: %+v", d)
	}
	if g.fake.Hits("POST /notify action=subscribe") == 0 || len(g.associations(t)) != 2 {
		t.Errorf("subscription or devices missing")
	}
	covs, err := g.r.Coverage(ctx, withings.Name, "p1")
	if err != nil {
		t.Fatal(err)
	}
	if len(covs) != len(g.w.Kinds()) {
		t.Errorf("coverage of %d kinds, want every enabled kind (%d)", len(covs), len(g.w.Kinds()))
	}
	for _, c := range covs {
		if len(c.Intervals) == 0 || c.Intervals[len(c.Intervals)-1].End.Sub(c.Intervals[len(c.Intervals)-1].Start) < 29*24*time.Hour || c.Cursor == "" {
			t.Errorf("coverage of %s after the backfill: %+v", c.Kind, c)
		}
	}
	listed := g.fake.Hits("POST /notify action=list")
	if err := g.r.Disconnect(ctx, withings.Name, "p1", false); err != nil {
		t.Fatal(err)
	}
	if g.fake.Hits("POST /notify action=list") != listed+1 || g.fake.Hits("POST /v2/oauth2 action=revoke") != 1 {
		t.Errorf("disconnect did not unsubscribe and revoke")
	}
	if covs, err := g.r.Coverage(ctx, withings.Name, "p1"); err != nil || len(covs) != 0 {
		t.Errorf("coverage after disconnect: %+v %v", covs, err)
	}
	for _, a := range g.associations(t) {
		if a.Period == nil || a.Period.End == "" {
			t.Errorf("association not ended on disconnect: %+v", a)
		}
	}
}
