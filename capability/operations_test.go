package capability

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/fhir/search"
)

// TestOperationsAndCompartment checks that $everything, $lastn and the Patient compartment are
// advertised, in R5 and in R4.
func TestOperationsAndCompartment(t *testing.T) {
	cs := Build(search.DefaultRegistry(), Config{BaseURL: "https://ohx.test/fhir", DefaultCount: 50, MaxCount: 1000, Started: time.Unix(0, 0)})
	ops := map[string][]string{}
	for _, r := range cs.Rest[0].Resource {
		for _, o := range r.Operation {
			ops[r.Type] = append(ops[r.Type], o.Name+" "+o.Definition)
		}
	}
	want := map[string][]string{
		"Patient":     {"everything http://hl7.org/fhir/OperationDefinition/Patient-everything"},
		"Observation": {"lastn http://hl7.org/fhir/OperationDefinition/Observation-lastn"},
	}
	if diff := cmp.Diff(want, ops); diff != "" {
		t.Errorf("operations (-want +got):\n%s", diff)
	}
	if got := cs.Rest[0].Compartment; !slices.Equal(got, []string{"http://hl7.org/fhir/CompartmentDefinition/patient"}) {
		t.Errorf("rest.compartment: %v", got)
	}
	b, err := json.Marshal(cs)
	if err != nil {
		t.Fatal(err)
	}
	back, err := fhir.Decode(b, "CapabilityStatement")
	if err != nil {
		t.Fatalf("strict decoding: %v", err)
	}
	if diff := cmp.Diff(cs.Rest[0].Compartment, back.(*fhir.CapabilityStatement).Rest[0].Compartment); diff != "" {
		t.Errorf("compartment round trip (-want +got):\n%s", diff)
	}
	r4, err := fhir.MarshalR4(cs, fhir.R4Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{`"name":"lastn"`, `"name":"everything"`, `"compartment":["http://hl7.org/fhir/CompartmentDefinition/patient"]`} {
		if !strings.Contains(string(r4), s) {
			t.Errorf("R4 statement lacks %s", s)
		}
	}
}
