package capability

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/fhir/go/fhirversion"
	"github.com/google/fhir/go/jsonformat"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/fhir/search"
)

// TestChainsDocumented: every chainable reference parameter states its chains in its
// searchParam documentation (R5 and R4 have no element for them), other parameters state none,
// the _include values stay advertised, and the statement stays valid R5 (strict decoding) and
// R4 (google/fhir/go's validating unmarshaller).
func TestChainsDocumented(t *testing.T) {
	reg := search.DefaultRegistry()
	cs := Build(reg, Config{BaseURL: "https://ohx.test/fhir", Version: "1", DefaultCount: 50, MaxCount: 1000, Started: time.Unix(0, 0)})
	want := map[string][]string{
		"Observation.patient":       {"chains: patient.identifier;"},
		"Observation.subject":       {"subject:Patient.identifier", "subject:Device.identifier", "subject.identifier (any of Patient, Device)"},
		"Observation.device":        {"chains: device.identifier;"},
		"DeviceAssociation.patient": {"chains: patient.identifier;"},
		"DeviceAssociation.subject": {"subject:Patient.identifier", "subject:Device.identifier", "subject.identifier (any of Patient, Device)"},
		"DeviceAssociation.device":  {"chains: device.identifier;"},
	}
	seen := 0
	for _, r := range cs.Rest[0].Resource {
		for _, p := range r.SearchParam {
			key := r.Type + "." + p.Name
			frags, chainable := want[key]
			if !chainable {
				if strings.Contains(p.Documentation, "chains:") {
					t.Errorf("%s documents chains: %q", key, p.Documentation)
				}
				continue
			}
			seen++
			for _, f := range frags {
				if !strings.Contains(p.Documentation, f) {
					t.Errorf("%s documentation %q lacks %q", key, p.Documentation, f)
				}
			}
		}
		if r.Type == "Observation" {
			for _, inc := range []string{"Observation:patient", "Observation:subject", "Observation:device"} {
				if !slices.Contains(r.SearchInclude, inc) {
					t.Errorf("Observation searchInclude %v lacks %s", r.SearchInclude, inc)
				}
			}
		}
	}
	if seen != len(want) {
		t.Errorf("%d chainable parameters published, want %d", seen, len(want))
	}
	if !strings.Contains(cs.Rest[0].Documentation, "patient.identifier") {
		t.Errorf("rest documentation does not describe chained search: %q", cs.Rest[0].Documentation)
	}

	b, err := json.Marshal(cs)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fhir.Decode(b, "CapabilityStatement"); err != nil {
		t.Fatalf("R5 statement fails strict decoding: %v", err)
	}
	r4, err := fhir.MarshalR4(cs, fhir.R4Options{})
	if err != nil {
		t.Fatal(err)
	}
	u, err := jsonformat.NewUnmarshaller("UTC", fhirversion.R4)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := u.Unmarshal(r4); err != nil {
		t.Errorf("R4 statement is not valid R4: %v", err)
	}
}
