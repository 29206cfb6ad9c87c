package api_test

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/store"
)

// TestChainedSearch: an EHR finds Observations and DeviceAssociations by the MRN and device
// identifiers it knows (seedCompartments: Patient pN has urn:mrn|pN, Device dev-pN urn:dev|pN).
func TestChainedSearch(t *testing.T) {
	e := newAuthEnv(t)
	sys := e.mint("system/*.rs", "")
	for _, tc := range []struct {
		query string
		want  []string
	}{
		{"/fhir/Observation?patient.identifier=urn:mrn|p2", []string{"Observation/vs-p2"}},
		{"/fhir/Observation?patient.identifier=urn:mrn|p1", []string{"Observation/lab-p1", "Observation/vs-p1"}},
		{"/fhir/Observation?subject:Patient.identifier=urn:mrn|p1,urn:mrn|p2&code=http://loinc.org|29463-7", []string{"Observation/vs-p1", "Observation/vs-p2"}},
		{"/fhir/Observation?patient.identifier=urn:mrn|", []string{"Observation/lab-p1", "Observation/vs-p1", "Observation/vs-p2"}},
		{"/fhir/Observation?device.identifier=urn:dev|p1", []string{"Observation/vs-p1"}},
		{"/fhir/DeviceAssociation?patient.identifier=urn:mrn|p2", []string{"DeviceAssociation/da-p2"}},
		{"/fhir/DeviceAssociation?device.identifier=urn:dev|p1", []string{"DeviceAssociation/da-p1"}},
		{"/fhir/Observation?patient.identifier=urn:mrn|nobody", nil}, // nothing, not everything
		{"/fhir/Observation?device.identifier=urn:dev|orphan", nil},
	} {
		r := e.as(sys, tc.query)
		if r.status != http.StatusOK {
			t.Errorf("%s: %d %s", tc.query, r.status, r.body)
			continue
		}
		b := r.bundle(t)
		if got := sortd(entryIDs(t, b, "match")); !slices.Equal(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.query, got, tc.want)
		}
		_, raw, _ := strings.Cut(tc.query, "?")
		name, _, _ := strings.Cut(raw, "=")
		if self := linkOf(b, "self"); !strings.Contains(self, url.QueryEscape(name)+"=") {
			t.Errorf("%s: self link %s does not list the chain", tc.query, self)
		}
	}
	// R4 clients chain the same way.
	r := e.get("/fhir/r4/Observation?patient.identifier=urn:mrn|p2", "Authorization", "Bearer "+sys)
	if got := entryIDs(t, r.bundle(t), "match"); !slices.Equal(got, []string{"Observation/vs-p2"}) {
		t.Errorf("R4 search by MRN: %v", got)
	}
}

// TestChainedSearchCompartment: a chain can only narrow what the token may see. A token
// confined to p1 searching by p2's MRN (or p2's device) gets nothing; a chain needs search
// access to the target type.
func TestChainedSearchCompartment(t *testing.T) {
	e := newAuthEnv(t)
	p1 := e.mint("patient/*.rs", "p1")
	for _, tc := range []struct {
		query string
		want  []string
	}{
		{"/fhir/Observation?patient.identifier=urn:mrn|p2", nil},
		{"/fhir/Observation?subject:Patient.identifier=urn:mrn|p2", nil},
		{"/fhir/Observation?patient.identifier=urn:mrn|p2&_include=Observation:patient", nil},
		{"/fhir/Observation?patient.identifier=urn:mrn|p1,urn:mrn|p2", []string{"Observation/lab-p1", "Observation/vs-p1"}},
		{"/fhir/Observation?device.identifier=urn:dev|p2", nil},
		{"/fhir/Observation?device.identifier=urn:dev|p1", []string{"Observation/vs-p1"}},
		{"/fhir/Observation?subject.identifier=urn:mrn|p2", nil},
		{"/fhir/DeviceAssociation?patient.identifier=urn:mrn|p2", nil},
		{"/fhir/DeviceAssociation?device.identifier=urn:dev|p2", nil},
		{"/fhir/DeviceAssociation?device.identifier=urn:dev|p1,urn:dev|p2", []string{"DeviceAssociation/da-p1"}},
	} {
		r := e.as(p1, tc.query)
		if r.status != http.StatusOK {
			t.Errorf("%s: %d %s", tc.query, r.status, r.body)
			continue
		}
		if got := sortd(allIDs(t, r.bundle(t))); !slices.Equal(got, tc.want) {
			t.Errorf("p1 token, %s: %v, want %v", tc.query, got, tc.want)
		}
	}

	// An Observation of p1 measured with a device p1 has no association with: the chain must not
	// tell p1 that device's identifier, although p1 may see the Observation.
	if _, err := e.store.Upsert(t.Context(), []fhir.Resource{obs("odd-p1", "p1", "dev-orphan", "29463-7", time.Date(2026, 1, 4, 0, 0, 0, 0, time.UTC), "71")}); err != nil {
		t.Fatal(err)
	}
	for query, want := range map[string][]string{
		"/fhir/Observation?device.identifier=urn:dev|orphan":            nil,
		"/fhir/Observation?device=dev-orphan":                           {"Observation/odd-p1"}, // the reference itself is p1's to see
		"/fhir/Patient/p1/Observation?device.identifier=urn:dev|orphan": nil,
		"/fhir/Patient/p1/Observation?device.identifier=urn:dev|p1":     {"Observation/vs-p1"},
	} {
		if got := sortd(allIDs(t, e.as(p1, query).bundle(t))); !slices.Equal(got, want) {
			t.Errorf("p1 token, %s: %v, want %v", query, got, want)
		}
	}
	if got := entryIDs(t, e.as(e.mint("system/*.rs", ""), "/fhir/Observation?device.identifier=urn:dev|orphan").bundle(t), "match"); !slices.Equal(got, []string{"Observation/odd-p1"}) {
		t.Errorf("system token, device.identifier=urn:dev|orphan: %v", got)
	}

	// The chain is a search of its target type: without search access to it, 403.
	for _, tc := range []struct{ scope, patient, query string }{
		{"patient/Observation.rs", "p1", "/fhir/Observation?patient.identifier=urn:mrn|p1"},
		{"system/Observation.rs", "", "/fhir/Observation?patient.identifier=urn:mrn|p1"},
		{"system/Observation.rs system/Patient.rs", "", "/fhir/Observation?device.identifier=urn:dev|p1"},
		{"system/Observation.rs", "", "/fhir/Patient/p1/Observation?patient.identifier=urn:mrn|p1"},
		{"system/Observation.rs system/Patient.rs", "", "/fhir/Observation?subject.identifier=p1"}, // reaches Devices too
		{"system/Observation.rs system/Patient.r", "", "/fhir/Observation?patient.identifier=urn:mrn|p1"},
		{"patient/Observation.rs patient/Device.rs?status=active", "p1", "/fhir/Observation?device.identifier=urn:dev|p1"},
		{"system/Observation.rs patient/Patient.rs system/Device.rs", "p1", "/fhir/Observation?subject.identifier=p1"},
	} {
		if r := e.as(e.mint(tc.scope, tc.patient), tc.query); r.status != http.StatusForbidden {
			t.Errorf("%q: %s: %d, want 403", tc.scope, tc.query, r.status)
		}
	}
	// Typed, the same tokens may chain to what they may search.
	for _, tc := range []struct{ scope, patient, query string }{
		{"system/Observation.rs system/Patient.rs", "", "/fhir/Observation?subject:Patient.identifier=urn:mrn|p1"},
		{"system/Observation.rs patient/Patient.rs system/Device.rs", "p1", "/fhir/Observation?subject:Patient.identifier=urn:mrn|p1"},
	} {
		r := e.as(e.mint(tc.scope, tc.patient), tc.query)
		if got := sortd(entryIDs(t, r.bundle(t), "match")); !slices.Equal(got, []string{"Observation/lab-p1", "Observation/odd-p1", "Observation/vs-p1"}) {
			t.Errorf("%q: %s: %v", tc.scope, tc.query, got)
		}
	}
}

