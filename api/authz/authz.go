// Package authz is ohx's authorization policy for FHIR requests: from a verified access token it
// decides what a request may do to one resource type, confines searches to what the token may
// see (a patient's compartment, SMART v2 scope constraints, chained searches) and judges stored
// resources one by one. It is named for the decision it makes — authorization, as opposed to the
// authentication api does with api/smart — and knows no HTTP: api applies it to gin requests, and
// this package's tests exercise the rules without a router.
//
// Scopes and their contexts follow SMART App Launch 2
// (https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html); smart.Claims.Compartment
// gives them their meaning. The patient compartment is ohx's: the Patient itself, the
// Observations and DeviceAssociations whose subject is the patient
// (https://hl7.org/fhir/R5/compartmentdefinition-patient.html), and the Devices associated with
// the patient through DeviceAssociation (R5 Device has no patient element).
package authz

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/openhealthexchange/ohx/api/smart"
	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/fhir/search"
	"github.com/openhealthexchange/ohx/store"
)

// DeniedError is a request the token's scopes (or claims) do not allow. What names the refused
// access ("r on Observation", "a chained search to …"); it is safe to show to the client.
type DeniedError struct {
	What string
}

func (e *DeniedError) Error() string { return "the access token's scopes do not allow " + e.What }

// Deny returns a *DeniedError for what.
func Deny(what string) error { return &DeniedError{What: what} }

// IsDenied reports whether err is (or wraps) a *DeniedError.
func IsDenied(err error) bool {
	var de *DeniedError
	return errors.As(err, &de)
}

// Principal is a verified caller: its token's claims and their parsed scopes. A nil *Principal
// is the caller when authentication is off: everything is allowed.
type Principal struct {
	Claims *smart.Claims
	Scopes smart.Scopes
}

// NewPrincipal returns the principal of verified claims.
func NewPrincipal(c *smart.Claims) *Principal {
	return &Principal{Claims: c, Scopes: smart.ParseScopes(c.Scope)}
}

// Binding identifies the caller and its access, for paging cursors and result caches: a cursor
// or cached page made for one token's view must not serve another caller or another view. Every
// claim that can change what a request may see is part of it, length-prefixed so that no two
// different claim sets give the same string. A nil principal binds to "".
func (p *Principal) Binding() string {
	if p == nil {
		return ""
	}
	c := p.Claims
	var b strings.Builder
	for _, f := range []string{c.Issuer, c.ClientID, c.Subject, c.FHIRUser, c.Patient, c.Scope} {
		b.WriteString(strconv.Itoa(len(f)))
		b.WriteByte(':')
		b.WriteString(f)
	}
	return b.String()
}

// Access is what one request may see of one resource type. The zero value is unconfined.
type Access struct {
	// Patient confines the request to this patient's compartment ("" = no confinement).
	Patient string
	// Constraints are v2 scope query constraints, ORed; nil = unconstrained.
	Constraints []url.Values
}

// Equal reports whether a and b confine the same way.
func (a Access) Equal(b Access) bool {
	return a.Patient == b.Patient && slices.EqualFunc(a.Constraints, b.Constraints, func(x, y url.Values) bool {
		return maps.EqualFunc(x, y, slices.Equal)
	})
}

// Decide checks that p may perform perm (one of c r u d s) on typ and returns the confinement to
// apply, as smart.Claims.Compartment decides it from the granting scopes and the token's user. A
// nil p (authentication off) is allowed everything, unconfined. A refusal is a *DeniedError.
func (p *Principal) Decide(typ string, perm byte) (Access, error) {
	if p == nil {
		return Access{}, nil
	}
	g := p.Scopes.Allows(typ, perm)
	if !g.Allowed {
		return Access{}, Deny(fmt.Sprintf("%c on %s", perm, typ))
	}
	patient, err := p.Claims.Compartment(g)
	if err != nil {
		return Access{}, Deny(fmt.Sprintf("%c on %s: %v", perm, typ, err))
	}
	return Access{Patient: patient, Constraints: g.Constraints}, nil
}

// Searcher is the one store method the policy needs: the search that finds a patient's device
// associations (store.Store.Search).
type Searcher interface {
	// Search runs q; see store.Store.Search for its error contract.
	Search(ctx context.Context, q *search.Query) (*store.Result, error)
}

// Policy applies decisions to searches and stored resources. It is safe for concurrent use.
type Policy struct {
	reg *search.Registry
	st  Searcher
}

// New returns the policy over the registry the store indexes with and the store itself.
func New(reg *search.Registry, st Searcher) *Policy { return &Policy{reg: reg, st: st} }

