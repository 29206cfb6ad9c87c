package api_test

import (
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/store"
)

// walk follows next links from path and returns the match ids of every page, checking that each
// page holds at most max matches and that every link starts with prefix.
func (e *env) walk(t *testing.T, path, prefix string, max int, headers ...string) [][]string {
	t.Helper()
	var pages [][]string
	for u := path; u != ""; {
		r := e.get(u, headers...)
		if r.status != 200 {
			t.Fatalf("%s: %d %s", u, r.status, r.body)
		}
		b := r.bundle(t)
		ids := entryIDs(t, b, "match")
		if len(ids) > max {
			t.Errorf("page %d: %d matches, want at most %d", len(pages)+1, len(ids), max)
		}
		for _, rel := range []string{"self", "next"} {
			if l := linkOf(b, rel); l != "" && !strings.HasPrefix(l, prefix) {
				t.Errorf("%s link %q does not start with %q", rel, l, prefix)
			}
		}
		pages = append(pages, ids)
		u = linkOf(b, "next")
		if len(pages) > 50 {
			t.Fatal("paging does not end")
		}
	}
	return pages
}

func flat(pages [][]string) []string {
	var out []string
	for _, p := range pages {
		out = append(out, p...)
	}
	return out
}

func weights(from, to int) []string {
	var out []string
	for i := from; i <= to; i++ {
		out = append(out, fmt.Sprintf("Observation/w%02d", i))
	}
	return out
}

func reversed(s []string) []string { s = slices.Clone(s); slices.Reverse(s); return s }

