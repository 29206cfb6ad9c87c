package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/fhir/search"
	"github.com/openhealthexchange/ohx/store"
)

// baseFor returns the FHIR base of an answer in version v, for links, fullUrls and Location: an
// R4 answer points at the R4 base even when R4 was chosen with Accept on the R5 base, so that a
// client following its links without the header (as fhirclient does) stays on R4 and the
// cursor it carries, bound to the version (cursorBinding), stays valid.
func (s *Server) baseFor(v Version) string {
	if v == R4 {
		return s.cfg.BaseURL + "/r4"
	}
	return s.cfg.BaseURL
}

func (s *Server) metadata(c *gin.Context) {
	if version(c) == R4 {
		s.writeJSON(c, http.StatusOK, s.cs4JSON)
		return
	}
	s.writeJSON(c, http.StatusOK, s.csJSON)
}

// versions implements $versions (https://hl7.org/fhir/R5/capabilitystatement-operation-versions.html).
func (s *Server) versions(*request) (result, error) {
	return okResult([]byte(`{"resourceType":"Parameters","parameter":[{"name":"version","valueCode":"4.0"},{"name":"version","valueCode":"5.0"},{"name":"default","valueCode":"5.0"}]}`)), nil
}

func (s *Server) resourceType(r *request) (string, error) {
	typ := r.typ
	if !s.reg.Supports(typ) {
		return "", fhir.Errorf(http.StatusNotFound, fhir.CodeNotSupported, "resource type %q is not supported", truncate(typ))
	}
	if typ == "DeviceAssociation" && r.version == R4 {
		return "", fhir.Errorf(http.StatusNotFound, fhir.CodeNotSupported, "DeviceAssociation exists only in FHIR R5; R4 clients find the patient in Device.patient")
	}
	return typ, nil
}

func (s *Server) notAllowed(r *request) (result, error) {
	if s.practitionerPath(r) {
		return result{}, practitionerOnlyRead(r)
	}
	if _, err := s.resourceType(r); err != nil {
		return result{}, err
	}
	return result{}, methodNotAllowed(r, r.typ)
}

// allowedMethods lists the methods ohx serves on [base]/[type] (instance false) and
// [base]/[type]/[id] (instance true).
func allowedMethods(typ string, instance bool) []string {
	switch {
	case typ == "Patient" && instance:
		return []string{http.MethodGet, http.MethodPut} // read, update
	case typ == "Patient":
		return []string{http.MethodGet, http.MethodPost, http.MethodPut} // search, create, conditional update
	}
	return []string{http.MethodGet} // read or search
}

// methodNotAllowed is the 405 for the request's method on typ: it lists the methods the path
// does allow, in the message and in the Allow header RFC 9110 §15.5.6 requires.
func methodNotAllowed(r *request, typ string) error {
	instance := r.id != ""
	methods := allowedMethods(typ, instance)
	path := typ
	if instance {
		path += "/{id}"
	}
	why := ""
	switch typ {
	case "Patient":
	case "Practitioner":
		why = " (Practitioner is the read-only view of the authorization server's practitioner users)"
	default:
		why = " (" + typ + " is written only by the sync pipeline)"
	}
	return withHeader(fhir.Errorf(http.StatusMethodNotAllowed, fhir.CodeNotSupported, "%s is not allowed on %s: allowed methods are %s%s",
		r.http.Method, path, strings.Join(methods, ", "), why), "Allow", strings.Join(methods, ", "))
}

func etag(v int64) string { return `W/"` + strconv.FormatInt(v, 10) + `"` }

func setVersionHeaders(res *result, e store.Entry) {
	res.setHeader("ETag", etag(e.VersionID))
	res.setHeader("Last-Modified", e.LastUpdated.UTC().Format(http.TimeFormat))
}

