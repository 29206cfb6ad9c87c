package api

import (
	"cmp"
	"context"
	"errors"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/fhir/search"
	"github.com/openhealthexchange/ohx/store"
)

// The Patient compartment: GET [base]/Patient/{id}/{type} and POST …/{type}/_search (compartment
// search, https://hl7.org/fhir/R5/http.html#vsearch) and GET [base]/Patient/{id}/$everything
// (https://hl7.org/fhir/R5/patient-operation-everything.html).
//
// Which resources are in a patient's compartment is the one rule of README "Compartment", the
// rule authorization confines tokens to: Observations and DeviceAssociations whose subject is
// the patient (compartmentdefinition-patient.html lists both through subject; Observation's
// performer is not part of ohx's compartment), and the Devices associated with the patient
// through DeviceAssociation — R5 Device is in no compartment, so /Patient/{id}/Device is ohx's
// way of asking for the devices the patient may see (SMART: patient-level scopes reach the
// patient compartment, https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html).
//
// A compartment search is a search of the type with the compartment added as a filter after
// parsing, authorized exactly as that search (authorize, then confine). A token confined to
// another patient gets an empty searchset, never a 404: these are searches, which filter
// silently (README "Compartment"), and an empty answer does not depend on whether the other
// patient exists, so it is no oracle; no extra read is needed to give it.

// compartmentTypes are the types searched in a Patient compartment.
var compartmentTypes = []string{"Observation", "DeviceAssociation", "Device"}

// everythingTypes are the types of $everything, in the order the pages list them.
var everythingTypes = []string{"Patient", "Device", "DeviceAssociation", "Observation"}

// instanceOperation serves GET [base]/{type}/{id}/{sub} — compartment searches and $everything —
// and POST [base]/{type}/{id}/{sub}/_search, the compartment search with a form body.
func (s *Server) instanceOperation(c *gin.Context) error {
	typ, id, sub := c.Param("type"), c.Param("id"), c.Param("sub")
	if typ != "Patient" {
		if _, err := s.resourceType(c); err != nil {
			return err
		}
		return fhir.Errorf(http.StatusNotFound, fhir.CodeNotSupported, "%s/{id}/%s is not served: ohx serves the Patient compartment (Patient/{id}/{type}) and Patient/{id}/$everything", typ, truncate(sub))
	}
	if !fhir.ValidID(id) {
		return fhir.Errorf(http.StatusNotFound, fhir.CodeNotFound, "resource not found")
	}
	switch {
	case strings.HasPrefix(sub, "$") && c.Request.Method == http.MethodPost:
		return fhir.Errorf(http.StatusNotFound, fhir.CodeNotSupported, "no such endpoint: POST …/%s/_search", truncate(sub))
	case sub == "$everything":
		return s.everything(c, id)
	case sub == "DeviceAssociation" && version(c) == R4:
		return fhir.Errorf(http.StatusNotFound, fhir.CodeNotSupported, "DeviceAssociation exists only in FHIR R5; R4 clients find the patient's devices at Patient/{id}/Device")
	case slices.Contains(compartmentTypes, sub):
		return s.compartmentSearch(c, id, sub)
	case strings.HasPrefix(sub, "$"):
		return fhir.Errorf(http.StatusNotFound, fhir.CodeNotSupported, "operation %s is not supported on Patient (Patient/{id}/$everything is)", truncate(sub))
	}
	return fhir.Errorf(http.StatusNotFound, fhir.CodeNotSupported, "%s is not searched in the Patient compartment: ohx serves Patient/{id}/Observation, /DeviceAssociation and /Device", truncate(sub))
}

