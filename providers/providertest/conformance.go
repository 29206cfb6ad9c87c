package providertest

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/providers"
)

// AdapterHarness is what RunAdapter needs to exercise one adapter: a constructor against a fake
// vendor, and the routes that program that fake for each part of the contract. Every subtest
// starts a fresh Server with only the routes it needs, so an adapter request the harness did not
// plan for fails the test (see NewServer).
type AdapterHarness struct {
	// New returns the adapter under test talking to srv: every base URL pointing at srv.URL(),
	// its HTTP client srv.Client(), every kind it supports enabled, no retries and no response
	// cache (the suite counts requests and classifies single answers), and the webhook secret
	// the Webhooks cases use.
	New func(t *testing.T, srv *Server) providers.Provider

	// User is the vendor user id of the recorded fixtures.
	User string
	// RedirectURL is the redirect URI New configured; Scopes the scopes the consent URL must ask
	// for; PKCE whether the vendor supports PKCE (the consent URL then carries an S256 challenge,
	// the exchange the verifier).
	RedirectURL string
	Scopes      []string
	PKCE        bool

	// Exchange answers an authorization-code exchange with a token pair for User.
	Exchange map[string]Route
	// ExchangeRequests is how many vendor requests an exchange makes (default 1): the token
	// request, and for Google Health the identity read with the new token.
	ExchangeRequests int
	// Refresh answers a refresh with a rotated pair: a refresh token other than the one sent.
	Refresh map[string]Route
	// RefreshRefused answers a refresh with the vendor's definitive refusal (invalid_grant or
	// the vendor's equivalent).
	RefreshRefused map[string]Route
	// Revoke accepts a token revocation; nil when the adapter is no providers.Revoker.
	Revoke map[string]Route
	// Devices lists User's devices (at least one).
	Devices map[string]Route

	// Kinds answers, for each kind of the adapter's Kinds(), a Fetch of that kind alone with
	// Query{Since: Since} with at least one sample of it.
	Kinds map[fhir.SampleKind]map[string]Route
	Since time.Time
	// Paged answers PagedQuery in more than one page.
	Paged      map[string]Route
	PagedQuery providers.Query
	// Failure answers every request of FailureQuery with the HTTP status and header.
	Failure      func(status int, header http.Header) map[string]Route
	FailureQuery providers.Query

	// Webhooks are deliveries and their expected outcome; nil when the adapter is no
	// providers.Webhooks. They must include at least one delivery with notifications and one
	// forged delivery.
	Webhooks []WebhookCase
}

// WebhookCase is one request to the adapter's HandleWebhook and what it must give.
type WebhookCase struct {
	Name    string
	Request providers.WebhookRequest
	// Refused means a *providers.WebhookError with Status is expected; otherwise a response
	// with Status and the Notifications Want (compared without Key, which must be set).
	Refused bool
	// Forged marks a refusal for failed authentication: the error must match
	// providers.ErrWebhookAuth.
	Forged bool
	Status int
	Want   []providers.Notification
}

// conformance request values, recognisable in recorded requests.
const (
	confState     = "conformance-state"
	confCode      = "conformance-code"
	confVerifier  = "conformance-verifier-0123456789-0123456789-0123456789"
	confChallenge = "conformance-challenge"
	confRefresh   = "conformance-refresh-token"
	confAccess    = "conformance-access-token"
	confPatient   = "conformance-patient"
)

