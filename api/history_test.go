package api_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/store"
)

// historyBundle is the part of a history Bundle the tests read.
type historyBundle struct {
	ResourceType string `json:"resourceType"`
	Type         string `json:"type"`
	Link         []struct {
		Relation, URL string
	} `json:"link"`
	Entry []struct {
		FullURL  string          `json:"fullUrl"`
		Resource json.RawMessage `json:"resource"`
		Request  *struct {
			Method, URL string
		} `json:"request"`
		Response *struct {
			Status, Location, Etag, LastModified string
		} `json:"response"`
	} `json:"entry"`
}

func (r response) history(t *testing.T) historyBundle {
	t.Helper()
	var b historyBundle
	if err := json.Unmarshal(r.body, &b); err != nil || r.status != http.StatusOK || b.ResourceType != "Bundle" || b.Type != "history" {
		t.Fatalf("want a history Bundle, got %d %s (%v)", r.status, r.body, err)
	}
	return b
}

func (b historyBundle) link(rel string) string {
	for _, l := range b.Link {
		if l.Relation == rel {
			return l.URL
		}
	}
	return ""
}

// versions returns the version of each entry, from its ETag.
func (b historyBundle) versions(t *testing.T) []int64 {
	t.Helper()
	var out []int64
	for _, en := range b.Entry {
		if en.Response == nil {
			t.Fatalf("history entry without response: %+v", en)
		}
		v, err := strconv.ParseInt(strings.Trim(strings.TrimPrefix(en.Response.Etag, "W/"), `"`), 10, 64)
		if err != nil {
			t.Fatalf("response.etag %q: %v", en.Response.Etag, err)
		}
		out = append(out, v)
	}
	return out
}

// putPatient writes version after version of Patient id straight into the store (family
// names given), and returns the stored entries.
func (e *env) putPatient(id string, families ...string) []store.Entry {
	e.t.Helper()
	var out []store.Entry
	for _, f := range families {
		en, _, err := e.store.Put(e.t.Context(), &fhir.Patient{Base: fhir.Base{ResourceType: "Patient", ID: id}, Name: []fhir.HumanName{{Family: f}}}, store.WriteOptions{})
		if err != nil {
			e.t.Fatal(err)
		}
		out = append(out, en)
	}
	return out
}

func familyOf(t *testing.T, body []byte) (family, versionID string) {
	t.Helper()
	var p fhir.Patient
	if err := json.Unmarshal(body, &p); err != nil || p.Meta == nil || len(p.Name) == 0 {
		t.Fatalf("want a Patient with meta and a name, got %s (%v)", body, err)
	}
	return p.Name[0].Family, p.Meta.VersionID
}

// TestVRead: the Location of a create or update resolves to that version; older versions stay
// readable; unknown versions are 404, a deletion 410.
func TestVRead(t *testing.T) {
	e := newEnv(t)
	e.seed()
	ct := []string{"Content-Type", "application/fhir+json"}
	r := e.do("POST", "/fhir/Patient", `{"resourceType":"Patient","name":[{"family":"Doe"}]}`, ct...)
	loc1 := r.header.Get("Location")
	if r.status != 201 || !strings.HasSuffix(loc1, "/_history/1") {
		t.Fatalf("create: %d Location %q", r.status, loc1)
	}
	var p fhir.Patient
	json.Unmarshal(r.body, &p)
	r = e.do("PUT", "/fhir/Patient/"+p.ID, `{"resourceType":"Patient","id":"`+p.ID+`","name":[{"family":"Roe"}]}`, ct...)
	loc2 := r.header.Get("Location")
	if r.status != 200 || loc2 != e.base+"/Patient/"+p.ID+"/_history/2" {
		t.Fatalf("update: %d Location %q", r.status, loc2)
	}
	r = e.do("PUT", "/fhir/Patient/new-1", `{"resourceType":"Patient","id":"new-1","name":[{"family":"Poe"}]}`, ct...)
	loc3 := r.header.Get("Location")
	if r.status != 201 {
		t.Fatalf("update as create: %d", r.status)
	}
	for _, tc := range []struct {
		loc, family, version string
	}{{loc1, "Doe", "1"}, {loc2, "Roe", "2"}, {loc3, "Poe", "1"}} {
		r := e.get(tc.loc)
		if r.status != 200 {
			t.Errorf("GET Location %s: %d %s", tc.loc, r.status, r.body)
			continue
		}
		if f, v := familyOf(t, r.body); f != tc.family || v != tc.version {
			t.Errorf("GET %s: family %q version %q, want %q %q", tc.loc, f, v, tc.family, tc.version)
		}
		if got := r.header.Get("ETag"); got != `W/"`+tc.version+`"` {
			t.Errorf("GET %s: ETag %q, want W/%q", tc.loc, got, tc.version)
		}
		if _, err := http.ParseTime(r.header.Get("Last-Modified")); err != nil {
			t.Errorf("GET %s: Last-Modified %q: %v", tc.loc, r.header.Get("Last-Modified"), err)
		}
	}
	if r := e.get(loc1, "If-None-Match", `W/"1"`); r.status != 304 {
		t.Errorf("vread with If-None-Match of that version: %d, want 304", r.status)
	}

	// A deletion is a version of its own: 410 with its ETag; the version before stays readable.
	if err := e.store.Delete(t.Context(), "Observation", "w01"); err != nil {
		t.Fatal(err)
	}
	r = e.get("/fhir/Observation/w01/_history/2")
	if r.status != 410 || r.header.Get("ETag") != `W/"2"` || r.outcome(t).Issue[0].Code != "deleted" {
		t.Errorf("vread of a deletion: %d ETag %q %s, want 410 W/\"2\" deleted", r.status, r.header.Get("ETag"), r.body)
	}
	if r := e.get("/fhir/Observation/w01/_history/1"); r.status != 200 {
		t.Errorf("vread of the version before a deletion: %d %s", r.status, r.body)
	}
	for _, path := range []string{
		"/fhir/Patient/" + p.ID + "/_history/3",
		"/fhir/Patient/" + p.ID + "/_history/0",
		"/fhir/Patient/" + p.ID + "/_history/x",
		"/fhir/Patient/nope/_history/1",
		"/fhir/Unknown/p1/_history/1",
		"/fhir/r4/DeviceAssociation/a1/_history/1",
	} {
		r := e.get(path)
		if r.status != 404 {
			t.Errorf("GET %s: %d, want 404", path, r.status)
			continue
		}
		r.outcome(t)
	}
}

