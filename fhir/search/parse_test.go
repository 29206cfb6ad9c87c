package search

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/openhealthexchange/ohx/fhir"
)

func mustParse(t *testing.T, typ, raw string, opt Options) *Query {
	t.Helper()
	pairs, err := ParseRawQuery(raw)
	if err != nil {
		t.Fatal(err)
	}
	q, _, err := DefaultRegistry().Parse(typ, pairs, opt)
	if err != nil {
		t.Fatalf("Parse(%q): %v", raw, err)
	}
	return q
}

func micros(s string) int64 {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t.UnixMicro()
}

func TestParseValues(t *testing.T) {
	opt := Options{BaseURL: "https://ohx.test/fhir"}
	for _, tc := range []struct {
		name, typ, raw string
		mod            string
		want           []Value
	}{
		{"token code", "Observation", "code=29463-7", "", []Value{{Code: "29463-7", AnySystem: true}}},
		{"token system|code", "Observation", "code=http://loinc.org|29463-7", "", []Value{{System: "http://loinc.org", Code: "29463-7"}}},
		{"token |code", "Observation", "code=|x", "", []Value{{Code: "x"}}},
		{"token system|", "Observation", "code=http://loinc.org|", "", []Value{{System: "http://loinc.org", AnyCode: true}}},
		{"token escaped", "Observation", `identifier=a\|b|c\,d`, "", []Value{{System: "a|b", Code: "c,d"}}},
		{"token OR", "Observation", "status=final,amended", "", []Value{{Code: "final", AnySystem: true}, {Code: "amended", AnySystem: true}}},
		{"token :not", "Observation", "status:not=final", "not", []Value{{Code: "final", AnySystem: true}}},
		{"reference id (single target)", "Observation", "patient=p1", "", []Value{{RefType: "Patient", RefID: "p1"}}},
		{"reference id (many targets)", "Observation", "subject=p1", "", []Value{{RefID: "p1"}}},
		{"reference Type/id", "Observation", "subject=Patient/p1", "", []Value{{RefType: "Patient", RefID: "p1"}}},
		{"reference absolute on our base", "Observation", "subject=https://ohx.test/fhir/Patient/p1", "", []Value{{RefType: "Patient", RefID: "p1"}}},
		{"reference foreign URL", "Observation", "subject=https://other.test/Patient/p1", "", []Value{{RefURL: "https://other.test/Patient/p1"}}},
		{"reference type modifier", "Observation", "subject:Patient=p1", "Patient", []Value{{RefType: "Patient", RefID: "p1"}}},
		{"string", "Patient", "name=José", "", []Value{{Str: "José", Norm: "jose"}}},
		{"string exact", "Patient", "family:exact=Doe", "exact", []Value{{Str: "Doe", Norm: "doe"}}},
		{"date year", "Observation", "date=2026", "", []Value{{Prefix: "eq", Lo: micros("2026-01-01T00:00:00Z"), Hi: micros("2027-01-01T00:00:00Z")}}},
		{"date ge day", "Observation", "date=ge2026-02-03", "", []Value{{Prefix: "ge", Lo: micros("2026-02-03T00:00:00Z"), Hi: micros("2026-02-04T00:00:00Z")}}},
		{"date second with zone", "Observation", "date=lt2026-02-03T10:00:00%2B02:00", "", []Value{{Prefix: "lt", Lo: micros("2026-02-03T08:00:00Z"), Hi: micros("2026-02-03T08:00:01Z")}}},
		{"date no zone is UTC", "Observation", "date=sa2026-02-03T10:00", "", []Value{{Prefix: "sa", Lo: micros("2026-02-03T10:00:00Z"), Hi: micros("2026-02-03T10:01:00Z")}}},
		{"quantity", "Observation", "value-quantity=70.5|http://unitsofmeasure.org|kg", "", []Value{{Prefix: "eq", Num: 70.5, NumLo: 70.45, NumHi: 70.55, System: "http://unitsofmeasure.org", Code: "kg"}}},
		{"quantity unit any", "Observation", "value-quantity=gt100||mg", "", []Value{{Prefix: "gt", Num: 100, NumLo: 99.5, NumHi: 100.5, Code: "mg", AnySystem: true, UnitAny: true}}},
		{"quantity number only", "Observation", "value-quantity=le5", "", []Value{{Prefix: "le", Num: 5, NumLo: 4.5, NumHi: 5.5, AnySystem: true, AnyCode: true}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := mustParse(t, tc.typ, tc.raw, opt)
			if len(q.Clauses) != 1 {
				t.Fatalf("clauses: %d", len(q.Clauses))
			}
			c := q.Clauses[0]
			if c.Modifier != tc.mod {
				t.Errorf("modifier %q, want %q", c.Modifier, tc.mod)
			}
			if diff := cmp.Diff(tc.want, c.Values, cmp.Comparer(func(a, b float64) bool { d := a - b; return d < 1e-9 && d > -1e-9 })); diff != "" {
				t.Errorf("values (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseResultParameters(t *testing.T) {
	q := mustParse(t, "Observation", "patient=p1&patient=p2&code=&_count=5000&_sort=-date&_include=Observation:device&_revinclude=*&_summary=count&_elements=code,subject&_total=accurate&bogus=1&_format=json", Options{})
	if len(q.Clauses) != 2 {
		t.Errorf("repeated parameter must give two ANDed clauses, empty value none: got %d", len(q.Clauses))
	}
	if q.Count != 1000 {
		t.Errorf("_count capped: got %d, want 1000", q.Count)
	}
	if diff := cmp.Diff([]SortKey{{"date", true}, {"_id", true}}, q.Sort); diff != "" {
		t.Errorf("sort (-want +got):\n%s", diff)
	}
	if !q.SummaryCount || q.Total != "accurate" || len(q.Elements) != 2 || len(q.Include) != 1 || len(q.RevInclude) != 0 {
		t.Errorf("result parameters: %+v", q)
	}
	for _, nv := range q.Applied {
		if nv.Name == "bogus" || nv.Name == "_format" || nv.Name == "code" {
			t.Errorf("self link would list %s", nv.Name)
		}
	}
	if q := mustParse(t, "Observation", "_count=0", Options{}); !q.SummaryCount {
		t.Errorf("_count=0 must behave like _summary=count")
	}
	if q := mustParse(t, "Observation", "", Options{}); q.Count != 50 || q.Sort[0].Param != "_id" {
		t.Errorf("defaults: count %d sort %v", q.Count, q.Sort)
	}
	if q := mustParse(t, "Device", "_revinclude=*", Options{}); len(q.RevInclude) != 2 {
		t.Errorf("Device _revinclude=*: %v", q.RevInclude)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		typ, raw string
		strict   bool
		status   int
		code     string
	}{
		{"Observation", "date=2026-13", false, 400, fhir.CodeValue},
		{"Observation", "date=gt", false, 400, fhir.CodeValue},
		{"Observation", "value-quantity=abc", false, 400, fhir.CodeValue},
		{"Observation", "value-quantity=1|2", false, 400, fhir.CodeValue},
		{"Observation", "_count=-1", false, 400, fhir.CodeValue},
		{"Observation", "_sort=status", false, 400, fhir.CodeNotSupported},
		{"Observation", "_summary=maybe", false, 400, fhir.CodeValue},
		{"Observation", "_count=1&_count=2", false, 400, fhir.CodeInvalid},
		{"Observation", "code:missing=maybe", false, 400, fhir.CodeValue},
		{"Observation", "patient=Device/d1", false, 400, fhir.CodeValue},
		{"Observation", "subject=Patient/1/_history/2", false, 400, fhir.CodeNotSupported},
		{"Observation", "patient=bad$id", false, 400, fhir.CodeValue},
		{"Observation", "bogus=1", true, 400, fhir.CodeNotSupported},
		{"Observation", "code:below=x", true, 400, fhir.CodeNotSupported},
		{"Observation", "subject.name=x", true, 400, fhir.CodeNotSupported},
		{"Observation", "_include=Observation:performer", true, 400, fhir.CodeNotSupported},
	} {
		t.Run(tc.raw, func(t *testing.T) {
			pairs, err := ParseRawQuery(tc.raw)
			if err != nil {
				t.Fatal(err)
			}
			_, _, err = DefaultRegistry().Parse(tc.typ, pairs, Options{Strict: tc.strict})
			var fe *fhir.Error
			if !errors.As(err, &fe) || fe.Status != tc.status || fe.Code != tc.code {
				t.Errorf("got %v, want %d %s", err, tc.status, tc.code)
			}
		})
	}
	// Lenient: the same unknown things are dropped.
	if q := mustParse(t, "Observation", "bogus=1&code:below=x&subject.name=x", Options{}); len(q.Clauses) != 0 || len(q.Applied) != 0 {
		t.Errorf("lenient parsing kept %v", q.Applied)
	}
	if _, err := ParseRawQuery("a=%zz"); err == nil || http.StatusBadRequest != err.(*fhir.Error).Status {
		t.Errorf("malformed escape: %v", err)
	}
}

// TestDateMatches checks every prefix against the prefix table of https://hl7.org/fhir/R5/search.html#prefix, with
// the search range [10, 20).
func TestDateMatches(t *testing.T) {
	for _, tc := range []struct {
		prefix string
		lo, hi int64
		want   bool
	}{
		{"eq", 10, 20, true}, {"eq", 12, 13, true}, {"eq", 5, 15, false}, {"eq", 15, 25, false},
		{"ne", 12, 13, false}, {"ne", 5, 15, true},
		{"gt", 15, 25, true}, {"gt", 12, 13, false}, {"gt", 20, 21, true},
		{"lt", 5, 15, true}, {"lt", 12, 13, false}, {"lt", 9, 10, true},
		{"ge", 12, 13, true}, {"ge", 15, 25, true}, {"ge", 5, 9, false},
		{"le", 12, 13, true}, {"le", 5, 15, true}, {"le", 21, 22, false},
		{"sa", 20, 21, true}, {"sa", 19, 21, false},
		{"eb", 9, 10, true}, {"eb", 9, 11, false},
		{"ap", 19, 30, true}, {"ap", 20, 30, false},
	} {
		if got := DateMatches(tc.prefix, 10, 20, tc.lo, tc.hi); got != tc.want {
			t.Errorf("%s [10,20) vs [%d,%d): got %v, want %v", tc.prefix, tc.lo, tc.hi, got, tc.want)
		}
	}
}

func TestExtract(t *testing.T) {
	v := fhir.Decimal("72.50")
	o := &fhir.Observation{Base: fhir.Base{ResourceType: "Observation", ID: "o1"}, Status: "final",
		Code:            fhir.CodeableConcept{Coding: []fhir.Coding{{System: "http://loinc.org", Code: "29463-7"}, {System: "http://loinc.org", Code: "29463-7"}}},
		Subject:         &fhir.Reference{Reference: "Patient/p1"},
		EffectivePeriod: &fhir.Period{Start: "2026-01-01T00:00:00+01:00", End: "2026-01-02T00:00:00+01:00"},
		Value:           fhir.Value{ValueQuantity: &fhir.Quantity{Value: &v, System: "http://unitsofmeasure.org", Code: "kg"}},
		Component:       []fhir.ObservationComponent{{Code: fhir.CodeableConcept{Coding: []fhir.Coding{{System: "http://loinc.org", Code: "8480-6"}}}}},
	}
	idx, err := Extract(o)
	if err != nil {
		t.Fatal(err)
	}
	if idx.Patient != "p1" || idx.SortDate != micros("2025-12-31T23:00:00Z") {
		t.Errorf("patient %q sort date %d", idx.Patient, idx.SortDate)
	}
	count := map[string]int{}
	for _, e := range idx.Entries {
		count[e.Column]++
	}
	want := map[string]int{"subject": 1, "code": 1, "date": 1, "status": 1, "value-quantity": 1, "component-code": 1}
	if diff := cmp.Diff(want, count); diff != "" {
		t.Errorf("entries per column (-want +got):\n%s", diff)
	}
}
