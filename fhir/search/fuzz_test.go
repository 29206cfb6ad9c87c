package search

import (
	"testing"
)

// FuzzParse feeds arbitrary query strings to the parser: it must never panic, and every query
// it accepts must be matchable (Matches runs on it without panicking).
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"patient=p1&code=http://loinc.org|29463-7&date=ge2026-01-01&_sort=-date&_count=50",
		"value-quantity=5.4||mg&date=ap2024&_summary=count",
		`identifier=a\|b|c\,d&code:not=|x&subject:Patient=1`,
		"name:contains=é&family:exact=Doe&birthdate=eb1980-05&_include=*",
		"_count=0&_total=accurate&_elements=code,subject&date=2026-02-03T10:00%2B02:00",
		"%zz=1&=&&a=b=c",
		`patient.identifier=urn:mrn|42,\|x&subject:Device.identifier=W-1&device.identifier=a.b:c`,
	} {
		f.Add("Observation", s)
	}
	reg := DefaultRegistry()
	f.Fuzz(func(t *testing.T, typ, raw string) {
		if !reg.Supports(typ) {
			typ = "Observation"
		}
		pairs, err := ParseRawQuery(raw)
		if err != nil {
			return
		}
		for _, strict := range []bool{false, true} {
			q, _, err := reg.Parse(typ, pairs, Options{Strict: strict})
			if err != nil {
				continue
			}
			if q.Count < 0 || q.Count > 1000 || len(q.Sort) == 0 || q.Sort[len(q.Sort)-1].Param != "_id" {
				t.Fatalf("accepted query out of bounds: count %d sort %v", q.Count, q.Sort)
			}
			Matches(q, "x", 0, Index{Entries: []Entry{{Column: "code", Type: Token, Code: "1"}, {Column: "date", Type: Date, Lo: 0, Hi: 1}}})
		}
	})
}
