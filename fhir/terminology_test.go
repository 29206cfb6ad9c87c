package fhir

import (
	"strings"
	"testing"
)

// TestIdentifierSystems: every identifier system of a provider starts with its
// ProviderIdentifierPrefix, and a prefix never covers another provider's systems.
func TestIdentifierSystems(t *testing.T) {
	if got, want := ProviderIdentifierPrefix("acme"), "https://ohx.example/sid/acme/"; got != want {
		t.Fatalf("ProviderIdentifierPrefix: got %s, want %s", got, want)
	}
	tests := []struct{ name, got, want string }{
		{"sample", IdentifierSystem("acme/measure"), "https://ohx.example/sid/acme/measure"},
		{"device", DeviceSystem("acme"), "https://ohx.example/sid/acme/device"},
		{"association", DeviceAssociationSystem("acme"), "https://ohx.example/sid/acme/device-association"},
	}
	for _, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("%s: got %s, want %s", tc.name, tc.got, tc.want)
		}
		if !strings.HasPrefix(tc.got, ProviderIdentifierPrefix("acme")) {
			t.Errorf("%s: %s does not start with the provider prefix", tc.name, tc.got)
		}
		if strings.HasPrefix(tc.got, ProviderIdentifierPrefix("acm")) {
			t.Errorf("%s: %s starts with the prefix of provider acm", tc.name, tc.got)
		}
	}
	// The systems MapSample writes are under the prefix of the sample's provider.
	o, err := MapSample(w1, patient)
	if err != nil {
		t.Fatal(err)
	}
	if sys := o.Identifier[0].System; !strings.HasPrefix(sys, ProviderIdentifierPrefix(w1.Provider)) {
		t.Errorf("Observation identifier %s is not under %s", sys, ProviderIdentifierPrefix(w1.Provider))
	}
	if strings.HasPrefix(DeviceSystem("acme-labs"), ProviderIdentifierPrefix("acme")) {
		t.Errorf("the prefix of acme covers acme-labs")
	}
}
