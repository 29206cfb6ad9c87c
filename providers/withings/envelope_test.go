package withings

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/providers"
	"github.com/openhealthexchange/ohx/providers/providertest"
)

// TestEnvelopeStatus checks every envelope status (and the transport failures) → error kind, through
// Fetch and the real resilient client with retries off.
func TestEnvelopeStatus(t *testing.T) {
	tests := []struct {
		name   string
		route  providertest.Route
		kind   providers.ErrorKind
		status int
	}{
		{"100 auth failed", body(`{"status":100,"body":{}}`), providers.KindAuth, 100},
		{"101 auth failed", body(`{"status":101,"body":{}}`), providers.KindAuth, 101},
		{"102 auth failed", body(`{"status":102,"body":{}}`), providers.KindAuth, 102},
		{"200 auth failed", body(`{"status":200,"body":{}}`), providers.KindAuth, 200},
		{"401 invalid token (W16)", file("status_401_invalid_token.json"), providers.KindAuth, 401},
		{"214 unauthorized", body(`{"status":214,"body":{}}`), providers.KindAuth, 214},
		{"277 unauthorized", body(`{"status":277,"body":{}}`), providers.KindAuth, 277},
		{"601 too many requests (W17)", file("status_601.json"), providers.KindThrottled, 601},
		{"2554 not implemented (W18)", file("status_2554.json"), providers.KindPermanent, 2554},
		{"503 invalid params", body(`{"status":503,"body":{},"error":"Invalid Params"}`), providers.KindPermanent, 503},
		{"201 invalid params", body(`{"status":201,"body":{}}`), providers.KindPermanent, 201},
		{"522 timeout", body(`{"status":522,"body":{}}`), providers.KindTransient, 522},
		{"unknown status", body(`{"status":98765,"body":{}}`), providers.KindPermanent, 98765},
		{"status as a string", body(`{"status":"601","body":{}}`), providers.KindThrottled, 601},
		{"HTTP 500", providertest.Route{Status: 500, Body: "oops"}, providers.KindTransient, 500},
		{"HTTP 503 from a proxy", providertest.Route{Status: 503, Body: "<html>unavailable</html>"}, providers.KindTransient, 503},
		{"HTTP 429", providertest.Route{Status: 429, Header: http.Header{"Retry-After": {"7"}}}, providers.KindThrottled, 429},
		{"HTTP 404", providertest.Route{Status: 404, Body: "not found"}, providers.KindPermanent, 404},
		{"garbage body", body(`<html>maintenance</html>`), providers.KindTransient, 200},
		{"truncated JSON", body(`{"status":0,"body":{"measuregrps":[`), providers.KindTransient, 200},
		{"no status", body(`{"body":{}}`), providers.KindTransient, 200},
		{"unexpected body shape", body(`{"status":0,"body":{"measuregrps":{"not":"a list"}}}`), providers.KindPermanent, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, map[string]providertest.Route{"POST /measure action=getmeas": tt.route},
				fixtureOpts{kinds: []fhir.SampleKind{fhir.KindWeight}})
			_, err := f.c.Fetch(t.Context(), testUser, bearer("a1"), providers.Query{Since: time.Unix(1704000000, 0)})
			ue := upstream(t, err)
			if ue.Kind != tt.kind || ue.Status != tt.status || ue.Provider != "withings" {
				t.Errorf("got %s/%s status %d, want withings/%s status %d (err %v)", ue.Provider, ue.Kind, ue.Status, tt.kind, tt.status, err)
			}
			if tt.status == 429 && ue.RetryAfter != 7*time.Second {
				t.Errorf("RetryAfter = %v, want 7s", ue.RetryAfter)
			}
			if errors.Is(err, providers.ErrConsentRevoked) {
				t.Error("a data call never reports a revoked consent: the vault refreshes first")
			}
		})
	}
}

