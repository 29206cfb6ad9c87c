package api_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/openhealthexchange/ohx/fhir"
)

// TestElementsChoiceTypes checks that _elements names choice elements without their type suffix
// (https://hl7.org/fhir/R5/search.html#_elements): value keeps valueQuantity, effective keeps
// effectiveDateTime, while mandatory elements and the SUBSETTED tag stay.
func TestElementsChoiceTypes(t *testing.T) {
	e := newEnv(t)
	e.seed()
	multiple := 2
	if _, err := e.store.Create(t.Context(), &fhir.Patient{Base: fhir.Base{ResourceType: "Patient", ID: "p3"},
		DeceasedDateTime: "2025-03-01", MultipleBirthInteger: &multiple, Gender: "female"}); err != nil {
		t.Fatal(err)
	}
	always := []string{"resourceType", "id", "meta"}
	for _, tc := range []struct {
		path string
		want []string // the members kept besides resourceType, id and meta
	}{
		{"/fhir/Observation/w01?_elements=effective,value", []string{"status", "code", "effectiveDateTime", "valueQuantity"}},
		{"/fhir/Observation/w01?_elements=value", []string{"status", "code", "valueQuantity"}},
		{"/fhir/Observation/w01?_elements=effective", []string{"status", "code", "effectiveDateTime"}},
		{"/fhir/Observation/w01?_elements=valueQuantity", []string{"status", "code", "valueQuantity"}}, // the typed name too
		{"/fhir/Observation/w01?_elements=val,effectiveDate", []string{"status", "code"}},              // no prefixes of names
		{"/fhir/Observation/w01?_elements=subject,value", []string{"status", "code", "subject", "valueQuantity"}},
		{"/fhir/r4/Observation/w01?_elements=effective,value", []string{"status", "code", "effectiveDateTime", "valueQuantity"}},
		{"/fhir/Observation?_id=w01&_elements=effective,value", []string{"status", "code", "effectiveDateTime", "valueQuantity"}},
		{"/fhir/Patient/p3?_elements=deceased", []string{"deceasedDateTime"}},
		{"/fhir/Patient/p3?_elements=multipleBirth,gender", []string{"gender", "multipleBirthInteger"}},
		// Device has no choice elements: a name is kept as given
		{"/fhir/Device/d1?_elements=name", []string{"status", "name"}},
	} {
		t.Run(tc.path, func(t *testing.T) {
			r := e.get(tc.path)
			if r.status != 200 {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
			body := r.body
			if strings.Contains(tc.path, "?_id=") {
				b := r.bundle(t)
				if len(b.Entry) != 1 {
					t.Fatalf("%d entries, want 1", len(b.Entry))
				}
				body = b.Entry[0].Resource
			}
			if strings.HasPrefix(tc.path, "/fhir/r4/") {
				validR4(t, tc.path, body)
			}
			var m map[string]json.RawMessage
			if err := json.Unmarshal(body, &m); err != nil {
				t.Fatal(err)
			}
			var got []string
			for k := range m {
				if !slices.Contains(always, k) {
					got = append(got, k)
				}
			}
			if want := sortd(slices.Clone(tc.want)); !slices.Equal(sortd(got), want) {
				t.Errorf("members %v, want %v", got, want)
			}
			if !strings.Contains(string(m["meta"]), "SUBSETTED") {
				t.Errorf("meta %s lacks the SUBSETTED tag", m["meta"])
			}
		})
	}
}
