package api_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/openhealthexchange/ohx/api"
	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/fhir/search"
	"github.com/openhealthexchange/ohx/providers"
	"github.com/openhealthexchange/ohx/providers/withings"
	"github.com/openhealthexchange/ohx/store/sqlite"
)

const webhookSecret = "hook-secret"

// memSink records the notifications of each delivery, per provider; fail makes Notify fail.
type memSink struct {
	mu   sync.Mutex
	got  map[string][][]providers.Notification
	fail error
}

func (s *memSink) Notify(_ context.Context, provider string, ns []providers.Notification) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	if s.got == nil {
		s.got = map[string][][]providers.Notification{}
	}
	s.got[provider] = append(s.got[provider], append([]providers.Notification(nil), ns...))
	return nil
}

// users lists the vendor users of every persisted notification, as "provider user".
func (s *memSink) users() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for p, ds := range s.got {
		for _, ns := range ds {
			for _, n := range ns {
				out = append(out, p+" "+n.VendorUser)
			}
		}
	}
	return out
}

func (s *memSink) deliveries(provider string) [][]providers.Notification {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][]providers.Notification(nil), s.got[provider]...)
}

func (s *memSink) setFail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail = err
}

// fakeHooks is a test-only adapter: it records the requests it gets and answers with answer.
type fakeHooks struct {
	mu     sync.Mutex
	seen   []providers.WebhookRequest
	answer func(providers.WebhookRequest) (providers.WebhookResponse, error)
}

func (f *fakeHooks) HandleWebhook(_ context.Context, r providers.WebhookRequest) (providers.WebhookResponse, error) {
	f.mu.Lock()
	f.seen = append(f.seen, r)
	f.mu.Unlock()
	return f.answer(r)
}

func (f *fakeHooks) requests() []providers.WebhookRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]providers.WebhookRequest(nil), f.seen...)
}

// noCalls is a providers.Caller that fails the test: webhook handling must not call the vendor.
type noCalls struct{ t *testing.T }

func (n noCalls) Call(_ context.Context, c providers.Call) ([]byte, error) {
	n.t.Errorf("vendor call %s on the webhook path", c.Endpoint)
	return nil, errors.New("no vendor calls here")
}

type webhookEnv struct {
	*env
	sink *memSink
}

