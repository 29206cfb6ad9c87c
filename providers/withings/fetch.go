package withings

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"time"

	"golang.org/x/oauth2"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/providers"
)

const (
	// clockSkew pulls a locally taken sync horizon back, for queries without getmeas (the only
	// service that reports the vendor's clock, as updatetime).
	clockSkew = 5 * time.Minute
	// ecgLookback widens an incremental ECG listing: Heart List filters by recording time and has
	// no lastupdate, and a watch may upload a recording hours or days after it was taken. Records
	// are then kept when modified at or after Since.
	ecgLookback = 7 * 24 * time.Hour
)

// cursor is the decoded Page.Next: the family being read, the vendor offset within it and the
// sync horizon fixed by the query's first page.
type cursor struct {
	Family  family `json:"f"`
	Offset  int64  `json:"o,omitempty"`
	Horizon int64  `json:"h,omitempty"` // unix seconds
}

func (cu cursor) encode() string {
	b, _ := json.Marshal(cu)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeCursor(s string) (cursor, error) {
	var cu cursor
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err == nil {
		err = json.Unmarshal(b, &cu)
	}
	if err != nil || cu.Offset < 0 {
		return cursor{}, errors.New("invalid withings cursor")
	}
	return cu, nil
}

// window is a resolved query.
type window struct {
	since      bool // incremental: lastupdate = Since (the zero Since reads everything)
	sinceT     time.Time
	start, end time.Time // [start, end) when !since
	fresh      bool      // bypass the response cache (Query.Fresh)
}

func (c *Client) resolve(q providers.Query) (window, error) {
	if !q.Since.IsZero() || (q.Start.IsZero() && q.End.IsZero()) {
		return window{since: true, sinceT: q.Since, fresh: q.Fresh}, nil
	}
	end := q.End
	if end.IsZero() {
		end = c.now()
	}
	if q.Start.IsZero() || !q.Start.Before(end) {
		return window{}, c.upstream(providers.KindPermanent, 0, errors.New("query window needs start before end"))
	}
	return window{start: q.Start, end: end, fresh: q.Fresh}, nil
}

// Fetch reads one page of samples. A query is read family by family — measures (one getmeas with
// every wanted meastype), daily activity (one getactivity), sleep summaries (one getsummary), ECGs
// (one heart list, then one heart get per recording) — one vendor page per Fetch; Page.Next is an
// opaque cursor holding the family and the vendor offset. Incremental queries (Since, or a zero
// query: everything) use lastupdate, which also returns edited records. Page.SyncedUntil is the
// same on every page of a query: getmeas's updatetime (the vendor clock when the first page was
// read), or, when no measure kind is wanted, the local clock at the first page minus 5 min.
// Errors are *providers.UpstreamError or ctx.Err(); an auth error is returned, never retried here.
func (c *Client) Fetch(ctx context.Context, user string, ts oauth2.TokenSource, q providers.Query) (*providers.Page, error) {
	wanted := c.wanted(q.Kinds)
	var fams []family
	for _, f := range families {
		for k := range wanted {
			if kindFamily[k] == f {
				fams = append(fams, f)
				break
			}
		}
	}
	if len(fams) == 0 {
		return &providers.Page{}, nil
	}
	w, err := c.resolve(q)
	if err != nil {
		return nil, err
	}
	cu := cursor{Family: fams[0]}
	if q.Cursor != "" {
		if cu, err = decodeCursor(q.Cursor); err != nil || !slices.Contains(fams, cu.Family) {
			return nil, c.upstream(providers.KindPermanent, 0, errors.New("invalid withings cursor"))
		}
	}
	var (
		samples []fhir.Sample
		held    []providers.HeldRecord
		more    bool
		next    int64
		horizon int64
	)
	switch cu.Family {
	case famMeasure:
		samples, held, more, next, horizon, err = c.fetchMeasures(ctx, user, ts, w, cu.Offset, wanted)
	case famActivity:
		samples, more, next, err = c.fetchActivity(ctx, user, ts, w, cu.Offset, wanted)
	case famSleep:
		samples, more, next, err = c.fetchSleep(ctx, user, ts, w, cu.Offset, wanted)
	case famECG:
		samples, more, next, err = c.fetchECG(ctx, user, ts, w, cu.Offset)
	}
	if err != nil {
		return nil, err
	}
	if cu.Horizon == 0 {
		cu.Horizon = horizon
		if cu.Horizon == 0 {
			cu.Horizon = c.now().Add(-clockSkew).Unix()
		}
	}
	page := &providers.Page{Samples: samples, Held: held, SyncedUntil: time.Unix(cu.Horizon, 0).UTC()}
	switch {
	case more:
		if next <= cu.Offset {
			return nil, c.upstream(providers.KindPermanent, 0, fmt.Errorf("%s pagination did not advance", cu.Family))
		}
		page.Next = cursor{Family: cu.Family, Offset: next, Horizon: cu.Horizon}.encode()
	default:
		if i := slices.Index(fams, cu.Family); i+1 < len(fams) {
			page.Next = cursor{Family: fams[i+1], Horizon: cu.Horizon}.encode()
		}
	}
	return page, nil
}

// unix formats t as epoch seconds; the zero time (an unset Since) is 0.
func unix(t time.Time) string {
	if t.IsZero() {
		return "0"
	}
	return strconv.FormatInt(t.Unix(), 10)
}

// ymdWindow sets startdateymd/enddateymd for daily services. A window of instants covers the
// UTC dates it touches: days are local to the user, whose zone is only known from the answer.
func ymdWindow(form url.Values, w window) {
	form.Set("startdateymd", w.start.UTC().Format(time.DateOnly))
	form.Set("enddateymd", w.end.Add(-time.Nanosecond).UTC().Format(time.DateOnly))
}

func setOffset(form url.Values, offset int64) {
	if offset > 0 {
		form.Set("offset", strconv.FormatInt(offset, 10))
	}
}

func (c *Client) fetchMeasures(ctx context.Context, user string, ts oauth2.TokenSource, w window, offset int64, wanted map[fhir.SampleKind]bool) ([]fhir.Sample, []providers.HeldRecord, bool, int64, int64, error) {
	form := url.Values{
		"action":    {"getmeas"},
		"meastypes": {joinInts(meastypes(wanted))},
		"category":  {strconv.Itoa(categoryMeasure)}, // never objectives
	}
	if w.since {
		form.Set("lastupdate", unix(w.sinceT))
	} else {
		form.Set("startdate", unix(w.start))
		form.Set("enddate", unix(w.end))
	}
	setOffset(form, offset)
	body, err := c.do(ctx, request{user: user, endpoint: "measure/getmeas", path: "/measure", form: form, ts: ts, cacheable: !w.fresh})
	if err != nil {
		return nil, nil, false, 0, 0, err
	}
	var b getmeasBody
	if err := c.decodeBody(body, &b, "getmeas"); err != nil {
		return nil, nil, false, 0, 0, err
	}
	if !w.since {
		// enddate is inclusive at Withings; the query's window is not.
		b.MeasureGrps = slices.DeleteFunc(b.MeasureGrps, func(g measureGrp) bool {
			t := time.Unix(g.Date.Int(), 0)
			return t.Before(w.start) || !t.Before(w.end)
		})
	}
	samples, held, err := c.measureSamples(user, &b, wanted)
	return samples, held, bool(b.More), b.Offset.Int(), b.UpdateTime.Int(), err
}

func (c *Client) fetchActivity(ctx context.Context, user string, ts oauth2.TokenSource, w window, offset int64, wanted map[fhir.SampleKind]bool) ([]fhir.Sample, bool, int64, error) {
	form := url.Values{"action": {"getactivity"}, "data_fields": {activityDataFields(wanted)}}
	if w.since {
		form.Set("lastupdate", unix(w.sinceT))
	} else {
		ymdWindow(form, w)
	}
	setOffset(form, offset)
	body, err := c.do(ctx, request{user: user, endpoint: "measure/getactivity", path: "/v2/measure", form: form, ts: ts, cacheable: !w.fresh})
	if err != nil {
		return nil, false, 0, err
	}
	var b getactivityBody
	if err := c.decodeBody(body, &b, "getactivity"); err != nil {
		return nil, false, 0, err
	}
	samples, err := c.activitySamples(user, &b, wanted)
	if err != nil {
		return nil, false, 0, c.upstream(providers.KindPermanent, 0, err)
	}
	return samples, bool(b.More), b.Offset.Int(), nil
}

func (c *Client) fetchSleep(ctx context.Context, user string, ts oauth2.TokenSource, w window, offset int64, wanted map[fhir.SampleKind]bool) ([]fhir.Sample, bool, int64, error) {
	form := url.Values{"action": {"getsummary"}, "data_fields": {sleepDataFields(wanted)}}
	if w.since {
		form.Set("lastupdate", unix(w.sinceT))
	} else {
		ymdWindow(form, w)
	}
	setOffset(form, offset)
	body, err := c.do(ctx, request{user: user, endpoint: "sleep/getsummary", path: "/v2/sleep", form: form, ts: ts, cacheable: !w.fresh})
	if err != nil {
		return nil, false, 0, err
	}
	var b getsummaryBody
	if err := c.decodeBody(body, &b, "getsummary"); err != nil {
		return nil, false, 0, err
	}
	return c.sleepSamples(user, &b, wanted), bool(b.More), b.Offset.Int(), nil
}

func (c *Client) fetchECG(ctx context.Context, user string, ts oauth2.TokenSource, w window, offset int64) ([]fhir.Sample, bool, int64, error) {
	form := url.Values{"action": {"list"}}
	var keep func(r heartRecord) bool
	if w.since {
		start := time.Time{}
		if !w.sinceT.IsZero() {
			start = w.sinceT.Add(-ecgLookback)
		}
		// Heart List has no lastupdate: list by recording time from a week before Since and keep
		// what was modified since then. The window ends at the next full hour so that identical
		// calls within the hour share a cache key.
		form.Set("startdate", strconv.FormatInt(max(start.Unix(), 0), 10))
		form.Set("enddate", unix(c.now().Truncate(time.Hour).Add(time.Hour)))
		since := w.sinceT.Unix()
		keep = func(r heartRecord) bool {
			if w.sinceT.IsZero() {
				return true
			}
			if r.Modified.set {
				return r.Modified.Int() >= since
			}
			return r.Timestamp.Int() >= since
		}
	} else {
		form.Set("startdate", unix(w.start))
		form.Set("enddate", unix(w.end))
		keep = func(r heartRecord) bool {
			t := time.Unix(r.Timestamp.Int(), 0)
			return !t.Before(w.start) && t.Before(w.end)
		}
	}
	setOffset(form, offset)
	body, err := c.do(ctx, request{user: user, endpoint: "heart/list", path: "/v2/heart", form: form, ts: ts, cacheable: !w.fresh})
	if err != nil {
		return nil, false, 0, err
	}
	var b heartListBody
	if err := c.decodeBody(body, &b, "heart list"); err != nil {
		return nil, false, 0, err
	}
	var out []fhir.Sample
	for _, r := range b.Series {
		// BP-only records of a BPM Core have no ECG (their values come through getmeas).
		if r.ECG == nil || r.ECG.SignalID == "" || r.ECG.SignalID == "0" || !keep(r) {
			continue
		}
		s, err := c.ecgSample(ctx, user, ts, r)
		if err != nil {
			return nil, false, 0, err
		}
		out = append(out, s)
	}
	return out, bool(b.More), b.Offset.Int(), nil
}
