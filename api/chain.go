package api

import (
	"slices"

	"github.com/openhealthexchange/ohx/fhir/search"
)

// Chained searches are confined by the policy (authz.Policy.ConfineChains, through
// Server.confineChains); their targets are what a cached result depends on besides its type.

// chainDeps lists what the chained clauses of q depend on besides the searched type: the
// target types, whose identifiers may change (a search by MRN must see a corrected MRN).
func chainDeps(q *search.Query) []dep {
	var deps []dep
	for _, c := range q.Clauses {
		if c.Chain == nil {
			continue
		}
		for _, tp := range c.Chain.Targets {
			if d := (dep{tp.Resource, ""}); !slices.Contains(deps, d) {
				deps = append(deps, d)
			}
		}
	}
	return deps
}
