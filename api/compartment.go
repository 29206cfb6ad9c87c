package api

import (
	"cmp"
	"context"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/fhir/search"
	"github.com/openhealthexchange/ohx/store"
)

// The Patient compartment: GET [base]/Patient/{id}/{type} and POST …/{type}/_search (compartment
// search, https://hl7.org/fhir/R5/http.html#vsearch) and GET [base]/Patient/{id}/$everything
// (https://hl7.org/fhir/R5/patient-operation-everything.html).
//
// Which resources are in a patient's compartment is one rule, the one authorization confines
// tokens to (authz.Policy.InCompartment): Observations and DeviceAssociations whose subject is
// the patient (https://hl7.org/fhir/R5/compartmentdefinition-patient.html lists both through
// subject; Observation's
// performer is not part of ohx's compartment), and the Devices associated with the patient
// through DeviceAssociation — R5 Device is in no compartment, so /Patient/{id}/Device is ohx's
// way of asking for the devices the patient may see (SMART: patient-level scopes reach the
// patient compartment, https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html).
//
// A compartment search is a search of the type with the compartment added as a filter after
// parsing, authorized exactly as that search (authorize, then authz.Policy.Confine). A token
// confined to another patient gets an empty searchset, never a 404: these are searches, which
// filter silently (https://hl7.org/fhir/R5/search.html), and an empty answer does not depend on whether the other
// patient exists, so it is no oracle; no extra read is needed to give it.

// compartmentTypes are the types searched in a Patient compartment.
var compartmentTypes = []string{"Observation", "DeviceAssociation", "Device"}

// everythingTypes are the types of $everything, in the order the pages list them.
var everythingTypes = []string{"Patient", "Device", "DeviceAssociation", "Observation"}

// instanceOperation serves GET [base]/{type}/{id}/{sub} — compartment searches and $everything —
// and POST [base]/{type}/{id}/{sub}/_search, the compartment search with a form body.
func (s *Server) instanceOperation(r *request) (result, error) {
	typ, id, sub := r.typ, r.id, r.sub
	if typ != "Patient" {
		if _, err := s.resourceType(r); err != nil {
			return result{}, err
		}
		return result{}, fhir.Errorf(http.StatusNotFound, fhir.CodeNotSupported, "%s/{id}/%s is not served: ohx serves the Patient compartment (Patient/{id}/{type}) and Patient/{id}/$everything", typ, truncate(sub))
	}
	if !fhir.ValidID(id) {
		return result{}, fhir.Errorf(http.StatusNotFound, fhir.CodeNotFound, "resource not found")
	}
	switch {
	case strings.HasPrefix(sub, "$") && r.http.Method == http.MethodPost:
		return result{}, fhir.Errorf(http.StatusNotFound, fhir.CodeNotSupported, "no such endpoint: POST …/%s/_search", truncate(sub))
	case sub == "$everything":
		return s.everything(r, id)
	case sub == "DeviceAssociation" && r.version == R4:
		return result{}, fhir.Errorf(http.StatusNotFound, fhir.CodeNotSupported, "DeviceAssociation exists only in FHIR R5; R4 clients find the patient's devices at Patient/{id}/Device")
	case slices.Contains(compartmentTypes, sub):
		return s.compartmentSearch(r, id, sub)
	case strings.HasPrefix(sub, "$"):
		return result{}, fhir.Errorf(http.StatusNotFound, fhir.CodeNotSupported, "operation %s is not supported on Patient (Patient/{id}/$everything is)", truncate(sub))
	}
	return result{}, fhir.Errorf(http.StatusNotFound, fhir.CodeNotSupported, "%s is not searched in the Patient compartment: ohx serves Patient/{id}/Observation, /DeviceAssociation and /Device", truncate(sub))
}

// compartmentQuery is the query that shapes the links of an answer about the compartment (or
// operation) at path "Patient/{id}/…": link writes its Type as the path, so the self and next
// links are that URL with the applied parameters, and cursorBinding binds the cursor to it —
// the patient id included — rather than to the type-level search.
func compartmentQuery(q *search.Query, path string) *search.Query {
	lq := *q
	lq.Type = path
	lq.Cursor = nil
	return &lq
}

