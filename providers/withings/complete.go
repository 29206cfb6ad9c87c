package withings

import (
	"time"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/providers"
)

var _ providers.Authoritative = (*Client)(nil)

// CompleteRanges says where a window answer lists every record Withings holds. Withings reports
// no deletion — no response field or notification category names one
// (https://developer.withings.com/developer-guide/v3/data-api/keep-user-data-up-to-date/ only
// announces that the data of a range changed) — a deleted measure group simply no longer comes
// back for its range.
// Each family is claimed with a margin, because a wrong claim marks a real measurement
// entered-in-error:
//
//   - measures (getmeas startdate/enddate on the measure time,
//     https://developer.withings.com/api-reference/#tag/measure/operation/measure-getmeas): the
//     instants strictly after the startdate second (whether startdate is inclusive is not
//     documented) and before the enddate second (enddate is inclusive, but Fetch keeps [Start,
//     End) only);
//   - daily activity (getactivity startdateymd/enddateymd on the activity's local date, which
//     is what its Observation is written in): the dates strictly between the two queried;
//   - sleep summaries (getsummary startdateymd/enddateymd on the summary's date, which the
//     Observation does not carry — the session is written [startdate, enddate] in the summary's
//     zone, or in UTC when the zone is unknown): sessions whose start and end dates both lie a
//     day inside the dates strictly between the two queried, whichever of them the summary
//     is dated by and whichever the zone;
//   - ECG recordings: none. Heart List's date filter is not described in the reference ohx
//     follows, so a missing recording is no proof of a deletion.
//
// Incremental queries (Since, or a zero window: lastupdate) and continued queries claim nothing.
func (c *Client) CompleteRanges(user string, q providers.Query) []providers.CompleteRange {
	if user == "" || !q.Since.IsZero() || q.Cursor != "" || q.Start.IsZero() || q.End.IsZero() || !q.Start.Before(q.End) {
		return nil
	}
	wanted := c.wanted(q.Kinds)
	prefix := user + "/"
	byFamily := func(f family) []fhir.SampleKind {
		var out []fhir.SampleKind
		for _, k := range c.kinds.Sorted() {
			if wanted[k] && kindFamily[k] == f {
				out = append(out, k)
			}
		}
		return out
	}
	var out []providers.CompleteRange
	if ks := byFamily(famMeasure); len(ks) > 0 {
		// Fetch sends unix(Start) and unix(End), the seconds the instants fall in.
		start := time.Unix(q.Start.Unix()+1, 0).UTC()
		end := time.Unix(q.End.Unix(), 0).UTC()
		if start.Before(end) {
			out = append(out, providers.CompleteRange{System: "withings/measure", Prefix: prefix, Kinds: ks, Start: start, End: end})
		}
	}
	// The dates Fetch sends for the daily services (ymdWindow).
	first, last := q.Start.UTC(), q.End.Add(-time.Nanosecond).UTC()
	day := func(t time.Time, add int) string { return t.AddDate(0, 0, add).Format(time.DateOnly) }
	if ks := byFamily(famActivity); len(ks) > 0 && day(first, 1) < day(last, 0) {
		out = append(out, providers.CompleteRange{System: "withings/activity", Prefix: prefix, Kinds: ks,
			After: day(first, 0), Before: day(last, 0)})
	}
	if ks := byFamily(famSleep); len(ks) > 0 {
		// The summary's average heart rate comes with the sleep family when heart rate is
		// wanted too (sleepDataFields); its record is a withings/sleep one.
		if wanted[fhir.KindHeartRate] {
			ks = append(ks, fhir.KindHeartRate)
		}
		if day(first, 2) < day(last, -1) {
			out = append(out, providers.CompleteRange{System: "withings/sleep", Prefix: prefix, Kinds: ks,
				After: day(first, 1), Before: day(last, -1)})
		}
	}
	return out
}
