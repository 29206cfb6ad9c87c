package googlehealth

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/providers"
	"github.com/openhealthexchange/ohx/providers/providertest"
)

func newAdmin(t *testing.T, routes map[string]providertest.Route) (*Admin, *providertest.Server) {
	t.Helper()
	srv := providertest.NewServer(t, routes)
	cc := ClientConfig()
	cc.MaxRetries, cc.CacheTTL, cc.AppRate, cc.UserRate, cc.Timeout = -1, -1, 0, 0, 5*time.Second
	pc, err := providers.NewClient(cc, srv.Client(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	a, err := NewAdmin(AdminConfig{APIURL: srv.URL(), Project: "ohx-demo-project",
		TokenSource: oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "sa-token"})}, pc)
	if err != nil {
		t.Fatal(err)
	}
	return a, srv
}

const subscribers = "/v4/projects/ohx-demo-project/subscribers"

// TestAdminSubscribers: create, update, list and delete send the documented paths, query
// parameters and bodies with the service account's token.
func TestAdminSubscribers(t *testing.T) {
	a, srv := newAdmin(t, map[string]providertest.Route{
		"POST " + subscribers:                     file("admin_operation.json"),
		"PATCH " + subscribers + "/ohx-webhooks":  file("admin_operation.json"),
		"GET " + subscribers:                      file("admin_subscribers.json"),
		"DELETE " + subscribers + "/ohx-webhooks": file("admin_operation.json"),
	})
	spec := SubscriberSpec{ID: "ohx-webhooks", EndpointURI: "https://ohx.example/webhooks/googlehealth",
		DataTypes: DataTypes([]fhir.SampleKind{fhir.KindSteps, fhir.KindWeight, fhir.KindSleepREM}), Policy: PolicyAutomatic, Secret: "Bearer random-secret"}
	if !slices.Equal(spec.DataTypes, []string{"weight", "steps", "sleep"}) {
		t.Fatalf("DataTypes %v", spec.DataTypes)
	}
	op, err := a.CreateSubscriber(t.Context(), spec)
	if err != nil || !op.Done || op.Name == "" {
		t.Fatalf("create: %+v %v", op, err)
	}
	r := srv.Requests()[0]
	if r.Form.Get("subscriberId") != "ohx-webhooks" || r.Header.Get("Authorization") != "Bearer sa-token" {
		t.Errorf("create request: id %q auth %q", r.Form.Get("subscriberId"), r.Header.Get("Authorization"))
	}
	var got map[string]any
	if err := json.Unmarshal(r.Body, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"endpointUri":           "https://ohx.example/webhooks/googlehealth",
		"subscriberConfigs":     []any{map[string]any{"dataTypes": []any{"weight", "steps", "sleep"}, "subscriptionCreatePolicy": "AUTOMATIC"}},
		"endpointAuthorization": map[string]any{"secret": "Bearer random-secret"},
	}
	if b1, b2 := mustJSON(t, got), mustJSON(t, want); b1 != b2 {
		t.Errorf("create body %s, want %s", b1, b2)
	}

	spec.Secret = ""
	if _, err := a.UpdateSubscriber(t.Context(), spec); err != nil {
		t.Fatal(err)
	}
	r = srv.Requests()[1]
	if r.Form.Get("updateMask") != "endpoint_uri,subscriber_configs" || strings.Contains(string(r.Body), "endpointAuthorization") {
		t.Errorf("update without a secret: mask %q body %s", r.Form.Get("updateMask"), r.Body)
	}
	subs, err := a.ListSubscribers(t.Context())
	if err != nil || len(subs) != 1 || subs[0].State != "ACTIVE" || subs[0].Configs[0].Policy != PolicyAutomatic {
		t.Errorf("list: %+v %v", subs, err)
	}
	if _, err := a.DeleteSubscriber(t.Context(), "ohx-webhooks", true); err != nil {
		t.Fatal(err)
	}
	if r := srv.Requests()[3]; r.Method != http.MethodDelete || r.Form.Get("force") != "true" {
		t.Errorf("delete request %s force=%q", r.Method, r.Form.Get("force"))
	}

	// Validation happens before anything is sent.
	n := len(srv.Requests())
	for name, bad := range map[string]SubscriberSpec{
		"id too short":      {ID: "ab", EndpointURI: spec.EndpointURI, DataTypes: spec.DataTypes, Policy: PolicyManual, Secret: "Bearer x"},
		"id with uppercase": {ID: "Ohx-hooks", EndpointURI: spec.EndpointURI, DataTypes: spec.DataTypes, Policy: PolicyManual, Secret: "Bearer x"},
		"http endpoint":     {ID: "ohx-hooks", EndpointURI: "http://ohx.example/x", DataTypes: spec.DataTypes, Policy: PolicyManual, Secret: "Bearer x"},
		"snake data type":   {ID: "ohx-hooks", EndpointURI: spec.EndpointURI, DataTypes: []string{"body_fat"}, Policy: PolicyManual, Secret: "Bearer x"},
		"no scheme":         {ID: "ohx-hooks", EndpointURI: spec.EndpointURI, DataTypes: spec.DataTypes, Policy: PolicyManual, Secret: "random"},
		"policy":            {ID: "ohx-hooks", EndpointURI: spec.EndpointURI, DataTypes: spec.DataTypes, Policy: "SOMETIMES", Secret: "Bearer x"},
	} {
		if _, err := a.CreateSubscriber(t.Context(), bad); err == nil || strings.Contains(err.Error(), "Bearer x") {
			t.Errorf("%s: %v, want a validation error without the secret", name, err)
		}
	}
	if len(srv.Requests()) != n {
		t.Error("an invalid spec was sent")
	}
}

