package withings

import (
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"sort"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/providers"
	"github.com/openhealthexchange/ohx/providers/providertest"
)

// testNow is the adapter's clock in tests.
var testNow = time.Date(2024, 7, 6, 12, 0, 0, 0, time.UTC)

const (
	testUser     = "12345"
	testCallback = "https://ohx.example/webhooks/withings/" + testWebhookSecret
	// testWebhookSecret is the fixture adapter's Config.WebhookSecret.
	testWebhookSecret = "s3cr3t-segment"
)

// recordingCaller wraps the real resilient client and records every Call (without its funcs),
// so tests can check users, endpoints, cache keys and cacheability.
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

// fixture is an adapter talking to a fake Withings through the real providers.Client.
type fixture struct {
	c   *Client
	srv *providertest.Server
	rec *recordingCaller
}

type fixtureOpts struct {
	kinds      []fhir.SampleKind
	maxRetries int // 0: never retry
	cacheTTL   time.Duration
}

func newFixture(t *testing.T, routes map[string]providertest.Route, o fixtureOpts) *fixture {
	t.Helper()
	srv := providertest.NewServer(t, routes)
	retries := o.maxRetries
	if retries == 0 {
		retries = -1
	}
	ttl := o.cacheTTL
	if ttl == 0 {
		ttl = -1
	}
	pc, err := providers.NewClient(providers.ClientConfig{
		Provider:    Name,
		MaxRetries:  retries,
		BaseBackoff: time.Millisecond,
		MaxBackoff:  2 * time.Millisecond,
		CacheTTL:    ttl,
		Timeout:     5 * time.Second,
	}, srv.Client(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recordingCaller{next: pc}
	c, err := New(Config{
		ClientID:      "cid",
		ClientSecret:  "csecret",
		RedirectURL:   "https://ohx.example/connect/withings/callback",
		APIURL:        srv.URL(),
		Kinds:         o.kinds,
		WebhookSecret: testWebhookSecret,
	}, rec, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.now = func() time.Time { return testNow }
	f := &fixture{c: c, srv: srv, rec: rec}
	t.Cleanup(func() { f.checkNoSecrets(t) })
	return f
}

// checkNoSecrets asserts that no cache key carries a token, secret, code or the callback URL.
func (f *fixture) checkNoSecrets(t *testing.T) {
	t.Helper()
	for _, c := range f.rec.calls() {
		for _, k := range []string{"access_token", "refresh_token", "client_secret", "code", "callbackurl", "signature", "nonce"} {
			if c.Params.Has(k) {
				t.Errorf("%s: Call.Params carries %q", c.Endpoint, k)
			}
		}
	}
}

// requests returns the recorded requests to a path.
func (f *fixture) requests(path string) []providertest.Recorded {
	var out []providertest.Recorded
	for _, r := range f.srv.Requests() {
		if r.Path == path {
			out = append(out, r)
		}
	}
	return out
}

func bearer(tok string) oauth2.TokenSource {
	return oauth2.StaticTokenSource(&oauth2.Token{AccessToken: tok})
}

func file(name string) providertest.Route { return providertest.Route{File: "withings/" + name} }

func body(s string) providertest.Route { return providertest.Route{Body: s} }

// fetchAll pages through a query.
func fetchAll(t *testing.T, c *Client, q providers.Query) ([]fhir.Sample, []*providers.Page) {
	t.Helper()
	var samples []fhir.Sample
	var pages []*providers.Page
	for range 20 {
		p, err := c.Fetch(t.Context(), testUser, bearer("a1"), q)
		if err != nil {
			t.Fatalf("Fetch: %v", err)
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

func byRecord(ss []fhir.Sample) map[string]fhir.Sample {
	m := map[string]fhir.Sample{}
	for _, s := range ss {
		m[s.RecordID] = s
	}
	return m
}

func recordIDs(ss []fhir.Sample) []string {
	var ids []string
	for _, s := range ss {
		ids = append(ids, s.RecordID)
	}
	sort.Strings(ids)
	return ids
}

// upstream asserts err is an *UpstreamError and returns it.
func upstream(t *testing.T, err error) *providers.UpstreamError {
	t.Helper()
	var ue *providers.UpstreamError
	if !errors.As(err, &ue) {
		t.Fatalf("error %v (%T) is not an *UpstreamError", err, err)
	}
	return ue
}

func jsonNumber(s string) json.Number { return json.Number(s) }

func form(r providertest.Recorded) url.Values { return r.Form }

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}
