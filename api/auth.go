package api

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/openhealthexchange/ohx/api/authz"
	"github.com/openhealthexchange/ohx/api/smart"
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

// principal is who is calling, from a verified token (nil: authentication is off).
type principal = authz.Principal

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
	c.Set(ctxPrincipal, authz.NewPrincipal(claims))
	c.Next()
}

func principalOf(c *gin.Context) *principal {
	if v, ok := c.Get(ctxPrincipal); ok {
		return v.(*principal)
	}
	return nil
}

// access is authorize's answer: the policy's decision for one type, and the patient it confines
// to, repeated as a field for the code that only asks whose compartment it is (connect.go).
type access struct {
	// patient confines the request to this patient's compartment ("" = no confinement); it is
	// dec.Patient.
	patient string
	// dec is the decision the policy (authz) applies to searches and resources.
	dec authz.Access
}

func newAccess(a authz.Access) access { return access{patient: a.Patient, dec: a} }

// authorize checks that the principal may perform perm (c r u d s) on typ and returns the
// confinement to apply (authz.Principal.Decide). With auth off it allows everything. A refusal is
// a 403 insufficient_scope.
func (s *Server) authorize(c *gin.Context, typ string, perm byte) (access, error) {
	return decide(principalOf(c), typ, perm)
}

// decide is authorize for a principal already taken from the request.
func decide(p *principal, typ string, perm byte) (access, error) {
	a, err := p.Decide(typ, perm)
	if err != nil {
		return access{}, scopeError(err)
	}
	return newAccess(a), nil
}

// scopeError turns the policy's refusals into the 403 with the RFC 6750 insufficient_scope
// challenge; other errors pass unchanged.
func scopeError(err error) error {
	var de *authz.DeniedError
	if errors.As(err, &de) {
		return errInsufficientScope(de.What)
	}
	return err
}
