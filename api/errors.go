package api

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"

	"github.com/openhealthexchange/ohx/api/authz"
	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/providers"
	"github.com/openhealthexchange/ohx/store"
)

// statusClientClosed is nginx's 499: the client went away before the answer.
const statusClientClosed = 499

// outcomeFor is the one mapping from errors to HTTP status and OperationOutcome. Only fhir.Error
// diagnostics are shown to clients; everything else is described generically and logged.
func outcomeFor(err error, requestID string) (int, *fhir.OperationOutcome) {
	var fe *fhir.Error
	var mbe *http.MaxBytesError
	var ue *providers.UpstreamError
	var ee *entryError
	var uc *providers.UncoveredError
	ae := authErrorOf(err)
	switch {
	case errors.As(err, &ee):
		return entryOutcome(ee, requestID)
	case errors.As(err, &uc): // before its cause (an UpstreamError): the window is the news
		return uncoveredOutcome(uc)
	case ae != nil:
		code := fhir.CodeLogin
		if ae.status == http.StatusForbidden {
			code = fhir.CodeForbidden
		}
		return ae.status, fhir.NewOutcome("error", code, ae.msg)
	case errors.As(err, &fe):
		oo := fhir.NewOutcome("error", fe.Code, fe.Diagnostics)
		oo.Issue[0].Expression = fe.Expression
		return fe.Status, oo
	case errors.As(err, &mbe):
		return http.StatusRequestEntityTooLarge, fhir.NewOutcome("error", fhir.CodeTooCostly, "request body too large")
	case errors.Is(err, providers.ErrConsentRevoked):
		return http.StatusBadGateway, fhir.NewOutcome("error", "expired", "the vendor no longer accepts this patient's consent: the patient must connect again")
	case errors.As(err, &ue):
		switch ue.Kind {
		case providers.KindThrottled:
			return http.StatusServiceUnavailable, fhir.NewOutcome("error", fhir.CodeThrottled, "the vendor is throttling requests; try again later")
		case providers.KindTransient:
			return http.StatusBadGateway, fhir.NewOutcome("error", "transient", "the vendor is unavailable; try again later")
		}
		// A vendor's 400 is never passed through as our 400: it is our request that failed.
		return http.StatusBadGateway, fhir.NewOutcome("error", fhir.CodeException, "the vendor rejected the request")
	case errors.Is(err, providers.ErrNotConnected):
		return http.StatusUnprocessableEntity, fhir.NewOutcome("error", fhir.CodeBusinessRule, "the patient is not connected to this provider")
	case errors.Is(err, store.ErrNotFound):
		return http.StatusNotFound, fhir.NewOutcome("error", fhir.CodeNotFound, "resource not found")
	case errors.Is(err, store.ErrDeleted):
		return http.StatusGone, fhir.NewOutcome("error", fhir.CodeDeleted, "resource deleted")
	case errors.Is(err, store.ErrVersionConflict):
		return http.StatusPreconditionFailed, fhir.NewOutcome("error", fhir.CodeConflict, "version conflict: the resource has changed (If-Match)")
	case errors.Is(err, store.ErrDuplicate):
		return http.StatusConflict, fhir.NewOutcome("error", fhir.CodeDuplicate, "a resource with this id or identifier already exists")
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout, fhir.NewOutcome("error", fhir.CodeTimeout, "the request took too long")
	case errors.Is(err, context.Canceled):
		return statusClientClosed, nil
	}
	return http.StatusInternalServerError, fhir.NewOutcome("fatal", fhir.CodeException, "internal error (request id "+requestID+")")
}

// entryOutcome is the outcome of a Bundle entry that failed the whole request: the entry's own
// status and issue, with the entry named in diagnostics and expression. A 404 (unsupported type)
// or 405 (a method or type that cannot be written) of the entry becomes 422: the request itself,
// POST to the base, is allowed.
func entryOutcome(ee *entryError, requestID string) (int, *fhir.OperationOutcome) {
	status, oo := outcomeFor(ee.err, requestID)
	if oo == nil {
		return status, nil
	}
	if status == http.StatusNotFound || status == http.StatusMethodNotAllowed {
		status = http.StatusUnprocessableEntity
	}
	is := &oo.Issue[0]
	is.Diagnostics = ee.where() + ": " + is.Diagnostics
	is.Expression = append([]string{"Bundle.entry[" + strconv.Itoa(ee.index) + "]"}, is.Expression...)
	return status, oo
}

// authErrorOf returns the 401/403 that err is, if it is one: an *authError, or a refusal of the
// authorization policy (*authz.DeniedError), which is a 403 insufficient_scope.
func authErrorOf(err error) *authError {
	var ae *authError
	if errors.As(err, &ae) {
		return ae
	}
	var de *authz.DeniedError
	if errors.As(err, &de) {
		ae, _ = errInsufficientScope(de.What).(*authError)
		return ae
	}
	return nil
}

// handler is the shape of the handlers outside the FHIR REST API (connect): errors are
// returned, never written. FHIR handlers are fhirHandlers (Server.handle).
type handler func(c *gin.Context) error

// wrap adapts a handler to gin, sending any error through the one mapper.
func (s *Server) wrap(h handler) gin.HandlerFunc {
	return func(c *gin.Context) {
		if err := h(c); err != nil {
			s.fail(c, err)
		}
	}
}

// fail writes err as an OperationOutcome and logs what clients must not see.
func (s *Server) fail(c *gin.Context, err error) {
	rid := requestID(c)
	status, oo := outcomeFor(err, rid)
	switch {
	case status == statusClientClosed:
		s.log.Debug("client went away", "request_id", rid)
		c.AbortWithStatus(status)
		return
	case status >= 500:
		s.log.Error("request failed", "request_id", rid, "status", status, "err", err)
	default:
		s.log.Debug("request rejected", "request_id", rid, "status", status, "err", err)
	}
	if ae := authErrorOf(err); ae != nil {
		c.Header("WWW-Authenticate", ae.challenge)
	}
	var he *headerError
	if errors.As(err, &he) {
		c.Header(he.key, he.value)
	}
	var ue *providers.UpstreamError
	if errors.As(err, &ue) && ue.Kind == providers.KindThrottled && ue.RetryAfter > 0 {
		c.Header("Retry-After", strconv.Itoa(int(ue.RetryAfter.Seconds()+0.999)))
	}
	s.writeResource(c, status, oo)
	c.Abort()
}

// logAttrs is a small helper so that handlers never log request content.
func logAttrs(c *gin.Context) []any {
	return []any{slog.String("request_id", requestID(c)), slog.String("route", c.FullPath())}
}
