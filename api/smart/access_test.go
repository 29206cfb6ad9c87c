package smart

import (
	"errors"
	"testing"
)

// TestCompartment enumerates scope context × who the token acts for: patient users are always
// confined to themselves, practitioners reach across patients only through user/ scopes, a
// token naming no user gets nothing from user/ scopes.
func TestCompartment(t *testing.T) {
	const denied = "DENIED"
	for _, tc := range []struct {
		scope, patient, fhirUser string
		want                     string // compartment, "" = across patients, or denied
	}{
		// Patient users: their own compartment, whatever was granted.
		{"user/*.rs", "", "Patient/p1", "p1"},
		{"user/Observation.rs", "", "Patient/p1", "p1"},
		{"patient/*.rs user/*.rs", "p1", "Patient/p1", "p1"},
		{"user/*.rs", "p1", "Patient/p1", "p1"},
		{"user/*.rs", "p2", "Patient/p1", denied}, // patient claim for someone else
		{"patient/*.rs", "p2", "Patient/p1", denied},
		{"system/*.rs", "", "Patient/p1", "p1"}, // an external issuer's odd token stays confined
		{"user/*.rs", "", "https://ehr.example/fhir/Patient/p1", "p1"},
		// Practitioners.
		{"user/*.rs", "", "Practitioner/d1", ""},
		{"user/*.rs", "p2", "Practitioner/d1", ""}, // EHR launch context does not confine user/
		{"user/*.rs", "", "PractitionerRole/r1", ""},
		{"user/*.rs", "", "https://ehr.example/fhir/Practitioner/d1", ""},
		{"patient/*.rs", "p2", "Practitioner/d1", "p2"},
		{"patient/*.rs", "", "Practitioner/d1", denied},
		// No user, or a user whose reach is not modelled: user/ grants nothing.
		{"user/*.rs", "", "", denied},
		{"user/*.rs", "p1", "", denied},
		{"user/*.rs", "", "RelatedPerson/r1", denied},
		{"user/*.rs", "", "Person/x", denied},
		{"user/*.rs", "", "Patient/", denied},            // malformed
		{"user/*.rs", "", "Practitioner/a b", denied},    // malformed id
		{"user/*.rs", "", "practitioner/d1", denied},     // not a type name
		{"user/*.rs", "", "https://ehr.example", denied}, // no path
		{"patient/*.rs user/*.rs", "p1", "", "p1"},
		// Backend Services.
		{"system/*.rs", "", "", ""},
		{"system/*.rs patient/*.rs", "p1", "", ""},
		{"patient/*.rs", "", "", denied},
	} {
		c := &Claims{Scope: tc.scope, Patient: tc.patient, FHIRUser: tc.fhirUser}
		got, err := c.Compartment(ParseScopes(tc.scope).Allows("Observation", 'r'))
		if err != nil {
			if !errors.Is(err, ErrNoAccess) {
				t.Errorf("%q patient=%q fhirUser=%q: error %v does not wrap ErrNoAccess", tc.scope, tc.patient, tc.fhirUser, err)
			}
			got = denied
		}
		if got != tc.want {
			t.Errorf("%q patient=%q fhirUser=%q: compartment %q, want %q", tc.scope, tc.patient, tc.fhirUser, got, tc.want)
		}
	}
	if _, err := (&Claims{FHIRUser: "Practitioner/d1"}).Compartment(Grant{}); !errors.Is(err, ErrNoAccess) {
		t.Errorf("a grant that does not allow must not be confined: %v", err)
	}
}