// TestCompartmentSearch covers GET [base]/Patient/{id}/{type}: results, result parameters,
// paging links on the compartment URL, errors and R4.
func TestCompartmentSearch(t *testing.T) {
	e := newEnv(t)
	e.seed()
	for _, tc := range []struct {
		name, path string
		want       []string // match ids; includes in include
		include    []string
		total      int // -1: not checked
	}{
		{"observations", "/fhir/Patient/p1/Observation?_sort=-date", reversed(weights(0, 11)), nil, 12},
		{"normal search parameters", "/fhir/Patient/p1/Observation?code=http://loinc.org|29463-7&date=ge2026-01-10&_sort=-date", []string{"Observation/w11", "Observation/w10", "Observation/w09"}, nil, 3},
		{"another patient", "/fhir/Patient/p2/Observation", []string{"Observation/h1"}, nil, 1},
		{"the compartment is ANDed with patient", "/fhir/Patient/p2/Observation?patient=p1", nil, nil, 0},
		{"device associations", "/fhir/Patient/p1/DeviceAssociation", []string{"DeviceAssociation/a1"}, nil, 1},
		{"devices through associations", "/fhir/Patient/p1/Device", []string{"Device/d1"}, nil, 1},
		{"device search parameters", "/fhir/Patient/p1/Device?manufacturer=fitbit", nil, nil, 0},
		{"no devices", "/fhir/Patient/p2/Device", nil, nil, 0},
		{"unknown patient", "/fhir/Patient/nobody/Observation", nil, nil, 0},
		{"include", "/fhir/Patient/p1/Observation?_count=1&_include=Observation:device", []string{"Observation/w00"}, []string{"Device/d1"}, -1},
		{"revinclude", "/fhir/Patient/p1/Device?_revinclude=DeviceAssociation:device", []string{"Device/d1"}, []string{"DeviceAssociation/a1"}, 1},
		{"summary count", "/fhir/Patient/p1/Observation?_summary=count", nil, nil, 12},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.get(tc.path)
			if r.status != 200 {
				t.Fatalf("%d %s", r.status, r.body)
			}
			b := r.bundle(t)
			if got := entryIDs(t, b, "match"); !slices.Equal(got, tc.want) {
				t.Errorf("matches: got %v, want %v", got, tc.want)
			}
			if got := entryIDs(t, b, "include"); !slices.Equal(got, tc.include) {
				t.Errorf("includes: got %v, want %v", got, tc.include)
			}
			if tc.total >= 0 && (b.Total == nil || *b.Total != tc.total) {
				t.Errorf("total: got %v, want %d", b.Total, tc.total)
			}
			u, _ := url.Parse(tc.path)
			if self := linkOf(b, "self"); !strings.HasPrefix(self, e.base+strings.TrimPrefix(u.Path, "/fhir")+"?") {
				t.Errorf("self link %q is not the compartment URL", self)
			}
		})
	}
	t.Run("paging", func(t *testing.T) {
		pages := e.walk(t, "/fhir/Patient/p1/Observation?_count=5&_sort=date&unknown=1", e.base+"/Patient/p1/Observation?", 5)
		if got := flat(pages); !slices.Equal(got, weights(0, 11)) || len(pages) != 3 {
			t.Errorf("paged: %d pages %v", len(pages), got)
		}
		b := e.get("/fhir/Patient/p1/Observation?_count=5&unknown=1").bundle(t)
		if self := linkOf(b, "self"); strings.Contains(self, "unknown") || !strings.Contains(self, "_count=5") {
			t.Errorf("self link %q must list exactly the applied parameters", self)
		}
		next := linkOf(b, "next")
		// The cursor is bound to the compartment: not valid for another patient's, nor for the
		// type-level search.
		for _, moved := range []string{
			strings.Replace(next, "/Patient/p1/", "/Patient/p2/", 1),
			strings.Replace(next, "/Patient/p1/Observation?", "/Observation?patient=p1&", 1),
		} {
			if r := e.get(moved); r.status != 400 {
				t.Errorf("%s: got %d, want 400", moved, r.status)
			}
		}
		pages = e.walk(t, "/fhir/Patient/p1/Device?_count=1", e.base+"/Patient/p1/Device?", 1)
		if got := flat(pages); !slices.Equal(got, []string{"Device/d1"}) {
			t.Errorf("devices paged: %v", got)
		}
	})
	t.Run("R4", func(t *testing.T) {
		pages := e.walk(t, "/fhir/r4/Patient/p1/Observation?_count=7", e.base+"/r4/Patient/p1/Observation?", 7)
		if got := flat(pages); len(got) != 12 {
			t.Errorf("R4 paged: %v", got)
		}
		b := e.get("/fhir/r4/Patient/p1/Device").bundle(t)
		var d struct {
			Patient *fhir.Reference `json:"patient"`
		}
		if len(b.Entry) != 1 || json.Unmarshal(b.Entry[0].Resource, &d) != nil || d.Patient == nil || d.Patient.Reference != "Patient/p1" {
			t.Errorf("R4 devices of p1: %s", e.get("/fhir/r4/Patient/p1/Device").body)
		}
		if !strings.HasPrefix(b.Entry[0].FullURL, e.base+"/r4/Device/") {
			t.Errorf("fullUrl %q not under the R4 base", b.Entry[0].FullURL)
		}
		for _, p := range []string{"/fhir/r4/Patient/p1/DeviceAssociation"} {
			if r := e.get(p); r.status != 404 || r.outcome(t).Issue[0].Code != "not-supported" {
				t.Errorf("%s: got %d %s, want 404 not-supported", p, r.status, r.body)
			}
		}
		if r := e.get("/fhir/Patient/p1/DeviceAssociation", "Accept", "application/fhir+json; fhirVersion=4.0"); r.status != 404 {
			t.Errorf("DeviceAssociation compartment for R4 by Accept: got %d, want 404", r.status)
		}
	})
	for _, tc := range []struct {
		path   string
		status int
		code   string
		header []string
	}{
		{"/fhir/Patient/p1/Medication", 404, "not-supported", nil},
		{"/fhir/Patient/p1/Patient", 404, "not-supported", nil},
		{"/fhir/Patient/p1/$validate", 404, "not-supported", nil},
		{"/fhir/Device/d1/Observation", 404, "not-supported", nil},
		{"/fhir/Encounter/e1/Observation", 404, "not-supported", nil},
		{"/fhir/Patient/bad$id/Observation", 404, "not-found", nil},
		{"/fhir/Patient/p1/Observation?date=2026-13-01", 400, "value", nil},
		{"/fhir/Patient/p1/Observation?foo=1", 400, "not-supported", []string{"Prefer", "handling=strict"}},
		{"/fhir/Patient/p1/Observation?_page=garbage", 400, "invalid", nil},
	} {
		r := e.get(tc.path, tc.header...)
		if r.status != tc.status {
			t.Errorf("%s: got %d, want %d (%s)", tc.path, r.status, tc.status, r.body)
			continue
		}
		if got := r.outcome(t).Issue[0].Code; got != tc.code {
			t.Errorf("%s: issue code %q, want %q", tc.path, got, tc.code)
		}
	}
	t.Run("POST _search", func(t *testing.T) {
		r := e.do("POST", "/fhir/Patient/p1/Observation/_search", "code=http://loinc.org|29463-7&_count=3&_sort=date", "Content-Type", "application/x-www-form-urlencoded")
		if r.status != 200 {
			t.Fatalf("%d %s", r.status, r.body)
		}
		b := r.bundle(t)
		if got := entryIDs(t, b, "match"); !slices.Equal(got, weights(0, 2)) {
			t.Errorf("matches %v", got)
		}
		next := linkOf(b, "next")
		if !strings.HasPrefix(next, e.base+"/Patient/p1/Observation?code=") {
			t.Fatalf("next link %q: want a GET of the compartment URL", next)
		}
		if got := entryIDs(t, e.get(next).bundle(t), "match"); !slices.Equal(got, weights(3, 5)) {
			t.Errorf("second page %v", got)
		}
		if r := e.do("POST", "/fhir/Patient/p1/$everything/_search", "", "Content-Type", "application/x-www-form-urlencoded"); r.status != 404 {
			t.Errorf("POST $everything/_search: %d", r.status)
		}
	})
	// The static $lastn route beside /:type/:id leaves reads alone.
	if r := e.get("/fhir/Observation/w01"); r.status != 200 {
		t.Errorf("read beside the $lastn route: %d", r.status)
	}
}

