package authserver

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/store"
)

// TestPractitionerFromUsers checks the Practitioner built from the practitioner users that name
// it: username identifiers, display names, and ErrNotFound for any other id.
func TestPractitionerFromUsers(t *testing.T) {
	e := newEnv(t) // doc: Practitioner/d1 without a display name; ann: Patient/p1
	ctx := t.Context()
	for _, u := range []User{
		{Username: "doc2", Name: "Dr Two", Role: RolePractitioner, FHIRUser: "Practitioner/d1"},
		{Username: "other", Name: "Dr Other", Role: RolePractitioner, FHIRUser: "Practitioner/d2"},
		{Username: "role", Name: "Dr Role", Role: RolePractitioner, FHIRUser: "PractitionerRole/d1"},
	} {
		if err := e.s.AddUser(ctx, u, password); err != nil {
			t.Fatal(err)
		}
	}
	active := true
	for _, tc := range []struct {
		id   string
		want *fhir.Practitioner
	}{
		{"d1", &fhir.Practitioner{Base: fhir.Base{ResourceType: "Practitioner", ID: "d1"}, Active: &active,
			Identifier: []fhir.Identifier{{System: fhir.UsernameSystem, Value: "doc"}, {System: fhir.UsernameSystem, Value: "doc2"}},
			Name:       []fhir.HumanName{{Text: "Dr Two"}}}},
		{"d2", &fhir.Practitioner{Base: fhir.Base{ResourceType: "Practitioner", ID: "d2"}, Active: &active,
			Identifier: []fhir.Identifier{{System: fhir.UsernameSystem, Value: "other"}}, Name: []fhir.HumanName{{Text: "Dr Other"}}}},
		{"p1", nil},     // a patient user's id
		{"nobody", nil}, // no user
	} {
		t.Run(tc.id, func(t *testing.T) {
			got, err := e.s.Practitioner(ctx, tc.id)
			if tc.want == nil {
				if !errors.Is(err, store.ErrNotFound) {
					t.Errorf("got %+v, %v; want ErrNotFound", got, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			if err := got.Validate(); err != nil {
				t.Errorf("Validate: %v", err)
			}
		})
	}
}
