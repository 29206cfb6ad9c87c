package api

import (
	"net/http"
	"slices"

	"github.com/gin-gonic/gin"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/fhir/search"
)

// confineChains applies the caller's rights to the chained clauses of q
// (patient.identifier=…, device.identifier=…). A chain searches its target types: the caller
// needs search access to each type the chain may reach (403 otherwise, as for a search of that
// type), and the chain may only see the targets the caller may see. For a caller confined to a
// patient's compartment those are its Patient and the Devices of its associations, so a clause
// restricting the chain's reference parameter to them is added: a chain then reveals nothing
// about a resource outside the compartment, not even through a search whose own type the
// caller may see (an Observation referring to a Device of no association of theirs). The
// search type's own confinement is confine's, added on top; both only narrow the search.
//
// Not supported, and refused with 403: a target type the token reaches only through v2 scope
// constraints (they cannot be pushed into a chain), and an untyped chain whose target types
// the token confines differently (subject.identifier with patient/Patient.rs and
// system/Device.rs: the typed subject:Patient.identifier and subject:Device.identifier work).
func (s *Server) confineChains(c *gin.Context, q *search.Query) error {
	var extra []search.Clause
	for _, cl := range q.Clauses {
		if cl.Chain == nil {
			continue
		}
		patients := map[string]bool{} // the confinement of each target type ("" = none)
		var visible []search.Value
		for _, tp := range cl.Chain.Targets {
			a, err := s.authorize(c, tp.Resource, 's')
			if err != nil {
				return err
			}
			if len(a.constraints) > 0 {
				return errInsufficientScope("a chained search through a constrained scope on " + tp.Resource)
			}
			patients[a.patient] = true
			switch {
			case a.patient == "":
			case tp.Resource == "Patient":
				visible = append(visible, search.Value{RefType: "Patient", RefID: a.patient})
			case tp.Resource == "Device":
				ids, err := s.devicesOf(c.Request.Context(), a.patient)
				if err != nil {
					return err
				}
				for _, id := range ids {
					visible = append(visible, search.Value{RefType: "Device", RefID: id})
				}
			default:
				return errInsufficientScope("a chained search to " + tp.Resource + " within a patient compartment")
			}
		}
		if patients[""] {
			if len(patients) > 1 {
				return fhir.Errorf(http.StatusForbidden, fhir.CodeForbidden,
					"the access token confines the target types of this chain differently: name one with a type modifier, e.g. %s:%s.%s",
					cl.Param.Name, cl.Chain.Targets[0].Resource, cl.Chain.Targets[0].Name)
			}
			continue
		}
		if len(visible) == 0 {
			extra = append(extra, idClause(s.reg, q.Type, nil))
			continue
		}
		extra = append(extra, search.Clause{Param: cl.Param, Values: slices.Clip(visible)})
	}
	q.Clauses = append(q.Clauses, extra...)
	return nil
}

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
