package pipeline_test

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/openhealthexchange/ohx/api"
	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/fhir/search"
	"github.com/openhealthexchange/ohx/providers"
	"github.com/openhealthexchange/ohx/providers/pipeline"
	"github.com/openhealthexchange/ohx/store/sqlite"
)

// acme is a made-up vendor: a JSON API with bearer tokens, and webhooks that carry a shared
// secret header and a JSON body naming the user, the kind and the window that changed. It is
// the whole adapter a second vendor needs: nothing outside this file knows about it.
type acme struct {
	api    string // base URL
	secret string // webhook shared secret
}

var (
	_ providers.Provider = (*acme)(nil)
	_ providers.Webhooks = (*acme)(nil)
)

func (a *acme) Name() string             { return "acme" }
func (a *acme) Kinds() []fhir.SampleKind { return []fhir.SampleKind{fhir.KindWeight} }
func (a *acme) AuthCodeURL(state, _ string) string {
	return a.api + "/authorize?state=" + url.QueryEscape(state)
}
func (a *acme) Exchange(context.Context, string, string) (*providers.Grant, error) {
	return nil, errors.New("acme: not used in this test")
}
func (a *acme) Refresh(context.Context, *oauth2.Token) (*oauth2.Token, error) {
	return nil, providers.ErrConsentRevoked
}

// get reads one JSON document of the vendor API.
func (a *acme) get(ctx context.Context, ts oauth2.TokenSource, path string, v any) error {
	t, err := ts.Token()
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.api+path, nil)
	if err != nil {
		return err
	}
	t.SetAuthHeader(req)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return &providers.UpstreamError{Provider: "acme", Kind: providers.KindTransient, Err: err}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return &providers.UpstreamError{Provider: "acme", Kind: providers.KindTransient, Status: resp.StatusCode, Err: errors.New("acme api")}
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

func (a *acme) Devices(ctx context.Context, user string, ts oauth2.TokenSource) ([]fhir.DeviceInfo, error) {
	var ds []struct{ ID, Model string }
	if err := a.get(ctx, ts, "/devices?user="+url.QueryEscape(user), &ds); err != nil {
		return nil, err
	}
	var out []fhir.DeviceInfo
	for _, d := range ds {
		out = append(out, fhir.DeviceInfo{Provider: "acme", UserID: user, ID: d.ID, Model: d.Model, Manufacturer: "Acme", Type: "Scale"})
	}
	return out, nil
}

func (a *acme) Fetch(ctx context.Context, user string, ts oauth2.TokenSource, q providers.Query) (*providers.Page, error) {
	var ws []struct {
		ID, Kg, Device string
		At             time.Time
	}
	path := fmt.Sprintf("/weights?user=%s&start=%d&end=%d", url.QueryEscape(user), q.Start.Unix(), q.End.Unix())
	if err := a.get(ctx, ts, path, &ws); err != nil {
		return nil, err
	}
	p := &providers.Page{SyncedUntil: time.Now()}
	for _, w := range ws {
		p.Samples = append(p.Samples, fhir.Sample{Provider: "acme", UserID: user, Kind: fhir.KindWeight, System: "acme/weight",
			RecordID: user + "/" + w.ID, Value: fhir.Decimal(w.Kg), Unit: "kg", Start: w.At, DeviceID: w.Device})
	}
	return p, nil
}

func (a *acme) HandleWebhook(_ context.Context, r providers.WebhookRequest) (providers.WebhookResponse, error) {
	if subtle.ConstantTimeCompare([]byte(r.Header.Get("X-Acme-Secret")), []byte(a.secret)) != 1 {
		return providers.WebhookResponse{}, &providers.WebhookError{Status: http.StatusUnauthorized, Err: providers.ErrWebhookAuth}
	}
	var b struct {
		User       string
		Kind       fhir.SampleKind
		Start, End int64
	}
	if err := json.Unmarshal(r.Body, &b); err != nil || b.User == "" {
		return providers.WebhookResponse{}, providers.RefuseWebhook(http.StatusBadRequest, "acme: malformed notification")
	}
	return providers.WebhookResponse{Status: http.StatusNoContent, Notifications: []providers.Notification{{
		VendorUser: b.User, Event: providers.EventData, Kinds: []fhir.SampleKind{b.Kind},
		Start: time.Unix(b.Start, 0), End: time.Unix(b.End, 0), Key: string(r.Body),
	}}}, nil
}