// TestAdminSubscriptions: per-user subscriptions of a MANUAL subscriber.
func TestAdminSubscriptions(t *testing.T) {
	base := subscribers + "/ohx-manual/subscriptions"
	a, srv := newAdmin(t, map[string]providertest.Route{
		"POST " + base:                     file("admin_subscription.json"),
		"GET " + base:                      file("admin_subscriptions.json"),
		"DELETE " + base + "/sub-hu7f3a9c": file("empty.json"),
	})
	sub, err := a.CreateSubscription(t.Context(), "ohx-manual", testUser, []string{"steps", "weight"})
	if err != nil || sub.User != "users/"+testUser {
		t.Fatalf("create: %+v %v", sub, err)
	}
	if got := string(srv.Requests()[0].Body); got != `{"user":"users/hu-7f3a9c","dataTypes":["users/hu-7f3a9c/dataTypes/steps","users/hu-7f3a9c/dataTypes/weight"]}` {
		t.Errorf("create body %s", got)
	}
	list, err := a.ListSubscriptions(t.Context(), "ohx-manual", testUser)
	if err != nil || len(list) != 1 {
		t.Fatalf("list: %+v %v", list, err)
	}
	if f := srv.Requests()[1].Form.Get("filter"); f != `user = "users/hu-7f3a9c"` {
		t.Errorf("list filter %q", f)
	}
	if err := a.DeleteSubscription(t.Context(), "ohx-manual", "sub-hu7f3a9c"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.CreateSubscription(t.Context(), "ohx-manual", "bad/user", []string{"steps"}); err == nil {
		t.Error("an invalid health user id was accepted")
	}
}

// TestAdminFailedOperation: a failed verification (FailedPrecondition) is an error.
func TestAdminFailedOperation(t *testing.T) {
	a, _ := newAdmin(t, map[string]providertest.Route{"POST " + subscribers: file("admin_operation_failed.json")})
	_, err := a.CreateSubscriber(t.Context(), SubscriberSpec{ID: "ohx-webhooks", EndpointURI: "https://ohx.example/webhooks/googlehealth",
		DataTypes: []string{"steps"}, Policy: PolicyAutomatic, Secret: "Bearer r"})
	if providers.KindOf(err) != providers.KindPermanent || !strings.Contains(err.Error(), "code 9") {
		t.Errorf("failed operation: %v", err)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
