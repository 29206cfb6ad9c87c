package fitbit

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/providers"
)

const (
	// defaultLookback is how many local days a query with neither window nor Since reads (an
	// initial sync): Fitbit has no "everything modified since" listing.
	defaultLookback = 30
	// sinceLookback widens an incremental query by a day before Since: a tracker uploads a night
	// (sleep, HRV, SpO2 dated the morning) and a day's late steps after the fact.
	sinceLookback = 24 * time.Hour
	// clockSkew pulls the locally taken sync horizon back.
	clockSkew = 5 * time.Minute
)

// fetchCtx is what the decoders of one page need.
type fetchCtx struct {
	user   string
	loc    *time.Location
	devs   *deviceSet
	wanted map[fhir.SampleKind]bool
	from   string // first local date of the query, yyyy-MM-dd
	to     string // last local date, inclusive
}

// inRange reports whether a local date lies in the query.
func (fc *fetchCtx) inRange(date string) bool { return date >= fc.from && date <= fc.to }

// cursor is the decoded Page.Next: the plan step, the chunk's first date (or the ECG page to
// read), the query's local dates and horizon, and a fingerprint of the kinds it was made for.
type cursor struct {
	Step    int    `json:"s"`
	Date    string `json:"d,omitempty"`
	Next    string `json:"n,omitempty"` // ECG: path?query of pagination.next
	From    string `json:"f"`
	To      string `json:"t"`
	Horizon int64  `json:"h"`
	Kinds   string `json:"k"`
}

func (cu cursor) encode() string {
	b, _ := json.Marshal(cu)
	return base64.RawURLEncoding.EncodeToString(b)
}

var errCursor = errors.New("invalid fitbit cursor")

func decodeCursor(s string, plan []*endpoint, kinds string) (cursor, error) {
	var cu cursor
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err == nil {
		err = json.Unmarshal(b, &cu)
	}
	if err != nil || cu.Step < 0 || cu.Step >= len(plan) || cu.Kinds != kinds || !validDate(cu.From) || !validDate(cu.To) ||
		cu.From > cu.To || (cu.Date != "" && (!validDate(cu.Date) || cu.Date < cu.From || cu.Date > cu.To)) {
		return cursor{}, errCursor
	}
	if cu.Next != "" {
		if !plan[cu.Step].ecg {
			return cursor{}, errCursor
		}
		if _, err := ecgNext(cu.Next); err != nil {
			return cursor{}, errCursor
		}
	}
	return cu, nil
}

func validDate(s string) bool {
	_, err := time.Parse(layoutDate, s)
	return err == nil
}

// kindsFingerprint binds a cursor to the kinds of its query.
func kindsFingerprint(w map[fhir.SampleKind]bool) string {
	ks := make([]string, 0, len(w))
	for k := range w {
		ks = append(ks, string(k))
	}
	slices.Sort(ks)
	h := sha256.Sum256([]byte(strings.Join(ks, ",")))
	return hex.EncodeToString(h[:6])
}

