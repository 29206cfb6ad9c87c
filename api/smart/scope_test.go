package smart

import (
	"net/url"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseScopes(t *testing.T) {
	ss := ParseScopes("launch/patient openid patient/Observation.read user/*.* system/Device.rs patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|vital-signs patient/Observation.dus patient/observation.rs bogus/X.rs patient/Patient.write")
	var got []string
	for _, s := range ss.Resource {
		got = append(got, s.Context+" "+s.Resource+" "+s.Perms)
	}
	want := []string{"patient Observation rs", "user * cruds", "system Device rs", "patient Observation rs", "patient Patient cud"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("resource scopes (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"launch/patient", "openid"}, ss.Other); diff != "" {
		t.Errorf("other scopes (-want +got):\n%s", diff)
	}
	if q := ss.Resource[3].Query.Get("category"); q != "http://terminology.hl7.org/CodeSystem/observation-category|vital-signs" {
		t.Errorf("v2 constraint: %q", q)
	}
	if got := ss.Resource[0].String(); got != "patient/Observation.read" {
		t.Errorf("v1 scopes echo in v1: %q", got)
	}
}

func TestValidPerms(t *testing.T) {
	for p, want := range map[string]bool{"r": true, "rs": true, "cruds": true, "cud": true, "s": true, "": false, "sr": false, "rr": false, "x": false, "crudsx": false} {
		if got := validPerms(p); got != want {
			t.Errorf("validPerms(%q) = %v, want %v", p, got, want)
		}
	}
}

func TestAllows(t *testing.T) {
	vital := "category=http://terminology.hl7.org/CodeSystem/observation-category|vital-signs"
	for _, tc := range []struct {
		scope       string
		typ         string
		perm        byte
		allowed     bool
		constraints int
		patientOnly bool
	}{
		{"patient/*.rs", "Observation", 'r', true, 0, true},
		{"patient/*.rs", "Observation", 'c', false, 0, false},
		{"patient/Observation.r", "Observation", 's', false, 0, false},
		{"patient/Observation.rs?" + vital, "Observation", 's', true, 1, true},
		{"patient/Observation.rs?" + vital + " patient/Observation.rs", "Observation", 's', true, 0, true},
		{"patient/Observation.rs user/Observation.rs", "Observation", 'r', true, 0, false},
		{"system/Device.rs", "Observation", 'r', false, 0, false},
		{"user/*.read", "Device", 's', true, 0, false},
	} {
		g := ParseScopes(tc.scope).Allows(tc.typ, tc.perm)
		patientOnly := len(g.Contexts) == 1 && g.Contexts[0] == "patient"
		if g.Allowed != tc.allowed || len(g.Constraints) != tc.constraints || patientOnly != tc.patientOnly {
			t.Errorf("%q %s %c: got %+v (patient only %v)", tc.scope, tc.typ, tc.perm, g, patientOnly)
		}
	}
	want := url.Values{"category": {"http://terminology.hl7.org/CodeSystem/observation-category|vital-signs"}}
	if diff := cmp.Diff([]url.Values{want}, ParseScopes("patient/Observation.rs?"+vital).Allows("Observation", 'r').Constraints); diff != "" {
		t.Errorf("constraints (-want +got):\n%s", diff)
	}
}
