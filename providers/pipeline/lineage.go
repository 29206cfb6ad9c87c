package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/fhir/search"
	"github.com/openhealthexchange/ohx/providers"
	"github.com/openhealthexchange/ohx/store"
)

// lineage carries the Observations of a connection's predecessor account (a Fitbit account now
// read through the Google Health API) into what the new account delivers: the same measurement,
// stored once by the predecessor's adapter under its identifier, is updated under its existing
// id, with both identifiers, instead of being stored a second time. The two APIs name records
// differently (a Fitbit weight log id, a Google data point name), so the match is by what the
// record is: the same patient, the same codes, the same kind of effective time (an instant, a
// period, a date) starting at the same second, or on the same date for a value without a zone.
type lineage struct {
	r      *Runner
	pred   providers.Predecessor
	prefix string            // identifier system prefix of the predecessor's adapter
	own    string            // identifier system prefix of the new connection's adapter
	taken  map[string]string // predecessor Observations adopted in this fetch: id → the adopter's id
}

// newLineage returns the matcher of a connection, nil when it continues no other account.
func (r *Runner) newLineage(conn *providers.Connection) *lineage {
	p := conn.Predecessor
	if p == nil || p.Provider == "" || p.User == "" || p.Provider == conn.Provider {
		return nil
	}
	return &lineage{r: r, pred: *p, prefix: r.cfg.Namespace.ProviderIdentifierPrefix(p.Provider),
		own: r.cfg.Namespace.ProviderIdentifierPrefix(conn.Provider), taken: map[string]string{}}
}

// effective is where an Observation's effective[x] lies: its start to the second, and what it is.
type effective struct {
	start time.Time
	shape string // "instant", "period" or "date"
	date  string // the local date of a "date", or of a period's start as written
}

func effectiveOf(o *fhir.Observation) (effective, bool) {
	var raw, shape string
	switch {
	case o.EffectivePeriod != nil && o.EffectivePeriod.Start != "":
		raw, shape = o.EffectivePeriod.Start, "period"
	case o.EffectiveInstant != "":
		raw, shape = o.EffectiveInstant, "instant"
	case len(o.EffectiveDateTime) == len("2006-01-02"):
		raw, shape = o.EffectiveDateTime, "date"
	case o.EffectiveDateTime != "":
		raw, shape = o.EffectiveDateTime, "instant"
	default:
		return effective{}, false
	}
	lo, _, err := fhir.TimeRange(raw)
	if err != nil {
		return effective{}, false
	}
	e := effective{start: time.UnixMicro(lo).UTC().Truncate(time.Second), shape: shape}
	if len(raw) >= len("2006-01-02") {
		e.date = raw[:len("2006-01-02")]
	}
	return e, true
}

// same reports whether a stored Observation's effective time is that of the new record: the
// same shape and start; a date (a daily value whose zone the new account did not give) is the
// same as a daily period that starts on that local date.
func (e effective) same(stored effective) bool {
	switch {
	case e.shape == "date":
		return (stored.shape == "date" || stored.shape == "period") && stored.date == e.date
	case e.shape != stored.shape:
		return false
	}
	return e.start.Equal(stored.start)
}

// window is the search range that holds every stored Observation e can be the same as.
func (e effective) window() (ge, lt time.Time) {
	if e.shape == "date" {
		// The local day lies within [D 00:00 UTC − 14 h, D+1 00:00 UTC + 12 h) in every zone
		// (UTC offsets run from −12:00 to +14:00, https://www.iana.org/time-zones).
		return e.start.Add(-14 * time.Hour), e.start.Add(36 * time.Hour)
	}
	return e.start, e.start.Add(time.Second)
}

