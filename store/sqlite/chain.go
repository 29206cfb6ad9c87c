package sqlite

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/openhealthexchange/ohx/fhir/search"
)

// Chained clauses (patient.identifier=…, device.identifier=…) look the targets up in the target
// type's own token index, exactly as a plain search of the target would find them. idx_token
// holds rows of live resources only (deletes drop them), so a deleted target matches nothing, as
// search.MatchesWith requires.
//
// Search first resolves each chain to its targets (resolveChains, a statement of its own just
// before the search's): a chain reaching a few targets (an MRN names one patient) becomes the
// plain reference clause patient=Patient/<id>, which takes the planner's best paths, the
// clustered obs_clinical range scan in date order included — as one statement with a subquery
// it would not: without statistics the planner cannot know the subquery yields one patient, and
// sorts or walks the whole type instead. A chain reaching more than chainInline targets stays
// a subquery (chainClause). SQL shows the statement of the query it is given: tests resolve
// chains first, as Search does.

// chainInline is the most targets a chain is resolved to before the search; beyond it the chain
// stays a subquery. It is MaxParamValues: a client could have listed that many ids itself.
const chainInline = search.MaxParamValues

// targetIDs is the subquery of the ids of the live resources of tp.Resource that match one of
// vals on the parameter tp: one SELECT per value, each a range of the idx_token primary key
// (type, col, code, system, sort_date, id) — exact for code or system|code, the (type, col) range for
// system|. The same id may come twice (two identifiers of one patient matching two values).
func targetIDs(tp *search.Param, vals []search.Value) (string, []any) {
	var selects []string
	var args []any
	for _, v := range vals {
		cond, vargs := valueCond(search.Clause{Param: tp}, v)
		selects = append(selects, "SELECT id FROM idx_token WHERE type = ? AND col IN ("+placeholders(len(tp.Columns))+") AND "+cond)
		args = append(args, tp.Resource)
		for _, col := range tp.Columns {
			args = append(args, col)
		}
		args = append(args, vargs...)
	}
	return strings.Join(selects, " UNION ALL "), args
}

// isPatientChain reports whether a chained clause follows the subject of an Observation or
// DeviceAssociation to Patients only (patient.identifier, subject:Patient.identifier): it is
// then a condition on the patient column, which holds the subject's Patient id
// (search.PatientOf), and on the patient-first indexes.
func isPatientChain(typ string, c search.Clause) bool {
	if c.Chain == nil || (typ != "Observation" && typ != "DeviceAssociation") || !slices.Equal(c.Param.Columns, []string{"subject"}) {
		return false
	}
	for _, tp := range c.Chain.Targets {
		if tp.Resource != "Patient" {
			return false
		}
	}
	return true
}

// resolveChains returns q with every chained clause that reaches at most chainInline targets
// replaced by the equivalent plain clause: a reference to each target (on the patient parameter
// for a patient chain, search.ReferenceMatches being chainMatches once the targets are known),
// or, without targets, an _id clause nothing matches. q itself is not changed.
func (s *Store) resolveChains(ctx context.Context, q *search.Query) (*search.Query, error) {
	if !slices.ContainsFunc(q.Clauses, func(c search.Clause) bool { return c.Chain != nil }) {
		return q, nil
	}
	out := *q
	out.Clauses = slices.Clone(q.Clauses)
	for i, c := range out.Clauses {
		if c.Chain == nil {
			continue
		}
		vals, ok, err := s.chainTargets(ctx, c.Chain)
		if err != nil {
			return nil, err
		}
		switch {
		case !ok:
			// Too many targets to list: chainClause keeps it a subquery.
		case len(vals) == 0:
			out.Clauses[i] = search.Clause{Param: s.reg.Param(q.Type, "_id"), Values: []search.Value{{AnySystem: true}}} // no resource has an empty id
		case isPatientChain(q.Type, c):
			out.Clauses[i] = search.Clause{Param: s.reg.Param(q.Type, "patient"), Values: vals}
		default:
			out.Clauses[i] = search.Clause{Param: c.Param, Values: vals}
		}
	}
	return &out, nil
}

// chainTargets lists the targets of a chain as reference values; ok is false when there are
// more than chainInline (or s.subqueryChains is set).
func (s *Store) chainTargets(ctx context.Context, ch *search.Chain) (vals []search.Value, ok bool, err error) {
	if s.subqueryChains {
		return nil, false, nil
	}
	seen := map[search.Value]bool{}
	for _, tp := range ch.Targets {
		sub, args := targetIDs(tp, ch.Values)
		rows, err := s.query(ctx, sub+" LIMIT ?", append(args, chainInline+1)...)
		if err != nil {
			return nil, false, fmt.Errorf("sqlite: chain to %s.%s: %w", tp.Resource, tp.Name, err)
		}
		for rows.Next() {
			v := search.Value{RefType: tp.Resource}
			if err := rows.Scan(&v.RefID); err != nil {
				rows.Close()
				return nil, false, fmt.Errorf("sqlite: chain to %s.%s: %w", tp.Resource, tp.Name, err)
			}
			if !seen[v] {
				seen[v] = true
				vals = append(vals, v)
			}
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, false, fmt.Errorf("sqlite: chain to %s.%s: %w", tp.Resource, tp.Name, err)
		}
		if len(vals) > chainInline {
			return nil, false, nil
		}
	}
	return vals, true, nil
}

// chainClause adds a chained clause that resolveChains left in place to b: a patient chain is
// "patient IN (the targets)" on the patient-first indexes (outside the hot path the planner is
// told so: without statistics it would rather walk the whole type in sort order); any other is
// a local reference of one of the clause's columns to one of the targets, through idx_ref
// (absolute URLs have an empty ref_id, which no target id equals).
func chainClause(b *sqlQuery, typ string, c search.Clause) {
	if isPatientChain(typ, c) {
		if b.from == "resources r" {
			b.from = "resources r INDEXED BY resources_patient"
		}
		sub, args := targetIDs(c.Chain.Targets[0], c.Chain.Values)
		b.add("r.patient IN ("+sub+")", args...)
		return
	}
	args := []any{typ}
	for _, col := range c.Param.Columns {
		args = append(args, col)
	}
	var ors []string
	for _, tp := range c.Chain.Targets {
		sub, sargs := targetIDs(tp, c.Chain.Values)
		ors = append(ors, "(ref_type = ? AND ref_id IN ("+sub+"))")
		args = append(append(args, tp.Resource), sargs...)
	}
	b.add("r.id IN (SELECT id FROM idx_ref WHERE type = ? AND col IN ("+placeholders(len(c.Param.Columns))+") AND ("+strings.Join(ors, " OR ")+"))", args...)
}
