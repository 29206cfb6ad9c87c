package googlehealth

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/providers"
	"github.com/openhealthexchange/ohx/providers/providertest"
)

// The fixtures' user and zone (as in googlehealthtest, which this package's internal tests cannot
// import: it imports this package).
const (
	testUser     = "hu-7f3a9c"
	testLegacy   = "ABC123"
	testSecret   = "Bearer s3cr3t-webhook-value"
	testRedirect = "https://ohx.example/connect/googlehealth/callback"
)

var (
	testNow     = time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	windowStart = time.Date(2026, 3, 7, 8, 0, 0, 0, time.UTC)
	windowEnd   = time.Date(2026, 3, 10, 7, 0, 0, 0, time.UTC)
	losAngeles  = mustZone("America/Los_Angeles")
)

func mustZone(name string) *time.Location {
	l, err := time.LoadLocation(name)
	if err != nil {
		panic(err)
	}
	return l
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

type fixtureOpts struct {
	kinds    []fhir.SampleKind
	cacheTTL time.Duration // 0: no cache
	key      bool          // set a signature key (see webhook tests)
}

func file(name string) providertest.Route { return providertest.Route{File: "googlehealth/" + name} }

func newFixture(t *testing.T, routes map[string]providertest.Route, o fixtureOpts) *fixture {
	t.Helper()
	srv := providertest.NewServer(t, routes)
	cc := ClientConfig()
	cc.MaxRetries, cc.Timeout, cc.AppRate, cc.UserRate = -1, 5*time.Second, 0, 0
	cc.CacheTTL = o.cacheTTL
	if cc.CacheTTL == 0 {
		cc.CacheTTL = -1
	}
	pc, err := providers.NewClient(cc, srv.Client(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recordingCaller{next: pc}
	c, err := New(Config{
		ClientID: "cid.apps.googleusercontent.com", ClientSecret: "csecret", RedirectURL: testRedirect,
		APIURL: srv.URL(), TokenURL: srv.URL() + "/token", RevokeURL: srv.URL() + "/revoke",
		Kinds: o.kinds, WebhookSecret: testSecret,
	}, rec, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.now = func() time.Time { return testNow }
	f := &fixture{c: c, srv: srv, rec: rec}
	t.Cleanup(func() { f.checkNoSecrets(t) })
	return f
}

// checkNoSecrets asserts that no cache key carries a token, secret or code.
func (f *fixture) checkNoSecrets(t *testing.T) {
	t.Helper()
	for _, c := range f.rec.calls() {
		for _, k := range []string{"access_token", "refresh_token", "client_secret", "code", "code_verifier", "token"} {
			if c.Params.Has(k) {
				t.Errorf("%s: Call.Params carries %q", c.Endpoint, k)
			}
		}
	}
}

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

// allRoutes is the happy path (the same as googlehealthtest.Routes).
func allRoutes() map[string]providertest.Route {
	dp := func(t string) string { return "GET /v4/users/me/dataTypes/" + t + "/dataPoints" }
	ru := func(t string) string { return "POST /v4/users/me/dataTypes/" + t + "/dataPoints:dailyRollUp" }
	return map[string]providertest.Route{
		"POST /token grant_type=authorization_code": file("token_exchange.json"),
		"POST /token grant_type=refresh_token":      file("token_refresh.json"),
		"POST /revoke":                              file("revoke_ok.json"),
		"GET /v4/users/me/identity":                 file("identity.json"),
		"GET /v4/users/me/settings":                 file("settings.json"),
		"GET /v4/users/me/pairedDevices":            file("paired_devices.json"),
		dp("weight"):                                file("weight.json"),
		dp("body-fat"):                              file("body_fat.json"),
		dp("heart-rate"):                            file("heart_rate_page1.json"),
		dp("heart-rate") + " pageToken=hr-page-2":   file("heart_rate_page2.json"),
		dp("daily-resting-heart-rate"):              file("daily_resting_heart_rate.json"),
		dp("daily-heart-rate-variability"):          file("daily_heart_rate_variability.json"),
		dp("daily-oxygen-saturation"):               file("daily_oxygen_saturation.json"),
		dp("daily-respiratory-rate"):                file("daily_respiratory_rate.json"),
		dp("daily-sleep-temperature-derivations"):   file("daily_sleep_temperature_derivations.json"),
		dp("sleep"):                                 file("sleep.json"),
		dp("electrocardiogram"):                     file("electrocardiogram.json"),
		ru("steps"):                                 file("rollup_steps.json"),
		ru("distance"):                              file("rollup_distance.json"),
		ru("floors"):                                file("rollup_floors.json"),
		ru("total-calories"):                        file("rollup_total_calories.json"),
	}
}

// fetchAll pages through a query.
func fetchAll(t *testing.T, c *Client, q providers.Query) ([]fhir.Sample, []*providers.Page) {
	t.Helper()
	var samples []fhir.Sample
	var pages []*providers.Page
	for range 50 {
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

func asUpstream(err error, ue **providers.UpstreamError) bool { return errors.As(err, ue) }
