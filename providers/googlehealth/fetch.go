package googlehealth

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"time"

	"golang.org/x/oauth2"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/providers"
)

const (
	// lookback widens an incremental query: the Google Health API has no "changed since" filter
	// (https://developers.google.com/health/filters), and a tracker may sync days after it
	// measured, so an incremental read covers [Since − lookback, now).
	lookback = 7 * 24 * time.Hour
	// defaultBackfill is the window of a query with neither a window nor Since.
	defaultBackfill = 30 * 24 * time.Hour
	// zoneWiden widens a window's UTC dates to the civil days it can touch in any zone while the
	// user's zone is unknown (offsets run from −12:00 to +14:00).
	zoneWiden = 14 * time.Hour
	// Page sizes: sleep (and exercise) at most 25; other types up to 10000
	// (https://developers.google.com/health/reference/rest/v4/users.dataTypes.dataPoints/list).
	pageSizeSleep   = 25
	pageSizeECG     = 25 // traces are large; not a documented limit
	pageSizeDaily   = 1000
	pageSizeSamples = 10000
)

// cursor is the decoded Page.Next: the step (data type) and chunk being read, Google's page
// token within it, the sync horizon fixed by the first page, and a digest of the query it
// belongs to (a cursor of another query is refused).
type cursor struct {
	Step    int    `json:"s"`
	Chunk   int    `json:"c,omitempty"`
	Token   string `json:"p,omitempty"`
	Horizon int64  `json:"h"`
	Query   string `json:"q"`
	// Zone is the user's IANA zone once read from their settings ("-" for none), so that the
	// settings are read once per query and every page sees the same civil days.
	Zone string `json:"z,omitempty"`
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
	if err != nil || cu.Step < 0 || cu.Chunk < 0 || cu.Horizon <= 0 {
		return cursor{}, errors.New("invalid googlehealth cursor")
	}
	return cu, nil
}

