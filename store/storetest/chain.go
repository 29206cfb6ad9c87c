package storetest

import (
	"fmt"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/store"
)

// The Chain test: chained searches (patient.identifier=…) page like any search, follow the
// target's identifiers as they are now, and never reach a deleted target. The fixture's Search
// cases cover every chain, value form and OR; this data set has enough matches to page.
//
//	patient  identifiers                 Observations (code P, one per day of January 2024)
//	chp-1    mrn|c-42                    ch-01 … ch-07 (days 1 … 7)
//	chp-2    mrn|c-43, other|X           ch-08 … ch-10 (days 8 … 10)
//	chp-3    mrn|c-44 (deleted later)    ch-11
//	—        (absolute URL, other base)  ch-12
func loadChain(t testing.TB, s store.Store) {
	t.Helper()
	p1 := newPatient("chp-1")
	p1.Identifier = []fhir.Identifier{ident(mrnSystem, "c-42")}
	p2 := newPatient("chp-2")
	p2.Identifier = []fhir.Identifier{ident(mrnSystem, "c-43"), ident("http://other.example/ids", "X")}
	p3 := newPatient("chp-3")
	p3.Identifier = []fhir.Identifier{ident(mrnSystem, "c-44")}
	for _, p := range []fhir.Resource{p1, p2, p3} {
		mustCreate(t, s, p)
	}
	subject := func(day int) string {
		switch {
		case day <= 7:
			return "Patient/chp-1"
		case day <= 10:
			return "Patient/chp-2"
		case day == 11:
			return "Patient/chp-3"
		}
		return "https://other.example/fhir/Patient/chp-1"
	}
	for day := 1; day <= 12; day++ {
		mustCreate(t, s, newObservation(fmt.Sprintf("ch-%02d", day), concept(coding(testSystem, "P")), withSubject(subject(day)),
			withDate(fmt.Sprintf("2024-01-%02dT12:00:00Z", day))))
	}
}

func ch(n ...int) []string {
	var out []string
	for _, i := range n {
		out = append(out, fmt.Sprintf("ch-%02d", i))
	}
	return out
}

// RunChains runs only the subtests that search with chains (Search and Chain): for a store that
// answers chains in more than one way, to check each way without running the whole suite again.
func RunChains(t *testing.T, open func(t testing.TB) store.Store) {
	t.Run("Search", func(t *testing.T) { testSearch(t, open) })
	t.Run("Chain", func(t *testing.T) { testChain(t, open) })
}

func testChain(t *testing.T, open opener) {
	s := open(t)
	loadChain(t, s)
	mrn := "patient.identifier=" + mrnSystem + "|"

	t.Run("Paging", func(t *testing.T) {
		for _, tc := range []struct {
			query string
			count int
			want  []string
		}{
			{mrn + "c-42&_count=3&_sort=-date", 3, ch(7, 6, 5, 4, 3, 2, 1)},
			{mrn + "c-42&_count=3", 3, ch(1, 2, 3, 4, 5, 6, 7)},
			{mrn + "c-42,http://other.example/ids|X&_count=4&_sort=date", 4, ch(1, 2, 3, 4, 5, 6, 7, 8, 9, 10)},
			{"subject:Patient.identifier=" + mrnSystem + "|&code=" + testSystem + "|P&_count=5&_sort=-date", 5, ch(11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1)},
		} {
			t.Run(tc.query, func(t *testing.T) {
				wantPages := slices.Collect(slices.Chunk(tc.want, tc.count))
				pages := walkNext(t, s, "Observation", tc.query)
				if diff := cmp.Diff(wantPages, pageIDs(pages)); diff != "" {
					t.Fatalf("pages following Next (-want +got):\n%s", diff)
				}
				// Back from the last page with Prev: the same pages, in reverse.
				last := pages[len(pages)-1]
				for i := len(pages) - 2; i >= 0; i-- {
					if last.Prev == nil {
						t.Fatalf("page %d reached backwards has no Prev", i+2)
					}
					last = page(t, s, "Observation", tc.query, last.Prev)
					if diff := cmp.Diff(wantPages[i], ids(last.Matches)); diff != "" {
						t.Fatalf("page %d reached with Prev (-want +got):\n%s", i+1, diff)
					}
				}
			})
		}
	})

	t.Run("Total", func(t *testing.T) {
		for query, want := range map[string]int{
			mrn + "c-42&_summary=count":                7,
			mrn + "c-42&_count=0":                      7,
			mrn + "c-42,c-43&_count=2&_total=accurate": 10, // the second value is a code of any system
			mrn + "c-404&_summary=count":               0,
		} {
			if res := mustSearch(t, s, parse(t, "Observation", query)); res.Total != want {
				t.Errorf("%s: total %d, want %d", query, res.Total, want)
			}
		}
	})

	t.Run("Include", func(t *testing.T) {
		res := mustSearch(t, s, parse(t, "Observation", mrn+"c-43&_include=Observation:patient"))
		if diff := cmp.Diff(ch(8, 9, 10), sortedIDs(res.Matches)); diff != "" {
			t.Errorf("matches (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]string{"Patient/chp-2"}, refs(res.Included)); diff != "" {
			t.Errorf("included (-want +got):\n%s", diff)
		}
	})

	// The chain follows the targets as they are now: a changed identifier, a deleted target.
	t.Run("Changes", func(t *testing.T) {
		p1 := newPatient("chp-1")
		p1.Identifier = []fhir.Identifier{ident(mrnSystem, "c-99")}
		mustPut(t, s, p1, store.WriteOptions{})
		mustDelete(t, s, "Patient", "chp-3")
		for _, tc := range []struct {
			query string
			want  []string
		}{
			{mrn + "c-42", nil},
			{mrn + "c-99", ch(1, 2, 3, 4, 5, 6, 7)},
			{mrn + "c-44", nil}, // ch-11 still refers to the deleted chp-3
			{mrn, ch(1, 2, 3, 4, 5, 6, 7, 8, 9, 10)},
			{"patient=chp-3", ch(11)}, // the plain reference still matches
		} {
			res := mustSearch(t, s, parse(t, "Observation", tc.query))
			if diff := cmp.Diff(tc.want, nonEmpty(sortedIDs(res.Matches))); diff != "" {
				t.Errorf("%s (-want +got):\n%s", tc.query, diff)
			}
		}
	})
}
