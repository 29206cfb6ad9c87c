package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/openhealthexchange/ohx/api/smart"
	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/fhir/search"
	"github.com/openhealthexchange/ohx/store"
)

// Authenticator verifies bearer access tokens (smart.Verifier).
type Authenticator interface {
	// Verify returns the token's claims, or an error wrapping smart.ErrInvalidToken.
	Verify(ctx context.Context, raw string) (*smart.Claims, error)
}

// authError is a 401/403 with the RFC 6750 challenge to send.
type authError struct {
	status    int
	challenge string
	msg       string
	err       error
}

func (e *authError) Error() string {
	if e.err != nil {
		return e.msg + ": " + e.err.Error()
	}
	return e.msg
}

func (e *authError) Unwrap() error { return e.err }

func errUnauthenticated() error {
	return &authError{status: http.StatusUnauthorized, challenge: `Bearer realm="ohx"`, msg: "an access token is required"}
}

func errInvalidToken(err error) error {
	return &authError{status: http.StatusUnauthorized, challenge: `Bearer realm="ohx", error="invalid_token"`, msg: "the access token is invalid or expired", err: err}
}

func errInsufficientScope(what string) error {
	return &authError{status: http.StatusForbidden, challenge: `Bearer realm="ohx", error="insufficient_scope"`, msg: "the access token's scopes do not allow " + what}
}

// principal is who is calling, from a verified token.
type principal struct {
	claims *smart.Claims
	scopes smart.Scopes
}

const ctxPrincipal = "ohx.principal"

// authenticate requires a valid bearer token on every FHIR request it guards.
func (s *Server) authenticate(c *gin.Context) {
	if s.auth == nil {
		c.Next()
		return
	}
	h := c.GetHeader("Authorization")
	scheme, raw, ok := strings.Cut(h, " ")
	if h == "" || !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(raw) == "" {
		s.fail(c, errUnauthenticated())
		return
	}
	claims, err := s.auth.Verify(c.Request.Context(), strings.TrimSpace(raw))
	if err != nil {
		s.fail(c, errInvalidToken(err))
		return
	}
	c.Set(ctxPrincipal, &principal{claims: claims, scopes: smart.ParseScopes(claims.Scope)})
	c.Next()
}

func principalOf(c *gin.Context) *principal {
	if v, ok := c.Get(ctxPrincipal); ok {
		return v.(*principal)
	}
	return nil
}

// binding identifies the caller and its access for paging cursors and the result cache: a cursor
// or cached page made for one token's view must not serve another caller or another view. Every
// claim that can change what a request may see is part of it, length-prefixed so that no two
// different claim sets give the same string.
func (p *principal) binding() string {
	if p == nil {
		return ""
	}
	c := p.claims
	var b strings.Builder
	for _, f := range []string{c.Issuer, c.ClientID, c.Subject, c.FHIRUser, c.Patient, c.Scope} {
		b.WriteString(strconv.Itoa(len(f)))
		b.WriteByte(':')
		b.WriteString(f)
	}
	return b.String()
}

// access is what one request may see of one resource type.
type access struct {
	// patient confines the request to this patient's compartment ("" = no confinement).
	patient string
	// constraints are v2 scope query constraints, ORed; nil = unconstrained.
	constraints []url.Values
}

// authorize checks that the principal may perform perm (c r u d s) on typ and returns the
// confinement to apply, as smart.Claims.Compartment decides it from the granting scopes and the
// token's user. With auth off it allows everything.
func (s *Server) authorize(c *gin.Context, typ string, perm byte) (access, error) {
	p := principalOf(c)
	if p == nil {
		return access{}, nil
	}
	g := p.scopes.Allows(typ, perm)
	if !g.Allowed {
		return access{}, errInsufficientScope(fmt.Sprintf("%c on %s", perm, typ))
	}
	patient, err := p.claims.Compartment(g)
	if err != nil {
		return access{}, errInsufficientScope(fmt.Sprintf("%c on %s: %v", perm, typ, err))
	}
	return access{patient: patient, constraints: g.Constraints}, nil
}

