package store

import (
	"cmp"
	"errors"
	"fmt"
	"slices"

	"github.com/openhealthexchange/ohx/fhir/search"
)

// Coding is a code system and code: the key of a LastN group.
type Coding struct{ System, Code string }

// LastNQuery is the query of Store.LastN taken apart, so that every implementation reads it
// the same way.
type LastNQuery struct {
	// Patient is the id of the single patient clause.
	Patient string
	// Named lists the codings the first code clause without modifier names when all of its
	// values give a system and a code, ordered by system then code, without repetitions; it is
	// nil when there is no such clause (then the groups are the codings the matches carry).
	Named []Coding
	// Clauses are the clauses of the query without that code clause (the patient clause
	// stays): the filter every group applies.
	Clauses []search.Clause
}

// ErrLastNQuery is wrapped by SplitLastN for a query Store.LastN does not take.
var ErrLastNQuery = errors.New("lastn needs an Observation query with a single-valued clause patient=Patient/<id>")

// SplitLastN takes apart the query of Store.LastN. The first clause patient=Patient/<id> with
// one value and no modifier names the patient; it returns an error wrapping ErrLastNQuery if q
// has none or is not an Observation query.
func SplitLastN(q *search.Query) (LastNQuery, error) {
	var lq LastNQuery
	if q.Type != "Observation" {
		return lq, fmt.Errorf("%s query: %w", q.Type, ErrLastNQuery)
	}
	named := -1
	for i, c := range q.Clauses {
		if c.Param == nil {
			return lq, fmt.Errorf("clause without parameter: %w", ErrLastNQuery)
		}
		switch c.Param.Name {
		case "patient":
			if lq.Patient == "" && c.Modifier == "" && len(c.Values) == 1 && c.Values[0].RefType == "Patient" && c.Values[0].RefID != "" {
				lq.Patient = c.Values[0].RefID
			}
		case "code":
			if named < 0 && c.Modifier == "" && len(c.Values) > 0 && !slices.ContainsFunc(c.Values, func(v search.Value) bool { return v.AnySystem || v.AnyCode }) {
				named = i
			}
		}
	}
	if lq.Patient == "" {
		return lq, fmt.Errorf("no patient clause: %w", ErrLastNQuery)
	}
	lq.Clauses = slices.Clone(q.Clauses)
	if named >= 0 {
		for _, v := range q.Clauses[named].Values {
			lq.Named = append(lq.Named, Coding{System: v.System, Code: v.Code})
		}
		slices.SortFunc(lq.Named, CompareCoding)
		lq.Named = slices.Compact(lq.Named)
		lq.Clauses = slices.Delete(lq.Clauses, named, named+1)
	}
	return lq, nil
}

// CompareCoding orders codings by system, then code: the order of Store.LastN's groups.
func CompareCoding(a, b Coding) int {
	return cmp.Or(cmp.Compare(a.System, b.System), cmp.Compare(a.Code, b.Code))
}

// GroupQuery returns the search of one LastN group: lq's clauses and the coding, newest first
// (_sort=-date with the _id tie-breaker descending), n per page.
func (lq LastNQuery) GroupQuery(reg *search.Registry, c Coding, n int) *search.Query {
	clauses := append(slices.Clip(lq.Clauses), search.Clause{Param: reg.Param("Observation", "code"),
		Values: []search.Value{{System: c.System, Code: c.Code}}})
	return &search.Query{Type: "Observation", Clauses: clauses, Count: n, Total: "none",
		Sort: []search.SortKey{{Param: "date", Desc: true}, {Param: "_id", Desc: true}}}
}
