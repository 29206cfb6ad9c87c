package withings

import (
	"strings"
	"testing"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/providers/providertest"
)

// TestDevicesMapped: the devices the adapter lists carry the Withings rules the FHIR mapping no
// longer knows, so MapDevice gives a BPM Core its manufacturer and both of its types.
func TestDevicesMapped(t *testing.T) {
	f := newFixture(t, map[string]providertest.Route{"POST /v2/user action=getdevice": file("getdevice.json")}, fixtureOpts{})
	got, err := f.c.Devices(t.Context(), testUser, bearer("a1"))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) == 0 || got[0].Model != "BPM Core" {
		t.Fatalf("devices %+v, want the BPM Core first", got)
	}
	d := fhir.MapDevice(got[0])
	if d.Manufacturer != "Withings" {
		t.Errorf("manufacturer: got %q, want Withings", d.Manufacturer)
	}
	if len(d.DeviceType) != 2 || !d.DeviceType[0].HasCoding(fhir.SNOMEDSystem, "466086009") || !d.DeviceType[1].HasCoding(fhir.SNOMEDSystem, "86184003") {
		t.Errorf("type: got %+v, want the BP monitor then the ECG recorder", d.DeviceType)
	}
	if body := fhir.MapDevice(got[1]); len(body.DeviceType) != 1 || !body.DeviceType[0].HasCoding(fhir.SNOMEDSystem, "469204003") {
		t.Errorf("Body Cardio type: got %+v, want the floor scale only", body.DeviceType)
	}
}

// TestDeviceRules: which Withings models record ECGs, and the kind of each Getdevice type.
func TestDeviceRules(t *testing.T) {
	ecg := []struct {
		modelID, model string
		want           bool
	}{
		{"44", "BPM Core", true},
		{"91", "Move ECG", true},
		{"92", "", true},
		{"93", "ScanWatch", true},
		{"94", "ScanWatch 2", true},
		{"", " ScanWatch Horizon ", true}, // by name when the id is missing
		{"95", "ScanWatch Light", false},
		{"45", "BPM Connect", false},
		{"6", "Body Cardio", false},
		{"", "", false},
	}
	for _, tc := range ecg {
		if got := recordsECG(tc.modelID, tc.model); got != tc.want {
			t.Errorf("recordsECG(%q, %q) = %v, want %v", tc.modelID, tc.model, got, tc.want)
		}
	}
	for typ, want := range map[string]fhir.DeviceKind{
		"Scale":                       fhir.DeviceKindScale,
		"Blood Pressure Monitor":      fhir.DeviceKindBloodPressureMonitor,
		"Activity Tracker":            fhir.DeviceKindActivityTracker,
		"Sleep Monitor":               fhir.DeviceKindSleepMonitor,
		"Smart Connected Thermometer": fhir.DeviceKindThermometer,
		"Gateway":                     "",
		"Babyphone":                   "",
	} {
		if got := deviceKinds[strings.ToLower(typ)]; got != want {
			t.Errorf("kind of %q: got %q, want %q", typ, got, want)
		}
	}
}
