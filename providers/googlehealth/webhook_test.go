package googlehealth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/providers"
	"github.com/openhealthexchange/ohx/providers/providertest"
)

func fixtureBody(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(providertest.TestdataPath(t, "googlehealth/"+name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func delivery(auth string, body []byte) providers.WebhookRequest {
	h := http.Header{"Content-Type": {"application/json"}}
	if auth != "" {
		h.Set("Authorization", auth)
	}
	return providers.WebhookRequest{Method: http.MethodPost, Header: h, Body: body, Received: testNow}
}

// TestWebhookVerification: the two verification POSTs of subscriber creation — with the
// configured Authorization 201, without 401, with a wrong one 403 — and nothing else leaks.
func TestWebhookVerification(t *testing.T) {
	f := newFixture(t, nil, fixtureOpts{})
	v := fixtureBody(t, "webhook_verification.json")
	for _, tc := range []struct {
		name, auth string
		status     int
	}{
		{"right secret", testSecret, http.StatusCreated},
		{"no header", "", http.StatusUnauthorized},
		{"wrong secret", "Bearer s3cr3t-webhook-valuf", http.StatusForbidden},
		{"secret without scheme", strings.TrimPrefix(testSecret, "Bearer "), http.StatusForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := f.c.HandleWebhook(t.Context(), delivery(tc.auth, v))
			if tc.status == http.StatusCreated {
				if err != nil || resp.Status != http.StatusCreated || len(resp.Body) != 0 || len(resp.Notifications) != 0 {
					t.Fatalf("got %+v, %v; want 201 with no body and no notifications", resp, err)
				}
				return
			}
			var we *providers.WebhookError
			if !errors.As(err, &we) || we.Status != tc.status || !errors.Is(err, providers.ErrWebhookAuth) {
				t.Fatalf("got %v, want a %d WebhookError wrapping ErrWebhookAuth", err, tc.status)
			}
			if resp.Status != 0 || resp.Body != nil || strings.Contains(err.Error(), "s3cr3t") {
				t.Errorf("a refusal leaks: %+v / %q", resp, err)
			}
		})
	}
	// No configured secret refuses everything, even an empty Authorization value's guess.
	f.c.cfg.WebhookSecret = ""
	if _, err := f.c.HandleWebhook(t.Context(), delivery(testSecret, v)); !errors.Is(err, providers.ErrWebhookAuth) {
		t.Errorf("no secret configured: %v, want a refusal", err)
	}
}

// TestWebhookNotifications: a notification becomes notifications for the right user, kinds and
// padded window; unknown data types are ignored; the same body gives the same keys.
func TestWebhookNotifications(t *testing.T) {
	f := newFixture(t, nil, fixtureOpts{})
	b := fixtureBody(t, "webhook_batch.json")
	resp, err := f.c.HandleWebhook(t.Context(), delivery(testSecret, b))
	if err != nil || resp.Status != http.StatusNoContent {
		t.Fatalf("got %+v, %v; want 204", resp, err)
	}
	ns := resp.Notifications
	if len(ns) != 2 {
		t.Fatalf("%d notifications, want weight and sleep (nutrition-log is not read): %+v", len(ns), ns)
	}
	w, s := ns[0], ns[1]
	if w.VendorUser != testUser || w.Event != providers.EventData || !slices.Equal(w.Kinds, []fhir.SampleKind{fhir.KindWeight}) {
		t.Errorf("weight notification %+v", w)
	}
	at := time.Date(2026, 3, 9, 14, 5, 0, 0, time.UTC)
	if !w.Start.Equal(at.Add(-24*time.Hour)) || !w.End.Equal(at.Add(24*time.Hour)) {
		t.Errorf("weight window [%v, %v), want a day either side of %v", w.Start, w.End, at)
	}
	if !slices.Equal(s.Kinds, []fhir.SampleKind{fhir.KindSleep}) || !s.Start.IsZero() || !s.End.IsZero() {
		t.Errorf("sleep notification without intervals %+v: want kind sleep and no window", s)
	}
	if w.Key == "" || w.Key == s.Key {
		t.Errorf("keys %q %q: want distinct, set keys", w.Key, s.Key)
	}
	again, err := f.c.HandleWebhook(t.Context(), delivery(testSecret, b))
	if err != nil || len(again.Notifications) != 2 || again.Notifications[0].Key != w.Key || again.Notifications[1].Key != s.Key {
		t.Errorf("redelivery keys differ: %+v %v", again, err)
	}
	other, _ := f.c.HandleWebhook(t.Context(), delivery(testSecret, fixtureBody(t, "webhook_steps.json")))
	if len(other.Notifications) != 1 || other.Notifications[0].Key == w.Key {
		t.Errorf("another body: %+v", other)
	}
	// A deployment that does not read weight ignores the weight notification.
	g := newFixture(t, nil, fixtureOpts{kinds: []fhir.SampleKind{fhir.KindSleep}})
	if r, err := g.c.HandleWebhook(t.Context(), delivery(testSecret, b)); err != nil || len(r.Notifications) != 1 || r.Notifications[0].Kinds[0] != fhir.KindSleep {
		t.Errorf("sleep-only deployment: %+v %v", r, err)
	}
	if _, err := f.c.HandleWebhook(t.Context(), delivery(testSecret, []byte("not json"))); err == nil {
		t.Error("malformed body accepted")
	} else if we := (*providers.WebhookError)(nil); !errors.As(err, &we) || we.Status != http.StatusBadRequest {
		t.Errorf("malformed body: %v, want 400", err)
	}
	if len(f.srv.Requests()) != 0 {
		t.Error("HandleWebhook called the vendor")
	}
}

// TestWebhookSignature: with a signature key, a delivery needs a valid ECDSA P-256 signature of
// the raw body as well as the secret.
func TestWebhookSignature(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, nil, fixtureOpts{})
	f.c.cfg.SignatureKey = &key.PublicKey
	b := fixtureBody(t, "webhook_steps.json")
	digest := sha256.Sum256(b)
	sig, err := ecdsa.SignASN1(rand.Reader, key, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	req := delivery(testSecret, b)
	if _, err := f.c.HandleWebhook(t.Context(), req); !errors.Is(err, providers.ErrWebhookAuth) {
		t.Errorf("unsigned delivery: %v, want a refusal", err)
	}
	req.Header.Set(SignatureHeader, base64.StdEncoding.EncodeToString(sig))
	if resp, err := f.c.HandleWebhook(t.Context(), req); err != nil || len(resp.Notifications) != 1 {
		t.Errorf("signed delivery: %+v %v", resp, err)
	}
	tampered := delivery(testSecret, append([]byte(" "), b...))
	tampered.Header.Set(SignatureHeader, base64.StdEncoding.EncodeToString(sig))
	var we *providers.WebhookError
	if _, err := f.c.HandleWebhook(t.Context(), tampered); !errors.As(err, &we) || we.Status != http.StatusForbidden {
		t.Errorf("tampered body: %v, want 403", err)
	}
}
