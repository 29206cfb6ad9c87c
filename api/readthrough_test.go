package api_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/oauth2"

	"github.com/openhealthexchange/ohx/api"
	"github.com/openhealthexchange/ohx/api/smart"
	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/fhir/search"
	"github.com/openhealthexchange/ohx/providers"
	"github.com/openhealthexchange/ohx/providers/pipeline"
	"github.com/openhealthexchange/ohx/providers/providertest"
	"github.com/openhealthexchange/ohx/providers/withings"
	"github.com/openhealthexchange/ohx/store"
	"github.com/openhealthexchange/ohx/store/sqlite"
)

const rtGetmeas = "POST /measure action=getmeas"

// rtEnv is the API with token enforcement and read-through over the real Withings adapter
// (reading weight only), vault and runner, against a fake Withings that counts its calls.
// Patients p1 and p2 are stored (seedCompartments) and p1 is connected as Withings user 12345;
// the runner runs in the background on a clock the test can move.
type rtEnv struct {
	*authEnv
	fake   *providertest.Server
	vault  *providers.Vault
	offset *atomic.Int64
}

func newRTEnv(t *testing.T, routes map[string]providertest.Route) *rtEnv {
	t.Helper()
	st, err := sqlite.Open(t.Context(), t.TempDir(), sqlite.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	fake := providertest.NewServer(t, routes)
	caller, err := providers.NewClient(providers.ClientConfig{Provider: withings.Name, CacheTTL: -1, MaxRetries: -1}, fake.Client(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	w, err := withings.New(withings.Config{ClientID: "c", ClientSecret: "s", RedirectURL: "https://ohx.test/cb", APIURL: fake.URL(),
		Kinds: []fhir.SampleKind{fhir.KindWeight}}, caller, nil)
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
	offset := &atomic.Int64{}
	runner := pipeline.NewRunner(pipeline.Config{Lease: time.Minute, MaxAttempts: 3,
		Now: func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }}, providers.NewRegistry(w), vault, st, nil)
	// The recorded payloads are of January 2024: read-through reaches back that far.
	rt := runner.ReadThrough(pipeline.ReadThroughConfig{MaxAge: 10 * 365 * 24 * time.Hour})

	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	e := &env{t: t, store: st}
	e.srv = httptest.NewUnstartedServer(nil)
	e.base = "http://" + e.srv.Listener.Addr().String() + "/fhir"
	v, err := smart.NewVerifier(smart.VerifierConfig{Issuer: testIssuer, Audience: e.base, RequireTyp: true,
		Keyfunc: func(tok *jwt.Token) (any, error) {
			if tok.Header["kid"] != "k1" {
				return nil, fmt.Errorf("unknown kid")
			}
			return &key.PublicKey, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	s, err := api.New(api.Config{BaseURL: e.base, CursorKey: bytes.Repeat([]byte("k"), 32), Auth: v,
		SMARTConfiguration: []byte(`{"token_endpoint":"x"}`), ReadThrough: rt}, st, search.DefaultRegistry(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.srv.Config.Handler = s.Handler()
	e.srv.Start()
	t.Cleanup(e.srv.Close)
	ae := &authEnv{env: e, key: key, verifier: v}
	ae.seedCompartments()

	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); runner.Run(ctx) }()
	t.Cleanup(func() { stop(); <-done })
	return &rtEnv{authEnv: ae, fake: fake, vault: vault, offset: offset}
}

// pending is the number of queued jobs.
func (e *rtEnv) pending() int {
	e.t.Helper()
	js, err := e.store.(store.Jobs).PendingJobs(e.t.Context(), 100)
	if err != nil {
		e.t.Fatal(err)
	}
	return len(js)
}

// waitIdle waits until the job queue is empty (the runner records an outcome just after the
// search learnt it).
func (e *rtEnv) waitIdle() {
	e.t.Helper()
	for deadline := time.Now().Add(10 * time.Second); e.pending() > 0; {
		if time.Now().After(deadline) {
			e.t.Fatal("timed out waiting for the job queue to drain")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// weightsJan2024 is the search of p1's weights in 1–3 January 2024, uncovered at the start.
const weightsJan2024 = "code=http://loinc.org|29463-7&date=ge2024-01-01&date=lt2024-01-04"

// TestReadThroughSearch: a patient's Observation search over a window not synced yet is filled
// from the vendor within the budget and answered with what it fetched, without a warning; the
// same search again, in R4, in the patient's compartment and with a patient token, finds the
// window covered and calls the vendor no more.
func TestReadThroughSearch(t *testing.T) {
	e := newRTEnv(t, map[string]providertest.Route{rtGetmeas: {File: "withings/getmeas_page2.json"}})
	sys := e.mint("system/Observation.rs", "")
	r := e.as(sys, "/fhir/Observation?patient=p1&"+weightsJan2024)
	if r.status != http.StatusOK {
		t.Fatalf("got %d %s", r.status, r.body)
	}
	b := r.bundle(t)
	if ids := entryIDs(t, b, "match"); len(ids) != 1 {
		t.Errorf("matches %v, want the weight fetched from Withings", ids)
	}
	if oos := outcomeEntries(t, b); len(oos) != 0 {
		t.Errorf("outcomes %+v, want none: the window was filled", oos)
	}
	if n := e.fake.Hits(rtGetmeas); n != 1 {
		t.Fatalf("getmeas calls %d, want 1", n)
	}
	e.waitIdle()
	p1 := e.mint("patient/Observation.rs", "p1")
	for _, tc := range []struct{ name, token, path string }{
		{"again", sys, "/fhir/Observation?patient=p1&" + weightsJan2024},
		{"R4", sys, "/fhir/r4/Observation?patient=p1&" + weightsJan2024},
		{"compartment", sys, "/fhir/Patient/p1/Observation?" + weightsJan2024},
		{"patient token", p1, "/fhir/Observation?" + weightsJan2024},
		{"a part of the window", sys, "/fhir/Observation?subject=Patient/p1&code=29463-7&date=2024-01-02"},
	} {
		r := e.as(tc.token, tc.path)
		if r.status != http.StatusOK {
			t.Errorf("%s: got %d %s", tc.name, r.status, r.body)
			continue
		}
		b := r.bundle(t)
		if ids := entryIDs(t, b, "match"); len(ids) != 1 || len(outcomeEntries(t, b)) != 0 {
			t.Errorf("%s: matches %v outcomes %+v, want the weight and no warning", tc.name, ids, outcomeEntries(t, b))
		}
	}
	if n := e.fake.Hits(rtGetmeas); n != 1 {
		t.Errorf("getmeas calls %d, want still 1: the window is covered", n)
	}
}

// TestReadThroughLastN: $lastn of one patient reads an uncovered window through as a search
// does: the weight fetched within the budget is the latest, and the same $lastn again calls the
// vendor no more; a throttled vendor gives the stored latest value with the warning. $lastn of
// several patients, or of a patient the token does not see, calls no vendor.
func TestReadThroughLastN(t *testing.T) {
	e := newRTEnv(t, map[string]providertest.Route{rtGetmeas: {File: "withings/getmeas_page2.json"}})
	sys := e.mint("system/Observation.rs", "")
	path := "/fhir/Observation/$lastn?patient=p1&" + weightsJan2024
	for i := range 2 {
		r := e.as(sys, path)
		if r.status != http.StatusOK {
			t.Fatalf("$lastn %d: got %d %s", i, r.status, r.body)
		}
		b := r.bundle(t)
		if ids := entryIDs(t, b, "match"); len(ids) != 1 || len(outcomeEntries(t, b)) != 0 {
			t.Errorf("$lastn %d: matches %v outcomes %+v, want the weight fetched from Withings, no warning", i, ids, outcomeEntries(t, b))
		}
		if n := e.fake.Hits(rtGetmeas); n != 1 {
			t.Errorf("$lastn %d: getmeas calls %d, want 1", i, n)
		}
		e.waitIdle()
	}
	p2 := e.mint("patient/Observation.rs", "p2")
	feb := "code=http://loinc.org|29463-7&date=ge2024-02-01&date=lt2024-02-04"
	for _, tc := range []struct{ name, token, path string }{
		{"several patients", sys, "/fhir/Observation/$lastn?patient=p1,p2&" + feb},
		{"another patient's token", p2, "/fhir/Observation/$lastn?patient=p1&" + feb},
	} {
		if r := e.as(tc.token, tc.path); r.status != http.StatusOK {
			t.Errorf("%s: got %d %s", tc.name, r.status, r.body)
		}
	}
	if n := e.fake.Hits(rtGetmeas); n != 1 {
		t.Errorf("getmeas calls %d, want still 1: nothing read through", n)
	}

	t.Run("throttled", func(t *testing.T) {
		e := newRTEnv(t, map[string]providertest.Route{rtGetmeas: {File: "withings/status_601.json"}})
		if _, err := e.store.Upsert(t.Context(), []fhir.Resource{obs("stored-p1", "p1", "", "29463-7", time.Date(2024, 1, 1, 8, 0, 0, 0, time.UTC), "80")}); err != nil {
			t.Fatal(err)
		}
		b := e.as(e.mint("system/Observation.rs", ""), path).bundle(t)
		if ids := entryIDs(t, b, "match"); len(ids) != 1 || ids[0] != "Observation/stored-p1" {
			t.Errorf("matches %v, want the stored weight", ids)
		}
		oos := outcomeEntries(t, b)
		if len(oos) != 1 || oos[0].Issue[0].Severity != "warning" || oos[0].Issue[0].Code != fhir.CodeThrottled || !strings.Contains(oos[0].Issue[0].Diagnostics, "withings") {
			t.Errorf("outcomes %+v, want one throttled warning naming withings", oos)
		}
	})
}

// TestReadThroughThrottledSearch: a vendor answering 601 (too many requests) yields what is
// stored plus an OperationOutcome entry (search.mode outcome, severity warning, throttled) that
// names withings and the uncovered window; the same search within the TTL says so again without
// a vendor call. Once the fetch's retry has run in the background, the search answers the new
// data: the result cache holding the earlier page is invalidated by the sync's writes.
func TestReadThroughThrottledSearch(t *testing.T) {
	e := newRTEnv(t, map[string]providertest.Route{rtGetmeas: {File: "withings/status_601.json"}})
	if _, err := e.store.Upsert(t.Context(), []fhir.Resource{obs("stored-p1", "p1", "", "29463-7", time.Date(2024, 1, 1, 8, 0, 0, 0, time.UTC), "80")}); err != nil {
		t.Fatal(err)
	}
	sys := e.mint("system/Observation.rs", "")
	path := "/fhir/Observation?patient=p1&" + weightsJan2024
	for i := range 2 {
		r := e.as(sys, path)
		if r.status != http.StatusOK {
			t.Fatalf("search %d: got %d %s, want 200 with the stored data", i, r.status, r.body)
		}
		b := r.bundle(t)
		if ids := entryIDs(t, b, "match"); len(ids) != 1 || ids[0] != "Observation/stored-p1" {
			t.Errorf("search %d: matches %v, want the stored weight", i, ids)
		}
		oos := outcomeEntries(t, b)
		if len(oos) != 1 || len(oos[0].Issue) != 1 {
			t.Fatalf("search %d: outcomes %+v, want one warning", i, oos)
		}
		is := oos[0].Issue[0]
		if is.Severity != "warning" || is.Code != fhir.CodeThrottled || !strings.Contains(is.Diagnostics, "withings") ||
			!strings.Contains(is.Diagnostics, "2024-01-01T00:00:00Z") || !strings.Contains(is.Diagnostics, "2024-01-04T00:00:00Z") {
			t.Errorf("search %d: issue %+v, want a throttled warning naming withings and 2024-01-01T00:00:00Z to 2024-01-04T00:00:00Z", i, is)
		}
		if n := e.fake.Hits(rtGetmeas); n != 1 {
			t.Errorf("search %d: getmeas calls %d, want 1", i, n)
		}
	}
	// The vendor recovers; the fetch's retry is due an hour later.
	e.fake.Set(rtGetmeas, providertest.Route{File: "withings/getmeas_page2.json"})
	e.offset.Add(int64(time.Hour))
	e.waitIdle()
	r := e.as(sys, path)
	b := r.bundle(t)
	if ids := entryIDs(t, b, "match"); len(ids) != 2 || len(outcomeEntries(t, b)) != 0 {
		t.Errorf("after the retry: matches %v outcomes %+v, want the stored and the fetched weight, no warning", ids, outcomeEntries(t, b))
	}
	if n := e.fake.Hits(rtGetmeas); n != 1 {
		t.Errorf("getmeas calls after the retry %d, want 1 (the retry)", n)
	}
}

// TestReadThroughNeedsReauthSearch: a connection that needs the patient to connect again yields
// what is stored and an expired warning naming withings; nothing is called or queued.
func TestReadThroughNeedsReauthSearch(t *testing.T) {
	e := newRTEnv(t, map[string]providertest.Route{})
	c, err := e.vault.Get(t.Context(), withings.Name, "p1")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.vault.MarkNeedsReauth(t.Context(), c, "test"); err != nil {
		t.Fatal(err)
	}
	r := e.as(e.mint("patient/Observation.rs", "p1"), "/fhir/Observation?"+weightsJan2024)
	oos := outcomeEntries(t, r.bundle(t))
	if len(oos) != 1 || oos[0].Issue[0].Code != "expired" || oos[0].Issue[0].Severity != "warning" || !strings.Contains(oos[0].Issue[0].Diagnostics, "withings") {
		t.Errorf("outcomes %+v, want one expired warning naming withings", oos)
	}
	if n := len(e.fake.Requests()); n != 0 || e.pending() != 0 {
		t.Errorf("vendor calls %d, queued jobs %d, want none", n, e.pending())
	}
}

// TestReadThroughOnlyForTheSearchedPatient: read-through never calls a vendor for a patient the
// caller may not see, nor for searches it cannot serve: a p2 patient token searching p1, a
// search of a laboratory code, a patient with no connection, a compartment of another patient.
func TestReadThroughOnlyForTheSearchedPatient(t *testing.T) {
	e := newRTEnv(t, map[string]providertest.Route{rtGetmeas: {File: "withings/getmeas_page2.json"}})
	p2 := e.mint("patient/Observation.rs", "p2")
	sys := e.mint("system/Observation.rs", "")
	for _, tc := range []struct{ name, token, path string }{
		{"another patient's token", p2, "/fhir/Observation?patient=p1&" + weightsJan2024},
		{"another patient's token, subject", p2, "/fhir/Observation?subject=Patient/p1&" + weightsJan2024},
		{"another patient's compartment", p2, "/fhir/Patient/p1/Observation?" + weightsJan2024},
		{"a patient without connection", sys, "/fhir/Observation?patient=p2&" + weightsJan2024},
		{"an unknown patient", sys, "/fhir/Observation?patient=nobody&" + weightsJan2024},
		{"a laboratory code", sys, "/fhir/Observation?patient=p1&code=http://loinc.org|2345-7&date=ge2024-01-01&date=lt2024-01-04"},
		{"two patients", sys, "/fhir/Observation?patient=p1,p2&" + weightsJan2024},
		{"an empty window", sys, "/fhir/Observation?patient=p1&code=29463-7&date=ge2024-01-04&date=lt2024-01-01"},
	} {
		r := e.as(tc.token, tc.path)
		if r.status != http.StatusOK {
			t.Errorf("%s: got %d %s", tc.name, r.status, r.body)
			continue
		}
		b := r.bundle(t)
		if oos := outcomeEntries(t, b); len(oos) != 0 {
			t.Errorf("%s: outcomes %+v, want none", tc.name, oos)
		}
		if tc.token == p2 {
			if ids := entryIDs(t, b, "match"); len(ids) != 0 {
				t.Errorf("%s: matches %v, want none", tc.name, ids)
			}
		}
	}
	if n := len(e.fake.Requests()); n != 0 || e.pending() != 0 {
		t.Errorf("vendor calls %d, queued jobs %d, want none", n, e.pending())
	}
	// The patient's own token does read through.
	r := e.as(e.mint("patient/Observation.rs", "p1"), "/fhir/Patient/p1/Observation?"+url.PathEscape("code")+"=29463-7&date=ge2024-01-01&date=lt2024-01-04")
	if ids := entryIDs(t, r.bundle(t), "match"); len(ids) != 1 || e.fake.Hits(rtGetmeas) != 1 {
		t.Errorf("p1's own compartment search: matches %v, getmeas calls %d; want the fetched weight and one call", ids, e.fake.Hits(rtGetmeas))
	}
}