// TestHistoryBundle checks the shape of an instance history: type history, newest first, and per
// entry fullUrl, resource (not for a deletion), request and response.
func TestHistoryBundle(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	if _, err := e.store.Create(ctx, &fhir.Patient{Base: fhir.Base{ResourceType: "Patient", ID: "h1"}, Name: []fhir.HumanName{{Family: "A"}}}); err != nil {
		t.Fatal(err)
	}
	e.putPatient("h1", "B", "C")
	if err := e.store.Delete(ctx, "Patient", "h1"); err != nil {
		t.Fatal(err)
	}
	e.putPatient("h1", "E")

	r := e.get("/fhir/Patient/h1/_history")
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/fhir+json") {
		t.Errorf("Content-Type %q", ct)
	}
	b := r.history(t)
	if diff := cmp.Diff([]int64{5, 4, 3, 2, 1}, b.versions(t)); diff != "" {
		t.Fatalf("versions (-want +got):\n%s", diff)
	}
	if self := b.link("self"); !strings.HasPrefix(self, e.base+"/Patient/h1/_history?") || b.link("next") != "" {
		t.Errorf("links: self %q next %q", self, b.link("next"))
	}
	type shape struct {
		Method, URL, Status, Family string
		Location                    bool
	}
	want := []shape{
		{"PUT", "Patient/h1", "201 Created", "E", true}, // back after the deletion
		{"DELETE", "Patient/h1", "204 No Content", "", false},
		{"PUT", "Patient/h1", "200 OK", "C", true},
		{"PUT", "Patient/h1", "200 OK", "B", true},
		{"POST", "Patient", "201 Created", "A", true},
	}
	var got []shape
	for i, en := range b.Entry {
		if en.FullURL != e.base+"/Patient/h1" || en.Request == nil {
			t.Errorf("entry %d: fullUrl %q request %+v", i, en.FullURL, en.Request)
			continue
		}
		s := shape{Method: en.Request.Method, URL: en.Request.URL, Status: en.Response.Status, Location: en.Response.Location != ""}
		v := b.versions(t)[i]
		if en.Resource != nil {
			f, mv := familyOf(t, en.Resource)
			s.Family = f
			if mv != strconv.FormatInt(v, 10) {
				t.Errorf("entry %d: meta.versionId %q, etag version %d", i, mv, v)
			}
			var meta struct{ Meta fhir.Meta }
			json.Unmarshal(en.Resource, &meta)
			if en.Response.LastModified != meta.Meta.LastUpdated {
				t.Errorf("entry %d: response.lastModified %q, meta.lastUpdated %q", i, en.Response.LastModified, meta.Meta.LastUpdated)
			}
			if en.Response.Location != fmt.Sprintf("%s/Patient/h1/_history/%d", e.base, v) {
				t.Errorf("entry %d: response.location %q", i, en.Response.Location)
			}
		} else if !fhir.ValidInstant(en.Response.LastModified) {
			t.Errorf("entry %d (deletion): response.lastModified %q", i, en.Response.LastModified)
		}
		got = append(got, s)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("entries (-want +got):\n%s", diff)
	}

	// Pipeline-written types have history too; an unchanged upsert adds no version.
	e.seed()
	changed := obs("w03", "p1", "d1", "29463-7", time.Date(2026, 1, 4, 7, 30, 0, 0, time.UTC), "99.0")
	for range 2 {
		if _, err := e.store.Upsert(ctx, []fhir.Resource{changed}); err != nil {
			t.Fatal(err)
		}
	}
	if got := e.get("/fhir/Observation/w03/_history").history(t).versions(t); !slices.Equal(got, []int64{2, 1}) {
		t.Errorf("Observation history versions %v, want [2 1]", got)
	}
	for _, path := range []string{"/fhir/Patient/nope/_history", "/fhir/Unknown/x/_history", "/fhir/r4/DeviceAssociation/a1/_history"} {
		if r := e.get(path); r.status != 404 {
			t.Errorf("GET %s: %d, want 404", path, r.status)
		}
	}
}

