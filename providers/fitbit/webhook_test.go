package fitbit

import (
	"encoding/base64"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/providers"
	"github.com/openhealthexchange/ohx/providers/fitbit/fitbittest"
)

// TestSignatureWorkedExample: the guide's example verifies with key secret + "&" and fails with
// the key without it (vector F11); fitbittest.Sign computes the same.
func TestSignatureWorkedExample(t *testing.T) {
	if got := base64.StdEncoding.EncodeToString(signature([]byte(f11Body), "fitbit_client_secret")); got != f11Sig {
		t.Errorf("signature %s, want %s", got, f11Sig)
	}
	if got := fitbittest.Sign([]byte(f11Body), "fitbit_client_secret"); got != f11Sig {
		t.Errorf("fitbittest.Sign %s, want %s", got, f11Sig)
	}
	f := newFixture(t, nil, opts{})
	if resp, err := f.c.HandleWebhook(t.Context(), post(f11Body, f11Sig)); err != nil || resp.Status != http.StatusNoContent {
		t.Errorf("correct signature: %+v %v, want 204", resp, err)
	}
	for name, sig := range map[string]string{"keyed without &": f11SigNoAmp, "missing": "", "not base64": "%%%"} {
		_, err := f.c.HandleWebhook(t.Context(), post(f11Body, sig))
		var we *providers.WebhookError
		if !errors.As(err, &we) || we.Status != http.StatusNotFound || !errors.Is(err, providers.ErrWebhookAuth) {
			t.Errorf("%s signature: %v, want 404 ErrWebhookAuth", name, err)
		}
	}
	// One changed byte of the body fails too.
	if _, err := f.c.HandleWebhook(t.Context(), post(f11Body[:len(f11Body)-2]+" ]", f11Sig)); !errors.Is(err, providers.ErrWebhookAuth) {
		t.Errorf("altered body: %v, want ErrWebhookAuth", err)
	}
}

// TestVerification is vector F12, including "no code configured: 404 for every value".
func TestVerification(t *testing.T) {
	f := newFixture(t, nil, opts{})
	if resp, err := f.c.HandleWebhook(t.Context(), verify(testVerify)); err != nil || resp.Status != http.StatusNoContent {
		t.Errorf("configured code: %+v %v, want 204", resp, err)
	}
	none := newFixture(t, nil, opts{noVerify: true})
	for _, code := range []string{testVerify, "", "anything"} {
		for name, c := range map[string]*Client{"configured": f.c, "none configured": none.c} {
			if c == f.c && code == testVerify {
				continue
			}
			_, err := c.HandleWebhook(t.Context(), verify(code))
			var we *providers.WebhookError
			if !errors.As(err, &we) || we.Status != http.StatusNotFound {
				t.Errorf("%s, code %q: %v, want 404", name, code, err)
			}
		}
	}
}

// TestNotifications is vector F13: one notification per item, kinds per collection, foods
// ignored, identical items coalesced, a stable key per (ownerId, collection, date).
func TestNotifications(t *testing.T) {
	f := newFixture(t, nil, opts{})
	body := `[{"collectionType":"sleep","date":"2024-01-16","ownerId":"ABC123","ownerType":"user","subscriptionId":"a"},
{"collectionType":"body","date":"2024-01-15","ownerId":"ABC123","ownerType":"user","subscriptionId":"b"},
{"collectionType":"foods","date":"2024-01-15","ownerId":"ABC123","ownerType":"user","subscriptionId":"c"},
{"collectionType":"body","date":"2024-01-15","ownerId":"ABC123","ownerType":"user","subscriptionId":"b"},
{"collectionType":"activities","date":"2024-01-15","ownerId":"XYZ789","ownerType":"user","subscriptionId":"d"}]`
	resp, err := f.c.HandleWebhook(t.Context(), post(body, fitbittest.Sign([]byte(body), fitbittest.ClientSecret)))
	if err != nil || resp.Status != http.StatusNoContent {
		t.Fatalf("%+v %v", resp, err)
	}
	if len(resp.Notifications) != 3 {
		t.Fatalf("%d notifications, want 3 (sleep, body once, the other user's activities)", len(resp.Notifications))
	}
	sleep, bodyN, other := resp.Notifications[0], resp.Notifications[1], resp.Notifications[2]
	wantSleep := []fhir.SampleKind{fhir.KindHRVRMSSD, fhir.KindRespiratoryRate, fhir.KindSkinTemperatureVariation, fhir.KindSleep, fhir.KindSpO2}
	if len(sleep.Kinds) != len(wantSleep) {
		t.Errorf("sleep kinds %v, want %v", sleep.Kinds, wantSleep)
	}
	for i := range wantSleep {
		if i < len(sleep.Kinds) && sleep.Kinds[i] != wantSleep[i] {
			t.Errorf("sleep kinds %v, want %v", sleep.Kinds, wantSleep)
			break
		}
	}
	if len(bodyN.Kinds) != 3 || other.VendorUser != "XYZ789" {
		t.Errorf("body kinds %v, other user %q", bodyN.Kinds, other.VendorUser)
	}
	// The window covers the local date 2024-01-16 in every zone, e.g. Europe/Berlin and Pacific/Kiritimati (+14).
	for _, loc := range []string{"Europe/Berlin", "Pacific/Kiritimati", "Etc/GMT+12"} {
		z := mustZone(loc)
		day := mustDay(t, "2024-01-16", z)
		if day.Before(sleep.Start) || day.AddDate(0, 0, 1).After(sleep.End) {
			t.Errorf("window [%v, %v) misses the local day %v in %s", sleep.Start, sleep.End, day, loc)
		}
	}
	again, err := f.c.HandleWebhook(t.Context(), post(body, fitbittest.Sign([]byte(body), fitbittest.ClientSecret)))
	if err != nil {
		t.Fatalf("redelivery: %v", err)
	}
	if len(again.Notifications) != len(resp.Notifications) || len(again.Notifications) == 0 {
		t.Fatalf("redelivery: %d notifications, first delivery %d", len(again.Notifications), len(resp.Notifications))
	}
	for i := range again.Notifications {
		if again.Notifications[i].Key != resp.Notifications[i].Key {
			t.Errorf("redelivery key %d differs", i)
		}
	}
	if sleep.Key == bodyN.Key {
		t.Error("different items share a key")
	}
}

func mustDay(t *testing.T, date string, loc *time.Location) time.Time {
	t.Helper()
	v, err := localDay(date, loc)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