// TestChainedSearchHandling: unsupported chains are a 400 under Prefer: handling=strict and
// ignored otherwise (left out of the self link), as unknown parameters are.
func TestChainedSearchHandling(t *testing.T) {
	e := newAuthEnv(t)
	sys := e.mint("system/*.rs", "")
	for _, q := range []string{
		"patient.name=x", "patient.organization.name=x", "patient.identifier:not=urn:mrn|p1",
		"code.identifier=x", "subject:Group.identifier=x", "performer.identifier=x",
	} {
		r := e.get("/fhir/Observation?"+q, "Authorization", "Bearer "+sys, "Prefer", "handling=strict")
		if r.status != http.StatusBadRequest || r.outcome(t).Issue[0].Code != fhir.CodeNotSupported {
			t.Errorf("strict %s: %d %s, want 400 %s", q, r.status, r.body, fhir.CodeNotSupported)
		}
		r = e.as(sys, "/fhir/Observation?"+q)
		b := r.bundle(t)
		if got := entryIDs(t, b, "match"); len(got) != 3 {
			t.Errorf("lenient %s: %v, want every Observation", q, got)
		}
		if name, _, _ := strings.Cut(q, "="); strings.Contains(linkOf(b, "self"), url.QueryEscape(name)) {
			t.Errorf("lenient %s: the self link %s lists the ignored chain", q, linkOf(b, "self"))
		}
	}
	if r := e.get("/fhir/Observation?patient.identifier=a|b|c", "Authorization", "Bearer "+sys); r.status != http.StatusBadRequest {
		t.Errorf("malformed chain value: %d, want 400", r.status)
	}
}

// TestChainedSearchCache: a cached search by MRN is not served once the MRN moved to another
// patient: the result depends on the Patients too.
func TestChainedSearchCache(t *testing.T) {
	e := newAuthEnv(t)
	sys := e.mint("system/*.rs", "")
	const q = "/fhir/Observation?patient.identifier=urn:mrn|p1&code=http://loinc.org|29463-7"
	for range 2 { // the second answer comes from the cache
		if got := entryIDs(t, e.as(sys, q).bundle(t), "match"); !slices.Equal(got, []string{"Observation/vs-p1"}) {
			t.Fatalf("before: %v", got)
		}
	}
	for _, p := range []struct{ id, mrn string }{{"p1", "p1-old"}, {"p2", "p1"}} {
		if _, _, err := e.store.Put(t.Context(), &fhir.Patient{Base: fhir.Base{ResourceType: "Patient", ID: p.id},
			Identifier: []fhir.Identifier{{System: "urn:mrn", Value: p.mrn}}}, store.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if got := entryIDs(t, e.as(sys, q).bundle(t), "match"); !slices.Equal(got, []string{"Observation/vs-p2"}) {
		t.Errorf("after the MRN moved to p2: %v, want [Observation/vs-p2]", got)
	}
}