// adopt gives o the id of the predecessor's Observation of the same measurement, and that
// Observation's identifiers before its own, when there is one; a copy the new account stored
// earlier under its own identifier (before the predecessor's was there) is deleted. Measurements
// taken after the move cannot have a twin and cost nothing.
func (l *lineage) adopt(ctx context.Context, patient string, o *fhir.Observation) error {
	if l == nil {
		return nil
	}
	e, ok := effectiveOf(o)
	if !ok || !e.start.Before(l.pred.Until) || len(o.Code.Coding) == 0 {
		return nil
	}
	c := o.Code.Coding[0]
	ge, lt := e.window()
	params := []search.NameValue{
		{Name: "patient", Value: "Patient/" + patient},
		{Name: "code", Value: c.System + "|" + c.Code},
		// Everything that overlaps the window; shape, start and codes are compared below.
		{Name: "date", Value: "ge" + ge.Format(time.RFC3339)},
		{Name: "date", Value: "lt" + lt.Format(time.RFC3339)},
		{Name: "_count", Value: "100"},
	}
	q, _, err := l.r.sreg.Parse("Observation", params, search.Options{MaxCount: 100})
	if err != nil {
		return fmt.Errorf("lineage: %w", err)
	}
	var twin *fhir.Observation
	var copies []string // Observations holding only o's own identifier (stored before the twin was)
	for {
		res, err := l.r.st.Search(ctx, q)
		if err != nil {
			return fmt.Errorf("lineage: search the predecessor's Observation: %w", err)
		}
		for _, m := range res.Matches {
			var prev fhir.Observation
			if err := json.Unmarshal(m.JSON, &prev); err != nil {
				return fmt.Errorf("lineage: decode Observation/%s: %w", m.ID, err)
			}
			prev.ID = m.ID
			own, pred := holds(prev.Identifier, o.Identifier[0]), len(l.predecessorIDs(prev.Identifier)) > 0
			switch {
			case own && pred:
				// Taken over on an earlier sync: the twin, whatever else matches.
				twin = &prev
			case own:
				copies = append(copies, m.ID)
			case twin == nil && l.twin(&prev, o, e):
				twin = &prev
			}
		}
		if res.Next == nil {
			break
		}
		q.Cursor = res.Next
	}
	if twin == nil {
		return nil
	}
	l.taken[twin.ID] = o.ID
	o.ID = twin.ID
	// The predecessor's identifier stays first: the stores' upsert finds the resource to update
	// by the first identifier, and the Observation keeps its business identity; the new
	// account's identifier follows.
	ids := l.predecessorIDs(twin.Identifier)
	for _, id := range o.Identifier {
		if !holds(ids, id) {
			ids = append(ids, id)
		}
	}
	o.Identifier = ids
	for _, id := range copies {
		// Stored before the predecessor's Observation was (the old connection still synced
		// while the new one backfilled): the twin now holds this record.
		if err := l.r.st.Delete(ctx, "Observation", id); err != nil && !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrDeleted) {
			return fmt.Errorf("lineage: delete the second copy Observation/%s: %w", id, err)
		}
	}
	return nil
}

// twin reports whether the stored Observation prev is the predecessor's record of the
// measurement o (with effective time e): one of the predecessor user's records, not yet taken
// by another record of the new account, with the same codes and effective time.
func (l *lineage) twin(prev, o *fhir.Observation, e effective) bool {
	if len(l.predecessorIDs(prev.Identifier)) == 0 {
		return false
	}
	if by, ok := l.taken[prev.ID]; ok && by != o.ID {
		return false // two records of the new account never become one
	}
	for _, id := range prev.Identifier {
		if strings.HasPrefix(id.System, l.own) && !holds(o.Identifier, id) {
			return false // already the twin of another record of the new account
		}
	}
	if !sameCodes(prev.Code.Coding, o.Code.Coding) {
		return false // a resting heart rate (8867-4 and 40443-4) is not a heart rate (8867-4)
	}
	pe, ok := effectiveOf(prev)
	return ok && e.same(pe)
}

// sameCodes reports whether two codings name the same codes, in any order.
func sameCodes(a, b []fhir.Coding) bool {
	key := func(cs []fhir.Coding) []string {
		out := make([]string, len(cs))
		for i, c := range cs {
			out[i] = c.System + "|" + c.Code
		}
		slices.Sort(out)
		return out
	}
	return slices.Equal(key(a), key(b))
}

// predecessorIDs returns the identifiers the predecessor's adapter gave a record of its user.
func (l *lineage) predecessorIDs(ids []fhir.Identifier) []fhir.Identifier {
	var out []fhir.Identifier
	for _, id := range ids {
		if strings.HasPrefix(id.System, l.prefix) && strings.HasPrefix(id.Value, l.pred.User+"/") {
			out = append(out, id)
		}
	}
	return out
}

func holds(ids []fhir.Identifier, id fhir.Identifier) bool {
	for _, x := range ids {
		if x.System == id.System && x.Value == id.Value {
			return true
		}
	}
	return false
}
