package search

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"

	"github.com/openhealthexchange/ohx/fhir"
)

// repeat joins n copies of f(i) with sep.
func repeat(n int, sep string, f func(i int) string) string {
	parts := make([]string, n)
	for i := range parts {
		parts[i] = f(i)
	}
	return strings.Join(parts, sep)
}

func codes(n int) string {
	return "code=" + repeat(n, ",", func(i int) string { return fmt.Sprintf("c%d", i) })
}

// TestParseLimits: a search larger than MaxParams, MaxParamValues or MaxValues is a 400
// too-costly before any store sees it; a search exactly at a limit parses.
func TestParseLimits(t *testing.T) {
	filters := func(n int, f string) string { return repeat(n, "&", func(int) string { return f }) }
	results := "&_count=10&_sort=-date&_summary=true&_total=accurate&_elements=code&_format=json&_pretty=true"
	for _, tc := range []struct {
		name string
		raw  string
		ok   bool
	}{
		{"MaxParamValues values", codes(MaxParamValues), true},
		{"one value more", codes(MaxParamValues + 1), false},
		{"500 values (a hostile request)", codes(500), false},
		{"MaxParamValues values of a date", "date=" + repeat(MaxParamValues, ",", func(int) string { return "ge2024" }), true},
		{"one date value more", "date=" + repeat(MaxParamValues+1, ",", func(int) string { return "ge2024" }), false},
		{"escaped commas do not separate values", "code=" + repeat(MaxParamValues+1, `\,`, func(int) string { return "a" }), true},
		{"MaxParams parameters", filters(MaxParams, "code=a"), true},
		{"one parameter more", filters(MaxParams+1, "code=a"), false},
		{"1000 parameters (a hostile request)", filters(1000, "code=a"), false},
		{"result parameters do not count", filters(MaxParams, "code=a") + results, true},
		{"unknown parameters count", filters(MaxParams, "code=a") + "&bogus=1", false},
		{"empty parameters count", filters(MaxParams, "code=a") + "&code=", false},
		{"includes count", filters(MaxParams-2, "code=a") + "&_include=Observation:device&_revinclude=*", true},
		{"one include more", filters(MaxParams-1, "code=a") + "&_include=Observation:device&_include=Observation:device", false},
		{"MaxValues values", filters(MaxValues/MaxParamValues, codes(MaxParamValues)), true},
		{"one value more in all", filters(MaxValues/MaxParamValues, codes(MaxParamValues)) + "&code=a", false},
		{":missing counts one value", filters(MaxValues/MaxParamValues, codes(MaxParamValues)) + "&code:missing=false", false},
		{"MaxParamValues _sort keys", "_sort=" + repeat(MaxParamValues, ",", func(int) string { return "date" }), true},
		{"one _sort key more", "_sort=" + repeat(MaxParamValues+1, ",", func(int) string { return "date" }), false},
		{"MaxParamValues _elements", "_elements=" + repeat(MaxParamValues, ",", func(i int) string { return fmt.Sprint("e", i) }), true},
		{"one _elements name more", "_elements=" + repeat(MaxParamValues+1, ",", func(i int) string { return fmt.Sprint("e", i) }), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pairs, err := ParseRawQuery(tc.raw)
			if err != nil {
				t.Fatal(err)
			}
			_, _, err = DefaultRegistry().Parse("Observation", pairs, Options{})
			if tc.ok {
				if err != nil {
					t.Fatalf("Parse: %v, want success at the limit", err)
				}
				return
			}
			var fe *fhir.Error
			if !errors.As(err, &fe) || fe.Status != http.StatusBadRequest || fe.Code != fhir.CodeTooCostly {
				t.Fatalf("got %v, want 400 %s", err, fhir.CodeTooCostly)
			}
			if fe.Diagnostics == "" || !strings.Contains(fe.Diagnostics, "at most") {
				t.Errorf("diagnostics %q do not state the limit", fe.Diagnostics)
			}
		})
	}
}

// TestParseSortRepeatedKeys: a repeated _sort key cannot change the order and is dropped, so the
// ORDER BY and the paging condition do not grow with it.
func TestParseSortRepeatedKeys(t *testing.T) {
	q := mustParse(t, "Observation", "_sort=date,-date,_lastUpdated,date,_lastUpdated", Options{})
	want := []SortKey{{"date", false}, {"_lastUpdated", false}, {"_id", false}}
	if diff := cmp.Diff(want, q.Sort); diff != "" {
		t.Errorf("sort (-want +got):\n%s", diff)
	}
}

// TestParseRawQueryInvalidUTF8: names and values must be UTF-8 once percent-decoded; the
// diagnostics never carry the bad bytes, nor cut a character in two.
func TestParseRawQueryInvalidUTF8(t *testing.T) {
	long := "a" + strings.Repeat("é", 40) // byte 64 falls inside an é
	for _, raw := range []string{
		"name=%FF",
		"name=Jos%C3",
		"name=%C0%AF",
		"name=%ED%A0%80",
		"%FF=x",
		"family%FF=x",
		"name=\xff", // a raw byte, not percent-encoded
		percentAll(long) + "=%FF",
	} {
		t.Run(raw, func(t *testing.T) {
			_, err := ParseRawQuery(raw)
			var fe *fhir.Error
			if !errors.As(err, &fe) || fe.Status != http.StatusBadRequest || fe.Code != fhir.CodeInvalid {
				t.Fatalf("got %v, want 400 %s", err, fhir.CodeInvalid)
			}
			if !strings.Contains(fe.Diagnostics, "UTF-8") || !utf8.ValidString(fe.Diagnostics) {
				t.Errorf("diagnostics %q", fe.Diagnostics)
			}
		})
	}
	got, err := ParseRawQuery("name=Jos%C3%A9&family=%F0%9F%98%80&given=%EF%BF%BD")
	if err != nil {
		t.Fatalf("valid UTF-8: %v", err)
	}
	want := []NameValue{{"name", "José"}, {"family", "😀"}, {"given", "\uFFFD"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// percentAll percent-encodes every byte of s.
func percentAll(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		fmt.Fprintf(&b, "%%%02X", s[i])
	}
	return b.String()
}
