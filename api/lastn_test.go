package api_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/openhealthexchange/ohx/fhir"
)

// seedLastN adds to seed's data (p1: weights w00…w11 of 2026-01-01…12; p2: h1) heart rates of
// p1, a resting heart rate coded both as heart rate and as resting heart rate, a laboratory
// result, and two glucose results at the same time.
func (e *env) seedLastN() {
	e.t.Helper()
	e.seed()
	at := func(day, hour int) time.Time { return time.Date(2026, 1, day, hour, 0, 0, 0, time.UTC) }
	rhr := obs("rhr", "p1", "", "8867-4", at(4, 6), "55")
	rhr.Code.Coding = append(rhr.Code.Coding, fhir.Coding{System: "http://loinc.org", Code: "40443-4"})
	lab := obs("lab", "p1", "", "2345-7", at(3, 9), "5.4")
	lab.Category = []fhir.CodeableConcept{{Coding: []fhir.Coding{{System: "http://terminology.hl7.org/CodeSystem/observation-category", Code: "laboratory"}}}}
	rs := []fhir.Resource{
		obs("hr1", "p1", "", "8867-4", at(5, 8), "61"),
		obs("hr2", "p1", "", "8867-4", at(6, 8), "64"),
		rhr, lab,
		obs("tie-a", "p1", "", "3141-9", at(2, 8), "1"),
		obs("tie-b", "p1", "", "3141-9", at(2, 8), "2"),
	}
	if _, err := e.store.Upsert(e.t.Context(), rs); err != nil {
		e.t.Fatal(err)
	}
}

func obsIDs(ids ...string) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = "Observation/" + id
	}
	return out
}

// TestLastN covers Observation/$lastn: max per code, newest first, codes sharing a coding
// grouped, filters, several patients, the self link, R4 and errors.
func TestLastN(t *testing.T) {
	e := newEnv(t)
	e.seedLastN()
	vital := "category=http://terminology.hl7.org/CodeSystem/observation-category|vital-signs"
	for _, tc := range []struct {
		name, query string
		want        []string
	}{
		// Groups in the order of their first coding: 2345-7, 29463-7, 3141-9, 40443-4 + 8867-4
		// (joined by rhr, which carries both).
		{"max 1", "patient=p1", obsIDs("lab", "w11", "tie-b", "hr2")},
		{"max 3", "patient=p1&max=3", obsIDs("lab", "w11", "w10", "w09", "tie-b", "tie-a", "hr2", "hr1", "rhr")},
		{"subject and category", "subject=Patient/p1&" + vital, obsIDs("w11", "tie-b", "hr2")},
		{"code and date", "patient=p1&code=http://loinc.org|29463-7&date=le2026-01-05&max=2", obsIDs("w04", "w03")},
		{"a code list", "patient=p1&code=http://loinc.org|29463-7,http://loinc.org|2345-7&max=2", obsIDs("lab", "w11", "w10")},
		{"a translation asked for alone", "patient=p1&code=http://loinc.org|40443-4&max=5", obsIDs("rhr")},
		{"status", "patient=p1&code=http://loinc.org|8867-4&status=preliminary", nil},
		{"several patients", "patient=p1,p2&code=http://loinc.org|8302-2,http://loinc.org|29463-7", obsIDs("w11", "h1")},
		{"a patient without observations", "patient=nobody", nil},
		{"result parameters are ignored", "patient=p2&_count=1&_sort=date&_include=Observation:device", obsIDs("h1")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.get("/fhir/Observation/$lastn?" + tc.query)
			if r.status != 200 {
				t.Fatalf("%d %s", r.status, r.body)
			}
			b := r.bundle(t)
			if got := entryIDs(t, b, "match"); !slices.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
			if b.BundleType != "searchset" || b.Total == nil || *b.Total != len(tc.want) {
				t.Errorf("type %q total %v, want searchset with total %d", b.BundleType, b.Total, len(tc.want))
			}
		})
	}
	t.Run("self link", func(t *testing.T) {
		b := e.get("/fhir/Observation/$lastn?patient=p1&" + vital + "&max=2&_count=1&unknown=x").bundle(t)
		want := e.base + "/Observation/$lastn?patient=p1&category=http%3A%2F%2Fterminology.hl7.org%2FCodeSystem%2Fobservation-category%7Cvital-signs&max=2"
		if self := linkOf(b, "self"); self != want {
			t.Errorf("self link\n got %q\nwant %q", self, want)
		}
		if len(b.Link) != 1 {
			t.Errorf("links %v: want only self", b.Link)
		}
		if r := e.get(strings.TrimPrefix(linkOf(b, "self"), e.srv.URL), "Prefer", "handling=strict"); r.status != 200 {
			t.Errorf("the self link under strict handling: %d %s", r.status, r.body)
		}
	})
	t.Run("R4", func(t *testing.T) {
		b := e.get("/fhir/r4/Observation/$lastn?patient=p2").bundle(t)
		if len(b.Entry) != 1 || !strings.HasPrefix(b.Entry[0].FullURL, e.base+"/r4/Observation/") || !strings.HasPrefix(linkOf(b, "self"), e.base+"/r4/Observation/$lastn?") {
			t.Errorf("R4: %s", e.get("/fhir/r4/Observation/$lastn?patient=p2").body)
		}
	})
	t.Run("_elements", func(t *testing.T) {
		b := e.get("/fhir/Observation/$lastn?patient=p2&_elements=subject").bundle(t)
		if len(b.Entry) != 1 || strings.Contains(string(b.Entry[0].Resource), "valueQuantity") {
			t.Errorf("_elements not applied: %s", b.Entry[0].Resource)
		}
	})
	for _, tc := range []struct {
		query  string
		status int
		code   string
		header []string
	}{
		{"code=http://loinc.org|29463-7", 400, "required", nil},
		{"subject=Group/g1", 400, "required", nil},
		{"patient:missing=false", 400, "required", nil},
		{"patient=p1&max=0", 400, "value", nil},
		{"patient=p1&max=x", 400, "value", nil},
		{"patient=p1&max=1&max=2", 400, "invalid", nil},
		{"patient=p1&date=2026-13-01", 400, "value", nil},
		{"patient=p1&_count=2", 400, "not-supported", []string{"Prefer", "handling=strict"}},
		{"patient=p1&foo=2", 400, "not-supported", []string{"Prefer", "handling=strict"}},
	} {
		r := e.get("/fhir/Observation/$lastn?"+tc.query, tc.header...)
		if r.status != tc.status {
			t.Errorf("%s: got %d, want %d (%s)", tc.query, r.status, tc.status, r.body)
			continue
		}
		if got := r.outcome(t).Issue[0].Code; got != tc.code {
			t.Errorf("%s: issue code %q, want %q", tc.query, got, tc.code)
		}
	}
	if r := e.do("POST", "/fhir/Observation/$lastn", "patient=p1", "Content-Type", "application/x-www-form-urlencoded"); r.status != 405 {
		t.Errorf("POST $lastn: got %d, want 405", r.status)
	}
}

