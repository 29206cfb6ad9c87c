package api_test

import (
	"testing"

	"github.com/google/fhir/go/fhirversion"
	"github.com/google/fhir/go/jsonformat"
)

// validR4 runs google/fhir/go's validating R4 unmarshaller (an independent implementation of
// FHIR R4) over what the API served.
func validR4(t *testing.T, what string, body []byte) {
	t.Helper()
	u, err := jsonformat.NewUnmarshaller("UTC", fhirversion.R4)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := u.Unmarshal(body); err != nil {
		t.Errorf("%s is not valid R4: %v\n%s", what, err, body)
	}
}

// TestR4OutputValidates validates every kind of R4 answer the API gives: reads, searchsets with
// includes, the CapabilityStatement and OperationOutcomes.
func TestR4OutputValidates(t *testing.T) {
	e := newEnv(t)
	e.seed()
	for _, path := range []string{
		"/fhir/r4/metadata",
		"/fhir/r4/Patient/p1",
		"/fhir/r4/Device/d1",
		"/fhir/r4/Observation/w01",
		"/fhir/r4/Observation?patient=p1&_count=3&_include=Observation:device&_include=Observation:patient",
		"/fhir/r4/Device?_revinclude=Observation:device&_count=1",
		"/fhir/r4/Observation?_summary=count",
		"/fhir/r4/Observation/nope",
		"/fhir/r4/Observation?date=bad",
	} {
		r := e.get(path)
		validR4(t, path, r.body)
	}
	r := e.get("/fhir/Observation?patient=p2", "Accept", "application/fhir+json; fhirVersion=4.0")
	validR4(t, "R4 by Accept", r.body)
}
