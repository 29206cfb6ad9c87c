package fhir

import (
	"fmt"
	"net/http"
)

// Issue codes from http://hl7.org/fhir/issue-type used by ohx.
const (
	CodeInvalid       = "invalid"
	CodeStructure     = "structure"
	CodeRequired      = "required"
	CodeValue         = "value"
	CodeNotSupported  = "not-supported"
	CodeNotFound      = "not-found"
	CodeDeleted       = "deleted"
	CodeConflict      = "conflict"
	CodeDuplicate     = "duplicate"
	CodeProcessing    = "processing"
	CodeTooCostly     = "too-costly"
	CodeException     = "exception"
	CodeLogin         = "login"
	CodeForbidden     = "forbidden"
	CodeTimeout       = "timeout"
	CodeThrottled     = "throttled"
	CodeBusinessRule  = "business-rule"
	CodeInformational = "informational"
)

// Error is the only error whose text reaches API clients: Diagnostics is public, Err is logged.
type Error struct {
	Status      int    // HTTP status
	Code        string // OperationOutcome issue.code
	Diagnostics string // safe to show to clients
	Expression  []string
	Err         error // internal cause, never shown
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Diagnostics + ": " + e.Err.Error()
	}
	return e.Diagnostics
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error with the given status and issue code.
func Errorf(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Diagnostics: fmt.Sprintf(format, args...)}
}

// Invalid returns a 400 *Error with the given issue code.
func Invalid(code, format string, args ...any) *Error {
	return Errorf(http.StatusBadRequest, code, format, args...)
}

// OperationOutcome (R5) reports errors and warnings.
type OperationOutcome struct {
	Base
	Issue []OutcomeIssue `json:"issue"`
}

// OutcomeIssue is one issue of an OperationOutcome.
type OutcomeIssue struct {
	Severity    string           `json:"severity"`
	Code        string           `json:"code"`
	Details     *CodeableConcept `json:"details,omitempty"`
	Diagnostics string           `json:"diagnostics,omitempty"`
	Expression  []string         `json:"expression,omitempty"`
}

// NewOutcome returns an OperationOutcome with a single issue.
func NewOutcome(severity, code, diagnostics string) *OperationOutcome {
	return &OperationOutcome{
		Base:  Base{ResourceType: "OperationOutcome"},
		Issue: []OutcomeIssue{{Severity: severity, Code: code, Diagnostics: diagnostics}},
	}
}
