package storetest

import "testing"

// RunTotalBound checks the bound of the unasked total (store.Result.Total) against stores whose
// count bound is lowered to bound (at least 3 and below 10: store.TotalBound itself would need
// thousands of resources): a search with at most bound matches gets its total on every page, one
// with more gets none unless it asks for _total=accurate, and _summary=count is always exact.
func RunTotalBound(t *testing.T, bound int, open opener) {
	if bound < 3 || bound >= 10 {
		t.Fatalf("RunTotalBound: bound %d, want 3 … 9", bound)
	}
	s := open(t)
	loadPaging(t, s) // ten Observations with code P, three with code N
	for _, tc := range []struct {
		query string
		total int
	}{
		{"code=N&_count=2", 3},  // under the bound: counted
		{"code=P&_count=2", -1}, // over it: omitted
		{"code=P&_count=2&_total=estimate", -1},
		{"code=P&_count=2&_total=accurate", 10},
		{"code=P&_summary=count", 10},
		{"code=P", 10}, // free: the first page holds every match
	} {
		t.Run(tc.query, func(t *testing.T) {
			for i, p := range walkNext(t, s, "Observation", tc.query) {
				if p.Total != tc.total {
					t.Errorf("page %d: Total = %d, want %d", i+1, p.Total, tc.total)
				}
			}
		})
	}
}