// compartmentClause is the filter "in patient's compartment" for a search of typ. For Device it
// is the ids of the associated devices, found anew on every page, and returned as deviceIDs.
func (s *Server) compartmentClause(ctx context.Context, typ, patient string) (c search.Clause, deviceIDs []string, err error) {
	switch typ {
	case "Patient":
		return idClause(s.reg, typ, []string{patient}), nil, nil
	case "Device":
		if deviceIDs, err = s.devicesOf(ctx, patient); err != nil {
			return search.Clause{}, nil, err
		}
		return idClause(s.reg, typ, deviceIDs), deviceIDs, nil
	}
	return search.Clause{Param: s.reg.Param(typ, "patient"), Values: []search.Value{{RefType: "Patient", RefID: patient}}}, nil, nil
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
func (s *Server) compartmentSearch(c *gin.Context, patient, typ string) error {
	params, err := searchParams(c)
	if err != nil {
		return err
	}
	a, err := s.authorize(c, typ, 's')
	if err != nil {
		return err
	}
	q, page, err := s.reg.Parse(typ, params, search.Options{
		BaseURL: s.cfg.BaseURL, DefaultCount: s.cfg.DefaultCount, MaxCount: s.cfg.MaxCount, Strict: strict(c),
	})
	if err != nil {
		return err
	}
	if err := s.confineChains(c, q); err != nil {
		return err
	}
	lq := compartmentQuery(q, "Patient/"+patient+"/"+typ)
	if page != "" {
		if q.Cursor, err = s.decodeCursor(page, cursorBinding(lq, version(c), principalOf(c).binding())); err != nil {
			return err
		}
	}
	ctx := c.Request.Context()
	res := &store.Result{Total: 0}
	if a.patient == "" || a.patient == patient { // another patient's compartment: nothing to see
		in, ids, err := s.compartmentClause(ctx, typ, patient)
		if err != nil {
			return err
		}
		q.Clauses = append(q.Clauses, in)
		postFilter, deviceIDs, err := s.confine(ctx, q, a)
		if err != nil {
			return err
		}
		if deviceIDs == nil {
			deviceIDs = ids // a.patient is patient (or none): the same devices
		}
		if res, err = s.store.Search(ctx, q); err != nil {
			return err
		}
		if postFilter {
			if res.Matches, err = s.keepVisible(ctx, res.Matches, deviceIDs, a); err != nil {
				return err
			}
			res.Total = -1
		}
		if err := s.filterIncluded(ctx, c, res, deviceIDs); err != nil {
			return err
		}
	}
	body, err := s.bundle(c, lq, res)
	if err != nil {
		return err
	}
	s.writeJSON(c, http.StatusOK, body)
	return nil
}

// keepVisible drops the entries one of as does not let the caller see.
func (s *Server) keepVisible(ctx context.Context, es []store.Entry, deviceIDs []string, as ...access) ([]store.Entry, error) {
	kept := es[:0]
	for _, e := range es {
		ok := true
		for _, a := range as {
			v, err := s.visible(ctx, a, e, deviceIDs)
			if err != nil {
				return nil, err
			}
			ok = ok && v
		}
		if ok {
			kept = append(kept, e)
		}
	}
	return kept, nil
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
func (s *Server) everything(c *gin.Context, patient string) error {
	params, err := searchParams(c)
	if err != nil {
		return err
	}
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
			return fhir.Invalid(fhir.CodeInvalid, "parameter %s may appear only once", truncate(p.Name))
		}
		seen[p.Name] = true
		switch p.Name {
		case "_count":
			n, err := strconv.Atoi(p.Value)
			if err != nil || n <= 0 {
				return fhir.Invalid(fhir.CodeValue, "_count: %q is not a positive integer", truncate(p.Value))
			}
			count = min(n, s.cfg.MaxCount)
		case "_page":
			page = p.Value
		case "_since":
			if _, err := time.Parse(time.RFC3339Nano, p.Value); err != nil {
				return fhir.Invalid(fhir.CodeValue, "_since: %q is not an instant (e.g. 2026-01-02T03:04:05Z)", truncate(p.Value))
			}
			since = p.Value
			applied = append(applied, p)
		case "_type":
			var want []string
			for t := range strings.SplitSeq(p.Value, ",") {
				want = append(want, strings.TrimSpace(t))
			}
			if len(want) > search.MaxParamValues {
				return fhir.Invalid(fhir.CodeTooCostly, "_type: %d values, at most %d are allowed", len(want), search.MaxParamValues)
			}
			types = slices.DeleteFunc(slices.Clone(everythingTypes), func(t string) bool { return !slices.Contains(want, t) })
			applied = append(applied, p)
		default:
			if strict(c) {
				return fhir.Errorf(http.StatusBadRequest, fhir.CodeNotSupported, "parameter %q is not supported by $everything (_count, _since and _type are)", truncate(p.Name))
			}
		}
	}
	if version(c) == R4 {
		types = slices.DeleteFunc(slices.Clone(types), func(t string) bool { return t == "DeviceAssociation" })
	}
	lq := compartmentQuery(&search.Query{Count: count, Applied: applied}, "Patient/"+patient+"/$everything")
	phases := make([]everythingPhase, len(types))
	var refused error
	for i, t := range types {
		phases[i].typ = t
		r, errR := s.authorize(c, t, 'r')
		sr, errS := s.authorize(c, t, 's')
		if err := cmp.Or(errR, errS); err != nil {
			var ae *authError
			if !errors.As(err, &ae) {
				return err
			}
			if refused == nil {
				refused = err
			}
			continue
		}
		phases[i] = everythingPhase{typ: t, allowed: true, read: r, search: sr}
	}
	if refused != nil && !slices.ContainsFunc(phases, func(p everythingPhase) bool { return p.allowed }) {
		return refused
	}
	at, inner := 0, (*search.Cursor)(nil)
	if page != "" {
		cur, err := s.decodeCursor(page, cursorBinding(lq, version(c), principalOf(c).binding()))
		if err != nil {
			return err
		}
		if len(cur.Keys) == 0 || cur.Keys[0] < 0 || cur.Keys[0] >= int64(len(phases)) {
			return fhir.Invalid(fhir.CodeInvalid, "_page: invalid paging cursor for this search")
		}
		at = int(cur.Keys[0])
		if cur.ID != "" {
			inner = &search.Cursor{Keys: cur.Keys[1:], ID: cur.ID}
		}
	}
	ctx := c.Request.Context()
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
			return err
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
	body, err := s.bundle(c, lq, res)
	if err != nil {
		return err
	}
	s.writeJSON(c, http.StatusOK, body)
	return nil
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
	in, deviceIDs, err := s.compartmentClause(ctx, ph.typ, patient)
	if err != nil {
		return nil, nil, err
	}
	q.Clauses = append(q.Clauses, in)
	postFilter, _, err := s.confine(ctx, q, ph.search)
	if err != nil {
		return nil, nil, err
	}
	if !sameAccess(ph.read, ph.search) {
		pf, _, err := s.confine(ctx, q, ph.read)
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
		if matches, err = s.keepVisible(ctx, matches, deviceIDs, ph.read, ph.search); err != nil {
			return nil, nil, err
		}
	}
	return matches, res.Next, nil
}

// sameAccess reports whether two confinements are the same.
func sameAccess(a, b access) bool {
	return a.patient == b.patient && slices.EqualFunc(a.constraints, b.constraints, func(x, y url.Values) bool {
		return maps.EqualFunc(x, y, slices.Equal)
	})
}
