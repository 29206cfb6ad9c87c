package api

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/fhir/search"
	"github.com/openhealthexchange/ohx/store"
)

// Writes of Patients, shared by the single-request handlers (rest.go) and the entries of batch
// and transaction Bundles (bundle_tx.go), so that both check exactly the same rights and resolve
// conditions the same way. Each write is authorized first (authorize…: before the body is read
// or anything is looked up), then planned against the store (plan…: conditions resolved, nothing
// written), then either applied on its own (…One: a request or a batch entry) or, for a
// transaction, handed to store.Transactor with the other entries.

// authorizeCreate checks the rights a create needs. Patient-context tokens never register
// patients. If-None-Exist criteria are a search, and a match is answered with the matching
// resource: a conditional create needs s as well, and the returned access confines the criteria.
func (s *Server) authorizeCreate(p *principal, typ string, conditional bool) (access, error) {
	if a, err := decide(p, typ, 'c'); err != nil {
		return access{}, err
	} else if a.patient != "" {
		return access{}, errInsufficientScope("a patient-context token to register patients")
	}
	if !conditional {
		return access{}, nil
	}
	return decide(p, typ, 's')
}

// authorizeUpdate checks the rights an update of typ/id needs: u, and a patient-context token
// updates only its own patient.
func (s *Server) authorizeUpdate(p *principal, typ, id string) error {
	if a, err := decide(p, typ, 'u'); err != nil {
		return err
	} else if a.patient != "" && a.patient != id {
		return errInsufficientScope("updating another patient")
	}
	return nil
}

// authorizeConditionalUpdate checks the rights PUT [type]?criteria needs: it creates or updates,
// and the criteria are a search whose outcome (created or updated, and which id) the answer
// reveals, so c, u and s, never with a patient-context token. It returns the search access.
func (s *Server) authorizeConditionalUpdate(p *principal, typ string) (access, error) {
	var sa access
	for _, perm := range []byte{'c', 'u', 's'} {
		a, err := decide(p, typ, perm)
		if err != nil {
			return access{}, err
		} else if a.patient != "" {
			return access{}, errInsufficientScope("conditional updates with a patient-context token")
		}
		if perm == 's' {
			sa = a
		}
	}
	return sa, nil
}

// parseIfMatch parses an If-Match header (or Bundle request.ifMatch) value; "" is no condition.
func parseIfMatch(h string) (int64, error) {
	if h == "" {
		return 0, nil
	}
	v := strings.Trim(strings.TrimPrefix(strings.TrimSpace(h), "W/"), `"`)
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 {
		return 0, fhir.Invalid(fhir.CodeInvalid, "If-Match: %q is not a version ETag", truncate(h))
	}
	return n, nil
}

// conditionalCriteria returns the criteria of PUT [type]?query: the query without the
// parameters that only shape the answer.
func conditionalCriteria(rawQuery string) (string, error) {
	params, err := search.ParseRawQuery(rawQuery)
	if err != nil {
		return "", err
	}
	var crit []string
	for _, p := range params {
		if p.Name != "_format" && p.Name != "_pretty" {
			crit = append(crit, url.QueryEscape(p.Name)+"="+url.QueryEscape(p.Value))
		}
	}
	return strings.Join(crit, "&"), nil
}

// identifierKey is an identifier's system and value; the zero value is none.
type identifierKey struct{ system, value string }