// TestThrottledRetries is W17 end to end: 601 is retried with backoff by the client, never
// refreshed, and reported as throttled when it persists; a later success is returned.
func TestThrottledRetries(t *testing.T) {
	f := newFixture(t, map[string]providertest.Route{
		"POST /measure action=getmeas": {Seq: []providertest.Route{file("status_601.json"), file("getmeas_page2.json")}},
	}, fixtureOpts{kinds: []fhir.SampleKind{fhir.KindWeight}, maxRetries: 2})
	p, err := f.c.Fetch(t.Context(), testUser, bearer("a1"), providers.Query{Since: time.Unix(1704000000, 0)})
	if err != nil {
		t.Fatalf("Fetch after one 601: %v", err)
	}
	if len(p.Samples) != 1 {
		t.Errorf("%d samples, want 1", len(p.Samples))
	}
	if n := f.srv.Hits("POST /measure action=getmeas"); n != 2 {
		t.Errorf("%d getmeas requests, want 2 (one retry)", n)
	}

	g := newFixture(t, map[string]providertest.Route{"POST /measure action=getmeas": file("status_601.json")},
		fixtureOpts{kinds: []fhir.SampleKind{fhir.KindWeight}, maxRetries: 2})
	_, err = g.c.Fetch(t.Context(), testUser, bearer("a1"), providers.Query{Since: time.Unix(1704000000, 0)})
	if ue := upstream(t, err); ue.Kind != providers.KindThrottled {
		t.Errorf("kind %s, want throttled", ue.Kind)
	}
	if n := g.srv.Hits("POST /measure action=getmeas"); n != 3 {
		t.Errorf("%d getmeas requests, want 3 (two retries)", n)
	}
	for _, r := range g.srv.Requests() {
		if r.Path != "/measure" {
			t.Errorf("unexpected %s request: a 601 never triggers a refresh", r.Path)
		}
	}
}

// TestAuthErrorNotRetried is W16 at the adapter: one getmeas, an auth error; refreshing and the
// single retry are the vault's job.
func TestAuthErrorNotRetried(t *testing.T) {
	f := newFixture(t, map[string]providertest.Route{"POST /measure action=getmeas": file("status_401_invalid_token.json")},
		fixtureOpts{kinds: []fhir.SampleKind{fhir.KindWeight}, maxRetries: 3})
	_, err := f.c.Fetch(t.Context(), testUser, bearer("expired"), providers.Query{Since: time.Unix(1704000000, 0)})
	if ue := upstream(t, err); ue.Kind != providers.KindAuth || ue.Status != 401 {
		t.Errorf("got %s %d, want auth 401", ue.Kind, ue.Status)
	}
	if n := f.srv.Hits("POST /measure action=getmeas"); n != 1 {
		t.Errorf("%d requests, want 1", n)
	}
	if !strings.Contains(upstream(t, err).Err.Error(), "invalid_token") {
		t.Errorf("vendor text lost: %v", err)
	}
}

func TestContextCanceled(t *testing.T) {
	f := newFixture(t, map[string]providertest.Route{"POST /measure action=getmeas": {File: "withings/getmeas_page2.json", Delay: time.Minute}},
		fixtureOpts{kinds: []fhir.SampleKind{fhir.KindWeight}})
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	_, err := f.c.Fetch(ctx, testUser, bearer("a1"), providers.Query{Since: time.Unix(1704000000, 0)})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want context.DeadlineExceeded", err)
	}
}

func TestTokenSourceFailure(t *testing.T) {
	f := newFixture(t, nil, fixtureOpts{kinds: []fhir.SampleKind{fhir.KindWeight}})
	refused := &providers.UpstreamError{Provider: "withings", Kind: providers.KindAuth, Err: providers.ErrConsentRevoked}
	_, err := f.c.Fetch(t.Context(), testUser, failingSource{refused}, providers.Query{Since: time.Unix(1704000000, 0)})
	if !errors.Is(err, providers.ErrConsentRevoked) {
		t.Errorf("err = %v, want the token source's refusal", err)
	}
	if n := len(f.srv.Requests()); n != 0 {
		t.Errorf("%d requests sent without a token", n)
	}
}

type failingSource struct{ err error }

func (s failingSource) Token() (*oauth2.Token, error) { return nil, s.err }
