package authz_test

import (
	"context"
	"errors"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp"

	"github.com/openhealthexchange/ohx/api/authz"
	"github.com/openhealthexchange/ohx/api/smart"
	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/fhir/search"
	"github.com/openhealthexchange/ohx/store"
)

// fakeStore answers the DeviceAssociation searches of DevicesOf with fixed associations.
type fakeStore struct {
	assoc []store.Entry // DeviceAssociations
}

func (f fakeStore) Search(_ context.Context, q *search.Query) (*store.Result, error) {
	res := &store.Result{Total: -1}
	for _, e := range f.assoc {
		if search.Matches(q, e.ID, 0, mustIndex(e)) {
			res.Matches = append(res.Matches, e)
		}
	}
	return res, nil
}

func mustIndex(e store.Entry) search.Index {
	r, err := fhir.Decode(e.JSON, e.Type)
	if err != nil {
		panic(err)
	}
	idx, err := search.Extract(r)
	if err != nil {
		panic(err)
	}
	return idx
}

func association(id, device, patient string) store.Entry {
	return store.Entry{Type: "DeviceAssociation", ID: id, JSON: []byte(`{"resourceType":"DeviceAssociation","id":"` + id +
		`","device":{"reference":"Device/` + device + `"},"status":{"coding":[{"system":"` + fhir.DeviceAssociationStatusSystem +
		`","code":"attached"}]},"subject":{"reference":"Patient/` + patient + `"}}`)}
}

func observation(id, patient, code string) store.Entry {
	return store.Entry{Type: "Observation", ID: id, LastUpdated: time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC),
		JSON: []byte(`{"resourceType":"Observation","id":"` + id + `","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"` +
			code + `"}]},"subject":{"reference":"Patient/` + patient + `"},"effectiveDateTime":"2026-01-02T00:00:00Z"}`)}
}

func principal(scope, patient, user string) *authz.Principal {
	return authz.NewPrincipal(&smart.Claims{RegisteredClaims: jwt.RegisteredClaims{Subject: "s"}, ClientID: "app", Scope: scope, Patient: patient, FHIRUser: user})
}

func newPolicy() *authz.Policy {
	return authz.New(search.DefaultRegistry(), fakeStore{assoc: []store.Entry{association("a1", "d1", "p1"), association("a2", "d2", "p2")}})
}

