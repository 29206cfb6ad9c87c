package pipeline

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/oauth2"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/fhir/search"
	"github.com/openhealthexchange/ohx/providers"
	"github.com/openhealthexchange/ohx/providers/providertest"
	"github.com/openhealthexchange/ohx/providers/withings"
	"github.com/openhealthexchange/ohx/store"
	"github.com/openhealthexchange/ohx/store/mongo"
	"github.com/openhealthexchange/ohx/store/mongo/mongotest"
	"github.com/openhealthexchange/ohx/store/sqlite"
)

type rig struct {
	st    rigStore
	fake  *providertest.Server
	vault *providers.Vault
	w     *withings.Client
	r     *Runner
}

// newRig wires the real Withings adapter, vault and runner to a fake Withings and a fresh
// embedded store (its job queue and coverage), with patient p1 connected as Withings user
// 12345. Jobs are dead-lettered after 3 failed runs.
func newRig(t *testing.T, routes map[string]providertest.Route) *rig {
	t.Helper()
	return newRigOn(t, openSQLite, routes)
}

// rigStore is what the tests use of a store: the pipeline's view and the FHIR store's.
type rigStore interface {
	Store
	store.Store
}

// storeOpener opens a fresh, empty store closed at the test's end.
type storeOpener func(t *testing.T) rigStore