// TestHistoryPaging follows next links with _count, checks that cursors are bound to their
// history, and filters with _since and _at.
func TestHistoryPaging(t *testing.T) {
	e := newEnv(t)
	w := e.putPatient("pg", "v1", "v2", "v3", "v4", "v5", "v6", "v7")
	var pages [][]int64
	next := "/fhir/Patient/pg/_history?_count=3"
	var second string
	for next != "" && len(pages) < 10 {
		b := e.get(next).history(t)
		pages = append(pages, b.versions(t))
		next = b.link("next")
		if len(pages) == 1 {
			second = next
		}
	}
	if diff := cmp.Diff([][]int64{{7, 6, 5}, {4, 3, 2}, {1}}, pages); diff != "" {
		t.Errorf("pages (-want +got):\n%s", diff)
	}
	if !strings.HasPrefix(second, e.base+"/Patient/pg/_history?") || !strings.Contains(second, "_count=3") || !strings.Contains(second, "_page=") {
		t.Fatalf("next link %q", second)
	}
	e.putPatient("other", "x")
	u, _ := url.Parse(second)
	q := u.Query()
	for name, bad := range map[string]string{
		"another resource": strings.Replace(second, "/Patient/pg/", "/Patient/other/", 1),
		"another _count":   strings.Replace(second, "_count=3", "_count=2", 1),
		"tampered":         u.Path + "?_count=3&_page=" + url.QueryEscape(q.Get("_page")[:len(q.Get("_page"))-2]+"AA"),
		"R4":               strings.Replace(second, "/fhir/", "/fhir/r4/", 1),
	} {
		if r := e.get(bad); r.status != 400 {
			t.Errorf("cursor used for %s: %d, want 400", name, r.status)
		}
	}

	// _since and _at follow the stored lastUpdated values.
	at := func(i int) string { return fhir.Instant(w[i].LastUpdated) }
	since := func(i int) []int64 {
		var out []int64
		for _, en := range slices.Backward(w) {
			if !en.LastUpdated.Before(w[i].LastUpdated) {
				out = append(out, en.VersionID)
			}
		}
		return out
	}
	for _, tc := range []struct {
		query string
		want  []int64
	}{
		{"_since=" + url.QueryEscape(at(4)), since(4)},
		{"_since=" + url.QueryEscape(at(4)) + "&_count=1", since(4)[:1]},
		// The instant version 3 was written: version 3 alone was current then.
		{"_at=" + url.QueryEscape(at(2)), []int64{3}},
		{"_at=2000", nil},
		{"_at=" + strconv.Itoa(time.Now().Year()+1), []int64{7}},
		{"_since=2000-01-01T00:00:00Z&_sort=-_lastUpdated", []int64{7, 6, 5, 4, 3, 2, 1}},
	} {
		b := e.get("/fhir/Patient/pg/_history?" + tc.query).history(t)
		if diff := cmp.Diff(tc.want, b.versions(t)); diff != "" {
			t.Errorf("%s: versions (-want +got):\n%s", tc.query, diff)
		}
	}
	for _, query := range []string{"_count=x", "_since=yesterday", "_at=2024-13", "_sort=_lastUpdated", "_since=2024&_since=2025"} {
		if r := e.get("/fhir/Patient/pg/_history?" + query); r.status != 400 {
			t.Errorf("%s: %d, want 400", query, r.status)
		}
	}
	if r := e.get("/fhir/Patient/pg/_history?foo=1", "Prefer", "handling=strict"); r.status != 400 {
		t.Errorf("unknown parameter under handling=strict: %d, want 400", r.status)
	}
	if b := e.get("/fhir/Patient/pg/_history?foo=1").history(t); strings.Contains(b.link("self"), "foo") || len(b.Entry) != 7 {
		t.Errorf("unknown parameter, lenient: self %q, %d entries", b.link("self"), len(b.Entry))
	}
}