// RunAdapter runs the adapter contract suite: the consent URL, code exchange, refresh with
// rotation, a refused refresh as providers.ErrConsentRevoked, revocation, devices, every enabled
// kind producing samples that fhir.MapSample maps to Observations that decode strictly and
// validate, pagination to the end without duplicates, error classification by HTTP status, and
// webhook deliveries (notifications with keys and kinds, forged deliveries refused, no vendor call
// on the acknowledgement path).
func RunAdapter(t *testing.T, h AdapterHarness) {
	t.Helper()
	if h.New == nil || h.User == "" {
		t.Fatal("providertest: AdapterHarness needs New and User")
	}
	start := func(t *testing.T, routes map[string]Route) (*Server, providers.Provider) {
		t.Helper()
		srv := NewServer(t, routes)
		return srv, h.New(t, srv)
	}
	ts := oauth2.StaticTokenSource(&oauth2.Token{AccessToken: confAccess, TokenType: "Bearer", Expiry: time.Now().Add(time.Hour)})

	t.Run("AuthCodeURL", func(t *testing.T) {
		_, p := start(t, nil)
		raw := p.AuthCodeURL(confState, confChallenge)
		u, err := url.Parse(raw)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			t.Fatalf("AuthCodeURL %q: want an https URL", raw)
		}
		q := u.Query()
		// RFC 6749 §4.1.1.
		for k, want := range map[string]string{"response_type": "code", "state": confState, "redirect_uri": h.RedirectURL} {
			if got := q.Get(k); got != want {
				t.Errorf("%s = %q, want %q", k, got, want)
			}
		}
		scopes := strings.FieldsFunc(q.Get("scope"), func(r rune) bool { return r == ' ' || r == ',' })
		for _, s := range h.Scopes {
			if !slices.Contains(scopes, s) {
				t.Errorf("scope %q: missing %q", q.Get("scope"), s)
			}
		}
		// RFC 7636 §4.3.
		if h.PKCE {
			if q.Get("code_challenge") != confChallenge || q.Get("code_challenge_method") != "S256" {
				t.Errorf("PKCE: code_challenge %q method %q, want %q S256", q.Get("code_challenge"), q.Get("code_challenge_method"), confChallenge)
			}
		} else if q.Has("code_challenge") {
			t.Errorf("a vendor without PKCE gets code_challenge %q", q.Get("code_challenge"))
		}
	})

	t.Run("Exchange", func(t *testing.T) {
		srv, p := start(t, h.Exchange)
		g, err := p.Exchange(t.Context(), confCode, confVerifier)
		if err != nil {
			t.Fatalf("Exchange: %v", err)
		}
		if g.Token == nil || g.Token.AccessToken == "" || g.Token.RefreshToken == "" || g.Token.Expiry.IsZero() {
			t.Errorf("token %v: want access and refresh tokens with an expiry", redacted(g.Token))
		}
		if g.UserID != h.User {
			t.Errorf("UserID = %q, want %q", g.UserID, h.User)
		}
		reqs := srv.Requests()
		if want := max(h.ExchangeRequests, 1); len(reqs) != want {
			t.Fatalf("%d vendor requests, want %d", len(reqs), want)
		}
		// RFC 6749 §4.1.3, RFC 7636 §4.5: the token request comes first.
		if f := reqs[0].Form; f.Get("code") != confCode || h.PKCE && f.Get("code_verifier") != confVerifier {
			t.Errorf("exchange request without the code (or the PKCE verifier): parameters %s", paramNames(f))
		}
		for _, r := range reqs[1:] {
			if r.Form.Has("code") || r.Form.Has("code_verifier") {
				t.Errorf("%s %s after the exchange repeats the authorization code", r.Method, r.Path)
			}
		}
	})

	t.Run("Refresh", func(t *testing.T) {
		srv, p := start(t, h.Refresh)
		old := &oauth2.Token{AccessToken: confAccess, RefreshToken: confRefresh, Expiry: time.Now().Add(-time.Minute)}
		nt, err := p.Refresh(t.Context(), old)
		if err != nil {
			t.Fatalf("Refresh: %v", err)
		}
		if nt.AccessToken == "" || nt.AccessToken == confAccess || !nt.Expiry.After(time.Now()) {
			t.Errorf("refreshed token %v: want a new, unexpired access token", redacted(nt))
		}
		if nt.RefreshToken == "" || nt.RefreshToken == confRefresh {
			t.Errorf("refreshed token %v: want the rotated refresh token", redacted(nt))
		}
		reqs := srv.Requests()
		if len(reqs) != 1 || reqs[0].Form.Get("refresh_token") != confRefresh {
			t.Errorf("%d vendor requests, want one carrying the old refresh token (RFC 6749 §6)", len(reqs))
		}
	})

	t.Run("RefreshRefused", func(t *testing.T) {
		_, p := start(t, h.RefreshRefused)
		_, err := p.Refresh(t.Context(), &oauth2.Token{AccessToken: confAccess, RefreshToken: confRefresh})
		if !errors.Is(err, providers.ErrConsentRevoked) {
			t.Errorf("refused refresh: %v, want ErrConsentRevoked", err)
		}
		if k := providers.KindOf(err); k != providers.KindAuth {
			t.Errorf("refused refresh: kind %q, want auth", k)
		}
	})

	t.Run("Revoke", func(t *testing.T) {
		srv, p := start(t, h.Revoke)
		r, ok := p.(providers.Revoker)
		if h.Revoke == nil {
			if ok {
				t.Error("the adapter is a Revoker but the harness has no Revoke routes")
			}
			return
		}
		if !ok {
			t.Fatal("the harness has Revoke routes but the adapter is no Revoker")
		}
		if err := r.Revoke(t.Context(), h.User, &oauth2.Token{AccessToken: confAccess, RefreshToken: confRefresh}); err != nil {
			t.Fatalf("Revoke: %v", err)
		}
		if len(srv.Requests()) == 0 {
			t.Error("Revoke made no vendor request")
		}
	})

	t.Run("Devices", func(t *testing.T) {
		_, p := start(t, h.Devices)
		ds, err := p.Devices(t.Context(), h.User, ts)
		if err != nil {
			t.Fatalf("Devices: %v", err)
		}
		if len(ds) == 0 {
			t.Fatal("no devices")
		}
		for _, d := range ds {
			if d.Provider != p.Name() || d.UserID != h.User || d.ID == "" || d.Manufacturer == "" {
				t.Errorf("device %+v: want Provider %q, UserID %q, ID and Manufacturer set", d, p.Name(), h.User)
				continue
			}
			if err := fhir.MapDevice(d).Validate(); err != nil {
				t.Errorf("device %s: MapDevice does not validate: %v", d.ID, err)
			}
		}
	})

	t.Run("Kinds", func(t *testing.T) {
		_, p := start(t, nil)
		kinds := p.Kinds()
		if len(kinds) == 0 || !slices.IsSorted(kinds) {
			t.Fatalf("Kinds() = %v, want a non-empty sorted list", kinds)
		}
		mappable := fhir.SupportedKinds()
		for _, k := range kinds {
			t.Run(string(k), func(t *testing.T) {
				if !slices.Contains(mappable, k) {
					t.Fatalf("kind %s is enabled but fhir.MapSample does not code it", k)
				}
				routes, ok := h.Kinds[k]
				if !ok {
					t.Fatalf("the harness has no routes for kind %s", k)
				}
				_, p := start(t, routes)
				samples, _ := fetchAll(t, p, h.User, providers.Query{Kinds: []fhir.SampleKind{k}, Since: h.Since})
				if len(samples) == 0 {
					t.Fatalf("no %s sample", k)
				}
				for _, s := range samples {
					checkSample(t, p.Name(), h.User, k, s)
				}
			})
		}
	})

	t.Run("Pagination", func(t *testing.T) {
		_, p := start(t, h.Paged)
		samples, pages := fetchAll(t, p, h.User, h.PagedQuery)
		if len(pages) < 2 {
			t.Fatalf("%d pages, want the harness's Paged routes to give more than one", len(pages))
		}
		seen := map[string]bool{}
		for _, s := range samples {
			id := s.System + "|" + s.RecordID
			if seen[id] {
				t.Errorf("sample %s returned twice", id)
			}
			seen[id] = true
		}
		if len(samples) < 2 {
			t.Errorf("%d samples over %d pages", len(samples), len(pages))
		}
	})

	t.Run("Errors", func(t *testing.T) {
		if h.Failure == nil {
			t.Fatal("the harness has no Failure routes")
		}
		for _, tc := range []struct {
			status int
			header http.Header
			want   providers.ErrorKind
		}{
			{http.StatusTooManyRequests, http.Header{"Retry-After": {"7"}}, providers.KindThrottled},
			{http.StatusInternalServerError, nil, providers.KindTransient},
			{http.StatusBadGateway, nil, providers.KindTransient},
			{http.StatusServiceUnavailable, nil, providers.KindTransient},
			{http.StatusUnauthorized, nil, providers.KindAuth},
			{http.StatusBadRequest, nil, providers.KindPermanent},
		} {
			t.Run(http.StatusText(tc.status), func(t *testing.T) {
				_, p := start(t, h.Failure(tc.status, tc.header))
				_, err := p.Fetch(t.Context(), h.User, ts, h.FailureQuery)
				if k := providers.KindOf(err); k != tc.want {
					t.Fatalf("HTTP %d: error %v of kind %q, want %q", tc.status, err, k, tc.want)
				}
				var ue *providers.UpstreamError
				if !errors.As(err, &ue) || ue.Provider != p.Name() {
					t.Errorf("HTTP %d: %v, want an *UpstreamError of provider %q", tc.status, err, p.Name())
				}
				if tc.status == http.StatusTooManyRequests && (ue == nil || ue.RetryAfter < 6*time.Second || ue.RetryAfter > 7*time.Second) {
					t.Errorf("HTTP 429 with Retry-After 7: RetryAfter %v, want 7s", ue.RetryAfter)
				}
			})
		}
	})

	t.Run("Webhooks", func(t *testing.T) {
		srv, p := start(t, nil)
		wh, ok := p.(providers.Webhooks)
		if h.Webhooks == nil {
			if ok {
				t.Error("the adapter handles webhooks but the harness has no Webhooks cases")
			}
			return
		}
		if !ok {
			t.Fatal("the harness has Webhooks cases but the adapter is no providers.Webhooks")
		}
		var valid, forged bool
		kinds := p.Kinds()
		for _, tc := range h.Webhooks {
			t.Run(tc.Name, func(t *testing.T) {
				resp, err := wh.HandleWebhook(t.Context(), tc.Request)
				if tc.Refused {
					var we *providers.WebhookError
					if !errors.As(err, &we) || we.Status != tc.Status {
						t.Fatalf("error %v, want a *WebhookError with status %d", err, tc.Status)
					}
					if we.Status < 400 {
						t.Errorf("refusal with status %d", we.Status)
					}
					if tc.Forged {
						if !errors.Is(err, providers.ErrWebhookAuth) {
							t.Errorf("forged delivery: %v, want ErrWebhookAuth", err)
						}
						forged = true
					}
					return
				}
				if err != nil {
					t.Fatalf("HandleWebhook: %v", err)
				}
				if resp.Status != tc.Status {
					t.Errorf("status %d, want %d", resp.Status, tc.Status)
				}
				if len(resp.Notifications) > 0 {
					valid = true
				}
				var got []providers.Notification
				for _, n := range resp.Notifications {
					if n.Key == "" || n.VendorUser == "" {
						t.Errorf("notification %+v: want Key and VendorUser", n)
					}
					if n.Event != providers.EventData && n.Event != providers.EventRevoked {
						t.Errorf("notification event %q", n.Event)
					}
					for _, k := range n.Kinds {
						if !slices.Contains(kinds, k) {
							t.Errorf("notification kind %s is not in Kinds()", k)
						}
					}
					if n.Start.IsZero() != n.End.IsZero() || !n.Start.IsZero() && !n.Start.Before(n.End) {
						t.Errorf("notification window [%v, %v)", n.Start, n.End)
					}
					n.Key = ""
					got = append(got, n)
				}
				if !equalNotifications(tc.Want, got) {
					t.Errorf("notifications %+v, want %+v", got, tc.Want)
				}
				// A redelivery must coalesce with the first: same keys.
				again, err := wh.HandleWebhook(t.Context(), tc.Request)
				if err != nil || len(again.Notifications) != len(resp.Notifications) {
					t.Fatalf("redelivery: %+v %v", again, err)
				}
				for i := range again.Notifications {
					if again.Notifications[i].Key != resp.Notifications[i].Key {
						t.Errorf("redelivery key %q, first %q", again.Notifications[i].Key, resp.Notifications[i].Key)
					}
				}
			})
		}
		if !valid || !forged {
			t.Errorf("the harness's Webhooks need a delivery with notifications (have: %v) and a forged one (have: %v)", valid, forged)
		}
		// HandleWebhook runs on the acknowledgement path: no vendor call.
		if n := len(srv.Requests()); n != 0 {
			t.Errorf("%d vendor requests while handling webhooks", n)
		}
	})
}

