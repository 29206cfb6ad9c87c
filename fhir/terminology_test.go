package fhir

import (
	"strings"
	"testing"
	"time"
)

// TestIdentifierSystems: every identifier system of a provider starts with its
// ProviderIdentifierPrefix, and a prefix never covers another provider's systems.
func TestIdentifierSystems(t *testing.T) {
	n := DefaultNamespace
	if got, want := n.ProviderIdentifierPrefix("acme"), "https://github.com/openhealthexchange/ohx/sid/acme/"; got != want {
		t.Fatalf("ProviderIdentifierPrefix: got %s, want %s", got, want)
	}
	tests := []struct{ name, got, want string }{
		{"sample", n.IdentifierSystem("acme/measure"), "https://github.com/openhealthexchange/ohx/sid/acme/measure"},
		{"device", n.DeviceSystem("acme"), "https://github.com/openhealthexchange/ohx/sid/acme/device"},
		{"association", n.DeviceAssociationSystem("acme"), "https://github.com/openhealthexchange/ohx/sid/acme/device-association"},
	}
	for _, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("%s: got %s, want %s", tc.name, tc.got, tc.want)
		}
		if !strings.HasPrefix(tc.got, n.ProviderIdentifierPrefix("acme")) {
			t.Errorf("%s: %s does not start with the provider prefix", tc.name, tc.got)
		}
		if strings.HasPrefix(tc.got, n.ProviderIdentifierPrefix("acm")) {
			t.Errorf("%s: %s starts with the prefix of provider acm", tc.name, tc.got)
		}
	}
	// The systems MapSample writes are under the prefix of the sample's provider.
	o, err := MapSample(w1, patient)
	if err != nil {
		t.Fatal(err)
	}
	if sys := o.Identifier[0].System; !strings.HasPrefix(sys, n.ProviderIdentifierPrefix(w1.Provider)) {
		t.Errorf("Observation identifier %s is not under %s", sys, n.ProviderIdentifierPrefix(w1.Provider))
	}
	if strings.HasPrefix(n.DeviceSystem("acme-labs"), n.ProviderIdentifierPrefix("acme")) {
		t.Errorf("the prefix of acme covers acme-labs")
	}
}

// TestProjectDefinitions: ohx's own code systems and extensions are under the project's
// canonical, not under any deployment's namespace.
func TestProjectDefinitions(t *testing.T) {
	for _, u := range []string{ObservationCodeSystem, ECGRhythmSystem, TagSystem, LastSyncExtension} {
		if !strings.HasPrefix(u, "https://github.com/openhealthexchange/ohx/fhir/") {
			t.Errorf("%s is not under the project canonical", u)
		}
	}
}

func TestParseNamespace(t *testing.T) {
	for _, ok := range []string{
		string(DefaultNamespace),
		"https://fhir.hospital.example/ids",
		"http://localhost:8080",
		"urn:uuid:5b6c1a3e-0d5e-4c1f-9a55-3f4d0f0e2b7a",
		"urn:oid:1.2.3.4",
	} {
		if got, err := ParseNamespace(ok); err != nil || string(got) != ok {
			t.Errorf("ParseNamespace(%q) = %q, %v; want it unchanged", ok, got, err)
		}
	}
	for _, bad := range []string{
		"",
		"https://fhir.hospital.example/",
		"fhir.hospital.example",
		"/relative/path",
		"ftp://files.example/ids",
		"https://",
		"https://h.example/a|b",
		"https://h.example/a b",
		"https://h.example/ids?x=1",
		"https://h.example/ids#f",
		"https://h.example/ids?",
		"https://user@h.example/ids",
		"urn:",
		"urn:oid",
		"mailto:a@b.example",
	} {
		if got, err := ParseNamespace(bad); err == nil {
			t.Errorf("ParseNamespace(%q) = %q, want an error", bad, got)
		}
	}
}

// TestNamespaceMapping: a deployment's namespace is what identifier.system, meta.source and the
// derived resource ids and references of every mapped resource are built from.
func TestNamespaceMapping(t *testing.T) {
	const ns Namespace = "urn:oid:1.2.3.4"
	o, err := ns.MapSample(w1, patient)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := o.Identifier[0].System, "urn:oid:1.2.3.4/sid/withings/measure"; got != want {
		t.Errorf("identifier.system: got %s, want %s", got, want)
	}
	if got, want := o.Meta.Source, "urn:oid:1.2.3.4/provider/withings"; got != want {
		t.Errorf("meta.source: got %s, want %s", got, want)
	}
	if got, want := o.ID, ResourceID("urn:oid:1.2.3.4/sid/withings/measure", w1.RecordID); got != want {
		t.Errorf("id: got %s, want %s", got, want)
	}
	def, err := MapSample(w1, patient)
	if err != nil {
		t.Fatal(err)
	}
	if def.ID == o.ID || def.Identifier[0].System == o.Identifier[0].System {
		t.Errorf("the namespace does not change the identifier: %s|%s", o.Identifier[0].System, o.ID)
	}
	d := DeviceInfo{Provider: "withings", ID: w1.DeviceID, UserID: "12345"}
	dev := ns.MapDevice(d)
	if got, want := dev.Identifier[0].System, "urn:oid:1.2.3.4/sid/withings/device"; got != want || dev.Meta.Source != o.Meta.Source {
		t.Errorf("Device: identifier.system %s (want %s), meta.source %s", got, want, dev.Meta.Source)
	}
	if o.Device == nil || o.Device.Reference != "Device/"+dev.ID {
		t.Errorf("Observation.device %v does not reference Device/%s", o.Device, dev.ID)
	}
	a := ns.MapAssociation(patient, d, time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC), nil)
	if got, want := a.Identifier[0].System, "urn:oid:1.2.3.4/sid/withings/device-association"; got != want {
		t.Errorf("DeviceAssociation identifier.system: got %s, want %s", got, want)
	}
	if a.Device.Reference != "Device/"+dev.ID || a.Meta.Source != o.Meta.Source {
		t.Errorf("DeviceAssociation: device %s (want Device/%s), meta.source %s", a.Device.Reference, dev.ID, a.Meta.Source)
	}
}