// TestLastNAuthorization checks that $lastn is authorized as an Observation search: patient
// confinement, scope constraints pushed into the query, and constraints checked afterwards
// that still leave max per code.
func TestLastNAuthorization(t *testing.T) {
	e := newAuthEnv(t)
	// An older, preliminary weight of p1, behind vs-p1 (final) in its group.
	pre := obs("pre-p1", "p1", "", "29463-7", time.Date(2025, 12, 1, 0, 0, 0, 0, time.UTC), "69")
	pre.Status = "preliminary"
	if _, err := e.store.Upsert(t.Context(), []fhir.Resource{pre}); err != nil {
		t.Fatal(err)
	}
	cat := "http://terminology.hl7.org/CodeSystem/observation-category|"
	for _, tc := range []struct {
		name, scope, patient, user, query string
		status                            int
		want                              []string
	}{
		{"own", "patient/*.rs", "p1", "", "patient=p1", 200, obsIDs("lab-p1", "vs-p1")},
		{"own, max 2", "patient/Observation.rs", "p1", "", "patient=p1&max=2", 200, obsIDs("lab-p1", "vs-p1", "pre-p1")},
		{"another patient", "patient/*.rs", "p1", "", "patient=p2", 200, nil},
		{"both patients", "patient/*.rs", "p1", "", "patient=p1,p2", 200, obsIDs("lab-p1", "vs-p1")},
		{"patient user", "user/Observation.rs", "", "Patient/p1", "patient=p2", 200, nil},
		{"scope constraint", "patient/Observation.rs?category=" + cat + "vital-signs", "p1", "", "patient=p1", 200, obsIDs("vs-p1")},
		// Two constraints on different parameters cannot be one filter: they are checked after
		// the store's answer, and the weight group, whose newest is not visible, is read on.
		{"post-filtered constraints", "patient/Observation.rs?category=" + cat + "laboratory patient/Observation.rs?status=preliminary", "p1", "", "patient=p1",
			200, obsIDs("lab-p1", "pre-p1")},
		{"system token", "system/Observation.rs", "", "", "patient=p2", 200, obsIDs("vs-p2")},
		{"read without search", "patient/Observation.r", "p1", "", "patient=p1", 403, nil},
		{"another type's scope", "patient/Device.rs", "p1", "", "patient=p1", 403, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.as(e.mint(tc.scope, tc.patient, withUser(tc.user)), "/fhir/Observation/$lastn?"+tc.query)
			if r.status != tc.status {
				t.Fatalf("got %d, want %d: %s", r.status, tc.status, r.body)
			}
			if r.status != 200 {
				r.outcome(t)
				return
			}
			if got := entryIDs(t, r.bundle(t), "match"); !slices.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
	if r := e.get("/fhir/Observation/$lastn?patient=p1"); r.status != 401 {
		t.Errorf("without a token: %d", r.status)
	}
}
