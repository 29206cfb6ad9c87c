package api

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/fhir/search"
	"github.com/openhealthexchange/ohx/store"
)

// vread and instance history (https://hl7.org/fhir/R5/http.html#vread, #history). Both need
// what read needs: the r permission on the type, and a current version the caller may see
// (read's 404 rules). Every version shown is checked as well: a resource that moved between
// compartments shows a caller only the versions that were in theirs.

// vread implements GET [type]/[id]/_history/[vid].
func (s *Server) vread(r *request) (result, error) {
	typ, err := s.resourceType(r)
	if err != nil {
		return result{}, err
	}
	id := r.id
	vid, err := strconv.ParseInt(r.vid, 10, 64)
	if !fhir.ValidID(id) || err != nil || vid < 1 {
		return result{}, fhir.Errorf(http.StatusNotFound, fhir.CodeNotFound, "resource version not found")
	}
	a, err := r.authorize(typ, 'r')
	if err != nil {
		return result{}, err
	}
	ctx := r.ctx
	deviceIDs, err := s.historyVisible(ctx, a, typ, id)
	if err != nil {
		return result{}, err
	}
	e, err := s.store.ReadVersion(ctx, typ, id, vid)
	if errors.Is(err, store.ErrDeleted) {
		return result{}, withHeader(err, "ETag", etag(e.VersionID))
	}
	if err != nil {
		return result{}, err
	}
	if ok, err := s.pol.Visible(ctx, a.dec, e, deviceIDs); err != nil {
		return result{}, err
	} else if !ok {
		return result{}, fmt.Errorf("vread %s/%s/_history/%d: not visible to the caller: %w", typ, id, vid, store.ErrNotFound)
	}
	return s.entryResult(r, e)
}

// historyVisible answers whether the caller may see the versions of typ/id at all, as read
// would answer for its current version: ErrNotFound if not. It returns the patient's devices
// when the per-version checks need them (a patient-confined Device history).
func (s *Server) historyVisible(ctx context.Context, a access, typ, id string) (deviceIDs []string, err error) {
	if a.patient != "" && typ == "Device" {
		if deviceIDs, err = s.pol.DevicesOf(ctx, a.patient); err != nil {
			return nil, err
		}
	}
	cur, err := s.store.Read(ctx, typ, id)
	if errors.Is(err, store.ErrDeleted) {
		if a.patient != "" && !(typ == "Patient" && id == a.patient) {
			// The current content is gone, so the compartment cannot be checked: as if unknown.
			return nil, fmt.Errorf("history %s/%s: %w", typ, id, store.ErrNotFound)
		}
		return deviceIDs, nil
	}
	if err != nil {
		return nil, err
	}
	if ok, err := s.pol.Visible(ctx, a.dec, cur, deviceIDs); err != nil {
		return nil, err
	} else if !ok {
		return nil, fmt.Errorf("history %s/%s: not visible to the caller: %w", typ, id, store.ErrNotFound)
	}
	return deviceIDs, nil
}

// historyParams are the parameters of an instance history request.
type historyParams struct {
	count      int
	since      time.Time
	atLo, atHi int64 // the _at period, Unix µs; atSet reports whether there is one
	atSet      bool
	page       string
	applied    []search.NameValue // what the self link shows and the cursor is bound to
}

