package fitbitsim

import (
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/providers"
	"github.com/openhealthexchange/ohx/providers/fitbit"
)

// subscriber is a notification target that hands every request to the adapter's webhook handler
// and answers what it says.
type subscriber struct {
	mu      sync.Mutex
	adapter *fitbit.Client
	reqs    int                       // requests received
	gets    []string                  // verification codes received
	got     []providers.Notification  // notifications of authenticated deliveries
	refused int                       // notification deliveries the adapter refused
	answer  func(http.ResponseWriter) // when set, answers instead of the adapter
}

func (sb *subscriber) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	sb.mu.Lock()
	defer sb.mu.Unlock()
	sb.reqs++
	if r.Method == http.MethodGet {
		sb.gets = append(sb.gets, r.URL.Query().Get("verify"))
	}
	if sb.answer != nil {
		sb.answer(w)
		return
	}
	resp, err := sb.adapter.HandleWebhook(r.Context(), providers.WebhookRequest{Method: r.Method, Header: r.Header,
		Query: r.URL.Query(), Body: body, Received: time.Now()})
	if err != nil {
		if r.Method == http.MethodPost {
			sb.refused++
		}
		w.WriteHeader(http.StatusNotFound)
		return
	}
	sb.got = append(sb.got, resp.Notifications...)
	w.WriteHeader(resp.Status)
}

// TestPush: Push verifies the subscriber, then delivers signed notifications that the adapter
// authenticates; fetching their windows returns the new live samples.
func TestPush(t *testing.T) {
	sb := &subscriber{}
	target := httptest.NewServer(sb)
	defer target.Close()
	e := newEnv(t, envOpts{subscriberURL: target.URL + "/webhooks/fitbit"})
	sb.adapter = e.adapter
	p := e.people[1]
	before := e.sim.Served(p)

	// Not connected, not subscribed: nothing to push (but the subscriber is verified).
	if n, err := e.sim.Push(t.Context()); n != 0 || err != nil {
		t.Fatalf("Push before any connection: %d, %v", n, err)
	}
	if !slices.Equal(sb.gets, []string{testVerify, "wrong-" + testVerify}) {
		t.Errorf("verification requests %q", sb.gets)
	}
	g := e.connect(t, p)
	ts := tokenSource(g)
	if err := e.adapter.Subscribe(t.Context(), g.UserID, ts, "", nil); err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	n, err := e.sim.Push(t.Context())
	if err != nil || n != 2 {
		t.Fatalf("Push: %d, %v; want 2 notifications (activities, body)", n, err)
	}
	if len(sb.gets) != 2 {
		t.Errorf("the subscriber was verified again: %q", sb.gets)
	}
	if sb.refused != 0 || len(sb.got) != 2 {
		t.Fatalf("the adapter refused %d deliveries and got %d notifications", sb.refused, len(sb.got))
	}
	now := e.clock.Now()
	for _, nt := range sb.got {
		if nt.VendorUser != g.UserID || nt.Event != providers.EventData || now.Before(nt.Start) || !now.Before(nt.End) {
			t.Errorf("notification %+v: want user %s, data, a window around %v", nt, g.UserID, now)
		}
	}
	samples := map[fhir.SampleKind][]fhir.Sample{}
	for _, nt := range sb.got {
		for _, s := range e.fetchAll(t, g.UserID, ts, providers.Query{Kinds: nt.Kinds, Start: nt.Start, End: nt.End, Fresh: true}) {
			samples[s.Kind] = append(samples[s.Kind], s)
		}
	}
	today := time.Date(now.In(p.Zone).Year(), now.In(p.Zone).Month(), now.In(p.Zone).Day(), 0, 0, 0, 0, p.Zone)
	live := e.w.ActivityUntil(p, today, now)
	if live.Steps <= e.w.Activity(p, today).Steps {
		t.Fatalf("the push did not grow today's steps: %d", live.Steps)
	}
	i := slices.IndexFunc(samples[fhir.KindSteps], func(s fhir.Sample) bool { return s.Start.Equal(today) })
	if i < 0 || string(samples[fhir.KindSteps][i].Value) != strconv.Itoa(live.Steps) {
		t.Errorf("today's steps after the push: %v, want %d", samples[fhir.KindSteps], live.Steps)
	}
	wt := e.w.LiveWeight(p, now)
	i = slices.IndexFunc(samples[fhir.KindWeight], func(s fhir.Sample) bool { return s.Start.Equal(wt.At) })
	if i < 0 || decimal(t, samples[fhir.KindWeight][i].Value) != wt.Kg {
		t.Errorf("live weight: %v, want %v kg at %v", samples[fhir.KindWeight], wt.Kg, wt.At)
	}
	after := e.sim.Served(p)
	for _, k := range []fhir.SampleKind{fhir.KindWeight, fhir.KindBMI, fhir.KindFatRatio} {
		if after[k] != before[k]+1 {
			t.Errorf("Served %s: %d after the push, %d before", k, after[k], before[k])
		}
	}
	// The whole history again: Served still equals what the adapter reads.
	all := countKinds(e.fetchAll(t, g.UserID, ts, providers.Query{Start: e.w.Start(p), End: now.Add(time.Minute), Fresh: true}))
	for k, want := range after {
		if all[k] != want {
			t.Errorf("after the push, %s: adapter %d, Served %d", k, all[k], want)
		}
	}

	// The second push grows the steps only; the third weighs again.
	e.clock.Add(30 * time.Second)
	if n, err := e.sim.Push(t.Context()); n != 1 || err != nil {
		t.Errorf("second Push: %d, %v; want 1", n, err)
	}
	e.clock.Add(30 * time.Second)
	if n, err := e.sim.Push(t.Context()); n != 2 || err != nil {
		t.Errorf("third Push: %d, %v; want 2", n, err)
	}
	if got := e.sim.Served(p)[fhir.KindWeight]; got != before[fhir.KindWeight]+2 {
		t.Errorf("Served weights after three pushes: %d, want %d", got, before[fhir.KindWeight]+2)
	}
	// A revoked connection is not pushed to.
	if err := e.adapter.Revoke(t.Context(), g.UserID, g.Token); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	if n, err := e.sim.Push(t.Context()); n != 0 || err != nil {
		t.Errorf("Push after revocation: %d, %v", n, err)
	}
}

// TestPushRefusesUnverifiedSubscriber: a subscriber that accepts a wrong verification code is
// never sent notifications.
func TestPushRefusesUnverifiedSubscriber(t *testing.T) {
	sb := &subscriber{answer: func(w http.ResponseWriter) { w.WriteHeader(http.StatusNoContent) }}
	target := httptest.NewServer(sb)
	defer target.Close()
	e := newEnv(t, envOpts{subscriberURL: target.URL})
	g := e.connect(t, e.people[0])
	if err := e.adapter.Subscribe(t.Context(), g.UserID, tokenSource(g), "", nil); err != nil {
		t.Fatal(err)
	}
	n, err := e.sim.Push(t.Context())
	if err == nil || n != 0 {
		t.Fatalf("Push to a subscriber that answers any code: %d, %v", n, err)
	}
	if sb.reqs != 2 || len(sb.gets) != 2 {
		t.Errorf("%d requests, verification codes %q: want the two verification requests only", sb.reqs, sb.gets)
	}
	if got := e.sim.Served(e.people[0])[fhir.KindWeight]; got != worldCounts(e.w, e.people[0])[fhir.KindWeight] {
		t.Errorf("a refused push recorded a weight")
	}
}