// conditionalMatches runs the search criteria of a conditional create or update within what the
// caller may search (a). The criteria must be selective: at least one filter. When they are
// exactly one identifier=system|value, that identifier is returned too: the store can then make
// "create unless it exists" atomic across instances (store.Store.CreateUnique).
func (s *Server) conditionalMatches(ctx context.Context, typ, criteria string, a access) ([]string, identifierKey, error) {
	params, err := search.ParseRawQuery(strings.TrimPrefix(criteria, "?"))
	if err != nil {
		return nil, identifierKey{}, err
	}
	q, _, err := s.reg.Parse(typ, params, search.Options{BaseURL: s.cfg.BaseURL, Strict: true, MaxCount: 2, DefaultCount: 2})
	if err != nil {
		return nil, identifierKey{}, err
	}
	if len(q.Clauses) == 0 {
		return nil, identifierKey{}, fhir.Invalid(fhir.CodeInvalid, "conditional criteria need at least one search parameter")
	}
	var key identifierKey
	if cl := q.Clauses[0]; len(q.Clauses) == 1 && cl.Param.Name == "identifier" && cl.Modifier == "" && len(cl.Values) == 1 {
		if v := cl.Values[0]; !v.AnySystem && !v.AnyCode && v.System != "" && v.Code != "" {
			key = identifierKey{v.System, v.Code}
		}
	}
	q.Count = 2
	postFilter, deviceIDs, err := s.pol.Confine(ctx, q, a.dec)
	if err != nil {
		return nil, identifierKey{}, err
	}
	res, err := s.store.Search(ctx, q)
	if err != nil {
		return nil, identifierKey{}, err
	}
	ids := make([]string, 0, len(res.Matches))
	for _, m := range res.Matches {
		if postFilter {
			if ok, err := s.pol.Visible(ctx, a.dec, m, deviceIDs); err != nil {
				return nil, identifierKey{}, err
			} else if !ok {
				continue
			}
		}
		ids = append(ids, m.ID)
	}
	return ids, key, nil
}

// writePlan is a create or update resolved against the store, before anything is written.
type writePlan struct {
	// match is a conditional create's existing match: nothing is written.
	match *store.Entry
	// op is the write otherwise. Its resource has no id when the store is to assign it; a
	// transaction assigns ids itself. A conditional write of an identifier that matched nothing
	// carries it as op.UniqueSystem/UniqueValue.
	op store.TxOp
	// updateTaken says what to do when op's unique identifier turns out to be taken when
	// writing (another instance registered it since the search): update that resource (a
	// conditional update) instead of answering with it (a conditional create).
	updateTaken bool
}

// planCreate resolves a create, conditional when cond (If-None-Exist) is set. The caller holds
// createMu for a conditional create.
func (s *Server) planCreate(ctx context.Context, typ string, r fhir.Resource, cond string, sa access) (writePlan, error) {
	r.Common().ID = "" // the server assigns ids on create (https://hl7.org/fhir/R5/http.html#create)
	p := writePlan{op: store.TxOp{Resource: r, Create: true}}
	if cond == "" {
		return p, nil
	}
	ids, key, err := s.conditionalMatches(ctx, typ, cond, sa)
	if err != nil {
		return writePlan{}, err
	}
	switch len(ids) {
	case 0:
		if key.system != "" && store.CarriesIdentifier(r, key.system, key.value) {
			p.op.UniqueSystem, p.op.UniqueValue = key.system, key.value
		}
		return p, nil
	case 1:
		e, err := s.store.Read(ctx, typ, ids[0])
		if err != nil {
			return writePlan{}, err
		}
		return writePlan{match: &e}, nil
	}
	return writePlan{}, fhir.Errorf(http.StatusPreconditionFailed, fhir.CodeDuplicate, "If-None-Exist matches %d resources", len(ids))
}

// planUpdate resolves PUT [type]/[id].
func planUpdate(typ, id string, r fhir.Resource, ifMatch int64) (writePlan, error) {
	if r.Common().ID != id {
		return writePlan{}, fhir.Invalid(fhir.CodeInvalid, "%s.id must be present and equal the id in the URL", typ)
	}
	return writePlan{op: store.TxOp{Resource: r, IfMatch: ifMatch}}, nil
}