func (s *Server) parseHistoryParams(r *request) (historyParams, error) {
	p := historyParams{count: s.cfg.DefaultCount}
	if r.queryErr != nil {
		return p, r.queryErr
	}
	params := r.query
	seen := map[string]bool{}
	for _, nv := range params {
		if (nv.Name == "_since" || nv.Name == "_at") && seen[nv.Name] {
			return p, fhir.Invalid(fhir.CodeInvalid, "%s is given more than once", nv.Name)
		}
		seen[nv.Name] = true
		switch nv.Name {
		case "_count":
			n, err := strconv.Atoi(nv.Value)
			if err != nil || n < 0 {
				return p, fhir.Invalid(fhir.CodeInvalid, "_count: %q is not a non-negative integer", truncate(nv.Value))
			}
			p.count = min(n, s.cfg.MaxCount)
		case "_since":
			// An instant; a less precise date or dateTime is read as its start, in UTC when it
			// has no zone (as search dates are).
			lo, _, err := fhir.TimeRange(nv.Value)
			if err != nil {
				return p, fhir.Invalid(fhir.CodeValue, "_since: %q is not an instant", truncate(nv.Value))
			}
			p.since = time.UnixMicro(lo)
			p.applied = append(p.applied, nv)
		case "_at":
			// "Only include resource versions that were current at some point during the time
			// period specified in the date time value" (http.html#history).
			lo, hi, err := fhir.TimeRange(nv.Value)
			if err != nil {
				return p, fhir.Invalid(fhir.CodeValue, "_at: %q is not a date, dateTime or instant", truncate(nv.Value))
			}
			p.atLo, p.atHi, p.atSet = lo, hi, true
			p.applied = append(p.applied, nv)
		case "_page":
			p.page = nv.Value
		case "_sort":
			// Newest first is the only order served (http.html#history: the default).
			if nv.Value != "-_lastUpdated" && nv.Value != "none" {
				return p, fhir.Errorf(http.StatusBadRequest, fhir.CodeNotSupported, "_sort=%s: history is served newest first only (-_lastUpdated)", truncate(nv.Value))
			}
		case "_format", "_pretty":
		default: // ignored, and left out of the self link, unless the client asks for strictness
			if r.strict {
				return p, fhir.Errorf(http.StatusBadRequest, fhir.CodeNotSupported, "history does not support the parameter %s", truncate(nv.Name))
			}
		}
	}
	return p, nil
}

// historyBinding binds a history cursor to its resource, parameters, page size, FHIR version
// and caller, as cursorBinding does for searches.
func historyBinding(typ, id string, p historyParams, v Version, principal string) string {
	return cursorBinding(&search.Query{Type: "_history " + typ + "/" + id, Applied: p.applied, Count: p.count}, v, principal)
}

func (s *Server) historyLink(r *request, typ, id string, p historyParams, next *search.Cursor) string {
	var b strings.Builder
	b.WriteString(r.base + "/" + typ + "/" + id + "/_history?")
	for _, nv := range p.applied {
		b.WriteString(url.QueryEscape(nv.Name) + "=" + url.QueryEscape(nv.Value) + "&")
	}
	b.WriteString("_count=" + strconv.Itoa(p.count))
	if next != nil {
		b.WriteString("&_page=" + url.QueryEscape(s.encodeCursor(next, historyBinding(typ, id, p, r.version, r.binding))))
	}
	return b.String()
}

// history implements GET [type]/[id]/_history: a Bundle of type history, newest first, paged
// with _count and an opaque cursor, filtered by _since and _at.
func (s *Server) history(r *request) (result, error) {
	typ, err := s.resourceType(r)
	if err != nil {
		return result{}, err
	}
	id := r.id
	if !fhir.ValidID(id) {
		return result{}, fhir.Errorf(http.StatusNotFound, fhir.CodeNotFound, "resource not found")
	}
	a, err := r.authorize(typ, 'r')
	if err != nil {
		return result{}, err
	}
	p, err := s.parseHistoryParams(r)
	if err != nil {
		return result{}, err
	}
	var before int64
	if p.page != "" {
		cur, err := s.decodeCursor(p.page, historyBinding(typ, id, p, r.version, r.binding))
		if err != nil {
			return result{}, err
		}
		if cur.ID != id || len(cur.Keys) != 1 || cur.Keys[0] < 1 {
			return result{}, fhir.Errorf(http.StatusBadRequest, fhir.CodeInvalid, "_page: invalid paging cursor for this history")
		}
		before = cur.Keys[0]
	}
	ctx := r.ctx
	deviceIDs, err := s.historyVisible(ctx, a, typ, id)
	if err != nil {
		return result{}, err
	}
	var es []store.Entry
	if p.count > 0 {
		q := store.HistoryQuery{Type: typ, ID: id, Count: p.count + 1, Before: before, Since: p.since}
		if p.atSet {
			q.Until = time.UnixMicro(p.atHi)
		}
		if es, err = s.store.History(ctx, q); err != nil {
			return result{}, err
		}
	}
	// Version i is current from its lastUpdated until the next version's: with _at, walking
	// newest first, a version whose successor came at or before the period's start was never
	// current in it, and neither was any older one. (A page after the first starts below a
	// version that was kept, whose lastUpdated is therefore after the start.)
	var page []store.Entry
	var next *search.Cursor
	succ := int64(math.MaxInt64) // lastUpdated of the successor of the version at hand
	for _, e := range es {
		if p.atSet && succ <= p.atLo {
			break
		}
		if len(page) == p.count {
			next = &search.Cursor{Keys: []int64{page[len(page)-1].VersionID}, ID: id}
			break
		}
		page = append(page, e)
		succ = e.LastUpdated.UnixMicro()
	}
	body, err := s.historyBundle(r, a, typ, id, p, page, es, next, deviceIDs)
	if err != nil {
		return result{}, err
	}
	return okResult(body), nil
}