func (s *Server) read(r *request) (result, error) {
	if s.practitionerPath(r) {
		return s.readPractitioner(r)
	}
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
	key := "read|" + r.version.mimeParam() + "|" + typ + "/" + id
	e, hit := s.cache.getEntry(key)
	if !hit {
		typeGen := s.cache.typeGeneration(typ)
		e, err = s.store.Read(r.ctx, typ, id)
		if err == nil {
			s.cache.putEntry(key, e, typeGen, r.version)
		}
	}
	if errors.Is(err, store.ErrDeleted) {
		if a.patient != "" && !(typ == "Patient" && id == a.patient) {
			// The content is gone, so the compartment cannot be checked: answer as if unknown.
			return result{}, fmt.Errorf("read %s/%s: %w", typ, id, store.ErrNotFound)
		}
		return result{}, withHeader(err, "ETag", etag(e.VersionID))
	}
	if err != nil {
		return result{}, err
	}
	// Outside the caller's compartment or scope constraints: 404, never 403, so that a read is
	// no oracle for what exists (SMART: https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html,
	// and FHIR's advice to answer 404 rather than reveal a resource, https://hl7.org/fhir/R5/security.html#AccessDenied).
	if ok, err := s.pol.Visible(r.ctx, a.dec, e, nil); err != nil {
		return result{}, err
	} else if !ok {
		return result{}, fmt.Errorf("read %s/%s: not visible to the caller: %w", typ, id, store.ErrNotFound)
	}
	return s.entryResult(r, e)
}

// entryResult answers a read or vread with the stored entry: version headers, 304 for a
// matching conditional read, else the rendered body.
func (s *Server) entryResult(r *request, e store.Entry) (result, error) {
	var res result
	setVersionHeaders(&res, e)
	if notModified(r.http, e) {
		res.status = http.StatusNotModified
		return res, nil
	}
	body, err := s.render(r, e, r.proj)
	if err != nil {
		return result{}, err
	}
	res.status, res.body = http.StatusOK, body
	return res, nil
}

// notModified implements conditional read: If-None-Match wins over If-Modified-Since
// (RFC 9110 §13.2.2).
func notModified(r *http.Request, e store.Entry) bool {
	if inm := r.Header.Get("If-None-Match"); inm != "" {
		for t := range strings.SplitSeq(inm, ",") {
			t = strings.TrimSpace(t)
			if t == "*" || strings.TrimPrefix(t, "W/") == strings.TrimPrefix(etag(e.VersionID), "W/") {
				return true
			}
		}
		return false
	}
	if ims := r.Header.Get("If-Modified-Since"); ims != "" {
		t, err := http.ParseTime(ims)
		return err == nil && !e.LastUpdated.Truncate(time.Second).After(t)
	}
	return false
}

type projection struct {
	elements []string
	summary  string
}

// render returns the bytes to serve for a stored entry: the stored JSON itself on the R5 fast
// path, projected and/or converted to R4 otherwise.
func (s *Server) render(r *request, e store.Entry, p projection) ([]byte, error) {
	body := e.JSON
	if r.version == R4 {
		res := fhir.New(e.Type)
		if err := json.Unmarshal(e.JSON, res); err != nil {
			return nil, fmt.Errorf("decode stored %s/%s: %w", e.Type, e.ID, err)
		}
		var opt fhir.R4Options
		if e.Type == "Device" {
			ref, err := s.devicePatient(r.ctx, e.ID)
			if err != nil {
				return nil, err
			}
			opt.DevicePatient = ref
		}
		b, err := fhir.MarshalR4(res, opt)
		if err != nil {
			return nil, fmt.Errorf("convert %s/%s to R4: %w", e.Type, e.ID, err)
		}
		body = b
	}
	if out, changed, err := project(e.Type, body, p.elements, p.summary); err != nil {
		return nil, err
	} else if changed {
		body = out
	}
	return body, nil
}