// TestHistoryR4 serves history and vread as valid R4.
func TestHistoryR4(t *testing.T) {
	e := newEnv(t)
	e.seed()
	e.putPatient("p1", "Changed")
	if err := e.store.Delete(t.Context(), "Observation", "w02"); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/fhir/r4/Patient/p1/_history", "/fhir/r4/Observation/w02/_history", "/fhir/r4/Device/d1/_history", "/fhir/r4/Patient/p1/_history/1"} {
		r := e.get(path)
		if r.status != 200 {
			t.Errorf("GET %s: %d %s", path, r.status, r.body)
			continue
		}
		validR4(t, path, r.body)
	}
	b := e.get("/fhir/Patient/p1/_history?_count=1", "Accept", "application/fhir+json; fhirVersion=4.0").history(t)
	if next := b.link("next"); !strings.HasPrefix(next, e.base+"/r4/Patient/p1/_history?") || !strings.HasPrefix(b.Entry[0].FullURL, e.base+"/r4/") {
		t.Errorf("R4 by Accept: next %q fullUrl %q, want both under the R4 base", next, b.Entry[0].FullURL)
	} else if r := e.get(next); r.status != 200 {
		t.Errorf("following the R4 next link: %d %s", r.status, r.body)
	}
}

// TestHistoryCompartment: history and vread are read: a patient token sees only its own
// compartment (404 otherwise), and of a resource that moved between compartments only the
// versions that were in its own.
func TestHistoryCompartment(t *testing.T) {
	e := newAuthEnv(t)
	ctx := t.Context()
	// vs-p1 moves to p2's compartment in version 2.
	moved := obs("vs-p1", "p2", "", "29463-7", time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC), "71")
	if _, err := e.store.Upsert(ctx, []fhir.Resource{moved}); err != nil {
		t.Fatal(err)
	}
	p1 := e.mint("patient/*.rs", "p1")
	p2 := e.mint("patient/*.rs", "p2")
	system := e.mint("system/*.rs", "")
	for _, tc := range []struct {
		token, path string
		want        int
	}{
		{p1, "/fhir/Patient/p1/_history", 200},
		{p1, "/fhir/Patient/p1/_history/1", 200},
		{p1, "/fhir/Patient/p2/_history", 404},
		{p1, "/fhir/Patient/p2/_history/1", 404},
		{p1, "/fhir/Observation/vs-p2/_history", 404},
		{p1, "/fhir/Device/dev-p2/_history", 404},
		{p1, "/fhir/Device/dev-p1/_history", 200},
		{p1, "/fhir/Observation/vs-p1/_history", 404},   // now p2's
		{p1, "/fhir/Observation/vs-p1/_history/1", 404}, // was p1's, but the resource is not
		{p2, "/fhir/Observation/vs-p1/_history/2", 200},
		{p2, "/fhir/Observation/vs-p1/_history/1", 404}, // from before it was p2's
		{system, "/fhir/Observation/vs-p1/_history/1", 200},
		{e.mint("patient/Observation.rs", "p1"), "/fhir/Patient/p1/_history", 403},
		{e.mint("patient/Patient.s", "p1"), "/fhir/Patient/p1/_history/1", 403},
		{"", "/fhir/Patient/p1/_history", 401},
	} {
		r := e.as(tc.token, tc.path)
		if r.status != tc.want {
			t.Errorf("%s with %.20s…: %d, want %d (%s)", tc.path, tc.token, r.status, tc.want, r.body)
		}
	}
	// p2 sees the version that is in its compartment, and not the one before.
	if got := e.as(p2, "/fhir/Observation/vs-p1/_history").history(t).versions(t); !slices.Equal(got, []int64{2}) {
		t.Errorf("p2's history of the moved Observation: versions %v, want [2]", got)
	}
	if got := e.as(system, "/fhir/Observation/vs-p1/_history").history(t).versions(t); !slices.Equal(got, []int64{2, 1}) {
		t.Errorf("system history of the moved Observation: versions %v, want [2 1]", got)
	}
	// A cursor made for one caller does not serve another.
	next := e.as(system, "/fhir/Observation/vs-p1/_history?_count=1").history(t).link("next")
	if next == "" {
		t.Fatal("no next link")
	}
	if r := e.as(p2, next); r.status != 400 {
		t.Errorf("another caller's cursor: %d, want 400", r.status)
	}
}
