package api_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/fhir/search"
)

// joinN joins f(0) … f(n-1) with sep.
func joinN(n int, sep string, f func(i int) string) string {
	parts := make([]string, n)
	for i := range parts {
		parts[i] = f(i)
	}
	return strings.Join(parts, sep)
}

// orValues is name=first followed by n-1 values that match nothing.
func orValues(name, first string, n int, none func(j int) string) string {
	if n == 1 {
		return name + "=" + first
	}
	return name + "=" + first + "," + joinN(n-1, ",", none)
}

// p1Weight is the i-th (cyclically) of four filters all twelve weights of p1 in the seed match,
// with n values.
func p1Weight(i, n int) string {
	switch i % 4 {
	case 0:
		return orValues("value-quantity", "ne99999", n, func(j int) string { return fmt.Sprintf("ne1||unit-%d", j) })
	case 1:
		return orValues("date", "ge2000", n, func(j int) string { return fmt.Sprintf("eb19%02d", j%100) })
	case 2:
		return orValues("status", "final", n, func(j int) string { return fmt.Sprintf("none-%d", j) })
	}
	return orValues("code", "http://loinc.org|29463-7", n, func(j int) string { return fmt.Sprintf("http://loinc.org|none-%d", j) })
}

// searchBoth runs the query as GET and as POST _search (form body).
func (e *env) searchBoth(typ, query string) map[string]response {
	e.t.Helper()
	return map[string]response{
		"GET":          e.get("/fhir/" + typ + "?" + query),
		"POST _search": e.do("POST", "/fhir/"+typ+"/_search", query, "Content-Type", "application/x-www-form-urlencoded"),
	}
}

// TestSearchTooCostly: searches beyond search.MaxParams, MaxParamValues or MaxValues are a 400
// too-costly OperationOutcome, whichever way they come (audit item 9); they used to reach SQLite
// and answer 500 ("Expression tree is too large").
func TestSearchTooCostly(t *testing.T) {
	e := newEnv(t)
	e.seed()
	for _, tc := range []struct{ name, query string }{
		{"500 values", "code=" + joinN(500, ",", func(j int) string { return fmt.Sprint("c", j) })},
		{"MaxParamValues+1 values", "code=" + joinN(search.MaxParamValues+1, ",", func(j int) string { return fmt.Sprint("c", j) })},
		{"1000 parameters", joinN(1000, "&", func(int) string { return "code=a" })},
		{"MaxParams+1 parameters", joinN(search.MaxParams+1, "&", func(int) string { return "status=final" })},
		{"MaxValues+1 values", "patient=p1&" + joinN(search.MaxValues/search.MaxParamValues, "&", func(i int) string { return p1Weight(i, search.MaxParamValues) })},
	} {
		for how, r := range e.searchBoth("Observation", tc.query) {
			t.Run(tc.name+"/"+how, func(t *testing.T) {
				if r.status != http.StatusBadRequest {
					t.Fatalf("status %d, want 400: %.200s", r.status, r.body)
				}
				if oo := r.outcome(t); oo.Issue[0].Code != fhir.CodeTooCostly {
					t.Errorf("issue %+v, want code %s", oo.Issue[0], fhir.CodeTooCostly)
				}
			})
		}
	}
	// The query string and the body of a POST _search count together.
	half := joinN(search.MaxParams/2+1, "&", func(int) string { return "status=final" })
	r := e.do("POST", "/fhir/Observation/_search?"+half, half, "Content-Type", "application/x-www-form-urlencoded")
	if r.status != http.StatusBadRequest || r.outcome(t).Issue[0].Code != fhir.CodeTooCostly {
		t.Errorf("POST _search with %d parameters in the URL and as many in the body: %d %.200s", search.MaxParams/2+1, r.status, r.body)
	}
}

// TestSearchAtLimits: the largest searches the parser accepts run on the SQLite store, GET and
// POST, and so do their next pages (the paging condition adds to the SQL). The store
// conformance suite (storetest Limits) runs the same sizes on every store.
func TestSearchAtLimits(t *testing.T) {
	e := newEnv(t)
	e.seed()
	perParam, params, total := search.MaxParamValues, search.MaxParams, search.MaxValues
	for _, tc := range []struct{ name, query string }{
		{"MaxParamValues values", "patient=p1&" + p1Weight(0, perParam)},
		{"MaxParams parameters", "patient=p1&" + joinN(params-1, "&", func(i int) string { return p1Weight(i, 1) })},
		{"MaxValues values in parameters of MaxParamValues", joinN(total/perParam-1, "&", func(i int) string { return p1Weight(i, perParam) }) +
			"&" + p1Weight(3, perParam-1) + "&patient=Patient/p1"},
		{"MaxValues values in MaxParams parameters", "patient=p1,Patient/p1,p1,p1,p1,p1,p1,p1,p1,p1&" +
			joinN(params-1, "&", func(i int) string { return p1Weight(i, total/params) })},
	} {
		// _total=none: the count is not what is tested, and it would prepare each search twice.
		for how, r := range e.searchBoth("Observation", tc.query+"&_count=5&_total=none") {
			t.Run(tc.name+"/"+how, func(t *testing.T) {
				var ids []string
				for page := 0; ; page++ {
					b := r.bundle(t)
					if r.status != http.StatusOK {
						t.Fatalf("page %d: status %d: %.300s", page, r.status, r.body)
					}
					ids = append(ids, entryIDs(t, b, "match")...)
					next := linkOf(b, "next")
					if next == "" || page > 5 {
						break
					}
					r = e.get(next)
				}
				if len(ids) != 12 {
					t.Errorf("got %d matches %v, want p1's 12 weights", len(ids), ids)
				}
			})
		}
	}
}