// devicePatient finds the patient of a device's current association, for R4 Device.patient.
func (s *Server) devicePatient(ctx context.Context, deviceID string) (*fhir.Reference, error) {
	q, _, err := s.reg.Parse("DeviceAssociation", []search.NameValue{
		{Name: "device", Value: "Device/" + deviceID},
		{Name: "status", Value: fhir.DeviceAssociationStatusSystem + "|attached"},
		{Name: "_sort", Value: "-_lastUpdated"},
		{Name: "_count", Value: "1"},
	}, search.Options{})
	if err != nil {
		return nil, err
	}
	res, err := s.store.Search(ctx, q)
	if err != nil {
		return nil, err
	}
	if len(res.Matches) == 0 {
		return nil, nil
	}
	var da fhir.DeviceAssociation
	if err := json.Unmarshal(res.Matches[0].JSON, &da); err != nil {
		return nil, fmt.Errorf("decode stored DeviceAssociation/%s: %w", res.Matches[0].ID, err)
	}
	if da.Subject == nil || !strings.HasPrefix(da.Subject.Reference, "Patient/") {
		return nil, nil
	}
	return &fhir.Reference{Reference: da.Subject.Reference}, nil
}

// searchOptions are the parse options of a search made by r.
func (s *Server) searchOptions(r *request) search.Options {
	return search.Options{BaseURL: s.cfg.BaseURL, DefaultCount: s.cfg.DefaultCount, MaxCount: s.cfg.MaxCount, Strict: r.strict}
}

// parseSearch parses a type-level search, decodes its cursor and confines its chains. Parameters
// the lenient parse ignored come back as warnings.
func (s *Server) parseSearch(r *request, typ string, params []search.NameValue) (*search.Query, []error, error) {
	q, page, err := s.reg.Parse(typ, params, s.searchOptions(r))
	if err != nil {
		return nil, nil, err
	}
	if page != "" {
		cur, err := s.decodeCursor(page, cursorBinding(q, r.version, r.binding))
		if err != nil {
			return nil, nil, err
		}
		q.Cursor = cur
	}
	if err := s.confineChains(r, q); err != nil {
		return nil, nil, err
	}
	return q, ignoredParams(params, q), nil
}

// confineChains applies the caller's rights to the chained clauses of q
// (authz.Policy.ConfineChains).
func (s *Server) confineChains(r *request, q *search.Query) error {
	return scopeError(s.pol.ConfineChains(r.ctx, r.principal, q))
}

