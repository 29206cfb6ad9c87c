package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/fhir/search"
)

// request is a FHIR REST request as the handlers need it, decoded once by Server.handle from
// the gin context: path parameters, the negotiated version and base, the caller, the Prefer
// preferences, the projection and the query. Handlers read it and never the gin context, so
// every handler sees the same interpretation of the same request.
type request struct {
	ctx  context.Context
	http *http.Request // headers and body; the URL's query is in query
	// typ, id, sub and vid are the path parameters as given (typ is checked by resourceType).
	typ, id, sub, vid string
	version           Version
	// base is the FHIR base of the answer's version, for links, fullUrls and Location
	// (Server.baseFor).
	base      string
	principal *principal
	// binding is principal.Binding(), which cursors and cache keys bind to.
	binding   string
	requestID string
	// strict is Prefer: handling=strict; lenient handling, the default, ignores unknown
	// parameters (https://hl7.org/fhir/R5/search.html#errors).
	strict bool
	// preferReturn is the Prefer: return value of a write ("minimal", "representation",
	// "OperationOutcome" or ""), https://hl7.org/fhir/R5/http.html#ops.
	preferReturn string
	// proj is the _elements and _summary of a read.
	proj projection
	// rawQuery is the query string; query is it parsed (queryErr if it does not parse).
	rawQuery string
	query    []search.NameValue
	queryErr error

	// params memoizes searchParams.
	params     []search.NameValue
	paramsErr  error
	paramsDone bool
}

// newRequest decodes c once; it runs after the negotiate and authenticate middleware.
func (s *Server) newRequest(c *gin.Context) *request {
	v := version(c)
	p := principalOf(c)
	hr := c.Request
	r := &request{
		ctx: hr.Context(), http: hr,
		typ: c.Param("type"), id: c.Param("id"), sub: c.Param("sub"), vid: c.Param("vid"),
		version: v, base: s.baseFor(v), principal: p, binding: p.Binding(), requestID: requestID(c),
		rawQuery: hr.URL.RawQuery,
	}
	for _, h := range hr.Header.Values("Prefer") {
		for part := range strings.SplitSeq(h, ",") {
			k, val, _ := strings.Cut(strings.TrimSpace(part), "=")
			switch strings.TrimSpace(k) {
			case "handling":
				if strings.TrimSpace(val) == "strict" {
					r.strict = true
				}
			case "return":
				if r.preferReturn == "" {
					r.preferReturn = strings.Trim(strings.TrimSpace(val), `"`)
				}
			}
		}
	}
	r.query, r.queryErr = search.ParseRawQuery(r.rawQuery)
	q := hr.URL.Query()
	if el := q.Get("_elements"); el != "" {
		for e := range strings.SplitSeq(el, ",") {
			if e = strings.TrimSpace(e); e != "" {
				r.proj.elements = append(r.proj.elements, e)
			}
		}
	}
	r.proj.summary = q.Get("_summary")
	return r
}

// authorize is Server.authorize for this request's caller.
func (r *request) authorize(typ string, perm byte) (access, error) {
	return decide(r.principal, typ, perm)
}

// searchParams returns the parameters of a GET search, or of a POST _search (query string plus
// form body, read on the first call).
func (r *request) searchParams() ([]search.NameValue, error) {
	if r.paramsDone {
		return r.params, r.paramsErr
	}
	r.paramsDone = true
	r.params, r.paramsErr = r.readSearchParams()
	return r.params, r.paramsErr
}

func (r *request) readSearchParams() ([]search.NameValue, error) {
	if r.queryErr != nil {
		return nil, r.queryErr
	}
	params := r.query
	if r.http.Method == http.MethodPost {
		mt, _, _ := mime.ParseMediaType(r.http.Header.Get("Content-Type"))
		if mt != "application/x-www-form-urlencoded" && r.http.ContentLength != 0 {
			return nil, fhir.Errorf(http.StatusUnsupportedMediaType, fhir.CodeNotSupported, "_search takes an application/x-www-form-urlencoded body")
		}
		body, err := io.ReadAll(r.http.Body)
		if err != nil {
			return nil, fmt.Errorf("read _search body: %w", err)
		}
		more, err := search.ParseRawQuery(string(body))
		if err != nil {
			return nil, err
		}
		params = append(params[:len(params):len(params)], more...)
	}
	return params, nil
}

