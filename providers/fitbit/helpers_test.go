package fitbit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
	_ "time/tzdata" // the DST tests must not depend on the machine's zoneinfo

	"github.com/google/fhir/go/fhirversion"
	"github.com/google/fhir/go/jsonformat"
	"github.com/google/go-cmp/cmp"
	"golang.org/x/oauth2"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/providers"
	"github.com/openhealthexchange/ohx/providers/fitbit/fitbittest"
	"github.com/openhealthexchange/ohx/providers/providertest"
)

const (
	testUser     = fitbittest.UserID
	testRedirect = "https://ohx.example/connect/fitbit/callback"
	testVerify   = "verify-code-4711"
	testPatient  = "p1"
)

var (
	berlin      = mustZone("Europe/Berlin")
	losAngeles  = mustZone("America/Los_Angeles")
	testWindowQ = providers.Query{Start: fitbittest.WindowStart, End: fitbittest.WindowEnd}
)

func mustZone(name string) *time.Location {
	loc, err := time.LoadLocation(name)
	if err != nil {
		panic(err)
	}
	return loc
}

// recordingCaller wraps the real resilient client and records every Call (without its funcs).
type recordingCaller struct {
	next providers.Caller
	mu   sync.Mutex
	seen []providers.Call
}

func (r *recordingCaller) Call(ctx context.Context, c providers.Call) ([]byte, error) {
	r.mu.Lock()
	rec := c
	rec.NewRequest, rec.Classify = nil, nil
	r.seen = append(r.seen, rec)
	r.mu.Unlock()
	return r.next.Call(ctx, c)
}

func (r *recordingCaller) calls() []providers.Call {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]providers.Call(nil), r.seen...)
}

type fixture struct {
	c   *Client
	srv *providertest.Server
	rec *recordingCaller
}

type opts struct {
	kinds    []fhir.SampleKind
	intraday bool
	noVerify bool
	cacheTTL time.Duration
	retries  int
}