func (s *Server) search(r *request) (result, error) {
	if s.practitionerPath(r) {
		return result{}, practitionerOnlyRead(r)
	}
	typ, err := s.resourceType(r)
	if err != nil {
		return result{}, err
	}
	params, err := r.searchParams()
	if err != nil {
		return result{}, err
	}
	a, err := r.authorize(typ, 's')
	if err != nil {
		return result{}, err
	}
	q, warnings, err := s.parseSearch(r, typ, params)
	if err != nil {
		return result{}, err
	}
	warnings = append(warnings, s.readThrough(r, q, a, "")...)
	// Keyed on the parsed search (what was applied, never the raw query string) and on who asks:
	// a page made for one caller's view never serves another. Warnings are the request's own and
	// are not cached: the writer adds them to the body.
	key := searchKey(r.version, r.base, q, r.binding)
	if body, ok := s.cache.get(key); ok {
		return searchsetResult(body, warnings), nil
	}
	ctx := r.ctx
	// The self and next links show the client's own parameters; the confinement below is added
	// after parsing (and is bound into the cursor through the principal).
	postFilter, deviceIDs, err := s.pol.Confine(ctx, q, a.dec)
	if err != nil {
		return result{}, err
	}
	var deps []dep
	var gens []uint64
	if s.cache != nil {
		deps = searchDeps(q, r.version)
		if deviceIDs != nil {
			// The confinement itself came from the patient's associations (DevicesOf): a new
			// or ended association changes which Devices the caller may see.
			deps = append(deps, dep{"DeviceAssociation", ""})
		}
		gens = s.cache.snapshot(deps) // before the search: a write racing it invalidates the entry
	}
	res, err := s.store.Search(ctx, q)
	if err != nil {
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
	body, err := s.bundle(r, q, res)
	if err != nil {
		return result{}, err
	}
	s.cache.put(key, body, deps, gens)
	return searchsetResult(body, warnings), nil
}

func (s *Server) link(r *request, q *search.Query, cur *search.Cursor) string {
	v := url.Values{}
	var b strings.Builder
	b.WriteString(r.base)
	b.WriteByte('/')
	b.WriteString(q.Type)
	b.WriteByte('?')
	for _, nv := range q.Applied {
		b.WriteString(url.QueryEscape(nv.Name))
		b.WriteByte('=')
		b.WriteString(url.QueryEscape(nv.Value))
		b.WriteByte('&')
	}
	v.Set("_count", strconv.Itoa(q.Count))
	if cur != nil {
		v.Set("_page", s.encodeCursor(cur, cursorBinding(q, r.version, r.binding)))
	}
	b.WriteString(v.Encode())
	return b.String()
}

// bundle assembles a searchset from stored bytes without decoding them on the R5 fast path. Its
// entry array, if any, is its last member (appendOutcomeEntry relies on it).
func (s *Server) bundle(r *request, q *search.Query, res *store.Result) ([]byte, error) {
	p := projection{elements: q.Elements, summary: q.Summary}
	// Sized for the stored JSON plus each entry's wrapper, so the page is built without
	// regrowing (R4 and projections change sizes a little; append copes).
	size := 1024
	for _, l := range [][]store.Entry{res.Matches, res.Included} {
		for _, e := range l {
			size += len(e.JSON) + len(r.base) + len(e.Type) + len(e.ID) + 64
		}
	}
	buf := make([]byte, 0, size)
	buf = append(buf, `{"resourceType":"Bundle","type":"searchset"`...)
	if res.Total >= 0 && q.Total != "none" {
		buf = append(buf, `,"total":`...)
		buf = strconv.AppendInt(buf, int64(res.Total), 10)
	}
	buf = append(buf, `,"link":[{"relation":"self","url":`...)
	buf = appendJSONString(buf, s.link(r, q, nil))
	buf = append(buf, '}')
	if !q.SummaryCount {
		if res.Next != nil {
			buf = append(buf, `,{"relation":"next","url":`...)
			buf = appendJSONString(buf, s.link(r, q, res.Next))
			buf = append(buf, '}')
		}
		if res.Prev != nil {
			buf = append(buf, `,{"relation":"previous","url":`...)
			buf = appendJSONString(buf, s.link(r, q, res.Prev))
			buf = append(buf, '}')
		}
	}
	buf = append(buf, ']')
	base := r.base
	n := 0
	add := func(e store.Entry, mode string) error {
		if r.version == R4 && e.Type == "DeviceAssociation" {
			return nil // no R4 form; R4 clients read Device.patient instead
		}
		body, err := s.render(r, e, p)
		if err != nil {
			return err
		}
		if n == 0 {
			buf = append(buf, `,"entry":[`...)
		} else {
			buf = append(buf, ',')
		}
		n++
		buf = append(buf, `{"fullUrl":`...)
		buf = appendJSONString(buf, base+"/"+e.Type+"/"+e.ID)
		buf = append(buf, `,"resource":`...)
		buf = append(buf, body...)
		buf = append(buf, `,"search":{"mode":"`...)
		buf = append(buf, mode...)
		buf = append(buf, `"}}`...)
		return nil
	}
	for _, e := range res.Matches {
		if err := add(e, "match"); err != nil {
			return nil, err
		}
	}
	for _, e := range res.Included {
		if err := add(e, "include"); err != nil {
			return nil, err
		}
	}
	if n > 0 {
		buf = append(buf, ']')
	}
	buf = append(buf, '}')
	return buf, nil
}

// appendJSONString appends s as a JSON string without HTML escaping (links keep their '&').
func appendJSONString(buf []byte, s string) []byte {
	if plainJSON(s) {
		buf = append(buf, '"')
		buf = append(buf, s...)
		return append(buf, '"')
	}
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.Encode(s)
	return append(buf, strings.TrimSuffix(b.String(), "\n")...)
}

// plainJSON reports whether s is its own JSON string content: printable ASCII without a quote
// or backslash (the URLs and ids of a page), so the encoder's escaping is not needed.
func plainJSON(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// --- writes (Patient only) ---

func (s *Server) writableType(r *request) (string, error) {
	if s.practitionerPath(r) {
		return "", practitionerOnlyRead(r)
	}
	typ, err := s.resourceType(r)
	if err != nil {
		return "", err
	}
	if typ != "Patient" {
		return "", methodNotAllowed(r, typ)
	}
	return typ, nil
}

// writeResult answers a create or update per Prefer: return
// (https://hl7.org/fhir/R5/http.html#ops).
func (s *Server) writeResult(r *request, status int, e store.Entry) (result, error) {
	res := result{status: status}
	setVersionHeaders(&res, e)
	res.setHeader("Location", r.base+"/"+e.Type+"/"+e.ID+"/_history/"+strconv.FormatInt(e.VersionID, 10))
	switch r.preferReturn {
	case "minimal":
	case "OperationOutcome":
		res.resource = fhir.NewOutcome("information", fhir.CodeInformational, fmt.Sprintf("%s/%s version %d stored", e.Type, e.ID, e.VersionID))
	default:
		body, err := s.render(r, e, projection{})
		if err != nil {
			return result{}, err
		}
		res.body = body
	}
	return res, nil
}

func (s *Server) create(r *request) (result, error) {
	typ, err := s.writableType(r)
	if err != nil {
		return result{}, err
	}
	cond := r.http.Header.Get("If-None-Exist")
	// Refused before anything is read or looked up, so the answer never depends on what is
	// stored (write.go).
	sa, err := s.authorizeCreate(r.principal, typ, cond != "")
	if err != nil {
		return result{}, err
	}
	res, err := r.readBody(typ)
	if err != nil {
		return result{}, err
	}
	status, e, err := s.createOne(r.ctx, typ, res, cond, sa)
	if err != nil {
		return result{}, err
	}
	return s.writeResult(r, status, e)
}

func (s *Server) update(r *request) (result, error) {
	typ, err := s.writableType(r)
	if err != nil {
		return result{}, err
	}
	id := r.id
	if !fhir.ValidID(id) {
		return result{}, fhir.Invalid(fhir.CodeValue, "invalid id %q", truncate(id))
	}
	if err := s.authorizeUpdate(r.principal, typ, id); err != nil {
		return result{}, err
	}
	res, err := r.readBody(typ)
	if err != nil {
		return result{}, err
	}
	im, err := parseIfMatch(r.http.Header.Get("If-Match"))
	if err != nil {
		return result{}, err
	}
	status, e, err := s.updateOne(r.ctx, typ, id, res, im)
	if err != nil {
		return result{}, err
	}
	return s.writeResult(r, status, e)
}

// conditionalUpdate implements PUT [type]?criteria: no match creates, one match updates it,
// several fail with 412 (https://hl7.org/fhir/R5/http.html#cond-update).
func (s *Server) conditionalUpdate(r *request) (result, error) {
	typ, err := s.writableType(r)
	if err != nil {
		return result{}, err
	}
	if r.rawQuery == "" {
		return result{}, fhir.Errorf(http.StatusMethodNotAllowed, fhir.CodeNotSupported, "PUT needs an id or search criteria")
	}
	sa, err := s.authorizeConditionalUpdate(r.principal, typ)
	if err != nil {
		return result{}, err
	}
	res, err := r.readBody(typ)
	if err != nil {
		return result{}, err
	}
	crit, err := conditionalCriteria(r.rawQuery)
	if err != nil {
		return result{}, err
	}
	im, err := parseIfMatch(r.http.Header.Get("If-Match"))
	if err != nil {
		return result{}, err
	}
	status, e, err := s.conditionalUpdateOne(r.ctx, typ, res, crit, im, sa)
	if err != nil {
		return result{}, err
	}
	return s.writeResult(r, status, e)
}