// readBody decodes the request body as a resource of typ.
func (r *request) readBody(typ string) (fhir.Resource, error) {
	mt, _, err := mime.ParseMediaType(r.http.Header.Get("Content-Type"))
	if err != nil || (mt != "application/fhir+json" && mt != "application/json") {
		return nil, fhir.Errorf(http.StatusUnsupportedMediaType, fhir.CodeNotSupported, "the body must be application/fhir+json")
	}
	body, err := io.ReadAll(r.http.Body)
	if err != nil {
		return nil, fmt.Errorf("read body: %w", err)
	}
	return fhir.Decode(body, typ)
}

// result is a FHIR handler's answer, written by Server.respond, the one writer of answers.
type result struct {
	status int
	// body is encoded FHIR JSON in the negotiated version. With body nil, resource is encoded
	// (converted to R4 when negotiated); with both nil the answer has no body (304, Prefer:
	// return=minimal).
	body     []byte
	resource fhir.Resource
	// searchset marks body as a searchset Bundle assembled by bundleWriter, whose entry array
	// (if any) ends the object: warnings become an entry there.
	searchset bool
	header    http.Header
	// warnings are conditions that did not stop the answer (a parameter ignored under lenient
	// handling, stored data served while a vendor is throttled). Each goes through outcomeFor,
	// the one mapper, and becomes an issue of severity warning in one OperationOutcome: in a
	// searchset an entry with search.mode outcome (https://hl7.org/fhir/R5/bundle.html#searchset);
	// in the answer to Prefer: return=OperationOutcome, further issues. FHIR has no other place
	// for them in a read or a history (the HTTP Warning header is obsolete, RFC 9111 §5.5): there
	// they are logged and dropped.
	warnings []error
}

// okResult returns a 200 result with an encoded body.
func okResult(body []byte) result { return result{status: http.StatusOK, body: body} }

// searchsetResult returns a 200 result with a searchset Bundle from bundleWriter.
func searchsetResult(body []byte, warnings []error) result {
	return result{status: http.StatusOK, body: body, searchset: true, warnings: warnings}
}

// setHeader adds a response header to the result.
func (res *result) setHeader(k, v string) {
	if res.header == nil {
		res.header = http.Header{}
	}
	res.header.Set(k, v)
}

// fhirHandler is the shape of the FHIR REST handlers: the request decoded once in, an answer or
// an error out; neither is written by the handler.
type fhirHandler func(r *request) (result, error)

// handle adapts a FHIR handler to gin: it decodes the request, then sends the result to the one
// writer (respond) or the error to the one mapper (fail).
func (s *Server) handle(h fhirHandler) gin.HandlerFunc {
	return func(c *gin.Context) {
		r := s.newRequest(c)
		res, err := h(r)
		if err != nil {
			s.fail(c, err)
			return
		}
		s.respond(c, r, res)
	}
}

// respond writes a handler's result: headers, then the body with its warnings.
func (s *Server) respond(c *gin.Context, r *request, res result) {
	for k, vs := range res.header {
		for _, v := range vs {
			c.Writer.Header().Add(k, v)
		}
	}
	status := res.status
	if status == 0 {
		status = http.StatusOK
	}
	var issues []fhir.OutcomeIssue
	if len(res.warnings) > 0 {
		issues = s.warningIssues(r, res.warnings)
	}
	switch {
	case res.body != nil:
		body := res.body
		if res.searchset && len(issues) > 0 {
			body = appendOutcomeEntry(body, s.outcomeJSON(r.version, &fhir.OperationOutcome{
				Base: fhir.Base{ResourceType: "OperationOutcome"}, Issue: issues}))
		} else if len(issues) > 0 {
			s.log.Debug("warnings dropped: no place for them in this answer", "request_id", r.requestID, "warnings", len(issues))
		}
		s.writeJSON(c, status, body)
	case res.resource != nil:
		if oo, isOO := res.resource.(*fhir.OperationOutcome); isOO && len(issues) > 0 {
			cp := *oo
			cp.Issue = append(slices.Clip(oo.Issue), issues...)
			res.resource = &cp
		} else if len(issues) > 0 {
			s.log.Debug("warnings dropped: no place for them in this answer", "request_id", r.requestID, "warnings", len(issues))
		}
		s.writeResource(c, status, res.resource)
	default:
		c.Status(status)
		c.Writer.WriteHeaderNow()
	}
}