func TestDecide(t *testing.T) {
	vitals := url.Values{"category": {"http://terminology.hl7.org/CodeSystem/observation-category|vital-signs"}}
	for _, tc := range []struct {
		name     string
		p        *authz.Principal
		typ      string
		perm     byte
		want     authz.Access
		wantDeny bool
	}{
		{name: "auth off", p: nil, typ: "Observation", perm: 'r'},
		{name: "patient scope, launch patient", p: principal("patient/Observation.rs", "p1", ""), typ: "Observation", perm: 's', want: authz.Access{Patient: "p1"}},
		{name: "patient scope without patient", p: principal("patient/Observation.rs", "", ""), typ: "Observation", perm: 's', wantDeny: true},
		{name: "permission not granted", p: principal("patient/Observation.rs", "p1", ""), typ: "Observation", perm: 'c', wantDeny: true},
		{name: "type not granted", p: principal("patient/Observation.rs", "p1", ""), typ: "Device", perm: 'r', wantDeny: true},
		{name: "system scope", p: principal("system/*.rs", "", ""), typ: "Device", perm: 'r'},
		{name: "practitioner user", p: principal("user/Observation.rs", "", "Practitioner/7"), typ: "Observation", perm: 'r'},
		{name: "patient user confined whatever the scope", p: principal("system/Observation.rs", "", "Patient/p2"), typ: "Observation", perm: 'r', want: authz.Access{Patient: "p2"}},
		{name: "patient claim not the patient user", p: principal("user/Observation.rs", "p1", "Patient/p2"), typ: "Observation", perm: 'r', wantDeny: true},
		{name: "user scope without user", p: principal("user/Observation.rs", "", ""), typ: "Observation", perm: 'r', wantDeny: true},
		{name: "constrained scope", p: principal("patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|vital-signs", "p1", ""),
			typ: "Observation", perm: 's', want: authz.Access{Patient: "p1", Constraints: []url.Values{vitals}}},
		{name: "an unconstrained scope lifts constraints", p: principal("patient/Observation.rs?category=x patient/Observation.rs", "p1", ""),
			typ: "Observation", perm: 's', want: authz.Access{Patient: "p1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.p.Decide(tc.typ, tc.perm)
			if tc.wantDeny {
				var de *authz.DeniedError
				if !errors.As(err, &de) || de.What == "" {
					t.Fatalf("got %+v, %v; want a *DeniedError", got, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !got.Equal(tc.want) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestVisible(t *testing.T) {
	pol := newPolicy()
	ctx := t.Context()
	p1 := authz.Access{Patient: "p1"}
	vitals := authz.Access{Constraints: []url.Values{{"code": {"http://loinc.org|29463-7"}}}}
	for _, tc := range []struct {
		name string
		a    authz.Access
		e    store.Entry
		want bool
	}{
		{"own patient", p1, store.Entry{Type: "Patient", ID: "p1"}, true},
		{"other patient", p1, store.Entry{Type: "Patient", ID: "p2"}, false},
		{"own observation", p1, observation("o1", "p1", "29463-7"), true},
		{"other's observation", p1, observation("o2", "p2", "29463-7"), false},
		{"associated device", p1, store.Entry{Type: "Device", ID: "d1"}, true},
		{"other's device", p1, store.Entry{Type: "Device", ID: "d2"}, false},
		{"own association", p1, association("a1", "d1", "p1"), true},
		{"unconfined", authz.Access{}, observation("o2", "p2", "29463-7"), true},
		{"constraint matches", vitals, observation("o1", "p1", "29463-7"), true},
		{"constraint does not match", vitals, observation("o3", "p1", "8302-2"), false},
		{"unparsable constraint grants nothing", authz.Access{Constraints: []url.Values{{"nope": {"1"}}}}, observation("o1", "p1", "29463-7"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := pol.Visible(ctx, tc.a, tc.e, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestConfine(t *testing.T) {
	pol := newPolicy()
	reg := search.DefaultRegistry()
	parse := func(typ string) *search.Query {
		q, _, err := reg.Parse(typ, nil, search.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return q
	}
	t.Run("patient compartment of Observation", func(t *testing.T) {
		q := parse("Observation")
		post, ids, err := pol.Confine(t.Context(), q, authz.Access{Patient: "p1"})
		if err != nil || post || ids != nil {
			t.Fatalf("got %v %v %v", post, ids, err)
		}
		if len(q.Clauses) != 1 || q.Clauses[0].Param.Name != "patient" || q.Clauses[0].Values[0].RefID != "p1" {
			t.Errorf("got clauses %+v, want patient=p1", q.Clauses)
		}
	})
	t.Run("devices through associations", func(t *testing.T) {
		q := parse("Device")
		_, ids, err := pol.Confine(t.Context(), q, authz.Access{Patient: "p1"})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{"d1"}, ids); diff != "" {
			t.Errorf("devices (-want +got):\n%s", diff)
		}
		if len(q.Clauses) != 1 || q.Clauses[0].Param.Name != "_id" || q.Clauses[0].Values[0].Code != "d1" {
			t.Errorf("got clauses %+v, want _id=d1", q.Clauses)
		}
	})
	t.Run("one unparsable constraint matches nothing", func(t *testing.T) {
		q := parse("Observation")
		post, _, err := pol.Confine(t.Context(), q, authz.Access{Constraints: []url.Values{{"nope": {"1"}}}})
		if err != nil || post {
			t.Fatalf("got %v %v", post, err)
		}
		if len(q.Clauses) != 1 || q.Clauses[0].Values[0].Code != "" {
			t.Errorf("got clauses %+v, want the empty _id", q.Clauses)
		}
	})
	t.Run("several constraints on one parameter merge", func(t *testing.T) {
		q := parse("Observation")
		post, _, err := pol.Confine(t.Context(), q, authz.Access{Constraints: []url.Values{{"code": {"http://loinc.org|1"}}, {"code": {"http://loinc.org|2"}}}})
		if err != nil || post {
			t.Fatalf("got %v %v", post, err)
		}
		if len(q.Clauses) != 1 || len(q.Clauses[0].Values) != 2 {
			t.Errorf("got clauses %+v, want one code clause of two values", q.Clauses)
		}
	})
	t.Run("several constraints on different parameters filter afterwards", func(t *testing.T) {
		q := parse("Observation")
		post, _, err := pol.Confine(t.Context(), q, authz.Access{Constraints: []url.Values{{"code": {"http://loinc.org|1"}}, {"status": {"final"}}}})
		if err != nil || !post {
			t.Fatalf("got %v %v, want a post-filter", post, err)
		}
	})
}

func TestConfineChains(t *testing.T) {
	pol := newPolicy()
	reg := search.DefaultRegistry()
	chained := func(t *testing.T, name, value string) *search.Query {
		q, _, err := reg.Parse("Observation", []search.NameValue{{Name: name, Value: value}}, search.Options{Strict: true})
		if err != nil {
			t.Fatal(err)
		}
		return q
	}
	t.Run("patient-confined chain sees only its patient", func(t *testing.T) {
		q := chained(t, "patient.identifier", "urn:mrn|42")
		if err := pol.ConfineChains(t.Context(), principal("patient/Observation.rs patient/Patient.rs", "p1", ""), q); err != nil {
			t.Fatal(err)
		}
		last := q.Clauses[len(q.Clauses)-1]
		if len(q.Clauses) != 2 || len(last.Values) != 1 || last.Values[0].RefID != "p1" {
			t.Errorf("got clauses %+v, want the chain restricted to Patient/p1", q.Clauses)
		}
	})
	t.Run("chain to a type not searchable is denied", func(t *testing.T) {
		q := chained(t, "patient.identifier", "urn:mrn|42")
		if err := pol.ConfineChains(t.Context(), principal("patient/Observation.rs", "p1", ""), q); !authz.IsDenied(err) {
			t.Errorf("got %v, want a denial", err)
		}
	})
	t.Run("chain through a constrained scope is denied", func(t *testing.T) {
		q := chained(t, "patient.identifier", "urn:mrn|42")
		if err := pol.ConfineChains(t.Context(), principal("system/Observation.rs system/Patient.rs?identifier=urn:mrn|", "", ""), q); !authz.IsDenied(err) {
			t.Errorf("got %v, want a denial", err)
		}
	})
	t.Run("unconfined chain is unchanged", func(t *testing.T) {
		q := chained(t, "patient.identifier", "urn:mrn|42")
		if err := pol.ConfineChains(t.Context(), principal("system/*.rs", "", ""), q); err != nil || len(q.Clauses) != 1 {
			t.Errorf("got %v, %d clauses; want the chain alone", err, len(q.Clauses))
		}
	})
}

func TestFilterIncluded(t *testing.T) {
	pol := newPolicy()
	res := &store.Result{Included: []store.Entry{
		{Type: "Patient", ID: "p1"}, {Type: "Patient", ID: "p2"}, {Type: "Device", ID: "d1"}, {Type: "Device", ID: "d2"},
	}}
	// Devices are not readable at all: left out silently; the other patient is outside the compartment.
	if err := pol.FilterIncluded(t.Context(), principal("patient/Observation.rs patient/Patient.r", "p1", ""), res, nil); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range res.Included {
		got = append(got, e.Type+"/"+e.ID)
	}
	if !slices.Equal(got, []string{"Patient/p1"}) {
		t.Errorf("got %v, want [Patient/p1]", got)
	}
}

func TestBinding(t *testing.T) {
	a := principal("patient/Observation.rs", "p1", "")
	b := principal("patient/Observation.rs", "p2", "")
	c := principal("patient/Observation.rs", "p1", "")
	if a.Binding() == b.Binding() {
		t.Error("two patients' tokens share a binding")
	}
	if a.Binding() != c.Binding() {
		t.Error("the same claims give different bindings")
	}
	if (*authz.Principal)(nil).Binding() != "" {
		t.Error("auth off binds to a non-empty string")
	}
}