// queryDigest identifies a query (kinds and window, not the cursor or Fresh).
func queryDigest(steps []dataType, q providers.Query) string {
	h := sha256.New()
	for _, d := range steps {
		h.Write([]byte(d.name + ";"))
	}
	for _, t := range []time.Time{q.Start, q.End, q.Since} {
		var b [8]byte
		if !t.IsZero() {
			binary.BigEndian.PutUint64(b[:], uint64(t.UnixNano()))
		}
		h.Write(b[:])
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// window is a resolved query: [start, end).
type window struct {
	start, end time.Time
	fresh      bool
}

func resolve(q providers.Query, horizon time.Time) (window, error) {
	w := window{fresh: q.Fresh}
	switch {
	case !q.Since.IsZero():
		w.start, w.end = q.Since.Add(-lookback), horizon
	case q.Start.IsZero() && q.End.IsZero():
		w.start, w.end = horizon.Add(-defaultBackfill), horizon
	default:
		w.start, w.end = q.Start, q.End
		if w.end.IsZero() {
			w.end = horizon
		}
	}
	if w.start.IsZero() || !w.start.Before(w.end) {
		return window{}, upstream(providers.KindPermanent, 0, errors.New("query window needs start before end"))
	}
	return w, nil
}

// civilRange is the closed-open range of civil dates the window touches: in the user's zone when
// known, else every date it touches in any zone.
func civilRange(w window, zone *time.Location) (from, to civilDate) {
	var a, b time.Time
	if zone != nil {
		a, b = w.start.In(zone), w.end.Add(-time.Nanosecond).In(zone)
	} else {
		a, b = w.start.Add(-zoneWiden).UTC(), w.end.Add(zoneWiden-time.Nanosecond).UTC()
	}
	next := time.Date(b.Year(), b.Month(), b.Day()+1, 12, 0, 0, 0, time.UTC)
	return dateOf(a), dateOf(next)
}

func addDays(d civilDate, n int) civilDate {
	return dateOf(time.Date(d.Year, time.Month(d.Month), d.Day+n, 12, 0, 0, 0, time.UTC))
}

func daysBetween(from, to civilDate) int {
	a := time.Date(from.Year, time.Month(from.Month), from.Day, 12, 0, 0, 0, time.UTC)
	b := time.Date(to.Year, time.Month(to.Month), to.Day, 12, 0, 0, 0, time.UTC)
	return int(b.Sub(a).Round(time.Hour).Hours() / 24)
}

// chunks is how many dailyRollUp requests a civil range needs for the data type's maximum range.
func chunks(d dataType, from, to civilDate) int {
	n := daysBetween(from, to)
	if d.rec != recRollup || n <= 0 {
		return 1
	}
	return (n + d.maxDay - 1) / d.maxDay
}

// Fetch reads one page of samples. The query is read data type by data type in the order of the
// adapter's table, one Google page per Fetch; a dailyRollUp range longer than the data type
// allows (14 days for total-calories, 90 for the others) is split into chunks. Page.Next is an
// opaque cursor (data type, chunk, Google's page token, the horizon fixed by the first page, a
// digest of the query); a cursor of another query is a permanent error. An incremental query
// (Since) reads [Since − 7 days, now); one with neither window nor Since the last 30 days.
// Page.SyncedUntil is the first page's clock. Fresh bypasses the response cache. A data type
// whose scope the user did not grant (403 PERMISSION_DENIED) gives an empty page and the query
// goes on with the next one; that is logged once per user and data type. Errors are
// *providers.UpstreamError or ctx.Err(); an auth error (401) is returned, never retried here.
func (c *Client) Fetch(ctx context.Context, user string, ts oauth2.TokenSource, q providers.Query) (*providers.Page, error) {
	wanted := c.wanted(q.Kinds)
	var steps []dataType
	for _, d := range dataTypes {
		if wanted[d.kind] {
			steps = append(steps, d)
		}
	}
	if len(steps) == 0 {
		return &providers.Page{}, nil
	}
	digest := queryDigest(steps, q)
	cu := cursor{Horizon: c.now().Unix(), Query: digest}
	if q.Cursor != "" {
		var err error
		if cu, err = decodeCursor(q.Cursor); err != nil || cu.Query != digest || cu.Step >= len(steps) {
			return nil, upstream(providers.KindPermanent, 0, errors.New("invalid googlehealth cursor"))
		}
	}
	horizon := time.Unix(cu.Horizon, 0).UTC()
	w, err := resolve(q, horizon)
	if err != nil {
		return nil, err
	}
	d := steps[cu.Step]
	m := pointMapper{user: user, dt: d}
	if d.rec == recDaily || d.rec == recRollup {
		if cu.Zone == "" {
			if cu.Zone, err = c.userZone(ctx, user, ts, w.fresh); err != nil {
				return nil, err
			}
		}
		if cu.Zone != "-" {
			m.zone = c.location(cu.Zone)
		}
	}
	from, to := civilRange(w, m.zone)
	n := chunks(d, from, to)
	if cu.Chunk >= n {
		return nil, upstream(providers.KindPermanent, 0, errors.New("invalid googlehealth cursor"))
	}

	var samples []fhir.Sample
	var next string
	if d.rec == recRollup {
		cf := addDays(from, cu.Chunk*d.maxDay)
		ct := addDays(cf, d.maxDay)
		if daysBetween(ct, to) < 0 {
			ct = to
		}
		samples, next, err = c.fetchRollup(ctx, user, ts, m, w, cf, ct, cu.Token)
	} else {
		samples, next, err = c.fetchPoints(ctx, user, ts, m, w, from, to, cu.Token)
	}
	if errors.Is(err, errScopeDenied) {
		// The user did not grant this data type's scope: its step is empty and the query goes
		// on with the next data type (a refresh or re-consent would not change the answer).
		c.noteDenied(user, d)
		samples, next, err, n = nil, "", nil, cu.Chunk+1
	}
	if err != nil {
		return nil, err
	}
	page := &providers.Page{Samples: samples, SyncedUntil: horizon}
	switch {
	case next != "":
		if next == cu.Token {
			return nil, upstream(providers.KindPermanent, 0, fmt.Errorf("%s pagination did not advance", d.name))
		}
		page.Next = cursor{Step: cu.Step, Chunk: cu.Chunk, Token: next, Horizon: cu.Horizon, Query: digest, Zone: cu.Zone}.encode()
	case cu.Chunk+1 < n:
		page.Next = cursor{Step: cu.Step, Chunk: cu.Chunk + 1, Horizon: cu.Horizon, Query: digest, Zone: cu.Zone}.encode()
	case cu.Step+1 < len(steps):
		page.Next = cursor{Step: cu.Step + 1, Horizon: cu.Horizon, Query: digest, Zone: cu.Zone}.encode()
	}
	return page, nil
}

// rfc3339 formats an instant for a filter literal (UTC, whole seconds).
func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// filter is the AIP-160 filter of a data type over the window
// (https://developers.google.com/health/filters): the field path uses the snake_case data type,
// comparisons are >= and <, joined with AND; ECG supports only a lower bound on its start time.
func filter(d dataType, w window, from, to civilDate) string {
	f := d.filterName()
	between := func(field, a, b string) string {
		return fmt.Sprintf("%s.%s >= %q AND %s.%s < %q", f, field, a, f, field, b)
	}
	switch d.rec {
	case recSample:
		return between("sample_time.physical_time", rfc3339(w.start), rfc3339(w.end.Add(time.Second-time.Nanosecond)))
	case recDaily:
		return between("date", from.String(), to.String())
	case recSleep:
		return between("interval.end_time", rfc3339(w.start), rfc3339(w.end.Add(time.Second-time.Nanosecond)))
	case recECG:
		return fmt.Sprintf("%s.interval.start_time >= %q", f, rfc3339(w.start))
	}
	return ""
}

func pageSize(d dataType) int {
	switch d.rec {
	case recSleep:
		return pageSizeSleep
	case recECG:
		return pageSizeECG
	case recDaily:
		return pageSizeDaily
	}
	return pageSizeSamples
}

// fetchPoints reads one page of dataPoints.list for a data type and maps it. Points outside the
// window (the filter is by end time for sleep, by start time only for ECGs) are dropped.
func (c *Client) fetchPoints(ctx context.Context, user string, ts oauth2.TokenSource, m pointMapper, w window, from, to civilDate, token string) ([]fhir.Sample, string, error) {
	query := url.Values{
		"filter":   {filter(m.dt, w, from, to)},
		"pageSize": {strconv.Itoa(pageSize(m.dt))},
	}
	if token != "" {
		query.Set("pageToken", token)
	}
	body, err := c.do(ctx, apiRequest{
		user: user, endpoint: "dataPoints/list", path: "/v4/users/me/dataTypes/" + m.dt.name + "/dataPoints",
		query: query, ts: ts, cacheable: !w.fresh,
	})
	if err != nil {
		return nil, "", err
	}
	var a listAnswer
	if err := decode(body, &a, m.dt.name+" list"); err != nil {
		return nil, "", err
	}
	var out []fhir.Sample
	for _, raw := range a.DataPoints {
		ss, err := m.samples(raw)
		if err != nil {
			return nil, "", upstream(providers.KindPermanent, 200, err)
		}
		for _, s := range ss {
			if (m.dt.rec == recECG || m.dt.rec == recSample) && (s.Start.Before(w.start) || !s.Start.Before(w.end)) {
				continue
			}
			out = append(out, s)
		}
	}
	return out, a.NextPageToken, nil
}

// fetchRollup reads one page of dataPoints:dailyRollUp over [from, to).
func (c *Client) fetchRollup(ctx context.Context, user string, ts oauth2.TokenSource, m pointMapper, w window, from, to civilDate, token string) ([]fhir.Sample, string, error) {
	body, err := c.do(ctx, apiRequest{
		user: user, endpoint: "dataPoints/dailyRollUp", method: "POST",
		path: "/v4/users/me/dataTypes/" + m.dt.name + "/dataPoints:dailyRollUp",
		body: newRollupRequest(from, to, token), ts: ts, cacheable: !w.fresh,
	})
	if err != nil {
		return nil, "", err
	}
	samples, next, err := m.rollupSamples(body)
	if err != nil {
		return nil, "", upstream(providers.KindPermanent, 200, err)
	}
	return samples, next, nil
}

// settings is the part of GET /v4/users/me/settings the adapter uses: the IANA time zone of the
// user's account (https://developers.google.com/health/reference/rest/v4/users/getSettings).
type settings struct {
	TimeZone string `json:"timeZone"`
}

// userZone is the IANA zone name of the user's settings, "-" when the settings carry none, the
// zone is unknown to this machine, or the user did not grant settings.readonly (403): daily
// values then carry the civil day alone.
func (c *Client) userZone(ctx context.Context, user string, ts oauth2.TokenSource, fresh bool) (string, error) {
	body, err := c.do(ctx, apiRequest{user: user, endpoint: "users/getSettings", path: "/v4/users/me/settings", ts: ts, cacheable: !fresh})
	if err != nil {
		var ue *providers.UpstreamError
		if errors.As(err, &ue) && ue.Status == 403 {
			return "-", nil
		}
		return "", err
	}
	var s settings
	if err := decode(body, &s, "settings"); err != nil {
		return "", err
	}
	if c.location(s.TimeZone) == nil {
		return "-", nil
	}
	return s.TimeZone, nil
}

// location loads an IANA zone once (nil when empty or unknown).
func (c *Client) location(name string) *time.Location {
	if name == "" {
		return nil
	}
	if v, ok := c.zones.Load(name); ok {
		loc, _ := v.(*time.Location)
		return loc
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		// The zone's name is the user's location: it is not logged.
		c.log.Warn("unknown time zone in Google Health settings: daily values keep their civil day")
		loc = nil
	}
	c.zones.Store(name, loc)
	return loc
}

// noteDenied logs, once per user and data type, that the user did not grant a data type's scope.
// The log names the kind and data type, never the user or any data.
func (c *Client) noteDenied(user string, d dataType) {
	if _, seen := c.denied.LoadOrStore(user+"\x00"+d.name, true); !seen {
		c.log.Warn("scope not granted by the user: data type skipped", "kind", string(d.kind), "data_type", d.name)
	}
}