// planConditionalUpdate resolves PUT [type]?criteria: no match creates, one match updates it,
// several fail with 412 (https://hl7.org/fhir/R5/http.html#cond-update). The caller holds createMu.
func (s *Server) planConditionalUpdate(ctx context.Context, typ string, r fhir.Resource, criteria string, ifMatch int64, sa access) (writePlan, error) {
	ids, key, err := s.conditionalMatches(ctx, typ, criteria, sa)
	if err != nil {
		return writePlan{}, err
	}
	switch len(ids) {
	case 0:
		switch {
		case r.Common().ID != "":
			// Update-as-create under the client's id.
		case key.system != "" && store.CarriesIdentifier(r, key.system, key.value):
			return writePlan{op: store.TxOp{Resource: r, Create: true, UniqueSystem: key.system, UniqueValue: key.value}, updateTaken: true}, nil
		default:
			r.Common().ID = store.NewID()
		}
		return writePlan{op: store.TxOp{Resource: r}}, nil
	case 1:
		if id := r.Common().ID; id != "" && id != ids[0] {
			return writePlan{}, fhir.Invalid(fhir.CodeInvalid, "%s.id does not match the resource the criteria select", typ)
		}
		r.Common().ID = ids[0]
		return writePlan{op: store.TxOp{Resource: r, IfMatch: ifMatch}}, nil
	}
	return writePlan{}, fhir.Errorf(http.StatusPreconditionFailed, fhir.CodeDuplicate, "the criteria match %d resources", len(ids))
}

// apply performs a plan on its own and returns the status to answer with (200 or 201).
func (s *Server) apply(ctx context.Context, p writePlan, sa access) (int, store.Entry, error) {
	if p.match != nil {
		return http.StatusOK, *p.match, nil
	}
	op := p.op
	switch {
	case op.UniqueSystem != "":
		e, created, err := s.store.CreateUnique(ctx, op.Resource, op.UniqueSystem, op.UniqueValue)
		if err != nil {
			return 0, store.Entry{}, err
		}
		if created {
			return http.StatusCreated, e, nil
		}
		// Registered since the search, by another instance. A holder the caller may not search
		// is never shown, and never duplicated either.
		if ok, err := s.pol.Visible(ctx, sa.dec, e, nil); err != nil {
			return 0, store.Entry{}, err
		} else if !ok {
			return 0, store.Entry{}, fmt.Errorf("conditional write: the identifier is held by a resource the caller may not search: %w", store.ErrDuplicate)
		}
		if !p.updateTaken {
			return http.StatusOK, e, nil
		}
		op.Resource.Common().ID = e.ID
		e, _, err = s.store.Put(ctx, op.Resource, store.WriteOptions{IfMatch: op.IfMatch})
		return http.StatusOK, e, err
	case op.Create:
		e, err := s.store.Create(ctx, op.Resource)
		return http.StatusCreated, e, err
	}
	e, created, err := s.store.Put(ctx, op.Resource, store.WriteOptions{IfMatch: op.IfMatch})
	if created {
		return http.StatusCreated, e, err
	}
	return http.StatusOK, e, err
}

// createOne creates r, conditionally when cond is set: a POST or a batch entry. Conditional
// writes are serialised in this process (createMu); criteria of exactly one identifier are
// atomic across instances through the store as well (apply → CreateUnique).
func (s *Server) createOne(ctx context.Context, typ string, r fhir.Resource, cond string, sa access) (int, store.Entry, error) {
	if cond != "" {
		s.createMu.Lock()
		defer s.createMu.Unlock()
	}
	p, err := s.planCreate(ctx, typ, r, cond, sa)
	if err != nil {
		return 0, store.Entry{}, err
	}
	return s.apply(ctx, p, sa)
}

// updateOne updates (or creates) typ/id: a PUT or a batch entry.
func (s *Server) updateOne(ctx context.Context, typ, id string, r fhir.Resource, ifMatch int64) (int, store.Entry, error) {
	p, err := planUpdate(typ, id, r, ifMatch)
	if err != nil {
		return 0, store.Entry{}, err
	}
	return s.apply(ctx, p, access{})
}

// conditionalUpdateOne performs PUT [type]?criteria: a request or a batch entry.
func (s *Server) conditionalUpdateOne(ctx context.Context, typ string, r fhir.Resource, criteria string, ifMatch int64, sa access) (int, store.Entry, error) {
	s.createMu.Lock()
	defer s.createMu.Unlock()
	p, err := s.planConditionalUpdate(ctx, typ, r, criteria, ifMatch, sa)
	if err != nil {
		return 0, store.Entry{}, err
	}
	return s.apply(ctx, p, sa)
}
