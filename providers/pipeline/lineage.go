package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/fhir/search"
	"github.com/openhealthexchange/ohx/providers"
)

// lineage carries the Observations of a connection's predecessor account (a Fitbit account now
// read through the Google Health API) into what the new account delivers: the same measurement,
// stored once by the predecessor's adapter under its identifier, is updated under its existing
// id, with both identifiers, instead of being stored a second time. The two APIs name records
// differently (a Fitbit weight log id, a Google data point name), so the match is by what the
// record is: the same patient, the same code and the same effective start, to the second.
type lineage struct {
	r      *Runner
	pred   providers.Predecessor
	prefix string            // identifier system prefix of the predecessor's adapter
	moved  map[string]string // resource ids given to a predecessor's Observation: new → old
	taken  map[string]string // the reverse: old → new
}

// newLineage returns the matcher of a connection, nil when it continues no other account.
func (r *Runner) newLineage(conn *providers.Connection) *lineage {
	if conn.Predecessor == nil || conn.Predecessor.Provider == "" || conn.Predecessor.User == "" {
		return nil
	}
	return &lineage{r: r, pred: *conn.Predecessor, prefix: fhir.ProviderIdentifierPrefix(conn.Predecessor.Provider), moved: map[string]string{}, taken: map[string]string{}}
}

// adopt gives o the id of the predecessor's Observation of the same measurement, and that
// Observation's identifiers before its own, when there is one. Measurements taken after the
// move cannot have one and cost nothing.
func (l *lineage) adopt(ctx context.Context, patient string, o *fhir.Observation) error {
	if l == nil {
		return nil
	}
	l.relink(o)
	start, ok := effectiveStart(o)
	if !ok || !start.Before(l.pred.Until) || len(o.Code.Coding) == 0 {
		return nil
	}
	c := o.Code.Coding[0]
	sec := start.UTC().Truncate(time.Second)
	params := []search.NameValue{
		{Name: "patient", Value: "Patient/" + patient},
		{Name: "code", Value: c.System + "|" + c.Code},
		// Everything that overlaps the second of the start; the exact start is compared below.
		{Name: "date", Value: "ge" + sec.Format(time.RFC3339)},
		{Name: "date", Value: "lt" + sec.Add(time.Second).Format(time.RFC3339)},
		{Name: "_count", Value: "100"},
	}
	q, _, err := l.r.sreg.Parse("Observation", params, search.Options{MaxCount: 100})
	if err != nil {
		return fmt.Errorf("lineage: %w", err)
	}
	for {
		res, err := l.r.st.Search(ctx, q)
		if err != nil {
			return fmt.Errorf("lineage: search the predecessor's Observation: %w", err)
		}
		for _, m := range res.Matches {
			if by, ok := l.taken[m.ID]; m.ID == o.ID || ok && by != o.ID {
				// Two records at the same second never become one.
				continue
			}
			var prev fhir.Observation
			if err := json.Unmarshal(m.JSON, &prev); err != nil {
				return fmt.Errorf("lineage: decode Observation/%s: %w", m.ID, err)
			}
			ids := l.predecessorIDs(prev.Identifier)
			if len(ids) == 0 {
				continue
			}
			if ps, ok := effectiveStart(&prev); !ok || !ps.Truncate(time.Second).Equal(start.Truncate(time.Second)) {
				continue
			}
			l.moved[o.ID], l.taken[m.ID] = m.ID, o.ID
			o.ID = m.ID
			// The predecessor's identifier stays first: the stores' upsert finds the resource
			// to update by the first identifier, and the Observation keeps its business
			// identity; the new account's identifier follows.
			for _, id := range o.Identifier {
				if !hasIdentifier(ids, id) {
					ids = append(ids, id)
				}
			}
			o.Identifier = ids
			return nil
		}
		if res.Next == nil {
			return nil
		}
		q.Cursor = res.Next
	}
}

// relink points derivedFrom references at the ids the sources were given (a BMI derived from a
// weight that was matched to the predecessor's weight).
func (l *lineage) relink(o *fhir.Observation) {
	for i, ref := range o.DerivedFrom {
		if id, ok := strings.CutPrefix(ref.Reference, "Observation/"); ok {
			if old, moved := l.moved[id]; moved {
				o.DerivedFrom[i].Reference = "Observation/" + old
			}
		}
	}
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

func hasIdentifier(ids []fhir.Identifier, id fhir.Identifier) bool {
	for _, x := range ids {
		if x.System == id.System && x.Value == id.Value {
			return true
		}
	}
	return false
}

// effectiveStart is the instant an Observation's effective[x] starts.
func effectiveStart(o *fhir.Observation) (time.Time, bool) {
	var lo int64
	var err error
	switch {
	case o.EffectiveDateTime != "":
		lo, _, err = fhir.TimeRange(o.EffectiveDateTime)
	case o.EffectiveInstant != "":
		lo, _, err = fhir.TimeRange(o.EffectiveInstant)
	case o.EffectivePeriod != nil && o.EffectivePeriod.Start != "":
		lo, _, err = fhir.PeriodRange(o.EffectivePeriod)
	default:
		return time.Time{}, false
	}
	if err != nil {
		return time.Time{}, false
	}
	return time.UnixMicro(lo), true
}
