package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
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

// base returns the FHIR base of the answer's version, for links, fullUrls and Location: an R4
// answer points at the R4 base even when R4 was chosen with Accept on the R5 base, so that a
// client following its links without the header (as fhirclient does) stays on R4 and the
// cursor it carries, bound to the version (cursorBinding), stays valid.
func (s *Server) base(c *gin.Context) string {
	if version(c) == R4 {
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
func (s *Server) versions(c *gin.Context) error {
	s.writeJSON(c, http.StatusOK, []byte(`{"resourceType":"Parameters","parameter":[{"name":"version","valueCode":"4.0"},{"name":"version","valueCode":"5.0"},{"name":"default","valueCode":"5.0"}]}`))
	return nil
}

func (s *Server) resourceType(c *gin.Context) (string, error) {
	typ := c.Param("type")
	if !s.reg.Supports(typ) {
		return "", fhir.Errorf(http.StatusNotFound, fhir.CodeNotSupported, "resource type %q is not supported", truncate(typ))
	}
	if typ == "DeviceAssociation" && version(c) == R4 {
		return "", fhir.Errorf(http.StatusNotFound, fhir.CodeNotSupported, "DeviceAssociation exists only in FHIR R5; R4 clients find the patient in Device.patient")
	}
	return typ, nil
}

func (s *Server) notAllowed(c *gin.Context) error {
	if s.practitionerPath(c) {
		return practitionerOnlyRead(c)
	}
	if _, err := s.resourceType(c); err != nil {
		return err
	}
	return methodNotAllowed(c, c.Param("type"))
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
func methodNotAllowed(c *gin.Context, typ string) error {
	instance := c.Param("id") != ""
	methods := allowedMethods(typ, instance)
	c.Header("Allow", strings.Join(methods, ", "))
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
	return fhir.Errorf(http.StatusMethodNotAllowed, fhir.CodeNotSupported, "%s is not allowed on %s: allowed methods are %s%s",
		c.Request.Method, path, strings.Join(methods, ", "), why)
}

func etag(v int64) string { return `W/"` + strconv.FormatInt(v, 10) + `"` }

func setVersionHeaders(c *gin.Context, e store.Entry) {
	c.Header("ETag", etag(e.VersionID))
	c.Header("Last-Modified", e.LastUpdated.UTC().Format(http.TimeFormat))
}

func (s *Server) read(c *gin.Context) error {
	if s.practitionerPath(c) {
		return s.readPractitioner(c)
	}
	typ, err := s.resourceType(c)
	if err != nil {
		return err
	}
	id := c.Param("id")
	if !fhir.ValidID(id) {
		return fhir.Errorf(http.StatusNotFound, fhir.CodeNotFound, "resource not found")
	}
	a, err := s.authorize(c, typ, 'r')
	if err != nil {
		return err
	}
	ctx := c.Request.Context()
	key := "read|" + version(c).mimeParam() + "|" + typ + "/" + id
	e, hit := s.cache.getEntry(key)
	if !hit {
		var typeGen uint64
		if s.cache != nil {
			typeGen = s.cache.tracker.Generation(typ, "")
		}
		e, err = s.store.Read(ctx, typ, id)
		if err == nil {
			s.cache.putEntry(key, e, typeGen, version(c))
		}
	}
	if errors.Is(err, store.ErrDeleted) {
		if a.patient != "" && !(typ == "Patient" && id == a.patient) {
			// The content is gone, so the compartment cannot be checked: answer as if unknown.
			return fmt.Errorf("read %s/%s: %w", typ, id, store.ErrNotFound)
		}
		c.Header("ETag", etag(e.VersionID))
		return err
	}
	if err != nil {
		return err
	}
	// Outside the caller's compartment or scope constraints: 404, never 403, so that a read is
	// no oracle for what exists (fhir-smart.md §1.7).
	if ok, err := s.visible(ctx, a, e, nil); err != nil {
		return err
	} else if !ok {
		return fmt.Errorf("read %s/%s: not visible to the caller: %w", typ, id, store.ErrNotFound)
	}
	return s.writeEntry(ctx, c, e)
}

// writeEntry answers a read or vread with the stored entry: version headers, 304 for a matching
// conditional read, else the rendered body.
func (s *Server) writeEntry(ctx context.Context, c *gin.Context, e store.Entry) error {
	setVersionHeaders(c, e)
	if notModified(c.Request, e) {
		c.Status(http.StatusNotModified)
		c.Writer.WriteHeaderNow()
		return nil
	}
	body, err := s.render(ctx, c, e, parseProjection(c))
	if err != nil {
		return err
	}
	s.writeJSON(c, http.StatusOK, body)
	return nil
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

func parseProjection(c *gin.Context) projection {
	var p projection
	if el := c.Query("_elements"); el != "" {
		for e := range strings.SplitSeq(el, ",") {
			if e = strings.TrimSpace(e); e != "" {
				p.elements = append(p.elements, e)
			}
		}
	}
	p.summary = c.Query("_summary")
	return p
}

// render returns the bytes to serve for a stored entry: the stored JSON itself on the R5 fast
// path, projected and/or converted to R4 otherwise.
func (s *Server) render(ctx context.Context, c *gin.Context, e store.Entry, p projection) ([]byte, error) {
	body := e.JSON
	if version(c) == R4 {
		r := fhir.New(e.Type)
		if err := json.Unmarshal(e.JSON, r); err != nil {
			return nil, fmt.Errorf("decode stored %s/%s: %w", e.Type, e.ID, err)
		}
		var opt fhir.R4Options
		if e.Type == "Device" {
			ref, err := s.devicePatient(ctx, e.ID)
			if err != nil {
				return nil, err
			}
			opt.DevicePatient = ref
		}
		b, err := fhir.MarshalR4(r, opt)
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

// searchParams collects the parameters of a GET search, or of a POST _search (query string plus
// form body).
func searchParams(c *gin.Context) ([]search.NameValue, error) {
	params, err := search.ParseRawQuery(c.Request.URL.RawQuery)
	if err != nil {
		return nil, err
	}
	if c.Request.Method == http.MethodPost {
		mt, _, _ := mime.ParseMediaType(c.GetHeader("Content-Type"))
		if mt != "application/x-www-form-urlencoded" && c.Request.ContentLength != 0 {
			return nil, fhir.Errorf(http.StatusUnsupportedMediaType, fhir.CodeNotSupported, "_search takes an application/x-www-form-urlencoded body")
		}
		body, err := io.ReadAll(c.Request.Body)
		if err != nil {
			return nil, fmt.Errorf("read _search body: %w", err)
		}
		more, err := search.ParseRawQuery(string(body))
		if err != nil {
			return nil, err
		}
		params = append(params, more...)
	}
	return params, nil
}

func strict(c *gin.Context) bool {
	for _, p := range c.Request.Header.Values("Prefer") {
		for part := range strings.SplitSeq(p, ",") {
			if strings.TrimSpace(part) == "handling=strict" {
				return true
			}
		}
	}
	return false
}

func (s *Server) parseSearch(c *gin.Context, typ string, params []search.NameValue) (*search.Query, error) {
	q, page, err := s.reg.Parse(typ, params, search.Options{
		BaseURL: s.cfg.BaseURL, DefaultCount: s.cfg.DefaultCount, MaxCount: s.cfg.MaxCount, Strict: strict(c),
	})
	if err != nil {
		return nil, err
	}
	if page != "" {
		cur, err := s.decodeCursor(page, cursorBinding(q, version(c), principalOf(c).binding()))
		if err != nil {
			return nil, err
		}
		q.Cursor = cur
	}
	if err := s.confineChains(c, q); err != nil {
		return nil, err
	}
	return q, nil
}

func (s *Server) search(c *gin.Context) error {
	if s.practitionerPath(c) {
		return practitionerOnlyRead(c)
	}
	typ, err := s.resourceType(c)
	if err != nil {
		return err
	}
	params, err := searchParams(c)
	if err != nil {
		return err
	}
	a, err := s.authorize(c, typ, 's')
	if err != nil {
		return err
	}
	q, err := s.parseSearch(c, typ, params)
	if err != nil {
		return err
	}
	// Keyed on the parsed search (what was applied, never the raw query string) and on who asks:
	// a page made for one caller's view never serves another.
	key := searchKey(version(c), s.base(c), q, principalOf(c).binding())
	if body, ok := s.cache.get(key); ok {
		s.writeJSON(c, http.StatusOK, body)
		return nil
	}
	ctx := c.Request.Context()
	// The self and next links show the client's own parameters; the confinement below is added
	// after parsing (and is bound into the cursor through the principal).
	postFilter, deviceIDs, err := s.confine(ctx, q, a)
	if err != nil {
		return err
	}
	var deps []dep
	var gens []uint64
	if s.cache != nil {
		deps = searchDeps(q, version(c))
		if deviceIDs != nil {
			// The confinement itself came from the patient's associations (devicesOf): a new
			// or ended association changes which Devices the caller may see.
			deps = append(deps, dep{"DeviceAssociation", ""})
		}
		gens = s.cache.snapshot(deps) // before the search: a write racing it invalidates the entry
	}
	res, err := s.store.Search(ctx, q)
	if err != nil {
		return err
	}
	if postFilter {
		kept := res.Matches[:0]
		for _, m := range res.Matches {
			ok, err := s.visible(ctx, a, m, deviceIDs)
			if err != nil {
				return err
			}
			if ok {
				kept = append(kept, m)
			}
		}
		res.Matches, res.Total = kept, -1
	}
	if err := s.filterIncluded(ctx, c, res, deviceIDs); err != nil {
		return err
	}
	body, err := s.bundle(c, q, res)
	if err != nil {
		return err
	}
	s.cache.put(key, body, deps, gens)
	s.writeJSON(c, http.StatusOK, body)
	return nil
}

func (s *Server) link(c *gin.Context, q *search.Query, cur *search.Cursor) string {
	v := url.Values{}
	var b strings.Builder
	b.WriteString(s.base(c))
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
		v.Set("_page", s.encodeCursor(cur, cursorBinding(q, version(c), principalOf(c).binding())))
	}
	b.WriteString(v.Encode())
	return b.String()
}

// bundle assembles a searchset from stored bytes without decoding them on the R5 fast path.
func (s *Server) bundle(c *gin.Context, q *search.Query, res *store.Result) ([]byte, error) {
	ctx := c.Request.Context()
	p := projection{elements: q.Elements, summary: q.Summary}
	buf := make([]byte, 0, 512+len(res.Matches)*1024)
	buf = append(buf, `{"resourceType":"Bundle","type":"searchset"`...)
	if res.Total >= 0 && q.Total != "none" {
		buf = append(buf, `,"total":`...)
		buf = strconv.AppendInt(buf, int64(res.Total), 10)
	}
	buf = append(buf, `,"link":[{"relation":"self","url":`...)
	buf = appendJSONString(buf, s.link(c, q, nil))
	buf = append(buf, '}')
	if !q.SummaryCount {
		if res.Next != nil {
			buf = append(buf, `,{"relation":"next","url":`...)
			buf = appendJSONString(buf, s.link(c, q, res.Next))
			buf = append(buf, '}')
		}
		if res.Prev != nil {
			buf = append(buf, `,{"relation":"previous","url":`...)
			buf = appendJSONString(buf, s.link(c, q, res.Prev))
			buf = append(buf, '}')
		}
	}
	buf = append(buf, ']')
	base := s.base(c)
	n := 0
	add := func(e store.Entry, mode string) error {
		if version(c) == R4 && e.Type == "DeviceAssociation" {
			return nil // no R4 form; R4 clients read Device.patient instead
		}
		body, err := s.render(ctx, c, e, p)
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
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.Encode(s)
	return append(buf, strings.TrimSuffix(b.String(), "\n")...)
}

// --- writes (Patient only) ---

func (s *Server) writableType(c *gin.Context) (string, error) {
	if s.practitionerPath(c) {
		return "", practitionerOnlyRead(c)
	}
	typ, err := s.resourceType(c)
	if err != nil {
		return "", err
	}
	if typ != "Patient" {
		return "", methodNotAllowed(c, typ)
	}
	return typ, nil
}

func readBody(c *gin.Context, typ string) (fhir.Resource, error) {
	mt, _, err := mime.ParseMediaType(c.GetHeader("Content-Type"))
	if err != nil || (mt != "application/fhir+json" && mt != "application/json") {
		return nil, fhir.Errorf(http.StatusUnsupportedMediaType, fhir.CodeNotSupported, "the body must be application/fhir+json")
	}
	body, err := io.ReadAll(c.Request.Body)
	if err != nil {
		return nil, fmt.Errorf("read body: %w", err)
	}
	return fhir.Decode(body, typ)
}

// respondWrite answers a create or update per the Prefer header.
func (s *Server) respondWrite(c *gin.Context, status int, e store.Entry) {
	setVersionHeaders(c, e)
	loc := s.base(c) + "/" + e.Type + "/" + e.ID + "/_history/" + strconv.FormatInt(e.VersionID, 10)
	c.Header("Location", loc)
	switch c.GetHeader("Prefer") {
	case "return=minimal":
		c.Status(status)
		c.Writer.WriteHeaderNow()
	case "return=OperationOutcome":
		s.writeResource(c, status, fhir.NewOutcome("information", fhir.CodeInformational, fmt.Sprintf("%s/%s version %d stored", e.Type, e.ID, e.VersionID)))
	default:
		body, err := s.render(c.Request.Context(), c, e, projection{})
		if err != nil {
			s.fail(c, err)
			return
		}
		s.writeJSON(c, status, body)
	}
}

func (s *Server) create(c *gin.Context) error {
	typ, err := s.writableType(c)
	if err != nil {
		return err
	}
	cond := c.GetHeader("If-None-Exist")
	// Refused before anything is read or looked up, so the answer never depends on what is
	// stored (write.go).
	sa, err := s.authorizeCreate(c, typ, cond != "")
	if err != nil {
		return err
	}
	r, err := readBody(c, typ)
	if err != nil {
		return err
	}
	status, e, err := s.createOne(c.Request.Context(), typ, r, cond, sa)
	if err != nil {
		return err
	}
	s.respondWrite(c, status, e)
	return nil
}

func ifMatch(c *gin.Context) (int64, error) { return parseIfMatch(c.GetHeader("If-Match")) }

func (s *Server) update(c *gin.Context) error {
	typ, err := s.writableType(c)
	if err != nil {
		return err
	}
	id := c.Param("id")
	if !fhir.ValidID(id) {
		return fhir.Invalid(fhir.CodeValue, "invalid id %q", truncate(id))
	}
	if err := s.authorizeUpdate(c, typ, id); err != nil {
		return err
	}
	r, err := readBody(c, typ)
	if err != nil {
		return err
	}
	im, err := ifMatch(c)
	if err != nil {
		return err
	}
	status, e, err := s.updateOne(c.Request.Context(), typ, id, r, im)
	if err != nil {
		return err
	}
	s.respondWrite(c, status, e)
	return nil
}

// conditionalUpdate implements PUT [type]?criteria: no match creates, one match updates it,
// several fail with 412 (R5 http.html#cond-update).
func (s *Server) conditionalUpdate(c *gin.Context) error {
	typ, err := s.writableType(c)
	if err != nil {
		return err
	}
	if c.Request.URL.RawQuery == "" {
		return fhir.Errorf(http.StatusMethodNotAllowed, fhir.CodeNotSupported, "PUT needs an id or search criteria")
	}
	sa, err := s.authorizeConditionalUpdate(c, typ)
	if err != nil {
		return err
	}
	r, err := readBody(c, typ)
	if err != nil {
		return err
	}
	crit, err := conditionalCriteria(c.Request.URL.RawQuery)
	if err != nil {
		return err
	}
	im, err := ifMatch(c)
	if err != nil {
		return err
	}
	status, e, err := s.conditionalUpdateOne(c.Request.Context(), typ, r, crit, im, sa)
	if err != nil {
		return err
	}
	s.respondWrite(c, status, e)
	return nil
}
