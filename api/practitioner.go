package api

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/store"
)

// Practitioners gives the Practitioner behind a practitioner user: the resource a token's
// fhirUser names (authserver.Server implements it over its user records; cmd/ohx wires it, so
// that api links no authorization-server code).
type Practitioners interface {
	// Practitioner returns the Practitioner with this id, or an error wrapping store.ErrNotFound
	// if no practitioner user has the fhirUser Practitioner/{id}.
	Practitioner(ctx context.Context, id string) (*fhir.Practitioner, error)
}

// practitionerPath reports whether the request addresses [base]/Practitioner, which ohx serves
// (read only) when Config.Practitioners is set.
func (s *Server) practitionerPath(r *request) bool {
	return r.typ == "Practitioner" && s.cfg.Practitioners != nil
}

// practitionerOnlyRead answers every Practitioner request but a read: 404 on the type (there is
// no search and no create), 405 with Allow: GET on an instance.
func practitionerOnlyRead(r *request) error {
	if r.id == "" {
		return fhir.Errorf(http.StatusNotFound, fhir.CodeNotSupported, "Practitioner is only read by id (GET Practitioner/{id}): it cannot be searched or created")
	}
	return methodNotAllowed(r, "Practitioner")
}

// readPractitioner is GET [base]/Practitioner/{id}. The practitioner themself (the token's
// fhirUser) and system tokens allowed to read Practitioner see it; for anyone else it does not
// exist (404, as for resources outside a compartment).
func (s *Server) readPractitioner(r *request) (result, error) {
	id := r.id
	if !fhir.ValidID(id) || !practitionerVisible(r.principal, id) {
		return result{}, fmt.Errorf("read Practitioner/%s: not visible to the caller: %w", truncate(id), store.ErrNotFound)
	}
	p, err := s.cfg.Practitioners.Practitioner(r.ctx, id)
	if err != nil {
		return result{}, err
	}
	return result{status: http.StatusOK, resource: p}, nil
}

// practitionerVisible reports whether p may read Practitioner/{id}.
func practitionerVisible(p *principal, id string) bool {
	if p == nil {
		return true // OHX_AUTH=off
	}
	if u := p.Claims.User(); u.Type == "Practitioner" && u.ID == id {
		// SMART's fhirUser scope is the "permission to retrieve information about the current
		// logged-in user"; a scope that reads Practitioner allows it too.
		return p.Scopes.Has("fhirUser") || p.Scopes.Allows("Practitioner", 'r').Allowed
	}
	for _, sc := range p.Scopes.Resource {
		// Backend Services: an unconstrained system/ read of Practitioner (constraints are search
		// parameters, and Practitioner has none).
		if sc.Context == "system" && (sc.Resource == "*" || sc.Resource == "Practitioner") && strings.ContainsRune(sc.Perms, 'r') && len(sc.Query) == 0 {
			return true
		}
	}
	return false
}