// compartmentSearch serves GET [base]/Patient/{id}/{typ}.
func (s *Server) compartmentSearch(r *request, patient, typ string) (result, error) {
	params, err := r.searchParams()
	if err != nil {
		return result{}, err
	}
	a, err := r.authorize(typ, 's')
	if err != nil {
		return result{}, err
	}
	q, page, err := s.reg.Parse(typ, params, s.searchOptions(r))
	if err != nil {
		return result{}, err
	}
	if err := s.confineChains(r, q); err != nil {
		return result{}, err
	}
	lq := compartmentQuery(q, "Patient/"+patient+"/"+typ)
	if page != "" {
		if q.Cursor, err = s.decodeCursor(page, cursorBinding(lq, r.version, r.binding)); err != nil {
			return result{}, err
		}
	}
	ctx := r.ctx
	res := &store.Result{Total: 0}
	var warnings []error
	if a.patient == "" || a.patient == patient { // another patient's compartment: nothing to see
		warnings = s.readThrough(r, q, a, patient)
		in, ids, err := s.pol.InCompartment(ctx, typ, patient)
		if err != nil {
			return result{}, err
		}
		q.Clauses = append(q.Clauses, in)
		postFilter, deviceIDs, err := s.pol.Confine(ctx, q, a.dec)
		if err != nil {
			return result{}, err
		}
		if deviceIDs == nil {
			deviceIDs = ids // a.patient is patient (or none): the same devices
		}
		if res, err = s.store.Search(ctx, q); err != nil {
			return result{}, err
		}
		if postFilter {
			if res.Matches, err = s.pol.KeepVisible(ctx, res.Matches, deviceIDs, a.dec); err != nil {
				return result{}, err
			}
			res.Total = -1
		}
		if err := s.pol.FilterIncluded(ctx, r.principal, res, deviceIDs); err != nil {
			return result{}, err
		}
	}
	body, err := s.bundle(r, lq, res)
	if err != nil {
		return result{}, err
	}
	return searchsetResult(body, append(ignoredParams(params, q), warnings...)), nil
}

// everythingPhase is one resource type of $everything, as the caller may see it.
type everythingPhase struct {
	typ string
	// allowed is false for a type the token may not both read and search: left out.
	allowed bool
	// read and search are the confinements of the two rights; the phase must satisfy both.
	read, search access
}

// everything serves GET [base]/Patient/{id}/$everything: the patient, then the devices, the
// device associations and the observations of the compartment, paged with _count across the
// types. A page's cursor holds the type's position in the list and the keyset position inside
// it. _since keeps resources last updated at or after an instant, _type restricts the types
// (names ohx does not serve match nothing). A type the token may not read and search is left
// out silently; a token allowed none of them gets 403.
func (s *Server) everything(r *request, patient string) (result, error) {
	params, err := r.searchParams()
	if err != nil {
		return result{}, err
	}
	var warnings []error
	count := s.cfg.DefaultCount
	var since, page string
	types := everythingTypes
	var applied []search.NameValue
	seen := map[string]bool{}
	for _, p := range params {
		if p.Name == "_format" || p.Name == "_pretty" || p.Value == "" {
			continue // empty parameters are ignored, as in searches
		}
		if seen[p.Name] {
			return result{}, fhir.Invalid(fhir.CodeInvalid, "parameter %s may appear only once", truncate(p.Name))
		}
		seen[p.Name] = true
		switch p.Name {
		case "_count":
			n, err := strconv.Atoi(p.Value)
			if err != nil || n <= 0 {
				return result{}, fhir.Invalid(fhir.CodeValue, "_count: %q is not a positive integer", truncate(p.Value))
			}
			count = min(n, s.cfg.MaxCount)
		case "_page":
			page = p.Value
		case "_since":
			if _, err := time.Parse(time.RFC3339Nano, p.Value); err != nil {
				return result{}, fhir.Invalid(fhir.CodeValue, "_since: %q is not an instant (e.g. 2026-01-02T03:04:05Z)", truncate(p.Value))
			}
			since = p.Value
			applied = append(applied, p)
		case "_type":
			var want []string
			for t := range strings.SplitSeq(p.Value, ",") {
				want = append(want, strings.TrimSpace(t))
			}
			if len(want) > search.MaxParamValues {
				return result{}, fhir.Invalid(fhir.CodeTooCostly, "_type: %d values, at most %d are allowed", len(want), search.MaxParamValues)
			}
			types = slices.DeleteFunc(slices.Clone(everythingTypes), func(t string) bool { return !slices.Contains(want, t) })
			applied = append(applied, p)
		default:
			err := fhir.Errorf(http.StatusBadRequest, fhir.CodeNotSupported, "parameter %q is not supported by $everything (_count, _since and _type are)", truncate(p.Name))
			if r.strict {
				return result{}, err
			}
			warnings = append(warnings, err)
		}
	}
	if r.version == R4 {
		types = slices.DeleteFunc(slices.Clone(types), func(t string) bool { return t == "DeviceAssociation" })
	}
	lq := compartmentQuery(&search.Query{Count: count, Applied: applied}, "Patient/"+patient+"/$everything")
	phases := make([]everythingPhase, len(types))
	var refused error
	for i, t := range types {
		phases[i].typ = t
		rd, errR := r.authorize(t, 'r')
		sr, errS := r.authorize(t, 's')
		if err := cmp.Or(errR, errS); err != nil {
			if authErrorOf(err) == nil {
				return result{}, err
			}
			if refused == nil {
				refused = err
			}
			continue
		}
		phases[i] = everythingPhase{typ: t, allowed: true, read: rd, search: sr}
	}
	if refused != nil && !slices.ContainsFunc(phases, func(p everythingPhase) bool { return p.allowed }) {
		return result{}, refused
	}
	at, inner := 0, (*search.Cursor)(nil)
	if page != "" {
		cur, err := s.decodeCursor(page, cursorBinding(lq, r.version, r.binding))
		if err != nil {
			return result{}, err
		}
		if len(cur.Keys) == 0 || cur.Keys[0] < 0 || cur.Keys[0] >= int64(len(phases)) {
			return result{}, fhir.Invalid(fhir.CodeInvalid, "_page: invalid paging cursor for this search")
		}
		at = int(cur.Keys[0])
		if cur.ID != "" {
			inner = &search.Cursor{Keys: cur.Keys[1:], ID: cur.ID}
		}
	}
	ctx := r.ctx
	res := &store.Result{Total: -1}
	remaining := count
	for ; at < len(phases); at, inner = at+1, nil {
		ph := phases[at]
		if !ph.allowed {
			continue
		}
		if remaining == 0 {
			res.Next = &search.Cursor{Keys: []int64{int64(at)}} // the page ends where this type starts
			break
		}
		matches, next, err := s.everythingPage(ctx, ph, patient, since, remaining, inner)
		if err != nil {
			return result{}, err
		}
		res.Matches = append(res.Matches, matches...)
		if next != nil {
			res.Next = &search.Cursor{Keys: append([]int64{int64(at)}, next.Keys...), ID: next.ID}
			break
		}
		remaining -= len(matches)
	}
	if page == "" && res.Next == nil {
		res.Total = len(res.Matches) // free: one page holds everything
	}
	body, err := s.bundle(r, lq, res)
	if err != nil {
		return result{}, err
	}
	return searchsetResult(body, warnings), nil
}

