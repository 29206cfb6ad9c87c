package fhir

import "testing"

// TestKindOf: the kind of an Observation is the one whose code set is exactly its codings, so a
// heart rate is never taken for a resting heart rate (which carries 8867-4 too); unknown or
// partial code sets are no kind.
func TestKindOf(t *testing.T) {
	hr := Coding{System: LOINCSystem, Code: "8867-4"}
	rhr := Coding{System: LOINCSystem, Code: "40443-4"}
	for _, tc := range []struct {
		name    string
		codings []Coding
		want    SampleKind
		ok      bool
	}{
		{"weight", []Coding{{System: LOINCSystem, Code: "29463-7", Display: "ignored"}}, KindWeight, true},
		{"heart rate", []Coding{hr}, KindHeartRate, true},
		{"resting heart rate", []Coding{hr, rhr}, KindRestingHeartRate, true},
		{"resting heart rate, other order", []Coding{rhr, hr}, KindRestingHeartRate, true},
		{"only the resting code", []Coding{rhr}, "", false},
		{"wrong system", []Coding{{System: "http://snomed.info/sct", Code: "29463-7"}}, "", false},
		{"component code", []Coding{{System: LOINCSystem, Code: "8480-6"}}, "", false},
		{"none", nil, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := KindOf(tc.codings)
			if got != tc.want || ok != tc.ok {
				t.Errorf("KindOf = %q, %v; want %q, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
	// Every kind's own codes name it.
	for k, spec := range kindSpecs {
		var cs []Coding
		for _, c := range spec.codes {
			cs = append(cs, c.coding())
		}
		if got, ok := KindOf(cs); !ok || got != k {
			t.Errorf("KindOf(codes of %s) = %q, %v", k, got, ok)
		}
	}
}
