package api

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"time"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/fhir/search"
	"github.com/openhealthexchange/ohx/providers"
)

// ReadThrough fills a patient's data from the vendors before a search of it is answered
// (providers/pipeline.ReadThrough): the facade reads through.
type ReadThrough interface {
	// Fill makes sure the patient's data of the kinds (none: every kind) in [start, end) (a
	// zero bound: open) is synced from every provider the patient is connected to, waiting
	// within its budget for the syncs it starts. Each window it could not fill is a warning, a
	// *providers.UncoveredError. err is a failure to find out (the store): the search then
	// answers what is stored.
	Fill(ctx context.Context, patient string, kinds []fhir.SampleKind, start, end time.Time) (warnings []error, err error)
}

// readThrough runs read-through for a patient-scoped Observation search q made by r with access
// a, before the search runs (and before the result cache is asked: a cached page may lack what
// read-through brings, and writes invalidate it); compartment is the patient of a compartment
// search ("" for a type-level search). It returns the warnings to answer with.
//
// Only the patient of the search is read through, and only when the caller may see that
// patient's compartment: a token confined to patient A never makes ohx call a vendor for B (its
// search of B answers nothing anyway). The search's kinds are the kinds its code clause names
// (fhir.KindsForCode; a search of codes no vendor provides reads nothing through), its window
// is the one its date clauses bound. Pages after the first read nothing through: the paging
// goes on over what the first page saw.
func (s *Server) readThrough(r *request, q *search.Query, a access, compartment string) []error {
	if s.cfg.ReadThrough == nil || q.Type != "Observation" || q.Cursor != nil {
		return nil
	}
	patient, ok := searchPatient(q, compartment)
	switch {
	case !ok:
		return nil
	case patient == "":
		patient = a.patient // the compartment the token confines the search to
	case a.patient != "" && patient != a.patient:
		return nil // another patient's data: the caller sees none of it
	}
	if patient == "" || !fhir.ValidID(patient) {
		return nil
	}
	kinds, ok := searchKinds(q)
	if !ok {
		return nil
	}
	start, end, ok := searchWindow(q)
	if !ok {
		return nil
	}
	warnings, err := s.cfg.ReadThrough.Fill(r.ctx, patient, kinds, start, end)
	if err != nil && r.ctx.Err() == nil {
		s.log.Warn("read-through failed: answering what is stored", "request_id", r.requestID, "err", err)
	}
	return warnings
}

// searchPatient returns the one patient q is about: its patient (or subject of type Patient)
// clauses and the compartment must all name the same patient. ok is false when they name
// several, or a patient in a way read-through does not follow (a modifier, a chain, several
// values, an absolute URL). "" with ok: the search names no patient.
func searchPatient(q *search.Query, compartment string) (patient string, ok bool) {
	patient = compartment
	for _, c := range q.Clauses {
		if c.Param == nil || (c.Param.Name != "patient" && c.Param.Name != "subject") {
			continue
		}
		if c.Chain != nil || (c.Modifier != "" && c.Modifier != "Patient") || len(c.Values) != 1 {
			return "", false
		}
		v := c.Values[0]
		if v.RefURL != "" || v.RefID == "" || (v.RefType != "Patient" && !(v.RefType == "" && c.Param.Name == "patient")) {
			return "", false
		}
		if patient != "" && patient != v.RefID {
			return "", false
		}
		patient = v.RefID
	}
	return patient, true
}

// searchKinds returns the sample kinds q's code clauses ask for: nil (every kind) without a code
// clause or with one read-through cannot narrow (a modifier such as :text or :not); ok is false
// when the codes name no kind a vendor provides (a laboratory code, say).
func searchKinds(q *search.Query) (kinds []fhir.SampleKind, ok bool) {
	narrowed := false
	for _, c := range q.Clauses {
		if c.Param == nil || c.Param.Name != "code" || c.Chain != nil || c.Modifier != "" {
			continue
		}
		var ks []fhir.SampleKind
		for _, v := range c.Values {
			ks = append(ks, fhir.KindsForCode(v.System, v.Code, v.AnySystem, v.AnyCode)...)
		}
		slices.Sort(ks)
		ks = slices.Compact(ks)
		if narrowed { // clauses are ANDed: the kinds every one of them names
			ks = slices.DeleteFunc(ks, func(k fhir.SampleKind) bool { return !slices.Contains(kinds, k) })
		}
		kinds, narrowed = ks, true
		if len(kinds) == 0 {
			return nil, false
		}
	}
	return kinds, true
}

