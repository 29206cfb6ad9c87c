package withings

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/providers"
)

// TestCompleteRanges: measures are complete strictly inside the queried seconds, daily activity
// for the dates strictly between the queried ones, sleep a further day inside; heart rate is a
// sleep record only when the sleep family is read; ECGs, incremental and continued queries and
// windows too short for an inner date claim nothing.
func TestCompleteRanges(t *testing.T) {
	f := newFixture(t, nil, fixtureOpts{})
	c := f.c
	start, end := at("2024-01-10T00:00:00Z"), at("2024-01-17T00:00:00Z")
	all := c.CompleteRanges("42", providers.Query{Start: start, End: end})
	byS := map[string]providers.CompleteRange{}
	for _, r := range all {
		byS[r.System] = r
	}
	if len(all) != 3 || len(byS) != 3 {
		t.Fatalf("ranges %+v, want measure, activity and sleep", all)
	}
	m := byS["withings/measure"]
	if m.Prefix != "42/" || !m.Start.Equal(at("2024-01-10T00:00:01Z")) || !m.End.Equal(end) || m.After != "" {
		t.Errorf("measure range %+v", m)
	}
	for _, k := range []fhir.SampleKind{fhir.KindWeight, fhir.KindBloodPressure, fhir.KindHeartRate} {
		if !contains(m.Kinds, k) {
			t.Errorf("measure kinds %v lack %s", m.Kinds, k)
		}
	}
	if contains(m.Kinds, fhir.KindECG) || contains(m.Kinds, fhir.KindSteps) {
		t.Errorf("measure kinds %v", m.Kinds)
	}
	// enddateymd is the date of the last instant of the window: 2024-01-16.
	if a := byS["withings/activity"]; a.After != "2024-01-10" || a.Before != "2024-01-16" || !a.Start.IsZero() ||
		!cmp.Equal(a.Kinds, []fhir.SampleKind{fhir.KindCalories, fhir.KindDistance, fhir.KindElevation, fhir.KindSteps}) {
		t.Errorf("activity range %+v", a)
	}
	if s := byS["withings/sleep"]; s.After != "2024-01-11" || s.Before != "2024-01-15" ||
		!cmp.Equal(s.Kinds, []fhir.SampleKind{fhir.KindRespiratoryRate, fhir.KindSleep, fhir.KindHeartRate}) {
		t.Errorf("sleep range %+v", s)
	}

	// Heart rate alone is read from getmeas only.
	hr := c.CompleteRanges("42", providers.Query{Kinds: []fhir.SampleKind{fhir.KindHeartRate}, Start: start, End: end})
	if len(hr) != 1 || hr[0].System != "withings/measure" || !cmp.Equal(hr[0].Kinds, []fhir.SampleKind{fhir.KindHeartRate}) {
		t.Errorf("heart rate only: %+v", hr)
	}
	// A component kind asks for its panel.
	bp := c.CompleteRanges("42", providers.Query{Kinds: []fhir.SampleKind{fhir.KindSystolic}, Start: start, End: end})
	if len(bp) != 1 || !cmp.Equal(bp[0].Kinds, []fhir.SampleKind{fhir.KindBloodPressure}) {
		t.Errorf("systolic: %+v", bp)
	}
	// A notification's day: measures only (no date lies strictly inside one or two dates).
	day := c.CompleteRanges("42", providers.Query{Start: at("2024-01-10T00:00:00Z"), End: at("2024-01-11T00:00:00Z")})
	if len(day) != 1 || day[0].System != "withings/measure" {
		t.Errorf("one day: %+v", day)
	}
	for name, q := range map[string]providers.Query{
		"incremental": {Since: start},
		"everything":  {},
		"no end":      {Start: start},
		"continued":   {Start: start, End: end, Cursor: "x"},
		"inverted":    {Start: end, End: start},
		"ecg only":    {Kinds: []fhir.SampleKind{fhir.KindECG}, Start: start, End: end},
	} {
		if got := c.CompleteRanges("42", q); got != nil {
			t.Errorf("%s: %+v, want none", name, got)
		}
	}
	if got := c.CompleteRanges("", providers.Query{Start: start, End: end}); got != nil {
		t.Errorf("no user: %+v", got)
	}
	// Fractional seconds: the claim starts after the second Fetch sends as startdate.
	fr := c.CompleteRanges("42", providers.Query{Kinds: []fhir.SampleKind{fhir.KindWeight}, Start: start.Add(300 * time.Millisecond), End: end.Add(700 * time.Millisecond)})
	if len(fr) != 1 || !fr[0].Start.Equal(at("2024-01-10T00:00:01Z")) || !fr[0].End.Equal(end) {
		t.Errorf("fractional window: %+v", fr)
	}
}

func contains(ks []fhir.SampleKind, k fhir.SampleKind) bool {
	for _, x := range ks {
		if x == k {
			return true
		}
	}
	return false
}