// newWebhookEnv starts the API with the webhook endpoint over handlers (plus the real Withings
// adapter under "withings", with secret webhookSecret and its default kinds) and a 64 KiB body cap.
func newWebhookEnv(t *testing.T, handlers map[string]providers.Webhooks) *webhookEnv {
	t.Helper()
	st, err := sqlite.Open(t.Context(), t.TempDir(), sqlite.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	w, err := withings.New(withings.Config{ClientID: "cid", ClientSecret: "cs", RedirectURL: "https://ohx.example/connect/withings/callback",
		WebhookSecret: webhookSecret}, noCalls{t}, nil)
	if err != nil {
		t.Fatal(err)
	}
	all := map[string]providers.Webhooks{"withings": w}
	for k, h := range handlers {
		all[k] = h
	}
	e := &webhookEnv{env: &env{t: t, store: st}, sink: &memSink{}}
	e.srv = httptest.NewUnstartedServer(nil)
	e.base = "http://" + e.srv.Listener.Addr().String() + "/fhir"
	s, err := api.New(api.Config{BaseURL: e.base, CursorKey: bytes.Repeat([]byte("k"), 32), MaxBodyBytes: 64 << 10,
		Webhooks: &api.WebhookConfig{Sink: e.sink, Handlers: all},
	}, st, search.DefaultRegistry(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.srv.Config.Handler = s.Handler()
	e.srv.Start()
	t.Cleanup(e.srv.Close)
	return e
}

const formCT = "application/x-www-form-urlencoded"

// TestWebhookBodyTooLarge: a notification body beyond Config.MaxBodyBytes is 413, not 400
// (audit item 11); a malformed form is still 400, and neither queues anything.
func TestWebhookBodyTooLarge(t *testing.T) {
	e := newWebhookEnv(t, nil)
	hook := "/webhooks/withings/" + webhookSecret
	big := "userid=42&appli=1&padding=" + strings.Repeat("a", 100<<10) // MaxBodyBytes is 64 KiB
	if r := e.do("POST", hook, big, "Content-Type", formCT); r.status != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized body: %d, want 413", r.status)
	}
	if r := e.do("POST", hook, "userid=%zz", "Content-Type", formCT); r.status != http.StatusBadRequest {
		t.Errorf("malformed form: %d, want 400", r.status)
	}
	if got := e.sink.users(); len(got) != 0 {
		t.Errorf("queued %v", got)
	}
	if r := e.do("POST", hook, "userid=42&appli=1", "Content-Type", formCT); r.status != http.StatusOK {
		t.Errorf("notification: %d, want 200", r.status)
	}
	if got := e.sink.users(); len(got) != 1 || got[0] != "withings 42" {
		t.Errorf("queued %v, want [withings 42]", got)
	}
}

// TestWebhookWithings is the Withings flow end to end: the callback URL check, a wrong secret,
// a delivery persisted before its 200, and a 503 (Withings retries) when persisting fails.
func TestWebhookWithings(t *testing.T) {
	e := newWebhookEnv(t, nil)
	hook := "/webhooks/withings/" + webhookSecret
	for _, m := range []string{http.MethodHead, http.MethodGet} {
		if r := e.do(m, hook, ""); r.status != http.StatusOK || len(r.body) != 0 {
			t.Errorf("%s callback check: %d %q, want 200 and no body", m, r.status, r.body)
		}
	}
	for _, path := range []string{"/webhooks/withings/wrong", "/webhooks/withings", "/webhooks/withings/" + webhookSecret + "x"} {
		for _, m := range []string{http.MethodHead, http.MethodPost} {
			if r := e.do(m, path, "userid=42&appli=1", "Content-Type", formCT); r.status != http.StatusNotFound {
				t.Errorf("%s %s: %d, want 404", m, path, r.status)
			}
		}
	}
	if r := e.do("POST", "/webhooks/nobody/"+webhookSecret, "userid=42&appli=1", "Content-Type", formCT); r.status != http.StatusNotFound {
		t.Errorf("unknown provider: %d, want 404", r.status)
	}
	if got := e.sink.users(); len(got) != 0 {
		t.Fatalf("queued %v before any valid delivery", got)
	}

	if r := e.do("POST", hook, "userid=42&appli=44&startdate=1530576000&enddate=1530698753", "Content-Type", formCT); r.status != http.StatusOK {
		t.Fatalf("delivery: %d, want 200", r.status)
	}
	ds := e.sink.deliveries("withings")
	if len(ds) != 1 || len(ds[0]) != 1 {
		t.Fatalf("deliveries %v, want one notification", ds)
	}
	n := ds[0][0]
	want := providers.Notification{VendorUser: "42", Event: providers.EventData,
		Kinds: []fhir.SampleKind{fhir.KindRespiratoryRate, fhir.KindSleep},
		// A sleep window is widened to every zone's local day (the adapter's rule).
		Start: time.Unix(1530576000, 0).UTC().Add(-14 * time.Hour), End: time.Unix(1530698754, 0).UTC().Add(14 * time.Hour), Key: n.Key}
	if diff := cmp.Diff(want, n); diff != "" || n.Key == "" {
		t.Errorf("notification (-want +got):\n%s (key %q)", diff, n.Key)
	}

	e.sink.setFail(errors.New("disk full"))
	if r := e.do("POST", hook, "userid=42&appli=1&startdate=1&enddate=2", "Content-Type", formCT); r.status != http.StatusServiceUnavailable {
		t.Errorf("delivery not persisted: %d, want 503", r.status)
	}
}

// TestWebhookGeneric: the API routes /webhooks/{provider}[/{secret}] to the provider's adapter
// with the request as received, answers an adapter's refusal with its status and no body,
// persists notifications before answering the adapter's status and body, and answers 503 when
// persisting fails.
func TestWebhookGeneric(t *testing.T) {
	var answer func(providers.WebhookRequest) (providers.WebhookResponse, error)
	hooks := &fakeHooks{answer: func(r providers.WebhookRequest) (providers.WebhookResponse, error) { return answer(r) }}
	e := newWebhookEnv(t, map[string]providers.Webhooks{"fake": hooks})
	persisted := func() int { return len(e.sink.deliveries("fake")) }

	t.Run("request as received", func(t *testing.T) {
		answer = func(providers.WebhookRequest) (providers.WebhookResponse, error) {
			return providers.WebhookResponse{Status: http.StatusNoContent}, nil
		}
		before := time.Now()
		for _, tc := range []struct{ method, path, secret string }{
			{http.MethodPost, "/webhooks/fake?verify=v1", ""},
			{http.MethodPost, "/webhooks/fake/s3cret?verify=v1", "s3cret"},
			{http.MethodGet, "/webhooks/fake/s3cret?verify=v1", "s3cret"},
			{http.MethodHead, "/webhooks/fake?verify=v1", ""},
		} {
			n := len(hooks.requests())
			body := `{"signed":"bytes"}`
			if tc.method != http.MethodPost {
				body = ""
			}
			r := e.do(tc.method, tc.path, body, "X-Signature", "sig", "Content-Type", "application/json")
			if r.status != http.StatusNoContent {
				t.Errorf("%s %s: %d, want the adapter's 204", tc.method, tc.path, r.status)
			}
			got := hooks.requests()
			if len(got) != n+1 {
				t.Fatalf("%s %s: adapter called %d times, want once", tc.method, tc.path, len(got)-n)
			}
			req := got[n]
			if req.Method != tc.method || req.Secret != tc.secret || req.Query.Get("verify") != "v1" ||
				req.Header.Get("X-Signature") != "sig" || string(req.Body) != body || req.Received.Before(before) {
				t.Errorf("%s %s: adapter got %+v", tc.method, tc.path, req)
			}
		}
	})

	t.Run("refused", func(t *testing.T) {
		for _, status := range []int{http.StatusNotFound, http.StatusUnauthorized, http.StatusBadRequest} {
			answer = func(providers.WebhookRequest) (providers.WebhookResponse, error) {
				return providers.WebhookResponse{Notifications: []providers.Notification{{VendorUser: "u"}}},
					providers.RefuseWebhook(status, "forged")
			}
			r := e.do(http.MethodPost, "/webhooks/fake/x", "payload")
			if r.status != status || len(r.body) != 0 {
				t.Errorf("refusal %d: answered %d %q, want %d and no body", status, r.status, r.body, status)
			}
		}
		if persisted() != 0 {
			t.Errorf("a refused delivery was persisted")
		}
	})

	t.Run("persisted then answered", func(t *testing.T) {
		ns := []providers.Notification{
			{VendorUser: "u1", Event: providers.EventData, Kinds: []fhir.SampleKind{fhir.KindSteps}, Key: "k1"},
			{VendorUser: "u2", Event: providers.EventRevoked, Key: "k2"},
		}
		answer = func(providers.WebhookRequest) (providers.WebhookResponse, error) {
			return providers.WebhookResponse{Status: http.StatusAccepted, ContentType: "text/plain", Body: []byte("echo"), Notifications: ns}, nil
		}
		r := e.do(http.MethodPost, "/webhooks/fake/x", "payload")
		if r.status != http.StatusAccepted || string(r.body) != "echo" || r.header.Get("Content-Type") != "text/plain" {
			t.Errorf("answer %d %q %q, want 202 text/plain echo", r.status, r.header.Get("Content-Type"), r.body)
		}
		ds := e.sink.deliveries("fake")
		if len(ds) != 1 {
			t.Fatalf("%d deliveries persisted, want 1", len(ds))
		}
		if diff := cmp.Diff(ns, ds[0]); diff != "" {
			t.Errorf("persisted (-want +got):\n%s", diff)
		}

		e.sink.setFail(errors.New("database down"))
		defer e.sink.setFail(nil)
		if r := e.do(http.MethodPost, "/webhooks/fake/x", "payload"); r.status != http.StatusServiceUnavailable || string(r.body) == "echo" {
			t.Errorf("persisting failed: %d %q, want 503 without the adapter's body", r.status, r.body)
		}
	})

	t.Run("adapter failure", func(t *testing.T) {
		answer = func(providers.WebhookRequest) (providers.WebhookResponse, error) {
			return providers.WebhookResponse{}, errors.New("bug")
		}
		if r := e.do(http.MethodPost, "/webhooks/fake/x", "payload"); r.status != http.StatusInternalServerError {
			t.Errorf("adapter error: %d, want 500", r.status)
		}
	})
}

// TestWebhookAPIIsVendorNeutral: the API knows no vendor's webhook fields; adapters decode them.
func TestWebhookAPIIsVendorNeutral(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`(?i)\b(appli|userid|startdate)\b`)
	checked := 0
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		checked++
		for i, line := range strings.Split(string(b), "\n") {
			if m := re.FindString(line); m != "" {
				t.Errorf("%s:%d mentions the Withings field %q", f, i+1, m)
			}
		}
	}
	if checked == 0 {
		t.Fatal("no api source files found")
	}
}
