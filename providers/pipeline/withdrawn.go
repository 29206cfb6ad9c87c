package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/fhir/search"
	"github.com/openhealthexchange/ohx/providers"
	"github.com/openhealthexchange/ohx/store"
)

// Vendors report no deletions: a measurement the patient deleted in the vendor's app simply no
// longer comes back (providers.Authoritative). Where the adapter says a window answer is
// complete, a stored Observation inside it that the answer did not return was withdrawn by the
// vendor and is written again, value kept, with status entered-in-error ("withdrawn following
// previous final release", https://hl7.org/fhir/R5/valueset-observation-status.html), through
// the ordinary Upsert so that its history, the Upserted hook (publishing) and caches see the
// change. Should the vendor return the record again, the ordinary upsert writes it back as
// final. Incremental answers list changes only and never withdraw anything.

// withdrawable lists the statuses of a current, synced Observation; anything else (already
// entered-in-error, cancelled by someone) is left alone.
var withdrawable = []string{"final", "amended", "corrected", "preliminary"}

// withdrawal is what a window fetch gathers to find the records the vendor withdrew.
type withdrawal struct {
	ranges []providers.CompleteRange
	seen   map[string]bool // "{system}|{value}" of every record the answer returned
	wrote  map[string]bool // ids of the Observations the fetch upserted: returned, so never gone
	pages  int
	began  time.Time // wall clock (the store's) before the first vendor call
}

// newWithdrawal returns the gathering of a fetch of q, nil when the adapter claims no complete
// range for it (an incremental query, an adapter without providers.Authoritative).
func (r *Runner) newWithdrawal(s *session, q providers.Query) *withdrawal {
	a, ok := s.p.(providers.Authoritative)
	if !ok || !q.Since.IsZero() || q.Start.IsZero() || q.End.IsZero() || q.Cursor != "" {
		return nil
	}
	var ranges []providers.CompleteRange
	for _, cr := range a.CompleteRanges(s.conn.VendorUserID, q) {
		// Only the connection's own records: its provider's systems and its vendor user.
		if cr.Prefix == "" || !strings.HasPrefix(cr.System, s.p.Name()+"/") || len(cr.Kinds) == 0 {
			continue
		}
		ranges = append(ranges, cr)
	}
	if len(ranges) == 0 {
		return nil
	}
	return &withdrawal{ranges: ranges, seen: map[string]bool{}, wrote: map[string]bool{}, began: time.Now()}
}

// note records a page of the answer: every sample it returned, mapped or not (a record the
// mapper refuses is still one the vendor holds), and the records the adapter could not turn
// into samples (providers.Page.Held).
func (wd *withdrawal) note(ns fhir.Namespace, p *providers.Page) {
	if wd == nil {
		return
	}
	wd.pages++
	addRecords(ns, p, wd.seen)
}

// addRecords adds the "{system}|{value}" identifier keys of a page's records to seen: its samples
// and its held records.
func addRecords(ns fhir.Namespace, p *providers.Page, seen map[string]bool) {
	for _, smp := range p.Samples {
		seen[ns.IdentifierSystem(smp.System)+"|"+smp.RecordID] = true
	}
	for _, h := range p.Held {
		seen[ns.IdentifierSystem(h.System)+"|"+h.RecordID] = true
	}
}

// upserting records an Observation of the answer, which the comparison then skips without
// decoding it (a re-read of a covered window compares every stored record).
func (wd *withdrawal) upserting(id string) {
	if wd != nil {
		wd.wrote[id] = true
	}
}

// confirmAbove is how many withdrawals one answer makes before it is read a second time: a
// patient deletes a measurement or two, while a vendor answering a moment with an empty list
// would otherwise withdraw a whole window.
const confirmAbove = 3

// withdrawGone marks entered-in-error the patient's current Observations that lie in one of the
// answer's complete ranges and that the answer did not return. The answer is read a second time
// before anything is marked when it had several pages — a record deleted while the first read
// paged through shifts the vendor's offsets, so that another, live record can be skipped once —
// or when more than confirmAbove records would go; only what both reads lack is marked. It
// returns how many Observations it marked.
func (r *Runner) withdrawGone(ctx context.Context, s *session, q providers.Query, wd *withdrawal) (int, error) {
	if wd == nil {
		return 0, nil
	}
	gone, err := r.goneObservations(ctx, s, wd)
	if err != nil || len(gone) == 0 {
		return 0, err
	}
	if wd.pages > 1 || len(gone) > confirmAbove {
		again, err := r.answerRecords(ctx, s, q)
		if err != nil {
			return 0, err
		}
		gone = slices.DeleteFunc(gone, func(g goneObservation) bool { return again[g.key] })
		if len(gone) == 0 {
			return 0, nil
		}
	}
	n := 0
	for batch := range slices.Chunk(gone, r.cfg.Batch) {
		rs := make([]fhir.Resource, 0, len(batch))
		for _, g := range batch {
			o := g.o
			o.Status = "entered-in-error"
			if o.Meta != nil {
				o.Meta.VersionID, o.Meta.LastUpdated = "", ""
			}
			rs = append(rs, o)
		}
		res, err := r.st.Upsert(ctx, rs)
		if err != nil {
			return n, fmt.Errorf("withdraw deleted records: %w", err)
		}
		n += len(rs)
		r.jm.withdrawn.WithLabelValues(s.p.Name()).Add(float64(len(rs)))
		if err := r.upserted(ctx, s.conn.PatientID, res); err != nil {
			return n, err
		}
	}
	r.log.Info("vendor deleted records: marked entered-in-error", "provider", s.p.Name(), "observations", n)
	return n, nil
}