// everythingPage reads up to n resources of one $everything type after inner (nil: from its
// start) and returns them with the position after the last one when more follow. Observations
// go by date (resources_patient serves it in order), everything else by id.
func (s *Server) everythingPage(ctx context.Context, ph everythingPhase, patient, since string, n int, inner *search.Cursor) ([]store.Entry, *search.Cursor, error) {
	if (ph.read.patient != "" && ph.read.patient != patient) || (ph.search.patient != "" && ph.search.patient != patient) {
		return nil, nil, nil // confined to another patient's compartment
	}
	var pairs []search.NameValue
	if since != "" {
		pairs = append(pairs, search.NameValue{Name: "_lastUpdated", Value: "ge" + since})
	}
	if ph.typ == "Observation" {
		pairs = append(pairs, search.NameValue{Name: "_sort", Value: "date"})
	}
	q, _, err := s.reg.Parse(ph.typ, pairs, search.Options{Strict: true})
	if err != nil {
		return nil, nil, err
	}
	q.Count, q.Total, q.Cursor = n, "none", inner
	in, deviceIDs, err := s.pol.InCompartment(ctx, ph.typ, patient)
	if err != nil {
		return nil, nil, err
	}
	q.Clauses = append(q.Clauses, in)
	postFilter, _, err := s.pol.Confine(ctx, q, ph.search.dec)
	if err != nil {
		return nil, nil, err
	}
	if !ph.read.dec.Equal(ph.search.dec) {
		pf, _, err := s.pol.Confine(ctx, q, ph.read.dec)
		if err != nil {
			return nil, nil, err
		}
		postFilter = postFilter || pf
	}
	res, err := s.store.Search(ctx, q)
	if err != nil {
		return nil, nil, err
	}
	matches := res.Matches
	if postFilter {
		if matches, err = s.pol.KeepVisible(ctx, matches, deviceIDs, ph.read.dec, ph.search.dec); err != nil {
			return nil, nil, err
		}
	}
	return matches, res.Next, nil
}
