package publish_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/fhir/go/fhirversion"
	"github.com/google/fhir/go/jsonformat"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/providers"
	"github.com/openhealthexchange/ohx/providers/pipeline"
	"github.com/openhealthexchange/ohx/providers/pipeline/publish"
	"github.com/openhealthexchange/ohx/store"
	"github.com/openhealthexchange/ohx/store/mongo"
	"github.com/openhealthexchange/ohx/store/mongo/mongotest"
	"github.com/openhealthexchange/ohx/store/sqlite"
)

const (
	mrnSystem = "urn:oid:1.2.36.146.595.217.0.1"
	mrn       = "MRN-12345"
)

type env struct {
	st  store.Store
	ehr *fakeEHR
	p   *publish.Publisher
	now time.Time // the job clock
}

// newEnv opens a fresh embedded store holding patient p1 (known to the EHR by its MRN) and a
// publisher for a fake EHR of the version.
func newEnv(t *testing.T, v publish.Version, edit func(*publish.Config)) *env {
	t.Helper()
	return newEnvOn(t, openSQLite, v, edit)
}

// stores are the store implementations the watermark tests run on.
var stores = map[string]func(t *testing.T) store.Store{"sqlite": openSQLite, "mongo": openMongo}

func openSQLite(t *testing.T) store.Store {
	t.Helper()
	st, err := sqlite.Open(t.Context(), t.TempDir(), sqlite.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// openMongo opens the MongoDB store on a fresh database of the FerretDB embedded in the test
// binary.
func openMongo(t *testing.T) store.Store {
	t.Helper()
	if testing.Short() {
		t.Skip("FerretDB: not in -short")
	}
	name := mongotest.DBName(t)
	st, err := mongo.Open(t.Context(), mongotest.URI(t), name, mongo.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func newEnvOn(t *testing.T, open func(*testing.T) store.Store, v publish.Version, edit func(*publish.Config)) *env {
	t.Helper()
	st := open(t)
	var err error
	mime := "4.0"
	if v == publish.R5 {
		mime = "5.0"
	}
	e := &env{st: st, ehr: newFakeEHR(t, mime), now: time.Now()}
	e.ehr.addPatient(mrnSystem, mrn)
	pat := &fhir.Patient{Base: fhir.Base{ResourceType: "Patient", ID: "p1"},
		Identifier: []fhir.Identifier{{System: "urn:other", Value: "x"}, {System: mrnSystem, Value: mrn}}}
	if _, _, err := st.Put(t.Context(), pat, store.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	cfg := publish.Config{URL: e.ehr.URL(), Version: v, PatientSystem: mrnSystem, Delay: -1, Now: func() time.Time { return e.now }}
	if edit != nil {
		edit(&cfg)
	}
	e.p, err = publish.New(cfg, st, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

var (
	scale = fhir.DeviceInfo{Provider: "withings", UserID: "12345", ID: "dev1", Kind: fhir.DeviceKindScale, Model: "Body+", Manufacturer: "Withings", Battery: "80"}
	t0    = time.Date(2026, 11, 30, 7, 0, 0, 0, time.UTC)
)

func weight(t *testing.T, rec, kg string, derived string) *fhir.Observation {
	t.Helper()
	o, err := fhir.MapSample(fhir.Sample{Provider: "withings", UserID: "12345", Kind: fhir.KindWeight, System: "withings/measure",
		RecordID: rec, Value: fhir.Decimal(kg), Unit: "kg", Start: t0, DeviceID: "dev1", DerivedFrom: derived}, "p1")
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func (e *env) upsert(t *testing.T, rs ...fhir.Resource) []store.UpsertResult {
	t.Helper()
	res, err := e.st.Upsert(t.Context(), rs)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// seed stores what a device sync and a weight sync write: the scale, its association with p1,
// two weights (the second derived from the first) and an Observation the EHR wrote into ohx.
func (e *env) seed(t *testing.T) {
	t.Helper()
	e.upsert(t, fhir.MapDevice(scale), fhir.MapAssociation("p1", scale, t0.Add(-24*time.Hour), nil),
		weight(t, "12345/1/1", "75.50", ""), weight(t, "12345/2/1", "75.40", "12345/1/1"))
	foreign := &fhir.Observation{Base: fhir.Base{ResourceType: "Observation", ID: "ehr1"}, Status: "final",
		Identifier: []fhir.Identifier{{System: "urn:ehr", Value: "1"}},
		Code:       fhir.CodeableConcept{Text: "note"}, Subject: &fhir.Reference{Reference: "Patient/p1"}}
	e.upsert(t, foreign)
}

type entry struct {
	FullURL  string         `json:"fullUrl"`
	Resource map[string]any `json:"resource"`
	Request  struct {
		Method, URL string
	} `json:"request"`
}

func entries(t *testing.T, b map[string]any) []entry {
	t.Helper()
	raw, _ := json.Marshal(b["entry"])
	var es []entry
	if err := json.Unmarshal(raw, &es); err != nil {
		t.Fatal(err)
	}
	return es
}

func ref(m map[string]any, path ...string) string {
	var v any = m
	for _, p := range path {
		switch x := v.(type) {
		case map[string]any:
			v = x[p]
		case []any:
			var i int
			fmt.Sscan(p, &i)
			if i >= len(x) {
				return ""
			}
			v = x[i]
		}
	}
	s, _ := v.(string)
	return s
}

// TestTransactionBundleR5: the first publication is one transaction of conditional updates on
// identifier, Devices first, with references the EHR resolves: the patient by its MRN, the
// device and the source Observation by their fullUrls. The EHR's own Observation is not sent.
func TestTransactionBundleR5(t *testing.T) {
	for name, open := range stores {
		t.Run(name, func(t *testing.T) {
			e := newEnvOn(t, open, publish.R5, nil)
			e.seed(t)
			if err := e.p.Publish(t.Context(), "p1"); err != nil {
				t.Fatal(err)
			}
			got := e.ehr.received()
			if len(got) != 1 {
				t.Fatalf("transactions: %d, want 1", len(got))
			}
			if got[0]["type"] != "transaction" || got[0]["resourceType"] != "Bundle" {
				t.Errorf("bundle type %v %v", got[0]["resourceType"], got[0]["type"])
			}
			es := entries(t, got[0])
			var types []string
			full := map[string]string{}
			for _, en := range es {
				typ := en.Resource["resourceType"].(string)
				types = append(types, typ)
				full[typ+" "+ref(en.Resource, "identifier", "0", "value")] = en.FullURL
				if en.Request.Method != "PUT" {
					t.Errorf("%s: method %s", typ, en.Request.Method)
				}
				sys, val := ref(en.Resource, "identifier", "0", "system"), ref(en.Resource, "identifier", "0", "value")
				if want := typ + "?identifier=" + sys + "|" + val; en.Request.URL != want {
					t.Errorf("url %s, want %s", en.Request.URL, want)
				}
				if !strings.HasPrefix(en.FullURL, "urn:uuid:") || len(en.FullURL) != len("urn:uuid:")+36 {
					t.Errorf("fullUrl %q", en.FullURL)
				}
				if _, ok := en.Resource["id"]; ok {
					t.Errorf("%s carries an id", typ)
				}
				if m, _ := en.Resource["meta"].(map[string]any); m["versionId"] != nil || m["lastUpdated"] != nil {
					t.Errorf("%s carries version meta %v", typ, m)
				}
				// R5 content: our own strict decoder and validator accept it.
				raw, _ := json.Marshal(en.Resource)
				if _, err := fhir.Decode(raw, typ); err != nil {
					t.Errorf("%s is not valid R5: %v\n%s", typ, err, raw)
				}
			}
			if want := []string{"Device", "DeviceAssociation", "Observation", "Observation"}; strings.Join(types, ",") != strings.Join(want, ",") {
				t.Fatalf("entry order %v, want %v", types, want)
			}
			patRef := "Patient?identifier=" + mrnSystem + "|" + mrn
			devURL := full["Device dev1"]
			for _, en := range es[1:] {
				subj := ref(en.Resource, "subject", "reference")
				if subj != patRef {
					t.Errorf("%s subject %q, want %q", en.Resource["resourceType"], subj, patRef)
				}
			}
			if d := ref(es[1].Resource, "device", "reference"); d != devURL {
				t.Errorf("association device %q, want %q", d, devURL)
			}
			for _, en := range es[2:] {
				if d := ref(en.Resource, "device", "reference"); d != devURL {
					t.Errorf("observation device %q, want %q", d, devURL)
				}
			}
			if d := ref(es[3].Resource, "derivedFrom", "0", "reference"); d != full["Observation 12345/1/1"] {
				t.Errorf("derivedFrom %q, want the fullUrl of the first weight %q", d, full["Observation 12345/1/1"])
			}
			// Downstream, every reference resolved to the EHR's ids.
			obs := e.ehr.byIdentifier("Observation", fhir.IdentifierSystem("withings/measure"), "12345/2/1")
			dev := e.ehr.byIdentifier("Device", fhir.DefaultNamespace.DeviceSystem("withings"), "dev1")
			if obs == nil || dev == nil {
				t.Fatalf("EHR lacks the observation or the device: %v %v", obs, dev)
			}
			if s := ref(obs.body, "subject", "reference"); s != "Patient/pt-1" {
				t.Errorf("stored subject %q, want Patient/pt-1", s)
			}
			if s := ref(obs.body, "device", "reference"); s != "Device/"+dev.id {
				t.Errorf("stored device %q, want Device/%s", s, dev.id)
			}
			if n := len(e.ehr.ofType("Observation")); n != 2 {
				t.Errorf("EHR observations: %d, want 2", n)
			}
		})
	}
}

// TestChangedValueUpdatesDownstream: a changed vendor value goes out as an update of the same
// downstream resource (version 2), alone: the unchanged Observation and the Device already
// delivered are not sent again, the Device is referenced by identifier. A run with nothing new
// sends nothing.
func TestChangedValueUpdatesDownstream(t *testing.T) {
	for name, open := range stores {
		t.Run(name, func(t *testing.T) {
			e := newEnvOn(t, open, publish.R5, nil)
			e.seed(t)
			if err := e.p.Publish(t.Context(), "p1"); err != nil {
				t.Fatal(err)
			}
			if err := e.p.Publish(t.Context(), "p1"); err != nil {
				t.Fatal(err)
			}
			if n := len(e.ehr.received()); n != 1 {
				t.Fatalf("a run with nothing new sent a transaction: %d transactions", n)
			}
			sys := fhir.IdentifierSystem("withings/measure")
			before := e.ehr.byIdentifier("Observation", sys, "12345/1/1")
			if before == nil || before.version != 1 {
				t.Fatalf("first weight downstream: %+v", before)
			}
			id := before.id
			if res := e.upsert(t, weight(t, "12345/1/1", "75.60", "")); !res[0].Changed {
				t.Fatalf("upsert of a changed value: %+v", res)
			}
			if err := e.p.Publish(t.Context(), "p1"); err != nil {
				t.Fatal(err)
			}
			got := e.ehr.received()
			if len(got) != 2 {
				t.Fatalf("transactions: %d, want 2", len(got))
			}
			es := entries(t, got[1])
			if len(es) != 1 || es[0].Request.URL != "Observation?identifier="+sys+"|12345/1/1" {
				t.Fatalf("second transaction: %+v, want the changed weight alone", es)
			}
			if d, want := ref(es[0].Resource, "device", "reference"), "Device?identifier="+fhir.DefaultNamespace.DeviceSystem("withings")+"|dev1"; d != want {
				t.Errorf("device reference %q, want %q", d, want)
			}
			after := e.ehr.byIdentifier("Observation", sys, "12345/1/1")
			if after.id != id || after.version != 2 {
				t.Errorf("downstream after the change: id %s version %d, want id %s version 2", after.id, after.version, id)
			}
			if v := ref(after.body, "valueQuantity", "value"); v != "" {
				t.Errorf("value decoded as string %q", v)
			}
			if q, _ := after.body["valueQuantity"].(map[string]any); fmt.Sprint(q["value"]) != "75.60" {
				t.Errorf("downstream value %v, want 75.60 exactly", q["value"])
			}
			if n := len(e.ehr.ofType("Observation")); n != 2 {
				t.Errorf("EHR observations: %d, want 2 (updated, not duplicated)", n)
			}
			// A new battery level: the Device alone goes out.
			s2 := scale
			s2.Battery = "40"
			e.upsert(t, fhir.MapDevice(s2))
			if err := e.p.Publish(t.Context(), "p1"); err != nil {
				t.Fatal(err)
			}
			got = e.ehr.received()
			if len(got) != 3 {
				t.Fatalf("transactions: %d, want 3", len(got))
			}
			if es := entries(t, got[2]); len(es) != 1 || es[0].Resource["resourceType"] != "Device" {
				t.Errorf("third transaction: %+v, want the Device alone", es)
			}
		})
	}
}

// validR4 runs google/fhir/go's validating R4 unmarshaller (an independent implementation of
// FHIR R4) over what was sent.
func validR4(t *testing.T, what string, body []byte) {
	t.Helper()
	u, err := jsonformat.NewUnmarshaller("UTC", fhirversion.R4)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := u.Unmarshal(body); err != nil {
		t.Errorf("%s is not valid R4: %v\n%s", what, err, body)
	}
}

// TestTransactionBundleR4: an R4 EHR gets no DeviceAssociation (R5 only); its Device carries
// Device.patient instead, the patient found by MRN. The whole Bundle is valid R4.
func TestTransactionBundleR4(t *testing.T) {
	e := newEnv(t, publish.R4, nil)
	e.seed(t)
	if err := e.p.Publish(t.Context(), "p1"); err != nil {
		t.Fatal(err)
	}
	got := e.ehr.received()
	if len(got) != 1 {
		t.Fatalf("transactions: %d, want 1", len(got))
	}
	raw, _ := json.Marshal(got[0])
	validR4(t, "the R4 transaction", raw)
	es := entries(t, got[0])
	var types []string
	for _, en := range es {
		types = append(types, en.Resource["resourceType"].(string))
	}
	if want := "Device,Observation,Observation"; strings.Join(types, ",") != want {
		t.Fatalf("entry order %v, want %s", types, want)
	}
	if p := ref(es[0].Resource, "patient", "reference"); p != "Patient?identifier="+mrnSystem+"|"+mrn {
		t.Errorf("R4 Device.patient %q", p)
	}
	dev := e.ehr.byIdentifier("Device", fhir.DefaultNamespace.DeviceSystem("withings"), "dev1")
	if dev == nil || ref(dev.body, "patient", "reference") != "Patient/pt-1" {
		t.Errorf("downstream device %+v", dev)
	}
	// The association ends: the R4 Device loses Device.patient and is sent again.
	end := t0
	e.upsert(t, fhir.MapAssociation("p1", scale, t0.Add(-24*time.Hour), &end))
	if err := e.p.Publish(t.Context(), "p1"); err != nil {
		t.Fatal(err)
	}
	got = e.ehr.received()
	if len(got) != 2 {
		t.Fatalf("transactions: %d, want 2", len(got))
	}
	es = entries(t, got[1])
	if len(es) != 1 || es[0].Resource["resourceType"] != "Device" || es[0].Resource["patient"] != nil {
		t.Errorf("after the association ended: %+v, want the Device without patient", es)
	}
}

// TestPatientWithoutIdentifier: nothing of a patient the EHR cannot be asked for is sent; the
// error names the setting; the job completes without a dead letter, and once the Patient
// carries the identifier everything goes out.
func TestPatientWithoutIdentifier(t *testing.T) {
	e := newEnv(t, publish.R5, nil)
	e.seed(t)
	pat := &fhir.Patient{Base: fhir.Base{ResourceType: "Patient", ID: "p1"}, Identifier: []fhir.Identifier{{System: "urn:other", Value: "x"}}}
	if _, _, err := e.st.Put(t.Context(), pat, store.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	err := e.p.Publish(t.Context(), "p1")
	if !errors.Is(err, publish.ErrUnmatchedPatient) || !strings.Contains(err.Error(), "OHX_PUBLISH_PATIENT_SYSTEM") {
		t.Fatalf("got %v, want ErrUnmatchedPatient naming OHX_PUBLISH_PATIENT_SYSTEM", err)
	}
	r := e.runner(t)
	if err := e.p.Upserted(t.Context(), "p1", true); err != nil {
		t.Fatal(err)
	}
	runOnce(t, r)
	if dead, _ := e.st.DeadJobs(t.Context(), 10); len(dead) != 0 {
		t.Errorf("dead letters: %+v", dead)
	}
	if js, _ := e.st.PendingJobs(t.Context(), 10); len(js) != 0 {
		t.Errorf("pending: %+v", js)
	}
	if n := len(e.ehr.received()); n != 0 {
		t.Fatalf("sent %d transactions", n)
	}
	pat.Identifier = append(pat.Identifier, fhir.Identifier{System: mrnSystem, Value: mrn})
	if _, _, err := e.st.Put(t.Context(), pat, store.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := e.p.Publish(t.Context(), "p1"); err != nil {
		t.Fatal(err)
	}
	if n := len(e.ehr.ofType("Observation")); n != 2 {
		t.Errorf("EHR observations once the patient has an MRN: %d, want 2", n)
	}
}

// rig runs publish jobs on a pipeline Runner over the env's store.
func (e *env) runner(t *testing.T) *pipeline.Runner {
	r := pipeline.NewRunner(pipeline.Config{MaxAttempts: 3, Lease: time.Minute, Reconcile: -1, Now: func() time.Time { return e.now }},
		providers.NewRegistry(), nil, e.st, nil)
	r.Handle(publish.JobType, e.p.Handle)
	return r
}

func runOnce(t *testing.T, r *pipeline.Runner) int {
	t.Helper()
	n, err := r.RunOnce(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestRetryThenSuccess: a 503 and a 429 with Retry-After are retried, the 429's wait honoured,
// and the third attempt delivers; the resources reach the EHR once.
func TestRetryThenSuccess(t *testing.T) {
	e := newEnv(t, publish.R5, nil)
	e.seed(t)
	r := e.runner(t)
	e.ehr.failNext(ehrFailure{status: 503, code: "transient"}, ehrFailure{status: 429, retryAfter: "600", code: "throttled"})
	if err := e.p.Upserted(t.Context(), "p1", true); err != nil {
		t.Fatal(err)
	}
	if n := runOnce(t, r); n != 1 {
		t.Fatalf("ran %d jobs, want 1", n)
	}
	js, _ := e.st.PendingJobs(t.Context(), 10)
	if len(js) != 1 || js[0].Attempt != 1 || !strings.Contains(js[0].LastError, "503") {
		t.Fatalf("after a 503: %+v", js)
	}
	e.now = js[0].NotBefore
	runOnce(t, r)
	js, _ = e.st.PendingJobs(t.Context(), 10)
	if len(js) != 1 || js[0].Attempt != 2 || !strings.Contains(js[0].LastError, "429") {
		t.Fatalf("after a 429: %+v", js)
	}
	if wait := js[0].NotBefore.Sub(e.now); wait < 600*time.Second {
		t.Errorf("retry after %v, want at least the Retry-After of 600 s", wait)
	}
	e.now = js[0].NotBefore
	runOnce(t, r)
	if js, _ := e.st.PendingJobs(t.Context(), 10); len(js) != 0 {
		t.Fatalf("still pending: %+v", js)
	}
	if n := len(e.ehr.received()); n != 3 {
		t.Errorf("transactions: %d, want 3", n)
	}
	if n := len(e.ehr.ofType("Observation")); n != 2 {
		t.Errorf("EHR observations: %d, want 2", n)
	}
}

// TestRejectedIsDeadLetter: a 400 is not retried: the job becomes a dead letter whose error
// names the status and the issue, and nothing counts as delivered (a retry of the dead letter
// sends everything).
func TestRejectedIsDeadLetter(t *testing.T) {
	e := newEnv(t, publish.R5, nil)
	e.seed(t)
	r := e.runner(t)
	e.ehr.failNext(ehrFailure{status: 400, code: "invalid"})
	if err := e.p.Upserted(t.Context(), "p1", true); err != nil {
		t.Fatal(err)
	}
	runOnce(t, r)
	dead, _ := e.st.DeadJobs(t.Context(), 10)
	if len(dead) != 1 {
		t.Fatalf("dead letters: %+v", dead)
	}
	if le := dead[0].LastError; !strings.Contains(le, "400") || !strings.Contains(le, "invalid") || strings.Contains(le, "injected") {
		t.Errorf("dead letter error %q: want the status and issue code, not the EHR's diagnostics", le)
	}
	if err := e.st.RetryDeadJob(t.Context(), dead[0].ID, e.now); err != nil {
		t.Fatal(err)
	}
	runOnce(t, r)
	if n := len(e.ehr.ofType("Observation")); n != 2 {
		t.Errorf("EHR observations after the retried dead letter: %d, want 2", n)
	}
}

// TestCoalescedPerPatient: the upserts of a burst enqueue one publish job per patient.
func TestCoalescedPerPatient(t *testing.T) {
	e := newEnv(t, publish.R5, func(c *publish.Config) { c.Delay = time.Minute })
	for range 5 {
		if err := e.p.Upserted(t.Context(), "p1", true); err != nil {
			t.Fatal(err)
		}
	}
	js, err := e.st.PendingJobs(t.Context(), 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(js) != 1 || js[0].Type != publish.JobType || !js[0].NotBefore.Equal(e.now.Add(time.Minute).Truncate(time.Microsecond)) {
		t.Fatalf("pending: %+v, want one publish job due in a minute", js)
	}
}

// TestPagedBatches: more Observations than Batch go out as several transactions, and the
// watermark keeps a later run from sending them again.
func TestPagedBatches(t *testing.T) {
	for name, open := range stores {
		t.Run(name, func(t *testing.T) {
			e := newEnvOn(t, open, publish.R4, func(c *publish.Config) { c.Batch = 3 })
			e.upsert(t, fhir.MapDevice(scale), fhir.MapAssociation("p1", scale, t0, nil))
			var rs []fhir.Resource
			for i := range 7 {
				rs = append(rs, weight(t, fmt.Sprintf("12345/%d/1", i+10), fmt.Sprintf("7%d.0", i), ""))
			}
			e.upsert(t, rs...)
			if err := e.p.Publish(t.Context(), "p1"); err != nil {
				t.Fatal(err)
			}
			if n := len(e.ehr.received()); n != 3 {
				t.Errorf("transactions: %d, want 3 (7 observations, 3 per transaction)", n)
			}
			if n := len(e.ehr.ofType("Observation")); n != 7 {
				t.Errorf("EHR observations: %d, want 7", n)
			}
			if err := e.p.Publish(t.Context(), "p1"); err != nil {
				t.Fatal(err)
			}
			if n := len(e.ehr.received()); n != 3 {
				t.Errorf("a second run sent again: %d transactions", n)
			}
		})
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	for _, c := range []publish.Config{
		{URL: "http://ehr.example/fhir"},
		{URL: "ftp://x"},
		{URL: "https://ehr.example/fhir?x=1"},
		{URL: "https://ehr.example/fhir", Version: "R3"},
	} {
		if _, err := publish.New(c, nil, nil, nil); err == nil {
			t.Errorf("%+v: no error", c)
		}
	}
	if _, err := publish.New(publish.Config{URL: "https://ehr.example/fhir"}, nil, nil, nil); err != nil {
		t.Error(err)
	}
}