// fetchAll reads user's data for q, following Next to the end (at most 100 pages).
func fetchAll(t *testing.T, p providers.Provider, user string, q providers.Query) ([]fhir.Sample, []*providers.Page) {
	t.Helper()
	ts := oauth2.StaticTokenSource(&oauth2.Token{AccessToken: confAccess, TokenType: "Bearer", Expiry: time.Now().Add(time.Hour)})
	var samples []fhir.Sample
	var pages []*providers.Page
	for range 100 {
		pg, err := p.Fetch(t.Context(), user, ts, q)
		if err != nil {
			t.Fatalf("Fetch (page %d): %v", len(pages)+1, err)
		}
		pages = append(pages, pg)
		samples = append(samples, pg.Samples...)
		if pg.Next == "" {
			return samples, pages
		}
		if pg.Next == q.Cursor {
			t.Fatalf("page %d: Next repeats its own cursor", len(pages))
		}
		q.Cursor = pg.Next
	}
	t.Fatal("Fetch did not reach the last page in 100 pages")
	return nil, nil
}

// checkSample asserts s belongs to the adapter and user, is of kind k, and maps to an
// Observation that survives a strict decode (fhir.Decode validates).
func checkSample(t *testing.T, provider, user string, k fhir.SampleKind, s fhir.Sample) {
	t.Helper()
	if s.Kind != k {
		t.Errorf("sample %s of kind %s in a fetch of %s", s.RecordID, s.Kind, k)
		return
	}
	if s.Provider != provider || s.UserID != user || s.RecordID == "" || !strings.HasPrefix(s.System, provider) {
		t.Errorf("sample %+v: want Provider %q, UserID %q, System under it and a RecordID", s, provider, user)
		return
	}
	o, err := fhir.MapSample(s, confPatient)
	if err != nil {
		t.Errorf("sample %s: MapSample: %v", s.RecordID, err)
		return
	}
	b, err := json.Marshal(o)
	if err != nil {
		t.Errorf("sample %s: marshal: %v", s.RecordID, err)
		return
	}
	if _, err := fhir.Decode(b, "Observation"); err != nil {
		t.Errorf("sample %s: the Observation does not decode strictly: %v", s.RecordID, err)
	}
}

func equalNotifications(want, got []providers.Notification) bool {
	if len(want) != len(got) {
		return false
	}
	for i := range want {
		w, g := want[i], got[i]
		if w.VendorUser != g.VendorUser || w.Event != g.Event || !slices.Equal(w.Kinds, g.Kinds) ||
			!w.Start.Equal(g.Start) || !w.End.Equal(g.End) {
			return false
		}
	}
	return true
}

// redacted describes a token for failure messages without its secrets.
func redacted(t *oauth2.Token) string {
	if t == nil {
		return "<nil>"
	}
	return "{access set: " + yes(t.AccessToken != "") + ", refresh set: " + yes(t.RefreshToken != "") + ", expiry " + t.Expiry.Format(time.RFC3339) + "}"
}

func yes(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