// visible reports whether e may be shown under a: in the patient's compartment (Patient itself,
// Observations and DeviceAssociations about them, Devices associated with them) and matching
// one of the scope constraints.
func (s *Server) visible(ctx context.Context, a access, e store.Entry, deviceIDs []string) (bool, error) {
	if a.patient != "" {
		switch e.Type {
		case "Patient":
			if e.ID != a.patient {
				return false, nil
			}
		case "Device":
			if deviceIDs == nil {
				var err error
				if deviceIDs, err = s.devicesOf(ctx, a.patient); err != nil {
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
			if r.Subject == nil || r.Subject.Reference != "Patient/"+a.patient {
				return false, nil
			}
		}
	}
	if len(a.constraints) == 0 {
		return true, nil
	}
	res := fhir.New(e.Type)
	if err := json.Unmarshal(e.JSON, res); err != nil {
		return false, fmt.Errorf("decode stored %s/%s: %w", e.Type, e.ID, err)
	}
	idx, err := search.Extract(res)
	if err != nil {
		return false, err
	}
	for _, q := range constraintQueries(s.reg, e.Type, a.constraints) {
		if q != nil && search.Matches(q, e.ID, e.LastUpdated.UnixMicro(), idx) {
			return true, nil
		}
	}
	return false, nil
}

// constraintQueries parses each scope constraint as a search on typ. A constraint that does not
// parse (an unsupported parameter) grants nothing: it yields nil.
func constraintQueries(reg *search.Registry, typ string, cs []url.Values) []*search.Query {
	out := make([]*search.Query, len(cs))
	for i, c := range cs {
		var pairs []search.NameValue
		keys := make([]string, 0, len(c))
		for k := range c {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			for _, v := range c[k] {
				pairs = append(pairs, search.NameValue{Name: k, Value: v})
			}
		}
		q, _, err := reg.Parse(typ, pairs, search.Options{Strict: true})
		// A chained constraint would need the targets to decide a read (visible): it grants
		// nothing, in searches as in reads.
		if err != nil || len(q.Clauses) == 0 || slices.ContainsFunc(q.Clauses, func(c search.Clause) bool { return c.Chain != nil }) {
			continue
		}
		out[i] = q
	}
	return out
}

// devicesOf lists the Devices a patient has (or had) an association with: R5 Device has no
// patient, so patient access to devices goes through DeviceAssociation (fhir-smart.md §3.4).
func (s *Server) devicesOf(ctx context.Context, patient string) ([]string, error) {
	q, _, err := s.reg.Parse("DeviceAssociation", []search.NameValue{{Name: "patient", Value: "Patient/" + patient}, {Name: "_count", Value: "1000"}}, search.Options{MaxCount: 1000})
	if err != nil {
		return nil, err
	}
	ids := []string{}
	for {
		res, err := s.store.Search(ctx, q)
		if err != nil {
			return nil, err
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

// confine adds the compartment and scope constraints of a to a search. It reports whether
// results must still be filtered one by one (constraints that cannot be pushed into the query).
func (s *Server) confine(ctx context.Context, q *search.Query, a access) (postFilter bool, deviceIDs []string, err error) {
	if a.patient != "" {
		switch q.Type {
		case "Patient":
			q.Clauses = append(q.Clauses, idClause(s.reg, "Patient", []string{a.patient}))
		case "Device":
			if deviceIDs, err = s.devicesOf(ctx, a.patient); err != nil {
				return false, nil, err
			}
			q.Clauses = append(q.Clauses, idClause(s.reg, "Device", deviceIDs))
		default:
			q.Clauses = append(q.Clauses, search.Clause{Param: s.reg.Param(q.Type, "patient"),
				Values: []search.Value{{RefType: "Patient", RefID: a.patient}}})
		}
	}
	if len(a.constraints) == 0 {
		return false, deviceIDs, nil
	}
	qs := constraintQueries(s.reg, q.Type, a.constraints)
	if len(qs) == 1 {
		if qs[0] == nil {
			q.Clauses = append(q.Clauses, idClause(s.reg, q.Type, nil)) // grants nothing
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
			c := cq.Clauses[0]
			merged = &search.Clause{Param: c.Param}
		}
		merged.Values = append(merged.Values, cq.Clauses[0].Values...)
	}
	q.Clauses = append(q.Clauses, *merged)
	return false, deviceIDs, nil
}

// idClause restricts a search to the given ids (none: nothing matches).
func idClause(reg *search.Registry, typ string, ids []string) search.Clause {
	c := search.Clause{Param: reg.Param(typ, "_id")}
	if len(ids) == 0 {
		c.Values = []search.Value{{Code: "", AnySystem: true}} // no resource has an empty id
	}
	for _, id := range ids {
		c.Values = append(c.Values, search.Value{Code: id, AnySystem: true})
	}
	return c
}

// filterIncluded drops included resources the principal may not read.
func (s *Server) filterIncluded(ctx context.Context, c *gin.Context, res *store.Result, deviceIDs []string) error {
	if principalOf(c) == nil || len(res.Included) == 0 {
		return nil
	}
	kept := res.Included[:0]
	for _, e := range res.Included {
		a, err := s.authorize(c, e.Type, 'r')
		if err != nil {
			var ae *authError
			if errors.As(err, &ae) {
				continue // not readable: silently left out
			}
			return err
		}
		ok, err := s.visible(ctx, a, e, deviceIDs)
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