// searchWindow returns the time window q's date clauses bound, [start, end) with zero for an
// open side; ok is false when they bound nothing at all (an empty intersection). A clause's
// values are ORed: its window spans them all; clauses are ANDed: the window is their
// intersection. A value's range is the one its prefix selects: ge from its start, gt and sa from
// its end, le up to its end, lt and eb up to its start, eq and ap the value itself, ne anything
// (https://hl7.org/fhir/R5/search.html#date).
func searchWindow(q *search.Query) (start, end time.Time, ok bool) {
	lo, hi := int64(math.MinInt64), int64(math.MaxInt64)
	for _, c := range q.Clauses {
		if c.Param == nil || c.Param.Name != "date" || c.Chain != nil || c.Modifier != "" {
			continue
		}
		clo, chi := int64(math.MaxInt64), int64(math.MinInt64)
		for _, v := range c.Values {
			vlo, vhi := v.Lo, v.Hi
			switch v.Prefix {
			case "ge":
				vhi = math.MaxInt64
			case "gt", "sa":
				vlo, vhi = v.Hi, math.MaxInt64
			case "le":
				vlo = math.MinInt64
			case "lt", "eb":
				vlo, vhi = math.MinInt64, v.Lo
			case "ne":
				vlo, vhi = math.MinInt64, math.MaxInt64
			}
			clo, chi = min(clo, vlo), max(chi, vhi)
		}
		lo, hi = max(lo, clo), min(hi, chi)
	}
	if lo >= hi {
		return time.Time{}, time.Time{}, false
	}
	if lo != math.MinInt64 {
		start = time.UnixMicro(lo).UTC()
	}
	if hi != math.MaxInt64 {
		end = time.UnixMicro(hi).UTC()
	}
	return start, end, true
}

// codeIncomplete is the issue type of an answer that lacks data a source did not deliver in
// time (https://hl7.org/fhir/R5/codesystem-issue-type.html#issue-type-incomplete).
const codeIncomplete = "incomplete"

// uncoveredOutcome is outcomeFor for a window read-through could not fill: a warning naming
// the provider and the window, with the issue type of its cause. The status is for the rare
// answer that fails with it; as a warning it rides along a 200.
func uncoveredOutcome(uc *providers.UncoveredError) (int, *fhir.OperationOutcome) {
	status, code, why := http.StatusGatewayTimeout, codeIncomplete, "the sync is still running; search again shortly"
	var ue *providers.UpstreamError
	switch {
	case errors.Is(uc.Err, providers.ErrSyncPending):
	case errors.Is(uc.Err, providers.ErrConsentRevoked), errors.Is(uc.Err, providers.ErrNotConnected):
		status, code, why = http.StatusBadGateway, "expired", "the vendor no longer accepts this patient's consent: the patient must connect again"
	case errors.As(uc.Err, &ue) && ue.Kind == providers.KindThrottled:
		status, code, why = http.StatusServiceUnavailable, fhir.CodeThrottled, "the vendor is throttling requests; the sync is retried later"
	case errors.As(uc.Err, &ue) && ue.Kind == providers.KindTransient:
		status, code, why = http.StatusBadGateway, "transient", "the vendor is unavailable; the sync is retried later"
	case errors.As(uc.Err, &ue):
		status, code, why = http.StatusBadGateway, fhir.CodeException, "the vendor rejected the request"
	default:
		status, why = http.StatusBadGateway, "the sync failed; it is retried later"
	}
	return status, fhir.NewOutcome("warning", code, fmt.Sprintf("%s data from %s to %s is not synced yet: %s. The answer holds what is stored.",
		uc.Provider, uc.Start.UTC().Format(time.RFC3339), uc.End.UTC().Format(time.RFC3339), why))
}
