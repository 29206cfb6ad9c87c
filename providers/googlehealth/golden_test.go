package googlehealth

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/fhir/go/fhirversion"
	"github.com/google/fhir/go/jsonformat"
	"github.com/google/go-cmp/cmp"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/providers"
	"github.com/openhealthexchange/ohx/providers/providertest"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/golden/googlehealth")

const goldenPatient = "p1"

// goldenName names a sample's golden file: the kind and the last part of its record id.
func goldenName(s fhir.Sample) string {
	id := s.RecordID
	if s.System == Name+"/daily" {
		parts := strings.Split(id, "/")
		id = parts[1]
	} else {
		id = id[strings.LastIndex(id, "/")+1:]
	}
	id = strings.NewReplacer(":", "", ".", "").Replace(id)
	return string(s.Kind) + "-" + id
}

// jsonTree decodes JSON keeping numbers as written, so that 72.0 and 72 differ.
func jsonTree(tb testing.TB, b []byte) any {
	tb.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		tb.Fatalf("decode: %v", err)
	}
	return v
}

// compareGolden compares v with testdata/golden/googlehealth/<name>.json after decoding both
// sides, rewriting the file first with -update.
func compareGolden(tb testing.TB, name string, v any) {
	tb.Helper()
	got, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		tb.Fatal(err)
	}
	file := filepath.Join(providertest.ModuleRoot(tb), "testdata", "golden", "googlehealth", name+".json")
	if *update {
		if err := os.WriteFile(file, append(got, '\n'), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	want, err := os.ReadFile(file)
	if err != nil {
		tb.Fatalf("%v (run go test ./providers/googlehealth -run Golden -update)", err)
	}
	if diff := cmp.Diff(jsonTree(tb, want), jsonTree(tb, got)); diff != "" {
		tb.Errorf("%s mismatch (-want +got):\n%s", name, diff)
	}
}

// validateR4 runs google/fhir/go's validating R4 unmarshaller over the resource's R4 form.
func validateR4(tb testing.TB, r fhir.Resource, opt fhir.R4Options) {
	tb.Helper()
	b, err := fhir.MarshalR4(r, opt)
	if err != nil {
		tb.Fatalf("MarshalR4: %v", err)
	}
	u, err := jsonformat.NewUnmarshaller("UTC", fhirversion.R4)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := u.Unmarshal(b); err != nil {
		tb.Fatalf("R4 validation: %v\n%s", err, b)
	}
}

// strictRoundTrip encodes r and decodes it with the strict R5 decoder, expecting the same value.
func strictRoundTrip(tb testing.TB, r fhir.Resource, typ string) {
	tb.Helper()
	b, err := json.Marshal(r)
	if err != nil {
		tb.Fatal(err)
	}
	back, err := fhir.Decode(b, typ)
	if err != nil {
		tb.Fatalf("strict decode: %v\n%s", err, b)
	}
	if diff := cmp.Diff(r, back); diff != "" {
		tb.Errorf("decode round trip (-mapped +decoded):\n%s", diff)
	}
}

// TestGoldenObservations: every fixture, through Fetch, becomes samples that MapSample turns into
// Observations that validate, decode strictly, pass the R4 validator and equal their goldens.
// Every kind the adapter reads has at least one golden.
func TestGoldenObservations(t *testing.T) {
	f := newFixture(t, allRoutes(), fixtureOpts{kinds: SupportedKinds()}) // heart-rate is opt-in
	samples, _ := fetchAll(t, f.c, providers.Query{Start: windowStart, End: windowEnd})
	sort.Slice(samples, func(i, j int) bool { return goldenName(samples[i]) < goldenName(samples[j]) })
	seen := map[string]bool{}
	covered := map[fhir.SampleKind]bool{}
	for _, s := range samples {
		name := goldenName(s)
		if seen[name] {
			t.Fatalf("two samples named %s", name)
		}
		seen[name] = true
		covered[s.Kind] = true
		t.Run(name, func(t *testing.T) {
			o, err := fhir.MapSample(s, goldenPatient)
			if err != nil {
				t.Fatalf("MapSample: %v", err)
			}
			if err := o.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			strictRoundTrip(t, o, "Observation")
			validateR4(t, o, fhir.R4Options{})
			compareGolden(t, "observation-"+name, o)
		})
	}
	for _, k := range SupportedKinds() {
		if !covered[k] {
			t.Errorf("kind %s has no golden", k)
		}
	}
	if len(samples) != 20 {
		t.Errorf("%d samples from the fixtures, want 20", len(samples))
	}
}

// TestGoldenDevices: the paired devices become Devices and DeviceAssociations that decode
// strictly (R4 for the Device; DeviceAssociation has no R4 form) and equal their goldens.
func TestGoldenDevices(t *testing.T) {
	f := newFixture(t, allRoutes(), fixtureOpts{})
	ds, err := f.c.Devices(t.Context(), testUser, bearer("a1"))
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 2 {
		t.Fatalf("%d devices, want 2", len(ds))
	}
	firstSeen := time.Date(2026, 3, 9, 16, 30, 0, 0, time.UTC)
	for _, d := range ds {
		name := strings.ToLower(strings.ReplaceAll(d.Model, " ", "-"))
		t.Run(name, func(t *testing.T) {
			dev := fhir.MapDevice(d)
			if err := dev.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			strictRoundTrip(t, dev, "Device")
			validateR4(t, dev, fhir.R4Options{DevicePatient: &fhir.Reference{Reference: "Patient/" + goldenPatient}})
			compareGolden(t, "device-"+name, dev)
			a := fhir.MapAssociation(goldenPatient, d, firstSeen, nil)
			strictRoundTrip(t, a, "DeviceAssociation")
			compareGolden(t, "device-association-"+name, a)
		})
	}
}
