package storetest

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/openhealthexchange/ohx/fhir/search"
)

// limitCase is a search as large as the parser allows (search.MaxParams, search.MaxParamValues,
// search.MaxValues), built from the parameter kinds whose translation is the largest. clauses
// and values, when set, are the filter count and the value count the case must parse to, so
// that it stays at the limit it names.
type limitCase struct {
	name            string
	typ             string
	query           string
	clauses, values int
	want            []string
}

// list joins n values made by f with sep.
func list(n int, sep string, f func(i int) string) string {
	parts := make([]string, n)
	for i := range parts {
		parts[i] = f(i)
	}
	return strings.Join(parts, sep)
}

// weightFilters are filters that obs-01, obs-02, obs-09 and obs-10 (weights in kg) all match, one
// per kind of translation: subqueries on each index table, date ranges, :not, _id, _lastUpdated.
var weightFilters = []string{
	"value-quantity=ne99999",
	"date=ge2000",
	"status:not=cancelled",
	"category=vital-signs",
	"_id:not=obs-14",
	"_lastUpdated=gt2000",
	"identifier:not=none",
	"value-quantity=gt1||kg",
}

// weightFilter returns weightFilters[i] (cyclically) with n-1 further values that change nothing.
func weightFilter(i, n int) string {
	name, first, _ := strings.Cut(weightFilters[i%len(weightFilters)], "=")
	var more func(j int) string
	switch name {
	case "value-quantity":
		more = func(j int) string { return fmt.Sprintf("ne1||unit-%d", j) } // the most bind variables per value
	case "date", "_lastUpdated":
		more = func(j int) string { return fmt.Sprintf("eb19%02d", j%100) }
	case "category":
		more = func(j int) string { return fmt.Sprintf("%s|none-%d", obsCategory, j) }
	default: // :not and _id:not of several values exclude any of them
		more = func(j int) string { return fmt.Sprintf("none-%d", j) }
	}
	if n == 1 {
		return name + "=" + first
	}
	return name + "=" + first + "," + list(n-1, ",", more)
}

// weightCodes is code=weight with n-1 further codes that match nothing.
func weightCodes(n int) string {
	return "code=" + codeWeight + "," + list(n-1, ",", func(j int) string { return fmt.Sprintf("%s|none-%d", loinc, j) })
}

func limitCases() []limitCase {
	const perParam, params, total = search.MaxParamValues, search.MaxParams, search.MaxValues
	includes := []string{"_include=Observation:device", "_include=Observation:patient", "_include=Observation:subject"}
	return []limitCase{
		{"one token parameter with MaxParamValues values", "Observation", weightCodes(perParam), 1, perParam, obs(1, 2, 9, 10, 11)},
		{"one quantity parameter with MaxParamValues values", "Observation",
			"value-quantity=73," + list(perParam-1, ",", func(j int) string { return fmt.Sprintf("ne1||unit-%d", j) }), 1, perParam, obs(1, 2)},
		{"one date parameter with MaxParamValues values", "Observation",
			"date=2024-02-10," + list(perParam-1, ",", func(j int) string { return fmt.Sprintf("eb19%02d", j%100) }), 1, perParam, obs(2, 3, 10)},
		{"one string parameter with MaxParamValues values", "Patient",
			"family:contains=mith," + list(perParam-1, ",", func(j int) string { return fmt.Sprintf("none%d", j) }), 1, perParam, pat(2, 3)},
		{"MaxParams parameters on the clustered path", "Observation",
			"patient=pat-1&code=" + codeWeight + "&" + list(params-2, "&", func(i int) string { return weightFilter(i, 1) }), params, params, obs(1, 2)},
		{"MaxParams parameters, :missing among them", "Observation",
			"patient=pat-1,pat-3&" + list(params-3, "&", func(i int) string { return weightFilter(i, 1) }) + "&device:missing=false&subject:missing=false",
			params, params + 1, obs(1, 2, 9, 10)},
		{"MaxValues values in parameters of MaxParamValues values", "Observation",
			weightCodes(perParam) + "&" + list(total/perParam-1, "&", func(i int) string { return weightFilter(i, perParam) }),
			total / perParam, total, obs(1, 2, 9, 10)},
		{"MaxValues values in MaxParams parameters", "Observation",
			weightCodes(total/params) + "&" + list(params-1, "&", func(i int) string { return weightFilter(i, total/params) }),
			params, total, obs(1, 2, 9, 10)},
		{"MaxParams parameters, includes among them", "Observation",
			"code=" + codeWeight + "&patient=pat-1&" + list(params-2, "&", func(i int) string { return includes[i%len(includes)] }), 2, 2, obs(1, 2)},
	}
}

// testLimits runs searches at the parser's size limits: a store must answer every search the
// parser accepts (SQLite, for one, refuses expression trees deeper than 1000 and more than 32766
// bind variables), on every page.
func testLimits(t *testing.T, open opener) {
	s := open(t)
	f := loadFixture(t, s)
	for _, tc := range limitCases() {
		t.Run(tc.name, func(t *testing.T) {
			q := parse(t, tc.typ, tc.query)
			values := 0
			for _, c := range q.Clauses {
				values += max(1, len(c.Values))
			}
			if len(q.Clauses) != tc.clauses || values != tc.values {
				t.Fatalf("the query parses to %d clauses of %d values, want %d of %d", len(q.Clauses), values, tc.clauses, tc.values)
			}
			if diff := cmp.Diff(tc.want, nonEmpty(f.oracle(q))); diff != "" {
				t.Fatalf("suite expectation disagrees with search.Matches (-want +Matches):\n%s", diff)
			}
			res := mustSearch(t, s, q)
			if diff := cmp.Diff(tc.want, nonEmpty(sortedIDs(res.Matches))); diff != "" {
				t.Errorf("Search (-want +got):\n%s", diff)
			}
			// One match per page, newest first: the keyset condition joins the filters.
			var got []string
			for _, p := range walkNext(t, s, tc.typ, tc.query+"&_count=1&_sort=-_lastUpdated") {
				got = append(got, ids(p.Matches)...)
			}
			slices.Sort(got)
			if diff := cmp.Diff(tc.want, nonEmpty(got)); diff != "" {
				t.Errorf("Search paged by one (-want +got):\n%s", diff)
			}
		})
	}
}