// historyBundle encodes one page of history from stored bytes (converted for R4 by render).
// fetched holds the page and the version after it, which tells whether each version created
// the resource.
func (s *Server) historyBundle(r *request, a access, typ, id string, p historyParams, page, fetched []store.Entry, next *search.Cursor, deviceIDs []string) ([]byte, error) {
	ctx := r.ctx
	buf := make([]byte, 0, 512+len(page)*1024)
	buf = append(buf, `{"resourceType":"Bundle","type":"history","link":[{"relation":"self","url":`...)
	buf = appendJSONString(buf, s.historyLink(r, typ, id, p, nil))
	buf = append(buf, '}')
	if next != nil {
		buf = append(buf, `,{"relation":"next","url":`...)
		buf = appendJSONString(buf, s.historyLink(r, typ, id, p, next))
		buf = append(buf, '}')
	}
	buf = append(buf, ']')
	base := r.base
	n := 0
	for _, e := range page {
		if e.JSON != nil {
			if ok, err := s.pol.Visible(ctx, a.dec, e, deviceIDs); err != nil {
				return nil, err
			} else if !ok {
				continue // a version from before the resource entered the caller's compartment
			}
		}
		created, err := s.createdAt(ctx, e, fetched)
		if err != nil {
			return nil, err
		}
		if n == 0 {
			buf = append(buf, `,"entry":[`...)
		} else {
			buf = append(buf, ',')
		}
		n++
		// fullUrl is never version-specific (bdl-8); response.location is.
		buf = append(buf, `{"fullUrl":`...)
		buf = appendJSONString(buf, base+"/"+typ+"/"+id)
		var method, reqURL, status string
		switch {
		case e.JSON == nil:
			method, reqURL, status = http.MethodDelete, typ+"/"+id, "204 No Content"
		case created && e.VersionID == 1:
			method, reqURL, status = http.MethodPost, typ, "201 Created"
		case created: // brought back after a deletion: only an update can do that
			method, reqURL, status = http.MethodPut, typ+"/"+id, "201 Created"
		default:
			method, reqURL, status = http.MethodPut, typ+"/"+id, "200 OK"
		}
		if e.JSON != nil {
			body, err := s.render(r, e, projection{})
			if err != nil {
				return nil, err
			}
			buf = append(buf, `,"resource":`...)
			buf = append(buf, body...)
		}
		buf = append(buf, `,"request":{"method":"`+method+`","url":`...)
		buf = appendJSONString(buf, reqURL)
		buf = append(buf, `},"response":{"status":"`+status+`"`...)
		if e.JSON != nil {
			buf = append(buf, `,"location":`...)
			buf = appendJSONString(buf, base+"/"+typ+"/"+id+"/_history/"+strconv.FormatInt(e.VersionID, 10))
		}
		buf = append(buf, `,"etag":`...)
		buf = appendJSONString(buf, etag(e.VersionID))
		buf = append(buf, `,"lastModified":"`+fhir.Instant(e.LastUpdated)+`"}}`...)
	}
	if n > 0 {
		buf = append(buf, ']')
	}
	buf = append(buf, '}')
	return buf, nil
}

// createdAt reports whether version e brought the resource into existence: version 1, or the
// version after a deletion. The version before is usually among those fetched; otherwise
// (filtered out by _since, or the last of the page) it is read. A version no longer kept
// (retention) reads as an update.
func (s *Server) createdAt(ctx context.Context, e store.Entry, fetched []store.Entry) (bool, error) {
	if e.JSON == nil {
		return false, nil
	}
	if e.VersionID == 1 {
		return true, nil
	}
	for _, f := range fetched {
		if f.VersionID == e.VersionID-1 {
			return f.JSON == nil, nil
		}
	}
	_, err := s.store.ReadVersion(ctx, e.Type, e.ID, e.VersionID-1)
	switch {
	case errors.Is(err, store.ErrDeleted):
		return true, nil
	case err == nil, errors.Is(err, store.ErrNotFound):
		return false, nil
	}
	return false, err
}