// newFixture is the adapter talking to a fake Fitbit through the real providers.Client (no
// retries, no response cache unless asked), its clock at fitbittest.Now.
func newFixture(t testing.TB, routes map[string]providertest.Route, o opts) *fixture {
	t.Helper()
	srv := providertest.NewServer(t, routes)
	cfg := ClientConfig(0)
	cfg.MaxRetries, cfg.CacheTTL, cfg.Timeout = -1, -1, 5*time.Second
	cfg.UserRate = 0 // the hourly budget is not what these tests measure
	if o.retries > 0 {
		cfg.MaxRetries, cfg.BaseBackoff, cfg.MaxBackoff = o.retries, time.Millisecond, 2*time.Millisecond
	}
	if o.cacheTTL > 0 {
		cfg.CacheTTL = o.cacheTTL
	}
	pc, err := providers.NewClient(cfg, srv.Client(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recordingCaller{next: pc}
	verify := testVerify
	if o.noVerify {
		verify = ""
	}
	c, err := New(Config{
		ClientID: fitbittest.ClientID, ClientSecret: fitbittest.ClientSecret, RedirectURL: testRedirect,
		APIURL: srv.URL(), Kinds: o.kinds, IntradayHRV: o.intraday, VerificationCode: verify,
		SubscriberID: "1", Rand: fitbittest.SubscriptionRand(),
	}, rec, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.now = func() time.Time { return fitbittest.Now }
	f := &fixture{c: c, srv: srv, rec: rec}
	t.Cleanup(func() { f.checkRequests(t) })
	return f
}

// checkRequests asserts what every request must satisfy: no Accept-Language (metric units), no
// token or secret in a cache key.
func (f *fixture) checkRequests(t testing.TB) {
	t.Helper()
	for _, r := range f.srv.Requests() {
		if v := r.Header.Get("Accept-Language"); v != "" {
			t.Errorf("%s %s sent Accept-Language %q", r.Method, r.Path, v)
		}
	}
	for _, c := range f.rec.calls() {
		for _, k := range []string{"token", "refresh_token", "code", "code_verifier", "client_secret"} {
			if c.Params.Has(k) {
				t.Errorf("%s: Call.Params carries %q", c.Endpoint, k)
			}
		}
	}
}

func bearer(tok string) oauth2.TokenSource {
	return oauth2.StaticTokenSource(&oauth2.Token{AccessToken: tok, Expiry: time.Now().Add(time.Hour)})
}

func file(name string) providertest.Route { return providertest.Route{File: "fitbit/" + name} }

// base are the profile and devices every Fetch reads first.
func base(extra map[string]providertest.Route) map[string]providertest.Route {
	r := map[string]providertest.Route{
		"GET /1/user/-/profile.json": file("profile.json"),
		"GET /1/user/-/devices.json": file("devices.json"),
	}
	for k, v := range extra {
		r[k] = v
	}
	return r
}

// fetchAll pages through a query.
func fetchAll(t testing.TB, c *Client, q providers.Query) ([]fhir.Sample, []*providers.Page) {
	t.Helper()
	var samples []fhir.Sample
	var pages []*providers.Page
	for range 50 {
		p, err := c.Fetch(t.Context(), testUser, bearer("a1"), q)
		if err != nil {
			t.Fatalf("Fetch (page %d): %v", len(pages)+1, err)
		}
		pages = append(pages, p)
		samples = append(samples, p.Samples...)
		if p.Next == "" {
			return samples, pages
		}
		q.Cursor = p.Next
	}
	t.Fatal("Fetch did not terminate")
	return nil, nil
}

func upstreamErr(t testing.TB, err error) *providers.UpstreamError {
	t.Helper()
	var ue *providers.UpstreamError
	if !errors.As(err, &ue) {
		t.Fatalf("error %v (%T) is not an *UpstreamError", err, err)
	}
	return ue
}

// checkResource asserts an Observation or Device passes our Validate, a strict decode round trip,
// and (as R4) google/fhir/go's validating unmarshaller.
func checkResource(t testing.TB, r fhir.Resource, typ string, opt fhir.R4Options) []byte {
	t.Helper()
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	back, err := fhir.Decode(b, typ)
	if err != nil {
		t.Fatalf("strict R5 decode: %v\n%s", err, b)
	}
	if diff := cmp.Diff(r, back); diff != "" {
		t.Errorf("decode round trip (-mapped +decoded):\n%s", diff)
	}
	r4, err := fhir.MarshalR4(r, opt)
	if err != nil {
		t.Fatalf("MarshalR4: %v", err)
	}
	u, err := jsonformat.NewUnmarshaller("UTC", fhirversion.R4)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := u.Unmarshal(r4); err != nil {
		t.Errorf("R4 validation: %v\n%s", err, r4)
	}
	return b
}

// update rewrites the goldens of testdata/golden/fitbit (go test ./providers/fitbit -run
// HappyPath -update); read every rewritten file before committing it.
var update = flag.Bool("update", false, "rewrite the adapter's goldens")

// compareGolden compares v with testdata/golden/<rel> after decoding both sides (numbers as
// written). With -update it first writes got to the goldens under fitbit/.
func compareGolden(t testing.TB, rel string, got []byte) {
	t.Helper()
	file := filepath.Join(providertest.ModuleRoot(t), "testdata", "golden", rel)
	if *update && strings.HasPrefix(rel, "fitbit"+string(filepath.Separator)) {
		var pretty bytes.Buffer
		if err := json.Indent(&pretty, got, "", "  "); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(file, append(pretty.Bytes(), '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(jsonTree(t, want), jsonTree(t, got)); diff != "" {
		t.Errorf("%s mismatch (-golden +adapter):\n%s", rel, diff)
	}
}

func jsonTree(t testing.TB, b []byte) any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("decode JSON: %v", err)
	}
	return v
}