// goneObservation is a stored Observation the answer did not return, with the key of its own
// identifier.
type goneObservation struct {
	o   *fhir.Observation
	key string
}

// goneObservations searches each complete range for the patient's current Observations of the
// connection's own records that the answer did not return. Observations written after the fetch
// began are left alone: another job may have stored what the vendor added after this answer was
// read.
//
// Only the part of a range that an earlier window fetch had read completely (the kinds'
// coverage, which the runner extends only after this answer) is searched: what a first read of
// a window, a backfill, returns is all there is to compare, and reading it back from the store
// would cost as much as writing it. A record stored by an incremental sync in a window never
// read as a window is compared once a later window read (a notification's day, the
// reconciliation pass) has covered it.
func (r *Runner) goneObservations(ctx context.Context, s *session, wd *withdrawal) ([]goneObservation, error) {
	covs, err := r.st.Coverage(ctx, s.p.Name(), s.conn.PatientID)
	if err != nil {
		return nil, fmt.Errorf("withdraw deleted records: read coverage: %w", err)
	}
	var out []goneObservation
	picked := map[string]bool{}
	for _, cr := range wd.ranges {
		ge, lt, ok := searchWindow(cr)
		if !ok {
			continue
		}
		for _, iv := range coveredBefore(covs, cr.Kinds, ge, lt) {
			got, err := r.goneIn(ctx, s, wd, cr, iv, picked)
			if err != nil {
				return nil, err
			}
			out = append(out, got...)
		}
	}
	return out, nil
}

// coveredBefore returns the parts of [ge, lt) that the coverage of any of the kinds holds,
// sorted and disjoint.
func coveredBefore(covs []store.Coverage, kinds []fhir.SampleKind, ge, lt time.Time) []store.Interval {
	var union store.Coverage
	for _, c := range covs {
		if !slices.Contains(kinds, fhir.SampleKind(c.Kind)) {
			continue
		}
		for _, iv := range c.Intervals {
			lo, hi := iv.Start, iv.End
			if lo.Before(ge) {
				lo = ge
			}
			if hi.After(lt) {
				hi = lt
			}
			union.Add(lo, hi) // ignores what lies outside (lo ≥ hi)
		}
	}
	return union.Intervals
}

// goneIn searches one covered part iv of the range cr for the patient's Observations the answer
// did not return (goneObservations). The search names the patient and the dates only, a range
// read of the store's patient index; the identifier system (a token without a value, which no
// index orders) is checked here instead.
func (r *Runner) goneIn(ctx context.Context, s *session, wd *withdrawal, cr providers.CompleteRange, iv store.Interval, picked map[string]bool) ([]goneObservation, error) {
	system := r.cfg.Namespace.IdentifierSystem(cr.System)
	q, _, err := r.sreg.Parse("Observation", []search.NameValue{
		{Name: "patient", Value: "Patient/" + s.conn.PatientID},
		// Everything that overlaps the part; the range itself is checked below.
		{Name: "date", Value: "ge" + iv.Start.UTC().Format(time.RFC3339Nano)},
		{Name: "date", Value: "lt" + iv.End.UTC().Format(time.RFC3339Nano)},
		{Name: "_count", Value: "1000"},
	}, search.Options{MaxCount: 1000})
	if err != nil {
		return nil, fmt.Errorf("withdraw deleted records: %w", err)
	}
	var out []goneObservation
	for {
		res, err := r.st.Search(ctx, q)
		if err != nil {
			return nil, fmt.Errorf("withdraw deleted records: search %s: %w", cr.System, err)
		}
		for _, m := range res.Matches {
			if picked[m.ID] || wd.wrote[m.ID] || m.LastUpdated.IsZero() || !m.LastUpdated.Before(wd.began) {
				continue
			}
			// The identifiers and status first: most Observations of the range were returned.
			var head fhir.Observation
			if err := json.Unmarshal(m.JSON, &struct {
				Identifier *[]fhir.Identifier `json:"identifier"`
				Status     *string            `json:"status"`
			}{&head.Identifier, &head.Status}); err != nil {
				return nil, fmt.Errorf("withdraw deleted records: decode Observation/%s: %w", m.ID, err)
			}
			key, ok := ownRecord(&head, system, cr.Prefix)
			if !ok || wd.seen[key] || !slices.Contains(withdrawable, head.Status) {
				continue
			}
			var o fhir.Observation
			if err := json.Unmarshal(m.JSON, &o); err != nil {
				return nil, fmt.Errorf("withdraw deleted records: decode Observation/%s: %w", m.ID, err)
			}
			o.ID = m.ID
			if !inside(&o, cr) {
				continue
			}
			picked[m.ID] = true
			out = append(out, goneObservation{o: &o, key: key})
		}
		if res.Next == nil {
			break
		}
		q.Cursor = res.Next
	}
	return out, nil
}

