package storetest

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/fhir/search"
	"github.com/openhealthexchange/ohx/store"
)

// pagingCreateOrder is the order in which the ten pg-NN Observations are created.
var pagingCreateOrder = []int{3, 7, 1, 10, 5, 2, 9, 4, 8, 6}

// pagingDays gives the day in January 2024 of pg-01 … pg-10: pg-01, 03, 05 and 08 share a day, so
// date ties straddle page boundaries and the cursor must carry the id.
var pagingDays = []int{5, 3, 5, 1, 5, 10, 2, 5, 4, 6}

// loadPaging stores pg-01 … pg-10 (code P) and three other Observations (code N).
func loadPaging(t testing.TB, s store.Store) {
	t.Helper()
	for _, n := range pagingCreateOrder {
		mustCreate(t, s, newObservation(fmt.Sprintf("pg-%02d", n), concept(coding(testSystem, "P")),
			withDate(fmt.Sprintf("2024-01-%02dT12:00:00Z", pagingDays[n-1]))))
		time.Sleep(writeGap)
	}
	for i := range 3 {
		mustCreate(t, s, newObservation(fmt.Sprintf("noise-%d", i), concept(coding(testSystem, "N")), withDate("2024-01-05T12:00:00Z")))
	}
}

// pg returns the ids pg-NN in the given order.
func pg(n ...int) []string {
	var out []string
	for _, i := range n {
		out = append(out, fmt.Sprintf("pg-%02d", i))
	}
	return out
}

// page fetches the page of rawQuery at cursor c (nil for the first page), re-parsing the query as
// the API does for a _page link and passing the cursor through JSON.
func page(t testing.TB, s store.Store, typ, rawQuery string, c *search.Cursor) *store.Result {
	t.Helper()
	q := parse(t, typ, rawQuery)
	q.Cursor = roundTrip(t, c)
	res := mustSearch(t, s, q)
	if len(res.Matches) > q.Count {
		t.Fatalf("Search %s: %d matches, more than _count=%d", rawQuery, len(res.Matches), q.Count)
	}
	return res
}

// walkNext follows Next links from the first page and returns every page.
func walkNext(t testing.TB, s store.Store, typ, rawQuery string) []*store.Result {
	t.Helper()
	var pages []*store.Result
	var c *search.Cursor
	for {
		res := page(t, s, typ, rawQuery, c)
		pages = append(pages, res)
		if res.Next == nil {
			return pages
		}
		if len(pages) > 50 {
			t.Fatalf("Search %s: more than 50 pages; Next links loop", rawQuery)
		}
		c = res.Next
	}
}

func pageIDs(pages []*store.Result) [][]string {
	var out [][]string
	for _, p := range pages {
		out = append(out, ids(p.Matches))
	}
	return out
}