// TestSecondVendor: a webhook of the made-up vendor acme becomes, through the generic pipeline
// and nothing else, an Observation, a Device and a DeviceAssociation readable over FHIR.
func TestSecondVendor(t *testing.T) {
	ctx := t.Context()
	vendor := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer acme-token" {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		switch r.URL.Path {
		case "/devices":
			io.WriteString(w, `[{"ID":"scale-1","Model":"Acme Scale"}]`)
		case "/weights":
			io.WriteString(w, `[{"ID":"w1","Kg":"72.4","Device":"scale-1","At":"2026-03-01T07:30:00+01:00"}]`)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(vendor.Close)
	adapter := &acme{api: vendor.URL, secret: "shh"}

	st, err := sqlite.Open(ctx, t.TempDir(), sqlite.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	vault, err := providers.NewVault(st, map[string][]byte{"k": make([]byte, 32)}, "k", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := vault.Save(ctx, &providers.Connection{Provider: "acme", PatientID: "p7", VendorUserID: "u-42", Status: providers.StatusActive,
		Token: &oauth2.Token{AccessToken: "acme-token", Expiry: time.Now().Add(time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	runner := pipeline.NewRunner(pipeline.Config{}, providers.NewRegistry(adapter), vault, st, nil)
	notifier := runner.Notifier()

	srv := httptest.NewUnstartedServer(nil)
	base := "http://" + srv.Listener.Addr().String() + "/fhir"
	s, err := api.New(api.Config{BaseURL: base, CursorKey: bytes.Repeat([]byte("k"), 32),
		Webhooks: &api.WebhookConfig{Sink: notifier, Handlers: map[string]providers.Webhooks{"acme": adapter}}},
		st, search.DefaultRegistry(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = s.Handler()
	srv.Start()
	t.Cleanup(srv.Close)

	// The vendor's delivery, through the api's generic /webhooks/{provider} endpoint: the
	// adapter authenticates and parses it, the sink persists the job before the 2xx.
	post := func(secret string) int {
		t.Helper()
		body := `{"User":"u-42","Kind":"weight","Start":1772323200,"End":1772409600}`
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/webhooks/acme", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Acme-Secret", secret)
		r, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		return r.StatusCode
	}
	if code := post("wrong"); code != http.StatusUnauthorized {
		t.Fatalf("a delivery with the wrong secret: status %d, want 401", code)
	}
	if js, _ := st.JobStats(ctx, time.Now()); js.Waiting != 0 {
		t.Fatalf("a refused delivery queued %d jobs", js.Waiting)
	}
	for range 2 { // a redelivery coalesces
		if code := post("shh"); code != http.StatusNoContent {
			t.Fatalf("webhook: status %d, want the adapter's 204", code)
		}
	}
	if js, _ := st.JobStats(ctx, time.Now()); js.Waiting != 1 {
		t.Fatalf("after two identical deliveries: %d jobs waiting, want 1", js.Waiting)
	}
	// A new connection's device sync, then the notified fetch.
	if err := runner.Connected(ctx, "acme", "p7"); err != nil {
		t.Fatal(err)
	}
	for {
		n, err := runner.RunOnce(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
	}
	if d, _ := st.DeadJobs(ctx, 10); len(d) != 0 {
		t.Fatalf("dead letters: %+v", d)
	}

	get := func(path string) map[string]any {
		t.Helper()
		r, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Body.Close()
		var b map[string]any
		if err := json.NewDecoder(r.Body).Decode(&b); err != nil || r.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %v", path, r.StatusCode, err)
		}
		return b
	}
	entries := func(b map[string]any) []map[string]any {
		var out []map[string]any
		es, _ := b["entry"].([]any)
		for _, e := range es {
			out = append(out, e.(map[string]any)["resource"].(map[string]any))
		}
		return out
	}
	obs := entries(get("/fhir/Observation?patient=p7"))
	if len(obs) != 1 {
		t.Fatalf("observations: %d, want 1", len(obs))
	}
	o, _ := json.Marshal(obs[0])
	for _, want := range []string{`"29463-7"`, `"value":72.4`, `"Patient/p7"`, fhir.DefaultNamespace.IdentifierSystem("acme/weight")} {
		if !strings.Contains(string(o), want) {
			t.Errorf("Observation %s lacks %s", o, want)
		}
	}
	assoc := entries(get("/fhir/DeviceAssociation?patient=p7"))
	if len(assoc) != 1 {
		t.Fatalf("device associations: %d, want 1", len(assoc))
	}
	ref := assoc[0]["device"].(map[string]any)["reference"].(string)
	dev := get("/fhir/" + ref)
	if dev["displayName"] != "Acme Scale" {
		t.Errorf("device %v", dev)
	}
	covs, err := runner.Coverage(ctx, "acme", "p7")
	if err != nil || len(covs) != 1 || covs[0].Kind != "weight" || !covs[0].Covers(time.Unix(1772323200, 0), time.Unix(1772409600, 0)) {
		t.Errorf("coverage: %+v %v", covs, err)
	}
}
