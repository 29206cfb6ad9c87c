package fhir

import (
	"encoding/json"
	"errors"
	"testing"
)

// FuzzDecode feeds arbitrary bodies to the strict decoder: it must never panic, every failure
// must be a 400 *Error (what clients see), and every accepted resource must survive a round trip.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"resourceType":"Patient","name":[{"family":"Doe","given":["J"]}],"birthDate":"1980-05"}`,
		`{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"value":53.0,"unit":"kg"}}`,
		`{"resourceType":"DeviceAssociation","device":{"reference":"Device/d"},"status":{"text":"x"}}`,
		`{"resourceType":"Observation","Status":"final"}`,
		`{"resourceType":"Patient","gender":null}`,
		`[1,2]`, `{`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := Decode(body, "")
		if err != nil {
			var fe *Error
			if !errors.As(err, &fe) || fe.Status != 400 && fe.Status != 422 {
				t.Fatalf("decode error is not a client error: %v", err)
			}
			return
		}
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatalf("accepted resource does not encode: %v", err)
		}
		if _, err := Decode(b, r.Type()); err != nil {
			t.Fatalf("accepted resource does not round-trip: %v\n%s", err, b)
		}
	})
}
