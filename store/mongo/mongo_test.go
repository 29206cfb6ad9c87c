package mongo

import (
	"errors"
	"regexp"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/fhir/search"
	"github.com/openhealthexchange/ohx/store"
	"github.com/openhealthexchange/ohx/store/storetest"
)

// TestConformance runs the store conformance suite against the embedded FerretDB.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t testing.TB) store.Store { return openFerret(t) })
}

// TestConformanceMongoDB runs the suite against a real MongoDB when OHX_TEST_MONGO_URI is set.
func TestConformanceMongoDB(t *testing.T) {
	uri := realMongoURI(t)
	storetest.Run(t, func(t testing.TB) store.Store { return openAt(t, uri) })
}

// TestTotalBound runs the bounded-total conformance check with a small bound.
func TestTotalBound(t *testing.T) {
	storetest.RunTotalBound(t, 5, func(t testing.TB) store.Store {
		s := openFerret(t)
		s.totalBound = 5
		return s
	})
}

// TestKeys checks that composite keys stay unambiguous whatever the components hold.
func TestKeys(t *testing.T) {
	for _, tc := range []struct{ system, code string }{
		{"", "a"}, {"a|b", "c"}, {"a", "b|c"}, {`a\`, "|c"}, {`a\|`, `\`}, {"|", "|"},
	} {
		k := tokenKey("code", tc.system, tc.code)
		// The any-system pattern must recognise the code, and the any-code pattern the system.
		anySys := regexp.MustCompile("^" + colsRE([]string{"code"}) + escComponentRE + `*\|` + quoteRE(esc(tc.code)) + `\z`)
		anyCode := regexp.MustCompile("^" + colsRE([]string{"code"}) + quoteRE(esc(tc.system)) + `\|`)
		if !anySys.MatchString(k) {
			t.Errorf("key %q: any-system pattern for code %q does not match", k, tc.code)
		}
		if !anyCode.MatchString(k) {
			t.Errorf("key %q: any-code pattern for system %q does not match", k, tc.system)
		}
		for _, other := range []struct{ system, code string }{{tc.system + "x", tc.code}, {tc.system, tc.code + "x"}, {"x" + tc.system, tc.code}} {
			if tokenKey("code", other.system, other.code) == k {
				t.Errorf("tokenKey collision: %q", k)
			}
		}
		if other := tokenKey("code", tc.system, tc.code+"x"); anySys.MatchString(other) {
			t.Errorf("any-system pattern for %q matches %q", tc.code, other)
		}
	}
	for _, tc := range []struct{ typ, id string }{{"Patient", "p1"}, {"A|b", `c\d`}} {
		col, typ, id, ok := splitRefKey(localRefKey("subject", tc.typ, tc.id))
		if !ok || col != "subject" || typ != tc.typ || id != tc.id {
			t.Errorf("splitRefKey(localRefKey(%q, %q)) = %q %q %q %v", tc.typ, tc.id, col, typ, id, ok)
		}
	}
	if _, _, _, ok := splitRefKey(urlRefKey("subject", "https://x.example/Patient/1")); ok {
		t.Errorf("splitRefKey accepted a URL key")
	}
	for _, s := range []string{"a.b*c", `^$\|?+()[]{}`, "tab\there\x00nul", "naïve café", "(?i)x"} {
		re := regexp.MustCompile("^" + quoteRE(s) + `\z`)
		if !re.MatchString(s) {
			t.Errorf("quoteRE(%q) = %q does not match itself", s, quoteRE(s))
		}
	}
}

// TestOneDatePerColumn checks that an index the document model cannot hold exactly is refused.
func TestOneDatePerColumn(t *testing.T) {
	idx := search.Index{Entries: []search.Entry{
		{Column: "date", Type: search.Date, Lo: 1, Hi: 2},
		{Column: "date", Type: search.Date, Lo: 3, Hi: 4},
	}}
	if err := buildIndex(&document{}, idx); err == nil {
		t.Errorf("buildIndex accepted two dates in one column")
	}
}

// TestEscapedValues stores tokens, strings and references full of key and regex metacharacters
// and checks that every search agrees with search.Matches.
func TestEscapedValues(t *testing.T) {
	s := openFerret(t)
	ctx := t.Context()
	mk := func(id, system, code, name string) *fhir.Patient {
		p := &fhir.Patient{Base: fhir.Base{ResourceType: "Patient", ID: id}}
		p.Identifier = []fhir.Identifier{{System: system, Value: code}}
		p.Name = []fhir.HumanName{{Family: name}}
		return p
	}
	rs := []*fhir.Patient{
		mk("p1", "urn:a|b", "c", "a.c"),
		mk("p2", "urn:a", "b|c", "abc"),
		mk("p3", `urn:a\`, `|c`, "a*c|x"),
		mk("p4", "", "c", "(a)c"),
		mk("p5", "urn:a", `c\`, "A.C dé"),
	}
	type stored struct {
		id  string
		lu  int64
		idx search.Index
	}
	var all []stored
	for _, r := range rs {
		e, err := s.Create(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		idx, err := search.Extract(r)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, stored{e.ID, e.LastUpdated.UnixMicro(), idx})
	}
	reg := search.DefaultRegistry()
	for _, raw := range []string{
		`identifier=urn:a\|b|c`, `identifier=urn:a|b\|c`, `identifier=c`, `identifier=|c`, `identifier=\|c`,
		`identifier=urn:a|`, `identifier=urn:a\|b|`, `identifier=urn:a\\|\|c`, `identifier=urn:a|c\\`,
		`identifier:not=c`, `identifier:missing=false`,
		`name=a.`, `name=a*`, `name=A.C`, `name=(a`, `name:contains=.c`, `name:contains=|`, `name:contains=de`,
		`name:exact=a.c`, `name:exact=A.C dé`, `name:exact=a*c|x`, `family:contains=*c|`,
		`_id=p1,p3`, `_id:not=p1`, `_id=x|p1`, `_id=|p2`,
	} {
		pairs, err := search.ParseRawQuery(raw)
		if err != nil {
			t.Fatal(err)
		}
		q, _, err := reg.Parse("Patient", pairs, search.Options{Strict: true})
		if err != nil {
			t.Fatalf("Parse(%s): %v", raw, err)
		}
		q.Count = 100
		res, err := s.Search(ctx, q)
		if err != nil {
			t.Fatalf("Search(%s): %v", raw, err)
		}
		var got, want []string
		for _, e := range res.Matches {
			got = append(got, e.ID)
		}
		for _, st := range all {
			if search.Matches(q, st.id, st.lu, st.idx) {
				want = append(want, st.id)
			}
		}
		slices.Sort(got)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("Search(%s) vs search.Matches (-want +got):\n%s", raw, diff)
		}
	}
}

// TestUpsertDerivedIDs checks what the bulk path hands over to the single-document path: a
// resource deleted and upserted again comes back under its id with the next version.
func TestUpsertDerivedIDs(t *testing.T) {
	s := openFerret(t)
	ctx := t.Context()
	obs := func(v string) fhir.Resource { return weightRecord("m-1", v) }
	first, err := s.Upsert(ctx, []fhir.Resource{obs("70")})
	if err != nil {
		t.Fatal(err)
	}
	id := first[0].ID
	if err := s.Delete(ctx, "Observation", id); err != nil {
		t.Fatal(err)
	}
	again, err := s.Upsert(ctx, []fhir.Resource{obs("71"), obs("72")})
	if err != nil {
		t.Fatal(err)
	}
	want := []store.UpsertResult{{ID: id, VersionID: 3, Created: true}, {ID: id, VersionID: 4, Changed: true}}
	if diff := cmp.Diff(want, again); diff != "" {
		t.Errorf("Upsert after Delete (-want +got):\n%s", diff)
	}
	e, err := s.Read(ctx, "Observation", id)
	if err != nil || e.VersionID != 4 {
		t.Errorf("Read = version %d, %v; want version 4", e.VersionID, err)
	}
	if _, err := s.Read(ctx, "Observation", "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Read(nope) = %v, want ErrNotFound", err)
	}
}

// weightRecord is a final body weight of kg kilograms, identified as record of https://m.example.
func weightRecord(record, kg string) *fhir.Observation {
	d := fhir.Decimal(kg)
	return &fhir.Observation{
		Base:              fhir.Base{ResourceType: "Observation"},
		Identifier:        []fhir.Identifier{{System: "https://m.example", Value: record}},
		Status:            "final",
		Code:              fhir.CodeableConcept{Coding: []fhir.Coding{{System: "http://loinc.org", Code: "29463-7"}}},
		Value:             fhir.Value{ValueQuantity: &fhir.Quantity{Value: &d, Unit: "kg"}},
		EffectiveDateTime: "2024-01-01T00:00:00Z",
	}
}