// Visible reports whether e may be shown under a: in the patient's compartment (Patient itself,
// Observations and DeviceAssociations about them, Devices associated with them) and matching one
// of the scope constraints. deviceIDs are the patient's devices when the caller has them already
// (nil: looked up when needed).
func (p *Policy) Visible(ctx context.Context, a Access, e store.Entry, deviceIDs []string) (bool, error) {
	if a.Patient != "" {
		switch e.Type {
		case "Patient":
			if e.ID != a.Patient {
				return false, nil
			}
		case "Device":
			if deviceIDs == nil {
				var err error
				if deviceIDs, err = p.DevicesOf(ctx, a.Patient); err != nil {
					return false, err
				}
			}
			if !slices.Contains(deviceIDs, e.ID) {
				return false, nil
			}
		default:
			var r struct {
				Subject *fhir.Reference `json:"subject"`
			}
			if err := json.Unmarshal(e.JSON, &r); err != nil {
				return false, fmt.Errorf("decode stored %s/%s: %w", e.Type, e.ID, err)
			}
			if r.Subject == nil || r.Subject.Reference != "Patient/"+a.Patient {
				return false, nil
			}
		}
	}
	if len(a.Constraints) == 0 {
		return true, nil
	}
	res := fhir.New(e.Type)
	if err := json.Unmarshal(e.JSON, res); err != nil {
		return false, fmt.Errorf("decode stored %s/%s: %w", e.Type, e.ID, err)
	}
	idx, err := search.Extract(res)
	if err != nil {
		return false, fmt.Errorf("index stored %s/%s: %w", e.Type, e.ID, err)
	}
	for _, q := range constraintQueries(p.reg, e.Type, a.Constraints) {
		if q != nil && search.Matches(q, e.ID, e.LastUpdated.UnixMicro(), idx) {
			return true, nil
		}
	}
	return false, nil
}

// KeepVisible drops, in place, the entries that one of as does not let the caller see.
func (p *Policy) KeepVisible(ctx context.Context, es []store.Entry, deviceIDs []string, as ...Access) ([]store.Entry, error) {
	kept := es[:0]
	for _, e := range es {
		ok := true
		for _, a := range as {
			v, err := p.Visible(ctx, a, e, deviceIDs)
			if err != nil {
				return nil, err
			}
			ok = ok && v
		}
		if ok {
			kept = append(kept, e)
		}
	}
	return kept, nil
}

// constraintQueries parses each scope constraint as a search on typ. A constraint that does not
// parse (an unsupported parameter) grants nothing: it yields nil.
func constraintQueries(reg *search.Registry, typ string, cs []url.Values) []*search.Query {
	out := make([]*search.Query, len(cs))
	for i, c := range cs {
		var pairs []search.NameValue
		for _, k := range slices.Sorted(maps.Keys(c)) {
			for _, v := range c[k] {
				pairs = append(pairs, search.NameValue{Name: k, Value: v})
			}
		}
		q, _, err := reg.Parse(typ, pairs, search.Options{Strict: true})
		// A chained constraint would need the targets to decide a read (Visible): it grants
		// nothing, in searches as in reads.
		if err != nil || len(q.Clauses) == 0 || slices.ContainsFunc(q.Clauses, func(c search.Clause) bool { return c.Chain != nil }) {
			continue
		}
		out[i] = q
	}
	return out
}

// DevicesOf lists the Devices a patient has (or had) an association with: R5 Device has no
// patient, so patient access to devices goes through DeviceAssociation
// (https://hl7.org/fhir/R5/deviceassociation.html).
func (p *Policy) DevicesOf(ctx context.Context, patient string) ([]string, error) {
	q, _, err := p.reg.Parse("DeviceAssociation", []search.NameValue{{Name: "patient", Value: "Patient/" + patient}, {Name: "_count", Value: "1000"}}, search.Options{MaxCount: 1000})
	if err != nil {
		return nil, err
	}
	ids := []string{}
	for {
		res, err := p.st.Search(ctx, q)
		if err != nil {
			return nil, fmt.Errorf("devices of the patient: %w", err)
		}
		for _, m := range res.Matches {
			var da struct {
				Device fhir.Reference `json:"device"`
			}
			if err := json.Unmarshal(m.JSON, &da); err != nil {
				return nil, fmt.Errorf("decode stored DeviceAssociation/%s: %w", m.ID, err)
			}
			if t, id, ok := fhir.SplitReference(da.Device.Reference); ok && t == "Device" && !slices.Contains(ids, id) {
				ids = append(ids, id)
			}
		}
		if res.Next == nil {
			return ids, nil
		}
		q.Cursor = res.Next
	}
}

// InCompartment is the filter "in patient's compartment" for a search of typ. For Device it is
// the ids of the associated devices, found anew on every call, and returned as deviceIDs.
func (p *Policy) InCompartment(ctx context.Context, typ, patient string) (c search.Clause, deviceIDs []string, err error) {
	switch typ {
	case "Patient":
		return IDClause(p.reg, typ, []string{patient}), nil, nil
	case "Device":
		if deviceIDs, err = p.DevicesOf(ctx, patient); err != nil {
			return search.Clause{}, nil, err
		}
		return IDClause(p.reg, typ, deviceIDs), deviceIDs, nil
	}
	return search.Clause{Param: p.reg.Param(typ, "patient"), Values: []search.Value{{RefType: "Patient", RefID: patient}}}, nil, nil
}

