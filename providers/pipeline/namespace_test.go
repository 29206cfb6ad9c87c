package pipeline

import (
	"strings"
	"testing"
	"time"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/providers"
	"github.com/openhealthexchange/ohx/providers/providertest"
	"github.com/openhealthexchange/ohx/providers/withings"
)

// TestNamespace: the configured namespace is the base of the identifier systems and
// meta.source of everything the runner writes (Observations, Devices, DeviceAssociations), and
// purging a provider's data finds what was written under it.
func TestNamespace(t *testing.T) {
	const ns fhir.Namespace = "https://ids.hospital.test/ohx"
	g := newRig(t, map[string]providertest.Route{
		getmeas:                          {File: "withings/getmeas_page2.json"},
		"POST /v2/user action=getdevice": {File: "withings/getdevice_account.json"},
	})
	g.r = NewRunner(Config{Namespace: ns, CallbackURL: func(string) string { return "https://ohx.test/webhooks/withings/s" },
		Lease: time.Minute, MaxAttempts: 3}, providers.NewRegistry(g.w), g.vault, g.st, nil)
	ctx := t.Context()
	if err := g.r.Process(ctx, Work{Provider: withings.Name, Patient: "p1"}.Job(TypeDeviceSync)); err != nil {
		t.Fatal(err)
	}
	if err := g.r.Notifier().Notify(ctx, withings.Name, []providers.Notification{weightNotification()}); err != nil {
		t.Fatal(err)
	}
	if n, err := g.r.RunOnce(ctx); n != 1 || err != nil {
		t.Fatalf("RunOnce: %d %v", n, err)
	}
	obs := g.observations(t)
	if len(obs) != 1 {
		t.Fatalf("observations: %d, want 1", len(obs))
	}
	o := obs[0]
	if sys := o.Identifier[0].System; sys != "https://ids.hospital.test/ohx/sid/withings/measure" {
		t.Errorf("Observation identifier.system: got %s, want it under the namespace", sys)
	}
	if o.ID != fhir.ResourceID(o.Identifier[0].System, o.Identifier[0].Value) {
		t.Errorf("Observation id %s is not derived from its identifier", o.ID)
	}
	source := "https://ids.hospital.test/ohx/provider/withings"
	if o.Meta.Source != source {
		t.Errorf("Observation meta.source: got %s, want %s", o.Meta.Source, source)
	}
	as := g.associations(t)
	if len(as) != 2 {
		t.Fatalf("associations: %d, want 2", len(as))
	}
	for ref, a := range as {
		if !strings.HasPrefix(a.Identifier[0].System, ns.ProviderIdentifierPrefix(withings.Name)) || a.Meta.Source != source {
			t.Errorf("%s: identifier %s, meta.source %s: want them under the namespace", ref, a.Identifier[0].System, a.Meta.Source)
		}
		dev, err := g.st.Read(ctx, "Device", strings.TrimPrefix(ref, "Device/"))
		if err != nil {
			t.Fatalf("device %s: %v", ref, err)
		}
		if !strings.Contains(string(dev.JSON), `"`+ns.DeviceSystem(withings.Name)+`"`) {
			t.Errorf("device %s has no identifier in %s: %s", ref, ns.DeviceSystem(withings.Name), dev.JSON)
		}
	}
	if err := g.r.purge(ctx, withings.Name, "p1"); err != nil {
		t.Fatal(err)
	}
	if left := g.observations(t); len(left) != 0 {
		t.Errorf("after purge: %d Observations left, want 0", len(left))
	}
}
