package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	"golang.org/x/oauth2"

	"github.com/openhealthexchange/ohx/providers"
	"github.com/openhealthexchange/ohx/providers/providertest"
)

// TestGoogleHealthSubscriberCLI: `ohx googlehealth subscriber create` registers ohx's webhook
// URL with the configured Authorization secret and the enabled data types, using the Google
// Cloud identity it was given, and prints no secret.
func TestGoogleHealthSubscriberCLI(t *testing.T) {
	fake := providertest.NewServer(t, map[string]providertest.Route{
		"POST /v4/projects/my-project/subscribers": {Body: `{"name":"projects/my-project/operations/op-1","done":true}`},
		"GET /v4/projects/my-project/subscribers": {Body: `{"subscribers":[{"name":"projects/my-project/subscribers/ohx-test","endpointUri":"https://ohx.example/webhooks/googlehealth","state":"ACTIVE",` +
			`"subscriberConfigs":[{"dataTypes":["steps","weight"],"subscriptionCreatePolicy":"AUTOMATIC"}]}]}`},
	})
	env := map[string]string{
		"OHX_DATA_DIR": t.TempDir(), "OHX_BASE_URL": "https://ohx.example/fhir",
		"OHX_GOOGLEHEALTH_API_URL": fake.URL(), "OHX_GOOGLEHEALTH_WEBHOOK_SECRET": "Bearer hook-secret-1",
		"OHX_GOOGLEHEALTH_KINDS": "steps,weight",
	}
	getenv := func(k string) string { return env[k] }
	var out, errOut bytes.Buffer
	create := []string{"googlehealth", "subscriber", "create", "-project", "my-project", "-id", "ohx-test"}

	// Without a Google Cloud identity nothing is sent.
	if err := run(t.Context(), create, getenv, nil, &out, &errOut); err == nil || !strings.Contains(err.Error(), "OHX_GOOGLE_ACCESS_TOKEN") {
		t.Fatalf("create without an identity: %v, want an error naming OHX_GOOGLE_ACCESS_TOKEN", err)
	}
	env["OHX_GOOGLE_ACCESS_TOKEN"] = "cloud-token"
	if err := run(t.Context(), create, getenv, nil, &out, &errOut); err != nil {
		t.Fatalf("create: %v %s", err, errOut.String())
	}
	reqs := fake.Requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests, want 1", len(reqs))
	}
	r := reqs[0]
	if r.Form.Get("subscriberId") != "ohx-test" || r.Header.Get("Authorization") != "Bearer cloud-token" {
		t.Errorf("create request: subscriberId %q, Authorization %q", r.Form.Get("subscriberId"), r.Header.Get("Authorization"))
	}
	var body struct {
		EndpointURI       string `json:"endpointUri"`
		SubscriberConfigs []struct {
			DataTypes []string `json:"dataTypes"`
			Policy    string   `json:"subscriptionCreatePolicy"`
		} `json:"subscriberConfigs"`
		EndpointAuthorization struct{ Secret string } `json:"endpointAuthorization"`
	}
	if err := json.Unmarshal(r.Body, &body); err != nil {
		t.Fatal(err)
	}
	if body.EndpointURI != "https://ohx.example/webhooks/googlehealth" || body.EndpointAuthorization.Secret != "Bearer hook-secret-1" {
		t.Errorf("subscriber endpoint %q, secret set %v", body.EndpointURI, body.EndpointAuthorization.Secret == "Bearer hook-secret-1")
	}
	if len(body.SubscriberConfigs) != 1 || body.SubscriberConfigs[0].Policy != "AUTOMATIC" ||
		!slices.Contains(body.SubscriberConfigs[0].DataTypes, "steps") || !slices.Contains(body.SubscriberConfigs[0].DataTypes, "weight") {
		t.Errorf("subscriber configs %+v, want AUTOMATIC for the steps and weight data types", body.SubscriberConfigs)
	}
	for _, d := range body.SubscriberConfigs[0].DataTypes {
		if d != "steps" && d != "weight" {
			t.Errorf("data type %q subscribed, but only steps and weight are enabled", d)
		}
	}
	if strings.Contains(out.String()+errOut.String(), "hook-secret-1") {
		t.Errorf("the webhook secret was printed: %s", out.String())
	}

	out.Reset()
	if err := run(t.Context(), []string{"googlehealth", "subscriber", "list", "-project", "my-project"}, getenv, nil, &out, &errOut); err != nil {
		t.Fatalf("list: %v", err)
	}
	if !strings.Contains(out.String(), "projects/my-project/subscribers/ohx-test") || !strings.Contains(out.String(), "ACTIVE") {
		t.Errorf("list output:\n%s", out.String())
	}

	// No secret configured: refused before anything is sent.
	delete(env, "OHX_GOOGLEHEALTH_WEBHOOK_SECRET")
	if err := run(t.Context(), create, getenv, nil, &out, &errOut); err == nil || !strings.Contains(err.Error(), "OHX_GOOGLEHEALTH_WEBHOOK_SECRET") {
		t.Errorf("create without a webhook secret: %v", err)
	}
	if n := len(fake.Requests()); n != 2 {
		t.Errorf("%d requests, want 2 (create, list)", n)
	}
}