// warningIssues maps warnings to OperationOutcome issues through outcomeFor, with severity
// warning.
func (s *Server) warningIssues(r *request, warnings []error) []fhir.OutcomeIssue {
	var out []fhir.OutcomeIssue
	for _, w := range warnings {
		_, oo := outcomeFor(w, r.requestID)
		if oo == nil {
			continue
		}
		s.log.Debug("answer with warning", "request_id", r.requestID, "err", w)
		for _, is := range oo.Issue {
			is.Severity = "warning"
			out = append(out, is)
		}
	}
	return out
}

// appendOutcomeEntry adds an entry holding the OperationOutcome oo, with search.mode outcome, to
// a searchset Bundle from bundleWriter: its entry array, when it has one, is its last member.
func appendOutcomeEntry(bundle []byte, oo json.RawMessage) []byte {
	entry := make([]byte, 0, len(oo)+48)
	entry = append(entry, `{"resource":`...)
	entry = append(entry, oo...)
	entry = append(entry, `,"search":{"mode":"outcome"}}`...)
	out := make([]byte, 0, len(bundle)+len(entry)+16)
	// A page without matches ends with its link array instead. `,"entry":[` cannot occur in
	// the stored resources (no element of theirs is named entry; a quote inside a string is
	// escaped).
	if n := len(bundle); n >= 2 && bundle[n-2] == ']' && bundle[n-1] == '}' && bytes.Contains(bundle, []byte(`,"entry":[`)) {
		out = append(out, bundle[:n-2]...)
		out = append(out, ',')
		out = append(out, entry...)
		return append(out, "]}"...)
	}
	out = append(out, bundle[:len(bundle)-1]...)
	out = append(out, `,"entry":[`...)
	out = append(out, entry...)
	return append(out, "]}"...)
}

// headerError is an error answered with a response header of its own: Allow on a 405
// (RFC 9110 §15.5.6), the deleted version's ETag on a 410.
type headerError struct {
	err        error
	key, value string
}

func (e *headerError) Error() string { return e.err.Error() }
func (e *headerError) Unwrap() error { return e.err }

// withHeader returns err answered with the header key: value.
func withHeader(err error, key, value string) error {
	return &headerError{err: err, key: key, value: value}
}

// ignoredParams lists, as warnings, the parameters a lenient parse left out of q (unknown or
// unsupported ones; https://hl7.org/fhir/R5/search.html#errors): those given that are neither
// applied nor handled outside Applied (_count, _page, _format, _pretty, empty values).
func ignoredParams(params []search.NameValue, q *search.Query) []error {
	applied := map[search.NameValue]int{}
	for _, nv := range q.Applied {
		applied[nv]++
	}
	var out []error
	for _, nv := range params {
		switch {
		case nv.Name == "_count" || nv.Name == "_page" || nv.Name == "_format" || nv.Name == "_pretty":
			continue
		case applied[nv] > 0:
			applied[nv]--
			continue
		case nv.Value == "":
			continue // empty parameters are ignored (https://hl7.org/fhir/R5/search.html#errors)
		}
		out = append(out, fhir.Errorf(http.StatusBadRequest, fhir.CodeNotSupported,
			"parameter %q is not supported here and was ignored (Prefer: handling=strict refuses it)", truncate(nv.Name)))
	}
	return out
}