// Confine adds the compartment and scope constraints of a to a search. It reports whether
// results must still be filtered one by one with Visible (constraints that cannot be pushed into
// the query), and returns the patient's devices when it had to look them up.
func (p *Policy) Confine(ctx context.Context, q *search.Query, a Access) (postFilter bool, deviceIDs []string, err error) {
	if a.Patient != "" {
		var in search.Clause
		if in, deviceIDs, err = p.InCompartment(ctx, q.Type, a.Patient); err != nil {
			return false, nil, err
		}
		q.Clauses = append(q.Clauses, in)
	}
	if len(a.Constraints) == 0 {
		return false, deviceIDs, nil
	}
	qs := constraintQueries(p.reg, q.Type, a.Constraints)
	if len(qs) == 1 {
		if qs[0] == nil {
			q.Clauses = append(q.Clauses, IDClause(p.reg, q.Type, nil)) // grants nothing
			return false, deviceIDs, nil
		}
		q.Clauses = append(q.Clauses, qs[0].Clauses...)
		return false, deviceIDs, nil
	}
	// Several constrained scopes: ORed. One parameter each, the same one: merge the values.
	var merged *search.Clause
	for _, cq := range qs {
		if cq == nil || len(cq.Clauses) != 1 || cq.Clauses[0].Modifier != "" || (merged != nil && cq.Clauses[0].Param != merged.Param) {
			return true, deviceIDs, nil
		}
		if merged == nil {
			merged = &search.Clause{Param: cq.Clauses[0].Param}
		}
		merged.Values = append(merged.Values, cq.Clauses[0].Values...)
	}
	q.Clauses = append(q.Clauses, *merged)
	return false, deviceIDs, nil
}

// IDClause restricts a search of typ to the given ids (none: nothing matches).
func IDClause(reg *search.Registry, typ string, ids []string) search.Clause {
	c := search.Clause{Param: reg.Param(typ, "_id")}
	if len(ids) == 0 {
		c.Values = []search.Value{{Code: "", AnySystem: true}} // no resource has an empty id
	}
	for _, id := range ids {
		c.Values = append(c.Values, search.Value{Code: id, AnySystem: true})
	}
	return c
}

// FilterIncluded drops, in place, the included resources of res that pr may not read: of a type
// it may not read (silently: includes filter, they do not fail the search), or outside its
// compartment or scope constraints.
func (p *Policy) FilterIncluded(ctx context.Context, pr *Principal, res *store.Result, deviceIDs []string) error {
	if pr == nil || len(res.Included) == 0 {
		return nil
	}
	kept := res.Included[:0]
	for _, e := range res.Included {
		a, err := pr.Decide(e.Type, 'r')
		if err != nil {
			if IsDenied(err) {
				continue // not readable: silently left out
			}
			return err
		}
		ok, err := p.Visible(ctx, a, e, deviceIDs)
		if err != nil {
			return err
		}
		if ok {
			kept = append(kept, e)
		}
	}
	res.Included = kept
	return nil
}

// ConfineChains applies pr's rights to the chained clauses of q (patient.identifier=…,
// device.identifier=…). A chain searches its target types: the caller needs search access to
// each type the chain may reach (a *DeniedError otherwise, as for a search of that type), and
// the chain may only see the targets the caller may see. For a caller confined to a patient's
// compartment those are its Patient and the Devices of its associations, so a clause restricting
// the chain's reference parameter to them is added: a chain then reveals nothing about a resource
// outside the compartment, not even through a search whose own type the caller may see (an
// Observation referring to a Device of no association of theirs). The search type's own
// confinement is Confine's, added on top; both only narrow the search.
//
// Not supported, and refused (403): a target type the token reaches only through v2 scope
// constraints (they cannot be pushed into a chain), and an untyped chain whose target types the
// token confines differently (subject.identifier with patient/Patient.rs and system/Device.rs:
// the typed subject:Patient.identifier and subject:Device.identifier work).
func (p *Policy) ConfineChains(ctx context.Context, pr *Principal, q *search.Query) error {
	var extra []search.Clause
	for _, cl := range q.Clauses {
		if cl.Chain == nil {
			continue
		}
		patients := map[string]bool{} // the confinement of each target type ("" = none)
		var visible []search.Value
		for _, tp := range cl.Chain.Targets {
			a, err := pr.Decide(tp.Resource, 's')
			if err != nil {
				return err
			}
			if len(a.Constraints) > 0 {
				return Deny("a chained search through a constrained scope on " + tp.Resource)
			}
			patients[a.Patient] = true
			switch {
			case a.Patient == "":
			case tp.Resource == "Patient":
				visible = append(visible, search.Value{RefType: "Patient", RefID: a.Patient})
			case tp.Resource == "Device":
				ids, err := p.DevicesOf(ctx, a.Patient)
				if err != nil {
					return err
				}
				for _, id := range ids {
					visible = append(visible, search.Value{RefType: "Device", RefID: id})
				}
			default:
				return Deny("a chained search to " + tp.Resource + " within a patient compartment")
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
			extra = append(extra, IDClause(p.reg, q.Type, nil))
			continue
		}
		extra = append(extra, search.Clause{Param: cl.Param, Values: slices.Clip(visible)})
	}
	q.Clauses = append(q.Clauses, extra...)
	return nil
}