// TestCompartmentAuthorization checks that a compartment search is authorized as the search of
// its type with the patient added: a token of another patient sees nothing, scope constraints
// apply, and a type without search scope is refused.
func TestCompartmentAuthorization(t *testing.T) {
	e := newAuthEnv(t)
	cat := "http://terminology.hl7.org/CodeSystem/observation-category|"
	p1 := e.mint("patient/*.rs", "p1")
	for _, tc := range []struct {
		name, token, path string
		status            int
		want              []string
	}{
		{"own observations", p1, "/fhir/Patient/p1/Observation", 200, []string{"Observation/lab-p1", "Observation/vs-p1"}},
		{"own devices", p1, "/fhir/Patient/p1/Device", 200, []string{"Device/dev-p1"}},
		{"another patient's observations", p1, "/fhir/Patient/p2/Observation", 200, nil},
		{"another patient's devices", p1, "/fhir/Patient/p2/Device", 200, nil},
		{"another patient's associations", p1, "/fhir/Patient/p2/DeviceAssociation", 200, nil},
		{"another patient's, named again", p1, "/fhir/Patient/p2/Observation?patient=p2", 200, nil},
		{"patient user", e.mint("user/*.rs", "", withUser("Patient/p1")), "/fhir/Patient/p2/Observation", 200, nil},
		{"scope constraint", e.mint("patient/Observation.rs?category="+cat+"vital-signs", "p1"), "/fhir/Patient/p1/Observation", 200, []string{"Observation/vs-p1"}},
		{"scopes needing a post-filter", e.mint("patient/Observation.rs?category="+cat+"laboratory patient/Observation.rs?code=http://loinc.org|8867-4", "p1"),
			"/fhir/Patient/p1/Observation", 200, []string{"Observation/lab-p1"}},
		{"system token", e.mint("system/*.rs", ""), "/fhir/Patient/p2/Device", 200, []string{"Device/dev-p2"}},
		{"practitioner", e.mint("user/*.rs", "", withUser("Practitioner/d1")), "/fhir/Patient/p2/Observation", 200, []string{"Observation/vs-p2"}},
		{"no search scope", e.mint("patient/Observation.r patient/Device.rs", "p1"), "/fhir/Patient/p1/Observation", 403, nil},
		{"no token", "", "/fhir/Patient/p1/Observation", 401, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r response
			if tc.token == "" {
				r = e.get(tc.path)
			} else {
				r = e.as(tc.token, tc.path)
			}
			if r.status != tc.status {
				t.Fatalf("got %d, want %d: %s", r.status, tc.status, r.body)
			}
			if r.status != 200 {
				r.outcome(t)
				return
			}
			if got := sortd(allIDs(t, r.bundle(t))); !slices.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
	// A cursor made for p1's token does not page for p2's.
	next := linkOf(e.as(p1, "/fhir/Patient/p1/Observation?_count=1").bundle(t), "next")
	if next == "" {
		t.Fatal("no next link")
	}
	if r := e.as(e.mint("patient/*.rs", "p2"), next); r.status != 400 {
		t.Errorf("p1's cursor with p2's token: %d, want 400", r.status)
	}
	if r := e.as(p1, next); r.status != 200 || len(entryIDs(t, r.bundle(t), "match")) != 1 {
		t.Errorf("p1's cursor with p1's token: %d %s", r.status, r.body)
	}
}

// TestEverything covers Patient/{id}/$everything: contents and their order, paging across the
// types, _type, _since, R4 and errors.
func TestEverything(t *testing.T) {
	e := newEnv(t)
	e.seed()
	all := append([]string{"Patient/p1", "Device/d1", "DeviceAssociation/a1"}, weights(0, 11)...)
	for _, tc := range []struct {
		name, path string
		want       []string
		pages      int
	}{
		{"everything", "/fhir/Patient/p1/$everything", all, 1},
		{"pages across types", "/fhir/Patient/p1/$everything?_count=4", all, 4},
		{"a page ending with a type", "/fhir/Patient/p1/$everything?_count=3", all, 5},
		{"_type", "/fhir/Patient/p1/$everything?_type=Observation,Device&_count=5", append([]string{"Device/d1"}, weights(0, 11)...), 3},
		{"_type of one", "/fhir/Patient/p1/$everything?_type=DeviceAssociation", []string{"DeviceAssociation/a1"}, 1},
		{"_type of what ohx does not serve", "/fhir/Patient/p1/$everything?_type=Medication", nil, 1},
		{"another patient", "/fhir/Patient/p2/$everything", []string{"Patient/p2", "Observation/h1"}, 1},
		{"unknown patient", "/fhir/Patient/nobody/$everything", nil, 1},
		{"future _since", "/fhir/Patient/p1/$everything?_since=2999-01-01T00:00:00Z", nil, 1},
		{"R4 leaves associations out", "/fhir/r4/Patient/p1/$everything?_count=5", slices.Delete(slices.Clone(all), 2, 3), 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, _ := url.Parse(tc.path)
			count := 50
			if c := u.Query().Get("_count"); c != "" {
				count, _ = strconv.Atoi(c)
			}
			pages := e.walk(t, tc.path, e.base+strings.TrimPrefix(u.Path, "/fhir")+"?", count)
			if got := flat(pages); !slices.Equal(got, tc.want) {
				t.Errorf("got %v\nwant %v", got, tc.want)
			}
			if len(pages) != tc.pages {
				t.Errorf("pages: got %d, want %d (%v)", len(pages), tc.pages, pages)
			}
		})
	}
	t.Run("total and self link", func(t *testing.T) {
		b := e.get("/fhir/Patient/p1/$everything?_type=Device&unknown=1").bundle(t)
		if b.Total == nil || *b.Total != 1 {
			t.Errorf("total of a single page: %v", b.Total)
		}
		if self := linkOf(b, "self"); self != e.base+"/Patient/p1/$everything?_type=Device&_count=50" {
			t.Errorf("self link %q", self)
		}
		b = e.get("/fhir/Patient/p1/$everything?_count=2").bundle(t)
		if b.Total != nil {
			t.Errorf("total of a paged answer: %d", *b.Total)
		}
	})
	t.Run("_since", func(t *testing.T) {
		since := time.Now().UTC().Truncate(time.Microsecond)
		time.Sleep(2 * time.Millisecond)
		if _, _, err := e.store.Put(t.Context(), obs("w03", "p1", "d1", "29463-7", time.Date(2026, 1, 4, 7, 30, 0, 0, time.UTC), "99.5"), store.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
		got := entryIDs(t, e.get("/fhir/Patient/p1/$everything?_since="+url.QueryEscape(since.Format(time.RFC3339Nano))).bundle(t), "match")
		if !slices.Equal(got, []string{"Observation/w03"}) {
			t.Errorf("_since: got %v, want only the Observation updated since", got)
		}
	})
	t.Run("cursor binding", func(t *testing.T) {
		next := linkOf(e.get("/fhir/Patient/p1/$everything?_count=2").bundle(t), "next")
		for _, moved := range []string{
			strings.Replace(next, "/Patient/p1/", "/Patient/p2/", 1),
			strings.Replace(next, "_count=2", "_count=3", 1),
			strings.Replace(next, "$everything?", "$everything?_type=Observation&", 1),
		} {
			if r := e.get(moved); r.status != 400 {
				t.Errorf("%s: got %d, want 400", moved, r.status)
			}
		}
	})
	for _, tc := range []struct {
		path   string
		status int
		header []string
	}{
		{"/fhir/Patient/p1/$everything?_since=2026-01-01", 400, nil},
		{"/fhir/Patient/p1/$everything?_since=yesterday", 400, nil},
		{"/fhir/Patient/p1/$everything?_count=0", 400, nil},
		{"/fhir/Patient/p1/$everything?_count=x", 400, nil},
		{"/fhir/Patient/p1/$everything?_type=Device&_type=Patient", 400, nil},
		{"/fhir/Patient/p1/$everything?start=2026-01-01", 400, []string{"Prefer", "handling=strict"}},
		{"/fhir/Patient/p1/$everything?start=2026-01-01", 200, nil},
		{"/fhir/Device/d1/$everything", 404, nil},
	} {
		if r := e.get(tc.path, tc.header...); r.status != tc.status {
			t.Errorf("%s %v: got %d, want %d (%s)", tc.path, tc.header, r.status, tc.status, r.body)
		} else if r.status != 200 {
			r.outcome(t)
		}
	}
}

// TestEverythingAuthorization checks that $everything needs read and search on each type, leaves
// out the types a token may not read, and never leaves the compartment.
func TestEverythingAuthorization(t *testing.T) {
	e := newAuthEnv(t)
	cat := "http://terminology.hl7.org/CodeSystem/observation-category|"
	for _, tc := range []struct {
		name, scope, patient, user, path string
		status                           int
		want                             []string
	}{
		{"own compartment", "patient/*.rs", "p1", "", "/fhir/Patient/p1/$everything", 200, sortd(slices.Clone(compartmentOfP1))},
		{"paged", "patient/*.rs", "p1", "", "/fhir/Patient/p1/$everything?_count=2", 200, sortd(slices.Clone(compartmentOfP1))},
		{"another patient", "patient/*.rs", "p1", "", "/fhir/Patient/p2/$everything", 200, nil},
		{"patient user asking for another patient", "user/*.rs", "", "Patient/p1", "/fhir/Patient/p2/$everything", 200, nil},
		{"no Device scope: devices left out", "patient/Patient.rs patient/Observation.rs patient/DeviceAssociation.rs", "p1", "", "/fhir/Patient/p1/$everything",
			200, []string{"DeviceAssociation/da-p1", "Observation/lab-p1", "Observation/vs-p1", "Patient/p1"}},
		{"Device search without read: left out", "patient/Device.s patient/Observation.rs", "p1", "", "/fhir/Patient/p1/$everything",
			200, []string{"Observation/lab-p1", "Observation/vs-p1"}},
		{"scope constraint", "patient/Patient.rs patient/Observation.rs?category=" + cat + "vital-signs", "p1", "", "/fhir/Patient/p1/$everything",
			200, []string{"Observation/vs-p1", "Patient/p1"}},
		{"constraints needing a post-filter", "patient/Observation.rs?category=" + cat + "laboratory patient/Observation.rs?code=http://loinc.org|8867-4", "p1", "", "/fhir/Patient/p1/$everything",
			200, []string{"Observation/lab-p1"}},
		{"system token", "system/*.rs", "", "", "/fhir/Patient/p2/$everything", 200, []string{"Device/dev-p2", "DeviceAssociation/da-p2", "Observation/vs-p2", "Patient/p2"}},
		{"nothing readable", "launch/patient openid", "p1", "", "/fhir/Patient/p1/$everything", 403, nil},
		{"only unreadable types asked for", "patient/Observation.rs", "p1", "", "/fhir/Patient/p1/$everything?_type=Device", 403, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok := e.mint(tc.scope, tc.patient, withUser(tc.user))
			var got []string
			for u := tc.path; u != ""; {
				r := e.as(tok, u)
				if r.status != tc.status {
					t.Fatalf("%s: got %d, want %d: %s", u, r.status, tc.status, r.body)
				}
				if r.status != 200 {
					if !strings.Contains(r.header.Get("WWW-Authenticate"), "insufficient_scope") {
						t.Errorf("WWW-Authenticate %q", r.header.Get("WWW-Authenticate"))
					}
					return
				}
				b := r.bundle(t)
				got = append(got, entryIDs(t, b, "match")...)
				u = linkOf(b, "next")
			}
			if got = sortd(got); !slices.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}
