package store

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// h is hour n of a fixed day.
func h(n int) time.Time {
	return time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(n) * time.Hour)
}

// ivs builds intervals from hour pairs.
func ivs(hours ...int) []Interval {
	var out []Interval
	for i := 0; i+1 < len(hours); i += 2 {
		out = append(out, Interval{Start: h(hours[i]), End: h(hours[i+1])})
	}
	return out
}

func TestCoverageAdd(t *testing.T) {
	for _, tc := range []struct {
		name       string
		have       []Interval
		start, end int
		want       []Interval
	}{
		{"into empty", nil, 1, 2, ivs(1, 2)},
		{"disjoint before", ivs(5, 6), 1, 2, ivs(1, 2, 5, 6)},
		{"disjoint after", ivs(1, 2), 5, 6, ivs(1, 2, 5, 6)},
		{"disjoint between", ivs(1, 2, 8, 9), 4, 5, ivs(1, 2, 4, 5, 8, 9)},
		{"overlap start", ivs(3, 6), 1, 4, ivs(1, 6)},
		{"overlap end", ivs(3, 6), 5, 8, ivs(3, 8)},
		{"adjacent before", ivs(3, 6), 1, 3, ivs(1, 6)},
		{"adjacent after", ivs(3, 6), 6, 8, ivs(3, 8)},
		{"bridges two", ivs(1, 3, 5, 7), 3, 5, ivs(1, 7)},
		{"overlaps several", ivs(1, 2, 3, 4, 5, 6, 10, 11), 0, 7, ivs(0, 7, 10, 11)},
		{"contained", ivs(1, 9), 3, 4, ivs(1, 9)},
		{"contains", ivs(3, 4, 6, 7), 1, 9, ivs(1, 9)},
		{"equal", ivs(3, 4), 3, 4, ivs(3, 4)},
		{"empty", ivs(3, 4), 6, 6, ivs(3, 4)},
		{"inverted", ivs(3, 4), 8, 6, ivs(3, 4)},
		{"inverted into empty", nil, 2, 1, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Coverage{Intervals: tc.have}
			c.Add(h(tc.start), h(tc.end))
			if diff := cmp.Diff(tc.want, c.Intervals); diff != "" {
				t.Errorf("Add(%d, %d) to %v (-want +got):\n%s", tc.start, tc.end, tc.have, diff)
			}
		})
	}
	// Added in any order, the result is the same.
	var a, b Coverage
	for _, p := range [][2]int{{1, 2}, {5, 6}, {3, 4}, {2, 3}, {9, 10}} {
		a.Add(h(p[0]), h(p[1]))
	}
	for _, p := range [][2]int{{9, 10}, {2, 3}, {5, 6}, {1, 2}, {3, 4}} {
		b.Add(h(p[0]), h(p[1]))
	}
	if diff := cmp.Diff(ivs(1, 4, 5, 6, 9, 10), a.Intervals); diff != "" {
		t.Errorf("intervals (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(a.Intervals, b.Intervals); diff != "" {
		t.Errorf("order of Add changes the result (-first +second):\n%s", diff)
	}
}

func TestCoverageCovers(t *testing.T) {
	c := Coverage{Intervals: ivs(1, 4, 6, 8)}
	for _, tc := range []struct {
		start, end int
		want       bool
	}{
		{1, 4, true}, {2, 3, true}, {6, 8, true}, {1, 2, true}, {3, 4, true},
		{0, 2, false}, {3, 5, false}, {4, 6, false}, {1, 8, false}, {8, 9, false}, {7, 9, false},
	} {
		if got := c.Covers(h(tc.start), h(tc.end)); got != tc.want {
			t.Errorf("Covers(%d, %d) of %v = %v, want %v", tc.start, tc.end, c.Intervals, got, tc.want)
		}
	}
	if (Coverage{}).Covers(h(1), h(2)) {
		t.Errorf("an empty coverage covers something")
	}
}

func TestCoverageNormalized(t *testing.T) {
	zone := time.FixedZone("UTC+2", 2*3600)
	c := Coverage{
		CoverageKey: CoverageKey{Provider: "p", Patient: "x", Kind: "k"},
		// Disjoint by nanoseconds, adjacent once truncated to microseconds; the last one is
		// empty once truncated.
		Intervals: []Interval{
			{Start: h(1).In(zone), End: h(2).Add(300 * time.Nanosecond)},
			{Start: h(2).Add(700 * time.Nanosecond), End: h(3).In(zone)},
			{Start: h(5).Add(100 * time.Nanosecond), End: h(5).Add(900 * time.Nanosecond)},
		},
		Cursor:  "c",
		Updated: h(9).In(zone).Add(time.Nanosecond),
	}
	n := c.Normalized()
	if diff := cmp.Diff(ivs(1, 3), n.Intervals); diff != "" {
		t.Errorf("Normalized intervals (-want +got):\n%s", diff)
	}
	for _, tm := range []time.Time{n.Intervals[0].Start, n.Intervals[0].End, n.Updated} {
		if tm.Location() != time.UTC || tm.Nanosecond()%1000 != 0 {
			t.Errorf("Normalized time %s: want UTC, whole microseconds", tm)
		}
	}
	if n.Cursor != "c" || n.CoverageKey != c.CoverageKey || !n.Updated.Equal(h(9)) {
		t.Errorf("Normalized changed the key, cursor or update time: %+v", n)
	}
	if len(c.Intervals) != 3 {
		t.Errorf("Normalized changed its receiver")
	}
	if got := (Coverage{}).Normalized(); got.Intervals == nil || len(got.Intervals) != 0 || !got.Updated.IsZero() {
		t.Errorf("Normalized of the zero coverage = %+v, want empty intervals, zero Updated", got)
	}
}
