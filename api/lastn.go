package api

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/openhealthexchange/ohx/api/authz"
	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/fhir/search"
	"github.com/openhealthexchange/ohx/store"
)

// Observation/$lastn (https://hl7.org/fhir/R5/observation-operation-lastn.html): the max (default
// 1) most recent Observations of each code for one or more patients, as one searchset. Every
// Observation search parameter filters; patient or subject must name the patients. "Most
// recent" is the order of _sort=-date: effective start descending, ties by id descending. The
// store does the index work (store.Store.LastN); this file authorizes, fills groups that scope
// constraints had to thin out afterwards, and applies the grouping rule of the operation.
//
// ohx also answers without a category or code parameter (the operation asks for one of them):
// the groups are then every code of the patient. Text-only codes (no coding) are not grouped:
// no Observation ohx stores has one.

// lastNResultParams are the result parameters that mean nothing to $lastn, which returns one
// unpaged set: ignored, or a 400 under Prefer: handling=strict.
var lastNResultParams = map[string]bool{"_count": true, "_sort": true, "_page": true, "_include": true, "_revinclude": true, "_total": true}

// lastN serves GET [base]/Observation/$lastn, authorized exactly as an Observation search.
func (s *Server) lastN(r *request) (result, error) {
	params, err := r.searchParams()
	if err != nil {
		return result{}, err
	}
	a, err := r.authorize("Observation", 's')
	if err != nil {
		return result{}, err
	}
	n := 1
	var filters []search.NameValue
	var warnings []error
	seenMax := false
	for _, p := range params {
		base, _, _ := strings.Cut(p.Name, ":")
		switch {
		case p.Name == "max":
			v, err := strconv.Atoi(p.Value)
			if err != nil || v <= 0 {
				return result{}, fhir.Invalid(fhir.CodeValue, "max: %q is not a positive integer", truncate(p.Value))
			}
			if seenMax {
				return result{}, fhir.Invalid(fhir.CodeInvalid, "parameter max may appear only once")
			}
			seenMax, n = true, min(v, s.cfg.MaxCount)
		case lastNResultParams[base] || (p.Name == "_summary" && p.Value == "count"):
			err := fhir.Errorf(http.StatusBadRequest, fhir.CodeNotSupported, "parameter %s=%s is not supported by $lastn: it returns max Observations per code, unpaged", truncate(p.Name), truncate(p.Value))
			if r.strict {
				return result{}, err
			}
			warnings = append(warnings, err)
		default:
			filters = append(filters, p)
		}
	}
	q, _, err := s.reg.Parse("Observation", filters, s.searchOptions(r))
	if err != nil {
		return result{}, err
	}
	if err := s.confineChains(r, q); err != nil {
		return result{}, err
	}
	warnings = append(warnings, ignoredParams(filters, q)...)
	subject, patients, err := lastNSubject(q)
	if err != nil {
		return result{}, err
	}
	ctx := r.ctx
	var entries []store.Entry
	for _, patient := range patients {
		if a.patient != "" && a.patient != patient {
			continue // outside the caller's compartment: nothing to see
		}
		pq := *q
		pq.Clauses = append([]search.Clause{{Param: s.reg.Param("Observation", "patient"),
			Values: []search.Value{{RefType: "Patient", RefID: patient}}}}, slices.Delete(slices.Clone(q.Clauses), subject, subject+1)...)
		if len(patients) == 1 {
			// One patient's latest values read through as a search of them does (readthrough.go);
			// a search of several patients reads none through.
			warnings = append(warnings, s.readThrough(r, &pq, a, "")...)
		}
		es, err := s.lastNOf(ctx, &pq, a.dec, n)
		if err != nil {
			return result{}, err
		}
		entries = append(entries, es...)
	}
	self := r.base + "/Observation/$lastn?"
	for _, nv := range q.Applied {
		self += url.QueryEscape(nv.Name) + "=" + url.QueryEscape(nv.Value) + "&"
	}
	self += "max=" + strconv.Itoa(n)
	body, err := s.entriesBundle(r, self, entries, projection{elements: q.Elements, summary: q.Summary})
	if err != nil {
		return result{}, err
	}
	return searchsetResult(body, warnings), nil
}

// lastNSubject finds the clause naming the patients of $lastn: the first patient or subject
// clause whose values all refer to a Patient by id (subject=123 is taken as Patient/123: only
// Observations of patients are grouped).
func lastNSubject(q *search.Query) (int, []string, error) {
	for i, c := range q.Clauses {
		if (c.Param.Name != "patient" && c.Param.Name != "subject") || (c.Modifier != "" && c.Modifier != "Patient") {
			continue
		}
		var ids []string
		for _, v := range c.Values {
			if v.RefURL != "" || v.RefID == "" || (v.RefType != "" && v.RefType != "Patient") {
				ids = nil
				break
			}
			if !slices.Contains(ids, v.RefID) {
				ids = append(ids, v.RefID)
			}
		}
		if len(ids) > 0 {
			return i, ids, nil
		}
	}
	return 0, nil, fhir.Invalid(fhir.CodeRequired, "$lastn needs the patient whose Observations to group: patient=[id] or subject=Patient/[id]")
}

