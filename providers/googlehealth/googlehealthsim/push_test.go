package googlehealthsim

import (
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/providers"
)

// hookTarget records deliveries and answers 204, as ohx does once a notification is persisted.
type hookTarget struct {
	mu   sync.Mutex
	reqs []providers.WebhookRequest
}

func (h *hookTarget) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	h.mu.Lock()
	h.reqs = append(h.reqs, providers.WebhookRequest{Method: r.Method, Header: r.Header.Clone(), Body: body, Received: time.Now()})
	h.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func newHookServer(t *testing.T, target *hookTarget) string {
	t.Helper()
	srv := httptest.NewServer(target)
	t.Cleanup(srv.Close)
	return srv.URL + "/webhooks/googlehealth"
}

func (h *hookTarget) take() []providers.WebhookRequest {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := h.reqs
	h.reqs = nil
	return out
}

// TestPush: a push records a live weigh-in and today's growing activity for the connected person,
// delivers Google's notifications with the Authorization header, the adapter's webhook handler
// accepts them for the right user and window, and fetching that window returns the new values.
func TestPush(t *testing.T) {
	target := &hookTarget{}
	h := newHarness(t, 42, newHookServer(t, target))
	p := h.world.People[0] // Paris: 12:30 local two hours after the Epoch, steps are growing
	now := h.world.Epoch.Add(2 * time.Hour)
	h.clock.Set(now)
	g := h.connect(t, p)
	before := h.sim.Served(p)

	n, err := h.sim.Push(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	reqs := target.take()
	if n != len(reqs) || n < 3 {
		t.Fatalf("push accepted %d, target got %d deliveries; want the same, at least weight, body-fat and steps", n, len(reqs))
	}
	live := h.world.LiveWeight(p, now)
	today := midnightIn(now, p.Zone)
	seen := map[fhir.SampleKind]bool{}
	for _, r := range reqs {
		if got := r.Header.Get("Authorization"); got != testHook {
			t.Errorf("Authorization %q, want %q", got, testHook)
		}
		resp, err := h.gh.HandleWebhook(t.Context(), r)
		if err != nil {
			t.Fatalf("adapter refused the delivery: %v", err)
		}
		if resp.Status != http.StatusNoContent || len(resp.Notifications) != 1 {
			t.Fatalf("webhook answer %d with %d notifications, want 204 with 1", resp.Status, len(resp.Notifications))
		}
		note := resp.Notifications[0]
		if note.VendorUser != g.UserID || note.Event != providers.EventData || len(note.Kinds) != 1 {
			t.Fatalf("notification %+v, want data for %s", note, g.UserID)
		}
		if note.Start.After(now) || !note.End.After(now) {
			t.Errorf("notification window [%s, %s) misses %s", note.Start, note.End, now)
		}
		kind := note.Kinds[0]
		seen[kind] = true
		ss := fetchAll(t, h.gh, g, providers.Query{Kinds: note.Kinds, Start: note.Start, End: note.End, Fresh: true})
		switch kind {
		case fhir.KindWeight, fhir.KindFatRatio:
			want := live.Kg
			if kind == fhir.KindFatRatio {
				want = live.FatPct
			}
			i := slices.IndexFunc(ss, func(s fhir.Sample) bool { return s.Start.Equal(live.At) })
			if i < 0 || math.Abs(num(t, ss[i].Value)-want) > 1e-9 {
				t.Errorf("%s: no live sample at %s with %v in %d samples", kind, live.At, want, len(ss))
			}
		case fhir.KindSteps:
			want := h.world.ActivityUntil(p, today, now).Steps
			i := slices.IndexFunc(ss, func(s fhir.Sample) bool { return s.Start.Equal(today) })
			if i < 0 || ss[i].Value != fhir.Decimal(itoa(want)) || want <= h.world.Activity(p, today).Steps {
				t.Errorf("steps today: %v, want %d (grown from %d)", ss, want, h.world.Activity(p, today).Steps)
			}
		}
	}
	for _, k := range []fhir.SampleKind{fhir.KindWeight, fhir.KindFatRatio, fhir.KindSteps, fhir.KindDistance} {
		if !seen[k] {
			t.Errorf("no %s notification", k)
		}
	}
	after := h.sim.Served(p)
	if after[fhir.KindWeight] != before[fhir.KindWeight]+1 || after[fhir.KindSteps] != before[fhir.KindSteps] {
		t.Errorf("served weights %d → %d, steps %d → %d: want one more weight, the same days", before[fhir.KindWeight], after[fhir.KindWeight], before[fhir.KindSteps], after[fhir.KindSteps])
	}

	// The second push adds no weigh-in, only the activity that grew; nobody else is connected.
	h.clock.Set(now.Add(30 * time.Second))
	if _, err := h.sim.Push(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, r := range target.take() {
		resp, err := h.gh.HandleWebhook(t.Context(), r)
		if err != nil {
			t.Fatal(err)
		}
		if k := resp.Notifications[0].Kinds[0]; k == fhir.KindWeight || k == fhir.KindFatRatio {
			t.Errorf("second push delivered %s", k)
		}
	}
	if got := h.sim.Served(p)[fhir.KindWeight]; got != after[fhir.KindWeight] {
		t.Errorf("weights %d after the second push, want %d", got, after[fhir.KindWeight])
	}
}

// TestPushWithoutTarget: no webhook URL, nothing delivered.
func TestPushWithoutTarget(t *testing.T) {
	h := newHarness(t, 42, "")
	h.connect(t, h.world.People[0])
	h.clock.Set(h.world.Epoch.Add(time.Hour))
	if n, err := h.sim.Push(t.Context()); n != 0 || err != nil {
		t.Errorf("push: %d, %v; want 0, nil", n, err)
	}
}
