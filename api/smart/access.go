package smart

import (
	"errors"
	"fmt"
	"strings"
)

// ErrNoAccess is returned (wrapped) by Claims.Compartment when the token's scopes grant the
// permission but its claims do not say whose data it may reach. Its text is safe to show.
var ErrNoAccess = errors.New("the token's claims do not allow this access")

// TokenUser is who a token acts for, read from its fhirUser claim: a relative reference
// ("Patient/p1") or an absolute one on a FHIR server ("https://ehr.example/fhir/Practitioner/7").
type TokenUser struct {
	// Type is the resource type of fhirUser ("Patient", "Practitioner", …), "" when absent.
	Type string
	// ID is its id.
	ID string
}

// User parses the token's fhirUser claim. A malformed claim gives the zero TokenUser, which
// confers nothing (see Compartment).
func (c *Claims) User() TokenUser {
	ref := c.FHIRUser
	if ref == "" {
		return TokenUser{}
	}
	if i := strings.Index(ref, "://"); i >= 0 {
		// An absolute reference: its last two path segments are type and id.
		path := ref[i+3:]
		if j := strings.IndexByte(path, '/'); j >= 0 {
			path = path[j+1:]
		} else {
			return TokenUser{}
		}
		parts := strings.Split(strings.TrimSuffix(path, "/"), "/")
		if len(parts) < 2 {
			return TokenUser{}
		}
		ref = parts[len(parts)-2] + "/" + parts[len(parts)-1]
	}
	typ, id, ok := strings.Cut(ref, "/")
	if !ok || typ == "" || !isTypeName(typ) || !validID(id) {
		return TokenUser{}
	}
	return TokenUser{Type: typ, ID: id}
}

// validID is FHIR's id syntax: 1-64 of A-Z a-z 0-9 - .
func validID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '.') {
			return false
		}
	}
	return true
}

// Compartment decides whose data a request that g allows may reach: the id of the one patient
// whose compartment it is confined to, or "" for access across patients. It is the one place
// that gives scope contexts their meaning
// (https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html):
//
//   - patient/ scopes reach the compartment of the token's launch patient (the patient claim);
//     without one they reach nothing.
//   - user/ scopes reach what the user may see. A patient user (fhirUser Patient/X) sees only
//     their own compartment; a practitioner (Practitioner or PractitionerRole) sees across
//     patients; a token that names no user, or a user of another kind (RelatedPerson, Person…,
//     whose reach ohx does not model), reaches nothing through user/ scopes.
//   - system/ scopes are the client's own access (Backend Services), across patients.
//
// A patient user is confined to their own compartment whatever scopes were granted, and a token
// whose patient claim names someone else than its patient user is refused outright.
// Scopes are a union: one context that reaches across patients makes the grant unconfined.
func (c *Claims) Compartment(g Grant) (patient string, err error) {
	if !g.Allowed {
		return "", ErrNoAccess
	}
	u := c.User()
	if u.Type == "Patient" {
		if c.Patient != "" && c.Patient != u.ID {
			return "", fmt.Errorf("%w: the token's patient is not its patient user", ErrNoAccess)
		}
		return u.ID, nil
	}
	patientCtx := false
	for _, ctx := range g.Contexts {
		switch ctx {
		case "system":
			return "", nil
		case "user":
			if u.Type == "Practitioner" || u.Type == "PractitionerRole" {
				return "", nil
			}
		case "patient":
			patientCtx = true
		}
	}
	if patientCtx {
		if c.Patient == "" {
			return "", fmt.Errorf("%w: patient/ access without a patient in context", ErrNoAccess)
		}
		return c.Patient, nil
	}
	return "", fmt.Errorf("%w: user/ access needs a fhirUser claim naming a practitioner or a patient", ErrNoAccess)
}