func testPaging(t *testing.T, open opener) {
	t.Run("Cursors", func(t *testing.T) {
		s := open(t)
		loadPaging(t, s)
		for _, tc := range []struct {
			query string
			count int
			want  []string
		}{
			{"code=P&_count=3", 3, pg(1, 2, 3, 4, 5, 6, 7, 8, 9, 10)},
			{"code=P&_count=3&_sort=-_id", 3, pg(10, 9, 8, 7, 6, 5, 4, 3, 2, 1)},
			{"code=P&_count=3&_sort=date", 3, pg(4, 7, 2, 9, 1, 3, 5, 8, 10, 6)},
			{"code=P&_count=3&_sort=-date", 3, pg(6, 10, 8, 5, 3, 1, 9, 2, 7, 4)},
			{"code=P&_count=3&_sort=-date,_id", 3, pg(6, 10, 1, 3, 5, 8, 9, 2, 7, 4)},
			{"code=P&_count=4&_sort=-_lastUpdated", 4, pg(6, 8, 4, 9, 2, 5, 10, 1, 7, 3)},
			{"code=P&_count=5", 5, pg(1, 2, 3, 4, 5, 6, 7, 8, 9, 10)}, // exact multiple: no empty last page
			{"code=P&_count=1&_sort=date", 1, pg(4, 7, 2, 9, 1, 3, 5, 8, 10, 6)},
			{"code=P&_count=20", 20, pg(1, 2, 3, 4, 5, 6, 7, 8, 9, 10)},
		} {
			t.Run(tc.query, func(t *testing.T) {
				wantPages := slices.Collect(slices.Chunk(tc.want, tc.count))
				pages := walkNext(t, s, "Observation", tc.query)
				if diff := cmp.Diff(wantPages, pageIDs(pages)); diff != "" {
					t.Fatalf("pages following Next (-want +got):\n%s", diff)
				}
				for i, p := range pages {
					if (p.Prev == nil) != (i == 0) {
						t.Errorf("page %d: Prev = %+v; want nil exactly on the first page", i+1, p.Prev)
					}
				}

				// Walk back from the last page with Prev: the same pages, in reverse.
				last := pages[len(pages)-1]
				for i := len(pages) - 2; i >= 0; i-- {
					if last.Prev == nil {
						t.Fatalf("page %d reached backwards has no Prev", i+2)
					}
					back := page(t, s, "Observation", tc.query, last.Prev)
					if diff := cmp.Diff(wantPages[i], ids(back.Matches)); diff != "" {
						t.Fatalf("page %d reached with Prev (-want +got):\n%s", i+1, diff)
					}
					if back.Next == nil {
						t.Errorf("page %d reached with Prev has no Next", i+1)
					}
					if i == 0 && back.Prev != nil {
						t.Errorf("first page reached with Prev: Prev = %+v, want nil", back.Prev)
					}
					last = back
				}
				// And forward again from the first page reached backwards.
				if len(pages) > 1 && last.Next != nil {
					fwd := page(t, s, "Observation", tc.query, last.Next)
					if diff := cmp.Diff(wantPages[1], ids(fwd.Matches)); diff != "" {
						t.Errorf("Next of the first page reached with Prev (-want +got):\n%s", diff)
					}
				}
			})
		}
	})

	t.Run("ConcurrentInserts", func(t *testing.T) {
		for _, tc := range []struct {
			name, query string
			date        func(i int) string // of the i-th original
		}{
			{"ByID", "code=C&_count=3", func(i int) string { return "2024-01-10T00:00:00Z" }},
			{"ByDate", "code=C&_count=3&_sort=date", func(i int) string { return fmt.Sprintf("2024-01-%02dT00:00:00Z", 10+(i*7)%10) }},
		} {
			t.Run(tc.name, func(t *testing.T) {
				s := open(t)
				code := concept(coding(testSystem, "C"))
				var originals []string
				for i := range 10 {
					id := fmt.Sprintf("c-%03d", 10*(i+1))
					mustCreate(t, s, newObservation(id, code, withDate(tc.date(i))))
					originals = append(originals, id)
				}
				all := parse(t, "Observation", tc.query)
				all.Count = 100
				wantOrder := ids(mustSearch(t, s, all).Matches)

				var got []string
				var c *search.Cursor
				for n := 0; ; n++ {
					res := page(t, s, "Observation", tc.query, c)
					got = append(got, ids(res.Matches)...)
					if res.Next == nil || n > 20 {
						break
					}
					c = res.Next
					// Insert before everything, right after the cursor row, and after everything.
					lastRow := decode(t, res.Matches[len(res.Matches)-1]).(*fhir.Observation)
					for _, o := range []*fhir.Observation{
						newObservation(fmt.Sprintf("c-000-%d", n), code, withDate("2023-01-01T00:00:00Z")),
						newObservation(fmt.Sprintf("c-000-%d-same", n), code, withDate(lastRow.EffectiveDateTime)),
						newObservation(fmt.Sprintf("%s-%d", lastRow.ID, n), code, withDate(lastRow.EffectiveDateTime)),
						newObservation(fmt.Sprintf("c-999-%d", n), code, withDate("2025-01-01T00:00:00Z")),
					} {
						mustCreate(t, s, o)
					}
				}
				seen := map[string]bool{}
				for _, id := range got {
					if seen[id] {
						t.Errorf("id %s returned twice while paging under inserts: %v", id, got)
					}
					seen[id] = true
				}
				var gotOriginals []string
				for _, id := range got {
					if slices.Contains(originals, id) {
						gotOriginals = append(gotOriginals, id)
					}
				}
				if diff := cmp.Diff(wantOrder, gotOriginals); diff != "" {
					t.Errorf("original resources seen while paging under inserts, in order (-want +got):\n%s", diff)
				}
			})
		}
	})
}

func testTotal(t *testing.T, open opener) {
	s := open(t)
	loadPaging(t, s)
	for _, tc := range []struct {
		query     string
		total     int
		matches   int
		wantNext  bool
		nextQuery bool // check the second page too
	}{
		{query: "code=P&_summary=count", total: 10},
		{query: "code=P&_count=0", total: 10},
		{query: "code=Q&_summary=count", total: 0},
		{query: "code=P&_total=accurate&_count=3", total: 10, matches: 3, wantNext: true, nextQuery: true},
		{query: "code=P", total: 10, matches: 10},           // the first page holds every match
		{query: "code=P&_count=10", total: 10, matches: 10}, // exactly
		{query: "code=Q", total: 0, matches: 0},
		// Below store.TotalBound the total is counted unasked, on every page.
		{query: "code=P&_count=3", total: 10, matches: 3, wantNext: true, nextQuery: true},
		{query: "code=P&_count=3&_total=estimate", total: 10, matches: 3, wantNext: true, nextQuery: true},
		{query: "code=P&_count=3&_total=none", total: -1, matches: 3, wantNext: true, nextQuery: true},
	} {
		t.Run(tc.query, func(t *testing.T) {
			res := page(t, s, "Observation", tc.query, nil)
			if res.Total != tc.total {
				t.Errorf("Total = %d, want %d", res.Total, tc.total)
			}
			if len(res.Matches) != tc.matches {
				t.Errorf("%d matches, want %d", len(res.Matches), tc.matches)
			}
			if (res.Next != nil) != tc.wantNext {
				t.Errorf("Next = %+v, want a next page: %v", res.Next, tc.wantNext)
			}
			if res.Prev != nil {
				t.Errorf("Prev = %+v on the first page, want nil", res.Prev)
			}
			if tc.nextQuery {
				res2 := page(t, s, "Observation", tc.query, res.Next)
				if res2.Total != tc.total {
					t.Errorf("second page: Total = %d, want %d", res2.Total, tc.total)
				}
			}
		})
	}
	t.Run("LaterPages", func(t *testing.T) {
		// Unasked and below the bound, every page, forwards and backwards, carries the total.
		pages := walkNext(t, s, "Observation", "code=P&_count=3")
		for i, p := range pages {
			if p.Total != 10 {
				t.Errorf("page %d: Total = %d, want 10", i+1, p.Total)
			}
		}
		if back := page(t, s, "Observation", "code=P&_count=3", pages[len(pages)-1].Prev); back.Total != 10 {
			t.Errorf("previous page: Total = %d, want 10", back.Total)
		}
	})
}
