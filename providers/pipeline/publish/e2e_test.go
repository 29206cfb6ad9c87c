package publish_test

import (
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/fhir/search"
	"github.com/openhealthexchange/ohx/providers"
	"github.com/openhealthexchange/ohx/providers/pipeline"
	"github.com/openhealthexchange/ohx/providers/pipeline/publish"
	"github.com/openhealthexchange/ohx/providers/providertest"
	"github.com/openhealthexchange/ohx/providers/withings"
)

// syncRig is the sync pipeline with the real Withings adapter against a fake Withings (recorded
// payloads), patient p1 connected as Withings user 12345, over the env's store.
type syncRig struct {
	e     *env
	fake  *providertest.Server
	reg   *providers.Registry
	vault *providers.Vault
}

func newSyncRig(t *testing.T, e *env) *syncRig {
	t.Helper()
	page1, page2 := providertest.Route{File: "withings/getmeas_page1.json"}, providertest.Route{File: "withings/getmeas_page2.json"}
	fake := providertest.NewServer(t, map[string]providertest.Route{
		"POST /v2/user action=getdevice": {File: "withings/getdevice_account.json"},
		"POST /measure action=getmeas":   {Seq: []providertest.Route{page1, page2, page1, page2}},
	})
	caller, err := providers.NewClient(providers.ClientConfig{Provider: withings.Name, CacheTTL: -1, MaxRetries: -1}, fake.Client(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	w, err := withings.New(withings.Config{ClientID: "c", ClientSecret: "s", RedirectURL: "https://ohx.test/cb", APIURL: fake.URL()}, caller, nil)
	if err != nil {
		t.Fatal(err)
	}
	vault, err := providers.NewVault(e.st, map[string][]byte{"k": make([]byte, 32)}, "k", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := vault.Save(t.Context(), &providers.Connection{Provider: withings.Name, PatientID: "p1", VendorUserID: "12345",
		Status: providers.StatusActive, Token: &oauth2.Token{AccessToken: "a1", RefreshToken: "r1", Expiry: time.Now().Add(time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	return &syncRig{e: e, fake: fake, reg: providers.NewRegistry(w), vault: vault}
}

// runner returns a Runner with publishing hooked in (or not: a process that crashed between
// its upsert and the hook).
func (g *syncRig) runner(hooked bool) *pipeline.Runner {
	cfg := pipeline.Config{MaxAttempts: 3, Lease: time.Minute, Reconcile: -1, Now: func() time.Time { return g.e.now }}
	if hooked {
		cfg.Upserted = g.e.p.Upserted
	}
	r := pipeline.NewRunner(cfg, g.reg, g.vault, g.e.st, nil)
	r.Handle(publish.JobType, g.e.p.Handle)
	return r
}

// drain runs jobs until none is due.
func drain(t *testing.T, r *pipeline.Runner) {
	t.Helper()
	for range 20 {
		if runOnce(t, r) == 0 {
			return
		}
	}
	t.Fatal("the queue does not drain")
}

func (g *syncRig) fetch(t *testing.T, r *pipeline.Runner) {
	t.Helper()
	for _, j := range []string{pipeline.TypeDeviceSync, pipeline.TypeFetch} {
		w := pipeline.Work{Provider: withings.Name, Patient: "p1"}
		if j == pipeline.TypeFetch {
			w.Kinds, w.Start, w.End = []fhir.SampleKind{fhir.KindWeight}, time.Unix(1704067200, 0), time.Unix(1704240000, 0)
		}
		if _, _, err := r.Enqueue(t.Context(), w.Job(j)); err != nil {
			t.Fatal(err)
		}
	}
	drain(t, r)
}

func (g *syncRig) storedObservations(t *testing.T) int {
	t.Helper()
	q, _, err := search.DefaultRegistry().Parse("Observation", []search.NameValue{{Name: "patient", Value: "p1"}, {Name: "_count", Value: "1000"}}, search.Options{MaxCount: 1000})
	if err != nil {
		t.Fatal(err)
	}
	res, err := g.e.st.Search(t.Context(), q)
	if err != nil {
		t.Fatal(err)
	}
	return len(res.Matches)
}

// TestSyncPublishesEndToEnd: a device sync and a fetch of the real Withings adapter against the
// fake Withings end in the EHR holding every synced Observation and Device once, with their
// references resolved there; the jobs leave nothing behind.
func TestSyncPublishesEndToEnd(t *testing.T) {
	e := newEnv(t, publish.R4, nil)
	g := newSyncRig(t, e)
	r := g.runner(true)
	g.fetch(t, r)
	n := g.storedObservations(t)
	if n == 0 {
		t.Fatal("the sync stored nothing")
	}
	if got := len(e.ehr.ofType("Observation")); got != n {
		t.Errorf("EHR observations: %d, want the %d synced", got, n)
	}
	if got := len(e.ehr.ofType("Device")); got != 2 {
		t.Errorf("EHR devices: %d, want 2", got)
	}
	for _, o := range e.ehr.ofType("Observation") {
		if s := ref(o.body, "subject", "reference"); s != "Patient/pt-1" {
			t.Errorf("observation %s subject %q", o.id, s)
		}
	}
	if js, _ := e.st.PendingJobs(t.Context(), 10); len(js) != 0 {
		t.Errorf("pending jobs: %+v", js)
	}
	if dead, _ := e.st.DeadJobs(t.Context(), 10); len(dead) != 0 {
		t.Errorf("dead letters: %+v", dead)
	}
}

// TestCrashBeforeHookLosesNothing: a process that stored the synced data and died before its
// hook ran (here: a runner without the hook) leaves the sync job to be run again; that run's
// upsert changes nothing, and still the data reaches the EHR.
func TestCrashBeforeHookLosesNothing(t *testing.T) {
	e := newEnv(t, publish.R5, nil)
	g := newSyncRig(t, e)
	g.fetch(t, g.runner(false))
	n := g.storedObservations(t)
	if n == 0 || len(e.ehr.received()) != 0 {
		t.Fatalf("stored %d, sent %d transactions", n, len(e.ehr.received()))
	}
	g.fetch(t, g.runner(true)) // the job's second run: nothing changes in the store
	if got := len(e.ehr.ofType("Observation")); got != n {
		t.Errorf("EHR observations: %d, want the %d synced", got, n)
	}
	if got := len(e.ehr.ofType("DeviceAssociation")); got != 2 {
		t.Errorf("EHR device associations: %d, want 2", got)
	}
}