// lastNOf runs $lastn for one patient: q has the single patient clause first. Scope
// constraints the store cannot apply are checked afterwards; a group they thinned below n is
// read again page by page, newest first, until it has n visible Observations or ends.
func (s *Server) lastNOf(ctx context.Context, q *search.Query, a authz.Access, n int) ([]store.Entry, error) {
	postFilter, deviceIDs, err := s.pol.Confine(ctx, q, a)
	if err != nil {
		return nil, err
	}
	groups, err := s.store.LastN(ctx, q, n)
	if err != nil {
		return nil, err
	}
	if postFilter {
		lq, err := store.SplitLastN(q)
		if err != nil {
			return nil, err
		}
		for i := range groups {
			g := &groups[i]
			full := len(g.Entries) == n
			if g.Entries, err = s.pol.KeepVisible(ctx, g.Entries, deviceIDs, a); err != nil {
				return nil, err
			}
			if full && len(g.Entries) < n {
				if g.Entries, err = s.visibleNewest(ctx, lq.GroupQuery(s.reg, g.Coding, max(n, s.cfg.DefaultCount)), a, deviceIDs, n); err != nil {
					return nil, err
				}
			}
		}
	}
	return mergeLastN(groups, n)
}

// visibleNewest pages through gq until n entries visible under a are found or it ends.
func (s *Server) visibleNewest(ctx context.Context, gq *search.Query, a authz.Access, deviceIDs []string, n int) ([]store.Entry, error) {
	var out []store.Entry
	for {
		res, err := s.store.Search(ctx, gq)
		if err != nil {
			return nil, err
		}
		kept, err := s.pol.KeepVisible(ctx, res.Matches, deviceIDs, a)
		if err != nil {
			return nil, err
		}
		out = append(out, kept[:min(len(kept), n-len(out))]...)
		if len(out) == n || res.Next == nil {
			return out, nil
		}
		gq.Cursor = res.Next
	}
}

// mergeLastN applies the grouping rule of $lastn to the store's per-coding groups: "Codes SHALL
// be considered equivalent if the coding.value and coding.system are the same", and for codes
// with several codings "the code translations are assumed to be equal and the grouping by code
// SHALL follow the transitive property of equality". Codings found together in one Observation
// join their groups. The n newest of a joined group are among the n newest of its parts, so the
// parts' entries suffice; the equivalences are learned from those entries (a translation that
// only older Observations carry does not join two groups). Groups keep the store's order (by
// their first coding), each newest first.
func mergeLastN(groups []store.CodeGroup, n int) ([]store.Entry, error) {
	index := make(map[store.Coding]int, len(groups))
	parent := make([]int, len(groups))
	for i, g := range groups {
		index[g.Coding] = i
		parent[i] = i
	}
	find := func(i int) int {
		for parent[i] != i {
			parent[i] = parent[parent[i]]
			i = parent[i]
		}
		return i
	}
	sortDate := map[string]int64{}
	for i, g := range groups {
		for _, e := range g.Entries {
			if _, done := sortDate[e.ID]; done {
				continue
			}
			var o fhir.Observation
			if err := json.Unmarshal(e.JSON, &o); err != nil {
				return nil, fmt.Errorf("decode stored Observation/%s: %w", e.ID, err)
			}
			idx, err := search.Extract(&o)
			if err != nil {
				return nil, err
			}
			sortDate[e.ID] = idx.SortDate
			for _, cd := range o.Code.Coding {
				if j, ok := index[store.Coding{System: cd.System, Code: cd.Code}]; ok {
					parent[find(j)] = find(i)
				}
			}
		}
	}
	var roots []int
	members := map[int][]store.Entry{}
	for i, g := range groups {
		r := find(i)
		if _, ok := members[r]; !ok {
			roots = append(roots, r)
		}
		for _, e := range g.Entries {
			if !slices.ContainsFunc(members[r], func(m store.Entry) bool { return m.ID == e.ID }) {
				members[r] = append(members[r], e)
			}
		}
	}
	var out []store.Entry
	for _, r := range roots {
		es := members[r]
		slices.SortFunc(es, func(a, b store.Entry) int { // newest first, as _sort=-date
			return -cmp.Or(cmp.Compare(sortDate[a.ID], sortDate[b.ID]), cmp.Compare(a.ID, b.ID))
		})
		out = append(out, es[:min(n, len(es))]...)
	}
	return out, nil
}

// entriesBundle is a searchset of one page holding entries as matches, with only a self link.
func (s *Server) entriesBundle(r *request, self string, entries []store.Entry, p projection) ([]byte, error) {
	buf := make([]byte, 0, 512+len(entries)*1024)
	buf = append(buf, `{"resourceType":"Bundle","type":"searchset","total":`...)
	buf = strconv.AppendInt(buf, int64(len(entries)), 10)
	buf = append(buf, `,"link":[{"relation":"self","url":`...)
	buf = appendJSONString(buf, self)
	buf = append(buf, `}]`...)
	base := r.base
	for i, e := range entries {
		body, err := s.render(r, e, p)
		if err != nil {
			return nil, err
		}
		if i == 0 {
			buf = append(buf, `,"entry":[`...)
		} else {
			buf = append(buf, ',')
		}
		buf = append(buf, `{"fullUrl":`...)
		buf = appendJSONString(buf, base+"/"+e.Type+"/"+e.ID)
		buf = append(buf, `,"resource":`...)
		buf = append(buf, body...)
		buf = append(buf, `,"search":{"mode":"match"}}`...)
	}
	if len(entries) > 0 {
		buf = append(buf, ']')
	}
	return append(buf, '}'), nil
}
