package fitbit

import (
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/providers/providertest"
)

// TestDevicesD2 is vector D2: the Device golden and the DeviceAssociation golden. A Charge 6 is
// ECG-capable (it has the ECG app), so the Device has the ECG recorder as its second type.
func TestDevicesD2(t *testing.T) {
	f := newFixture(t, map[string]providertest.Route{
		"GET /1/user/-/profile.json": file("profile.json"),
		"GET /1/user/-/devices.json": file("devices_d2.json"),
	}, opts{})
	ds, err := f.c.Devices(t.Context(), testUser, bearer("a1"))
	if err != nil {
		t.Fatal(err)
	}
	want := []fhir.DeviceInfo{{Provider: "fitbit", UserID: "ABC123", ID: "816713257", Type: "TRACKER", Kind: fhir.DeviceKindActivityTracker, Model: "Charge 6",
		Manufacturer: "Fitbit", Battery: "100", LastSync: time.Date(2024, 1, 15, 12, 0, 58, 0, berlin), Timezone: "Europe/Berlin", ECG: true}}
	if diff := cmp.Diff(want, ds); diff != "" {
		t.Fatalf("devices (-want +got):\n%s", diff)
	}
	d := fhir.MapDevice(ds[0])
	checkResource(t, d, "Device", fhir.R4Options{DevicePatient: &fhir.Reference{Reference: "Patient/p1"}})
	if len(d.DeviceType) != 2 || d.DeviceType[1].Text != "ECG recorder" {
		t.Fatalf("types %+v, want the tracker type and the ECG recorder", d.DeviceType)
	}
	b, _ := json.Marshal(d)
	compareGolden(t, filepath.Join("device", "fitbit-d2-charge-6.json"), b)

	a := fhir.MapAssociation(testPatient, ds[0], time.Date(2024, 1, 1, 8, 0, 0, 0, mustZone("Europe/Paris")), nil)
	b, _ = json.Marshal(a)
	compareGolden(t, filepath.Join("device-association", "fitbit-d2-attached.json"), b)
}

// TestDevicesGoldens: a Sense 2 (ECG, battery word only) and an Aria Air scale (battery %).
func TestDevicesGoldens(t *testing.T) {
	f := newFixture(t, map[string]providertest.Route{
		"GET /1/user/-/profile.json": file("profile.json"),
		"GET /1/user/-/devices.json": file("devices_goldens.json"),
	}, opts{})
	ds, err := f.c.Devices(t.Context(), testUser, bearer("a1"))
	if err != nil || len(ds) != 2 {
		t.Fatalf("%v %v", ds, err)
	}
	for i, name := range []string{"fitbit-sense-ecg", "fitbit-scale"} {
		d := fhir.MapDevice(ds[i])
		b := checkResource(t, d, "Device", fhir.R4Options{})
		compareGolden(t, filepath.Join("device", name+".json"), b)
	}
	// Devices reads fresh; Fetch then uses the cached list.
	if _, err := f.c.readDevices(t.Context(), testUser, bearer("a1"), false); err != nil {
		t.Fatal(err)
	}
	if n := f.srv.Hits("GET /1/user/-/devices.json"); n != 1 {
		t.Errorf("%d devices requests, want 1", n)
	}
}