func openSQLite(t *testing.T) rigStore {
	t.Helper()
	st, err := sqlite.Open(t.Context(), t.TempDir(), sqlite.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// openMongo opens the MongoDB store on a fresh database of the FerretDB embedded in the test
// binary (not under -short).
func openMongo(t *testing.T) rigStore {
	t.Helper()
	if testing.Short() {
		t.Skip("FerretDB: not in -short")
	}
	st, err := mongo.Open(t.Context(), mongotest.URI(t), mongotest.DBName(t), mongo.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// onStores runs fn as a subtest per store implementation.
func onStores(t *testing.T, fn func(t *testing.T, open storeOpener)) {
	for _, s := range []struct {
		name string
		open storeOpener
	}{{"sqlite", openSQLite}, {"mongo", openMongo}} {
		t.Run(s.name, func(t *testing.T) { fn(t, s.open) })
	}
}

// newRigOn is newRig on the store open returns.
func newRigOn(t *testing.T, open storeOpener, routes map[string]providertest.Route) *rig {
	t.Helper()
	st := open(t)
	fake := providertest.NewServer(t, routes)
	caller, err := providers.NewClient(providers.ClientConfig{Provider: withings.Name, CacheTTL: -1, MaxRetries: -1}, fake.Client(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	w, err := withings.New(withings.Config{ClientID: "c", ClientSecret: "s", RedirectURL: "https://ohx.test/cb", APIURL: fake.URL()}, caller, nil)
	if err != nil {
		t.Fatal(err)
	}
	vault, err := providers.NewVault(st, map[string][]byte{"k": make([]byte, 32)}, "k", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := vault.Save(t.Context(), &providers.Connection{Provider: withings.Name, PatientID: "p1", VendorUserID: "12345",
		Status: providers.StatusActive, Token: &oauth2.Token{AccessToken: "a1", RefreshToken: "r1", Expiry: time.Now().Add(time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	r := NewRunner(Config{CallbackURL: func(string) string { return "https://ohx.test/webhooks/withings/s" }, Lease: time.Minute, MaxAttempts: 3},
		providers.NewRegistry(w), vault, st, nil)
	return &rig{st: st, fake: fake, vault: vault, w: w, r: r}
}

// drain runs the runner until no job is due.
func (g *rig) drain(t *testing.T) {
	t.Helper()
	for {
		n, err := g.r.RunOnce(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
	}
}

// at sets the runner's clock to now+d.
func (g *rig) at(d time.Duration) { g.r.now = func() time.Time { return time.Now().Add(d) } }

func (g *rig) pending(t *testing.T) []store.Job {
	t.Helper()
	js, err := g.st.PendingJobs(t.Context(), 100)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// drained returns the pending jobs once there are none, or what is still pending after 5 s: a
// job whose waiting search has returned is completed by its runner just after (signalDone).
func (g *rig) drained(t *testing.T) []store.Job {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		p := g.pending(t)
		if len(p) == 0 || time.Now().After(deadline) {
			return p
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (g *rig) dead(t *testing.T) []store.Job {
	t.Helper()
	js, err := g.st.DeadJobs(t.Context(), 100)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

func (g *rig) associations(t *testing.T) map[string]fhir.DeviceAssociation {
	t.Helper()
	q, _, _ := search.DefaultRegistry().Parse("DeviceAssociation", []search.NameValue{{Name: "patient", Value: "p1"}}, search.Options{})
	res, err := g.st.Search(t.Context(), q)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]fhir.DeviceAssociation{}
	for _, m := range res.Matches {
		var a fhir.DeviceAssociation
		json.Unmarshal(m.JSON, &a)
		out[a.Device.Reference] = a
	}
	return out
}

// observations returns the patient's Observations.
func (g *rig) observations(t *testing.T) []fhir.Observation {
	t.Helper()
	q, _, err := search.DefaultRegistry().Parse("Observation", []search.NameValue{{Name: "patient", Value: "p1"}, {Name: "_count", Value: "1000"}}, search.Options{MaxCount: 1000})
	if err != nil {
		t.Fatal(err)
	}
	res, err := g.st.Search(t.Context(), q)
	if err != nil {
		t.Fatal(err)
	}
	var out []fhir.Observation
	for _, m := range res.Matches {
		var o fhir.Observation
		if err := json.Unmarshal(m.JSON, &o); err != nil {
			t.Fatal(err)
		}
		out = append(out, o)
	}
	return out
}

// TestDeviceSync: devices become Device + DeviceAssociation; a re-sync keeps period.start; a
// device the vendor stops listing has its association ended, not deleted.
func TestDeviceSync(t *testing.T) {
	g := newRig(t, map[string]providertest.Route{"POST /v2/user action=getdevice": {File: "withings/getdevice_account.json"}})
	job := Work{Provider: withings.Name, Patient: "p1"}.Job(TypeDeviceSync)
	if err := g.r.Process(t.Context(), job); err != nil {
		t.Fatal(err)
	}
	first := g.associations(t)
	if len(first) != 2 {
		t.Fatalf("associations: %d, want 2", len(first))
	}
	for ref, a := range first {
		if a.Status.Coding[0].Code != "attached" || a.Period == nil || a.Period.Start == "" {
			t.Errorf("%s: %+v", ref, a)
		}
		if _, err := g.st.Read(t.Context(), "Device", ref[len("Device/"):]); err != nil {
			t.Errorf("device %s not stored: %v", ref, err)
		}
	}
	g.at(48 * time.Hour)
	if err := g.r.Process(t.Context(), job); err != nil {
		t.Fatal(err)
	}
	for ref, a := range g.associations(t) {
		if a.Period.Start != first[ref].Period.Start {
			t.Errorf("%s: period.start moved from %s to %s on re-sync", ref, first[ref].Period.Start, a.Period.Start)
		}
	}
	// The scale disappears from the account.
	g.fake.Set("POST /v2/user action=getdevice", providertest.Route{Body: `{"status":0,"body":{"devices":[
		{"type":"Blood Pressure Monitor","model":"BPM Core","model_id":44,"battery":"high","deviceid":"a1b2c3d4e5f6","timezone":"Europe/Paris"}]}}`})
	if err := g.r.Process(t.Context(), job); err != nil {
		t.Fatal(err)
	}
	after := g.associations(t)
	if len(after) != 2 {
		t.Fatalf("associations after the scale disappeared: %d, want 2 (ended, not deleted)", len(after))
	}
	ended := 0
	for _, a := range after {
		if a.Period != nil && a.Period.End != "" {
			ended++
			if a.Status.Coding[0].Code != "unknown" || len(a.StatusReason) == 0 {
				t.Errorf("ended association: %+v", a)
			}
		}
	}
	if ended != 1 {
		t.Errorf("ended associations: %d, want 1", ended)
	}
}

// TestJobFailures: a vendor outage is retried later; a vendor refusing the tokens dead-letters
// the job at once and marks the connection.
func TestJobFailures(t *testing.T) {
	g := newRig(t, map[string]providertest.Route{
		"POST /v2/user action=getdevice":                               {Seq: []providertest.Route{{Status: 503}, {File: "withings/status_401_invalid_token.json"}}},
		"POST /v2/oauth2 action=requesttoken grant_type=refresh_token": {File: "withings/token_refresh_invalid.json"},
	})
	ctx := t.Context()
	if _, _, err := g.r.Enqueue(ctx, Work{Provider: withings.Name, Patient: "p1"}.Job(TypeDeviceSync)); err != nil {
		t.Fatal(err)
	}
	if n, err := g.r.RunOnce(ctx); n != 1 || err != nil {
		t.Fatalf("RunOnce: %d %v", n, err)
	}
	pending := g.pending(t)
	if len(pending) != 1 || pending[0].Attempt != 1 || !pending[0].NotBefore.After(time.Now()) {
		t.Fatalf("after a vendor 503 the job must wait for a retry: %+v", pending)
	}
	if pending[0].LastError != "vendor transient error (status 503)" {
		t.Errorf("LastError = %q, want the classified failure only", pending[0].LastError)
	}
	if n, _ := g.r.RunOnce(ctx); n != 0 {
		t.Fatalf("a job in backoff ran")
	}
	g.at(time.Hour)
	if n, _ := g.r.RunOnce(ctx); n != 1 {
		t.Fatalf("retry not run")
	}
	if dead := g.dead(t); len(dead) != 1 {
		t.Fatalf("a refused token must dead-letter the job: %d dead", len(dead))
	}
	if r, d := testutil.ToFloat64(g.r.jobs.WithLabelValues("device-sync", "retry")), testutil.ToFloat64(g.r.jobs.WithLabelValues("device-sync", "dead")); r != 1 || d != 1 {
		t.Errorf("job metrics: retry %v dead %v, want 1 and 1", r, d)
	}
	conn, err := g.vault.Get(ctx, withings.Name, "p1")
	if err != nil || conn.Status != providers.StatusNeedsReauth || conn.LastError == "" {
		t.Errorf("connection after refusal: %v %+v", err, conn)
	}
	if err := g.r.Process(ctx, Work{Provider: withings.Name, Patient: "p1"}.Job(TypeFetch)); !errors.Is(err, providers.ErrNotConnected) {
		t.Errorf("jobs of a needs-reauth connection: %v", err)
	}
}

// TestReconcile: every active connection gets one reconcile job (its window is taken when it
// runs: the job key names the connection only) and one subscription repair; a connection that needs a new consent gets nothing; a second
// reconciliation coalesces with the jobs still queued.
func TestReconcile(t *testing.T) {
	g := newRig(t, map[string]providertest.Route{})
	ctx := t.Context()
	if err := g.vault.Save(ctx, &providers.Connection{Provider: withings.Name, PatientID: "p2", VendorUserID: "777",
		Status: providers.StatusNeedsReauth, Token: &oauth2.Token{AccessToken: "a2", Expiry: time.Now().Add(time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	n, err := g.r.Reconcile(ctx)
	if err != nil || n != 2 {
		t.Fatalf("Reconcile = %d, %v; want 2 jobs (fetch and subscribe of p1)", n, err)
	}
	js := g.pending(t)
	types := map[string]int{}
	for _, j := range js {
		var w Work
		if err := json.Unmarshal(j.Payload, &w); err != nil {
			t.Fatal(err)
		}
		if w.Patient != "p1" || !w.Start.IsZero() || !w.End.IsZero() {
			t.Errorf("job %s: %+v, want p1 without a window", j.Type, w)
		}
		if j.Type == TypeReconcile && j.Priority != PriorityReconcile {
			t.Errorf("reconcile fetch priority %d, want %d", j.Priority, PriorityReconcile)
		}
		types[j.Type]++
	}
	if types[TypeReconcile] != 1 || types[TypeSubscribe] != 1 || len(js) != 2 {
		t.Errorf("queued %v, want one reconcile and one subscribe", types)
	}
	if n, err := g.r.Reconcile(ctx); err != nil || n != 0 {
		t.Errorf("second Reconcile = %d, %v; want 0 (coalesced)", n, err)
	}
}