// TestGoogleHealthSubscriptionsSync: for a MANUAL subscriber, every active Google Health
// connection gets one subscription, an already subscribed user none, other connections none.
func TestGoogleHealthSubscriptionsSync(t *testing.T) {
	subs := "/v4/projects/my-project/subscribers/ohx-manual/subscriptions"
	fake := providertest.NewServer(t, map[string]providertest.Route{
		"GET " + subs: {Handler: func(w http.ResponseWriter, r *http.Request) {
			// hu-2 is subscribed already.
			if r.Form.Get("filter") == `user = "users/hu-2"` {
				w.Write([]byte(`{"subscriptions":[{"name":"projects/my-project/subscribers/ohx-manual/subscriptions/sub-2","user":"users/hu-2"}]}`))
				return
			}
			w.Write([]byte(`{"subscriptions":[]}`))
		}},
		"POST " + subs: {Body: `{"name":"projects/my-project/subscribers/ohx-manual/subscriptions/sub-new","user":"users/hu-1"}`},
	})
	env := map[string]string{
		"OHX_DATA_DIR": t.TempDir(), "OHX_SECRET_KEY": base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32)),
		"OHX_GOOGLEHEALTH_API_URL": fake.URL(), "OHX_GOOGLE_ACCESS_TOKEN": "cloud-token",
	}
	getenv := func(k string) string { return env[k] }
	cfg, err := parseConfig("test", nil, getenv, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	vault, st, err := openVault(t.Context(), cfg, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []*providers.Connection{
		{Provider: "googlehealth", PatientID: "p1", VendorUserID: "hu-1", Status: providers.StatusActive},
		{Provider: "googlehealth", PatientID: "p2", VendorUserID: "hu-2", Status: providers.StatusActive},
		{Provider: "googlehealth", PatientID: "p3", VendorUserID: "hu-3", Status: providers.StatusNeedsReauth},
		{Provider: "withings", PatientID: "p1", VendorUserID: "12345", Status: providers.StatusActive},
	} {
		c.Token = &oauth2.Token{AccessToken: "a", RefreshToken: "r"}
		if err := vault.Save(t.Context(), c); err != nil {
			t.Fatal(err)
		}
	}
	st.Close()

	var out, errOut bytes.Buffer
	if err := run(t.Context(), []string{"googlehealth", "subscriptions", "sync", "-project", "my-project", "-subscriber", "ohx-manual"}, getenv, nil, &out, &errOut); err != nil {
		t.Fatalf("sync: %v %s", err, errOut.String())
	}
	var created []string
	for _, r := range fake.Requests() {
		if r.Method == http.MethodPost {
			var b struct{ User string }
			json.Unmarshal(r.Body, &b)
			created = append(created, b.User)
		}
	}
	if !slices.Equal(created, []string{"users/hu-1"}) {
		t.Errorf("subscriptions created for %v, want only users/hu-1", created)
	}
	if !strings.Contains(out.String(), "1 created, 1 already present") {
		t.Errorf("output %q", out.String())
	}
}