// answerRecords reads the answer to q again, every page, and returns its records' keys without
// storing anything.
func (r *Runner) answerRecords(ctx context.Context, s *session, q providers.Query) (map[string]bool, error) {
	seen := map[string]bool{}
	for {
		var page *providers.Page
		err := providers.RetryOnAuth(ctx, s.ts, func() (err error) {
			page, err = s.p.Fetch(ctx, s.conn.VendorUserID, s.ts, q)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("withdraw deleted records: read the window again: %w", err)
		}
		addRecords(r.cfg.Namespace, page, seen)
		if page.Next == "" {
			return seen, nil
		}
		q.Cursor = page.Next
	}
}

// ownRecord returns the key of the Observation's identifier in system whose value starts with
// prefix (the connection's vendor user): an Observation adopted from a predecessor account
// carries the predecessor's identifier first and this one after it, one of the predecessor only
// has none and is never withdrawn by this connection.
func ownRecord(o *fhir.Observation, system, prefix string) (string, bool) {
	for _, id := range o.Identifier {
		if id.System == system && len(id.Value) > len(prefix) && strings.HasPrefix(id.Value, prefix) {
			return system + "|" + id.Value, true
		}
	}
	return "", false
}

// inside reports whether the Observation is of one of the range's kinds and its effective time
// lies in the range (providers.CompleteRange).
func inside(o *fhir.Observation, cr providers.CompleteRange) bool {
	k, ok := fhir.KindOf(o.Code.Coding)
	if !ok || !slices.Contains(cr.Kinds, k) {
		return false
	}
	const dateLen = len("2006-01-02")
	dates := func(ds ...string) bool {
		if cr.After == "" || cr.Before == "" {
			return false
		}
		for _, d := range ds {
			if len(d) < dateLen {
				return false
			}
			if d = d[:dateLen]; d <= cr.After || d >= cr.Before {
				return false
			}
		}
		return true
	}
	point := func(v string) bool {
		if cr.Start.IsZero() || cr.End.IsZero() || !strings.Contains(v, "T") {
			return false
		}
		lo, _, err := fhir.TimeRange(v)
		if err != nil {
			return false
		}
		t := time.UnixMicro(lo)
		return !t.Before(cr.Start) && t.Before(cr.End)
	}
	switch {
	case o.EffectivePeriod != nil:
		p := o.EffectivePeriod
		return strings.Contains(p.Start, "T") && strings.Contains(p.End, "T") && dates(p.Start, p.End)
	case o.EffectiveInstant != "":
		return point(o.EffectiveInstant)
	case len(o.EffectiveDateTime) == dateLen:
		return dates(o.EffectiveDateTime)
	default:
		return point(o.EffectiveDateTime)
	}
}

// searchWindow is the date search that holds every Observation the range can hold.
func searchWindow(cr providers.CompleteRange) (ge, lt time.Time, ok bool) {
	if !cr.Start.IsZero() && !cr.End.IsZero() && cr.Start.Before(cr.End) {
		ge, lt, ok = cr.Start, cr.End, true
	}
	after, err1 := time.Parse(time.DateOnly, cr.After)
	before, err2 := time.Parse(time.DateOnly, cr.Before)
	if err1 == nil && err2 == nil && after.Before(before) {
		// A local date lies within [D 00:00 UTC − 14 h, D+1 00:00 UTC + 12 h) in every zone
		// (UTC offsets run from −12:00 to +14:00, https://www.iana.org/time-zones).
		lo, hi := after.AddDate(0, 0, 1).Add(-14*time.Hour), before.Add(12*time.Hour)
		if !ok || lo.Before(ge) {
			ge = lo
		}
		if !ok || hi.After(lt) {
			lt = hi
		}
		ok = true
	}
	return ge, lt, ok
}
