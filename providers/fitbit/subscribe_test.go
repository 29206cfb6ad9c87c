package fitbit

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"golang.org/x/oauth2"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/providers"
	"github.com/openhealthexchange/ohx/providers/fitbit/fitbittest"
	"github.com/openhealthexchange/ohx/providers/providertest"
)

func TestSubscribeAndUnsubscribe(t *testing.T) {
	f := newFixture(t, fitbittest.Routes(), opts{})
	if err := f.c.Subscribe(t.Context(), testUser, bearer("a1"), "https://ohx.example/webhooks/fitbit", nil); err != nil {
		t.Fatal(err)
	}
	for col, id := range fitbittest.SubscriptionIDs {
		key := "POST /1/user/-/" + col + "/apiSubscriptions/" + id + ".json"
		if n := f.srv.Hits(key); n != 1 {
			t.Errorf("%s: %d requests, want 1", key, n)
		}
		if strings.Contains(id, testUser) || strings.Contains(id, testPatient) || len(id) > 50 {
			t.Errorf("subscription id %q is not opaque", id)
		}
	}
	for _, r := range f.srv.Requests() {
		if r.Header.Get("X-Fitbit-Subscriber-Id") != "1" {
			t.Errorf("%s %s without X-Fitbit-Subscriber-Id", r.Method, r.Path)
		}
	}
	if err := f.c.Unsubscribe(t.Context(), testUser, bearer("a1"), ""); err != nil {
		t.Fatal(err)
	}
	for col, id := range fitbittest.SubscriptionIDs {
		if n := f.srv.Hits("DELETE /1/user/-/" + col + "/apiSubscriptions/" + id + ".json"); n != 1 {
			t.Errorf("delete %s: %d requests, want 1", col, n)
		}
	}
}

// TestSubscribeConflict: 409 is fine when the collection's listing holds one of ours, an error
// when it does not.
func TestSubscribeConflict(t *testing.T) {
	id := fitbittest.SubscriptionIDs["activities"]
	// Steps need activities; userRevokedAccess is always subscribed, after it (the next 16 bytes
	// of SubscriptionRand).
	revokedID := fitbittest.SubscriptionIDs["body"]
	routes := map[string]providertest.Route{
		"POST /1/user/-/activities/apiSubscriptions/" + id + ".json":               {Status: http.StatusConflict, Body: `{"errors":[{"errorType":"conflict"}]}`},
		"POST /1/user/-/userRevokedAccess/apiSubscriptions/" + revokedID + ".json": {Status: http.StatusCreated, File: "fitbit/subscription_created.json"},
		"GET /1/user/-/activities/apiSubscriptions.json":                           file("subscriptions_activities.json"),
	}
	f := newFixture(t, routes, opts{})
	ts := oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "a1"})
	if err := f.c.Subscribe(t.Context(), testUser, ts, "", []fhir.SampleKind{fhir.KindSteps}); err != nil {
		t.Errorf("409 with an existing subscription of ours: %v", err)
	}
	f.srv.Set("GET /1/user/-/activities/apiSubscriptions.json", providertest.Route{Body: `{"apiSubscriptions":[]}`})
	f.c.cfg.Rand = fitbittest.SubscriptionRand()
	err := f.c.Subscribe(t.Context(), testUser, ts, "", []fhir.SampleKind{fhir.KindSteps})
	var ue *providers.UpstreamError
	if !errors.As(err, &ue) || ue.Status != http.StatusConflict {
		t.Errorf("409 without one of ours: %v, want a conflict error", err)
	}
}

// TestSubscribeScopeNotGranted: a collection whose scope the user did not grant is skipped, and
// userRevokedAccess is still subscribed after it.
func TestSubscribeScopeNotGranted(t *testing.T) {
	actID, revokedID := fitbittest.SubscriptionIDs["activities"], fitbittest.SubscriptionIDs["body"]
	routes := map[string]providertest.Route{
		"POST /1/user/-/activities/apiSubscriptions/" + actID + ".json": {Status: http.StatusForbidden,
			Body: `{"errors":[{"errorType":"insufficient_scope","message":"scope not granted"}]}`},
		"POST /1/user/-/userRevokedAccess/apiSubscriptions/" + revokedID + ".json": {Status: http.StatusCreated, File: "fitbit/subscription_created.json"},
	}
	f := newFixture(t, routes, opts{})
	ts := oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "a1"})
	if err := f.c.Subscribe(t.Context(), testUser, ts, "", []fhir.SampleKind{fhir.KindSteps}); err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	if n := f.srv.Hits("POST /1/user/-/userRevokedAccess/apiSubscriptions/" + revokedID + ".json"); n != 1 {
		t.Errorf("userRevokedAccess subscriptions: %d, want 1", n)
	}
}
