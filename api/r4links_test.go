package api_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/openhealthexchange/ohx/api/smart"
)

// TestR4Links checks that an R4 answer links to the R4 base, however R4 was chosen: a client
// that picked R4 with Accept on /fhir and follows next without the header (as fhirclient does)
// stays on R4 with a valid cursor, and fullUrls, Location and the R4 CapabilityStatement name
// the R4 base.
func TestR4Links(t *testing.T) {
	e := newEnv(t)
	e.seed()
	r4 := []string{"Accept", "application/fhir+json; fhirVersion=4.0"}
	for _, tc := range []struct {
		name     string
		path     string
		header   []string // sent on the first page only, as fhirclient does
		wantBase string
	}{
		{"R4 by Accept on the R5 base", "/fhir/Observation?patient=p1&_count=5", r4, e.base + "/r4"},
		{"R4 by _format on the R5 base", "/fhir/Observation?patient=p1&_count=5&_format=application/fhir%2Bjson%3B%20fhirVersion%3D4.0", nil, e.base + "/r4"},
		{"R4 base", "/fhir/r4/Observation?patient=p1&_count=5", nil, e.base + "/r4"},
		{"R4 base with Accept", "/fhir/r4/Observation?patient=p1&_count=5", r4, e.base + "/r4"},
		{"R5", "/fhir/Observation?patient=p1&_count=5", nil, e.base},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ids []string
			path, header := tc.path, tc.header
			for page := 1; path != ""; page++ {
				r := e.get(path, header...)
				if r.status != 200 {
					t.Fatalf("page %d: status %d %s", page, r.status, r.body)
				}
				wantVersion := "fhirVersion=4.0"
				if tc.wantBase == e.base {
					wantVersion = "fhirVersion=5.0"
				} else {
					validR4(t, path, r.body)
				}
				if ct := r.header.Get("Content-Type"); !strings.Contains(ct, wantVersion) {
					t.Errorf("page %d: Content-Type %q, want %s", page, ct, wantVersion)
				}
				b := r.bundle(t)
				for _, l := range b.Link {
					if !strings.HasPrefix(l.URL, tc.wantBase+"/Observation?") {
						t.Errorf("page %d: %s link %q, want it under %s", page, l.Relation, l.URL, tc.wantBase)
					}
				}
				for _, en := range b.Entry {
					if !strings.HasPrefix(en.FullURL, tc.wantBase+"/Observation/") || strings.Count(en.FullURL, "/r4/") > 1 {
						t.Errorf("page %d: fullUrl %q, want it under %s", page, en.FullURL, tc.wantBase)
					}
				}
				ids = append(ids, entryIDs(t, b, "match")...)
				path, header = linkOf(b, "next"), nil
				if page > 5 {
					t.Fatal("more than 5 pages")
				}
			}
			if len(ids) != 12 || len(slices.Compact(sortd(ids))) != 12 {
				t.Errorf("paged %d ids %v, want the 12 Observations of p1 once each", len(ids), ids)
			}
		})
	}
	// The cursor is bound to the FHIR version: an R4 cursor does not page an R5 search.
	next := linkOf(e.get("/fhir/r4/Observation?patient=p1&_count=5").bundle(t), "next")
	if r := e.get(strings.Replace(next, "/fhir/r4/", "/fhir/", 1)); r.status != 400 {
		t.Errorf("R4 cursor on the R5 base: got %d, want 400", r.status)
	}
	// Location of an R4 create, and the R4 CapabilityStatement.
	r := e.do("POST", "/fhir/Patient", `{"resourceType":"Patient","name":[{"family":"Four"}]}`,
		"Content-Type", "application/fhir+json", "Accept", "application/fhir+json; fhirVersion=4.0")
	if r.status != 201 || !strings.HasPrefix(r.header.Get("Location"), e.base+"/r4/Patient/") {
		t.Errorf("R4 create: %d Location %q, want it under the R4 base", r.status, r.header.Get("Location"))
	}
	for path, want := range map[string]string{"/fhir/r4/metadata": e.base + "/r4", "/fhir/metadata": e.base} {
		var cs struct {
			URL            string
			Implementation struct{ URL string }
		}
		if err := json.Unmarshal(e.get(path).body, &cs); err != nil {
			t.Fatal(err)
		}
		if cs.Implementation.URL != want || cs.URL != want+"/metadata" {
			t.Errorf("%s: url %q implementation.url %q, want %s", path, cs.URL, cs.Implementation.URL, want)
		}
	}
}

// TestR4BaseSMART checks the R4 base's SMART side: the same smart-configuration as the R5 base,
// and tokens for either base (aud) valid on both.
func TestR4BaseSMART(t *testing.T) {
	e := newPractitionerEnv(t, nil)
	r5, r4 := e.get("/fhir/.well-known/smart-configuration"), e.get("/fhir/r4/.well-known/smart-configuration", "Accept", "application/fhir+json; fhirVersion=4.0")
	if r4.status != 200 || string(r4.body) != string(r5.body) || !strings.HasPrefix(r4.header.Get("Content-Type"), "application/json") {
		t.Errorf("R4 smart-configuration: %d %q %s, want the R5 base's %s", r4.status, r4.header.Get("Content-Type"), r4.body, r5.body)
	}
	for _, tc := range []struct {
		name string
		aud  []string
		want int
	}{
		{"R5 base", []string{e.base}, 200},
		{"R4 base", []string{e.base + "/r4"}, 200},
		{"both", []string{e.base, e.base + "/r4"}, 200},
		{"R4 base with a slash", []string{e.base + "/r4/"}, 401},
		{"another server", []string{"https://other.example/fhir"}, 401},
	} {
		tok := e.mint("system/*.rs", "", func(c *smart.Claims, _ *jwt.Token) { c.Audience = tc.aud })
		for _, path := range []string{"/fhir/Patient/p1", "/fhir/r4/Patient/p1"} {
			if r := e.as(tok, path); r.status != tc.want {
				t.Errorf("%s: %s: got %d, want %d", tc.name, path, r.status, tc.want)
			}
		}
	}
}