// Fetch reads one page of samples: one Fitbit request per page (plus the profile and devices,
// cached per user), endpoint by endpoint in a fixed order, each date range chunked to the
// endpoint's documented maximum. The query is resolved to the user's local dates (Fitbit's
// series are by local date): a window [Start, End) covers the local dates it touches; Since reads
// from the local date a day before Since to today; a query with neither reads the last 30 local
// days. Page.Next is an opaque cursor bound to the query's kinds; Page.SyncedUntil is the local
// clock at the first page minus 5 min. Fresh bypasses the response cache. An endpoint whose scope
// the user did not grant (403 insufficient_scope) gives an empty page and the query goes on with
// the next one; that is logged once per user and endpoint. Errors are
// *providers.UpstreamError or ctx.Err(); an auth error (401) is returned, never retried here.
func (c *Client) Fetch(ctx context.Context, user string, ts oauth2.TokenSource, q providers.Query) (*providers.Page, error) {
	wanted := c.wanted(q.Kinds)
	plan := c.plan(wanted)
	if len(plan) == 0 {
		return &providers.Page{}, nil
	}
	fp := kindsFingerprint(wanted)
	var cu cursor
	if q.Cursor != "" {
		var err error
		if cu, err = decodeCursor(q.Cursor, plan, fp); err != nil {
			return nil, upstream(providers.KindPermanent, 0, err)
		}
	}
	loc, err := c.zone(ctx, user, ts)
	if err != nil {
		return nil, err
	}
	if q.Cursor == "" {
		from, to, err := c.dates(q, loc)
		if err != nil {
			return nil, err
		}
		cu = cursor{Step: 0, Date: from, From: from, To: to, Horizon: c.now().Add(-clockSkew).Unix(), Kinds: fp}
	}
	devs, err := c.readDevices(ctx, user, ts, false)
	if errors.Is(err, errScopeDenied) {
		// The user did not grant settings: no device attribution, and zeros are dropped (no
		// tracker sync is known). Remembered like an answer, so each page does not ask again.
		c.noteDenied(user, "devices")
		devs, err = &deviceSet{}, nil
		c.devices.SetDefault(user, devs)
	}
	if err != nil {
		return nil, err
	}
	fc := &fetchCtx{user: user, loc: loc, devs: devs, wanted: wanted, from: cu.From, to: cu.To}
	ep := plan[cu.Step]
	var (
		samples []fhir.Sample
		next    cursor
		more    bool
	)
	if ep.ecg {
		samples, next.Next, err = c.fetchECG(ctx, ts, fc, cu.Next, q.Fresh)
		more = next.Next != ""
	} else {
		start := cu.Date
		if start == "" {
			start = cu.From
		}
		end := min(addDays(start, ep.maxDays-1), cu.To)
		samples, err = c.fetchRange(ctx, ts, fc, ep, start, end, q.Fresh)
		if end < cu.To {
			next.Date, more = addDays(end, 1), true
		}
	}
	if errors.Is(err, errScopeDenied) {
		// The user did not grant this endpoint's scope (Fitbit's consent screen lets them
		// untick it): its step is empty and the query goes on with the next endpoint; a refresh
		// or re-consent would not change the answer.
		c.noteDenied(user, ep.name)
		samples, more, err = nil, false, nil
	}
	if err != nil {
		return nil, err
	}
	page := &providers.Page{Samples: samples, SyncedUntil: time.Unix(cu.Horizon, 0).UTC()}
	next.From, next.To, next.Horizon, next.Kinds = cu.From, cu.To, cu.Horizon, cu.Kinds
	switch {
	case more:
		next.Step = cu.Step
		page.Next = next.encode()
	case cu.Step+1 < len(plan):
		page.Next = cursor{Step: cu.Step + 1, From: cu.From, To: cu.To, Horizon: cu.Horizon, Kinds: cu.Kinds}.encode()
	}
	return page, nil
}

// dates resolves a query to its first and last local date.
func (c *Client) dates(q providers.Query, loc *time.Location) (string, string, error) {
	today := c.now().In(loc).Format(layoutDate)
	switch {
	case !q.Since.IsZero():
		from := q.Since.Add(-sinceLookback).In(loc).Format(layoutDate)
		return from, max(from, today), nil
	case q.Start.IsZero() && q.End.IsZero():
		return addDays(today, -(defaultLookback - 1)), today, nil
	}
	end := q.End
	if end.IsZero() {
		end = c.now()
	}
	if q.Start.IsZero() || !q.Start.Before(end) {
		return "", "", upstream(providers.KindPermanent, 0, errors.New("query window needs start before end"))
	}
	return q.Start.In(loc).Format(layoutDate), end.Add(-time.Nanosecond).In(loc).Format(layoutDate), nil
}

// addDays moves a yyyy-MM-dd date by n calendar days (on the civil calendar, no zone).
func addDays(date string, n int) string {
	t, err := time.Parse(layoutDate, date)
	if err != nil {
		return date
	}
	return t.AddDate(0, 0, n).Format(layoutDate)
}

// fetchRange reads one chunk [start, end] of a date-range endpoint and decodes it.
func (c *Client) fetchRange(ctx context.Context, ts oauth2.TokenSource, fc *fetchCtx, ep *endpoint, start, end string, fresh bool) ([]fhir.Sample, error) {
	a, err := c.do(ctx, request{user: fc.user, endpoint: ep.name, path: ep.path(start, end), ts: ts, cacheable: !fresh})
	if err != nil {
		return nil, err
	}
	samples, err := ep.decode(a, fc)
	if err != nil {
		var ue *providers.UpstreamError
		if errors.As(err, &ue) {
			return nil, err
		}
		return nil, upstream(providers.KindPermanent, 200, err)
	}
	out := samples[:0]
	for _, s := range samples {
		if fc.wanted[s.Kind] {
			out = append(out, s)
		}
	}
	return out, nil
}

// noteDenied logs, once per user and endpoint, that the user did not grant an endpoint's scope.
// The log names the endpoint, never the user or any data.
func (c *Client) noteDenied(user, endpoint string) {
	if _, seen := c.denied.LoadOrStore(user+"\x00"+endpoint, true); !seen {
		c.log.Warn("scope not granted by the user: endpoint skipped", "endpoint", endpoint)
	}
}
