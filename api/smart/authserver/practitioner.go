package authserver

import (
	"context"
	"fmt"
	"slices"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/store"
)

// Practitioner returns the Practitioner a practitioner user's fhirUser names, built from the
// user records that name Practitioner/{id}: the id, each user's username as an identifier
// (system fhir.UsernameSystem) and each user's display name as a name. It returns an error
// wrapping store.ErrNotFound when no practitioner user names it. The api package serves it at
// GET [base]/Practitioner/{id} (api.Practitioners).
func (s *Server) Practitioner(ctx context.Context, id string) (*fhir.Practitioner, error) {
	users, err := s.ListUsers(ctx) // ordered by username, so the answer is stable
	if err != nil {
		return nil, err
	}
	active := true
	p := &fhir.Practitioner{Base: fhir.Base{ResourceType: "Practitioner", ID: id}, Active: &active}
	found := false
	for _, u := range users {
		if u.Role != RolePractitioner || u.FHIRUser != "Practitioner/"+id {
			continue
		}
		found = true
		p.Identifier = append(p.Identifier, fhir.Identifier{System: fhir.UsernameSystem, Value: u.Username})
		if u.Name != "" && !slices.ContainsFunc(p.Name, func(n fhir.HumanName) bool { return n.Text == u.Name }) {
			p.Name = append(p.Name, fhir.HumanName{Text: u.Name})
		}
	}
	if !found {
		return nil, fmt.Errorf("authserver: Practitioner/%s: no practitioner user: %w", id, store.ErrNotFound)
	}
	return p, nil
}
