package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/store"
)

// POST [base] with a batch or transaction Bundle (https://hl7.org/fhir/R5/http.html#transaction):
// how an EHR registers many patients in one request. Entries may create Patients (POST, with
// request.ifNoneExist for a conditional create) and update them (PUT Patient/{id}, conditional
// PUT Patient?criteria). Each entry is authorized exactly as the single request would be
// (write.go). A batch runs its entries one by one, each answered on its own; a transaction is all
// or nothing in one store transaction (store.Transactor) and is offered only by stores that have
// them: the embedded SQLite store, not MongoDB.

// maxBundleEntries bounds the entries of one batch or transaction (a server may refuse large
// Bundles, https://hl7.org/fhir/R5/http.html#transaction). An entry may be a conditional write —
// a search and a write — so 100 keeps one request to a few hundred store calls; MaxBodyBytes
// bounds the body as for every request.
const maxBundleEntries = 100

// isTransactor reports whether st writes several resources atomically.
func isTransactor(st store.Store) bool {
	_, ok := st.(store.Transactor)
	return ok
}

// entryError fails a whole request because of one Bundle entry; its OperationOutcome names the
// entry (outcomeFor).
type entryError struct {
	index int
	label string // "POST Patient", "PUT Patient/p1"; "" if the request could not be read
	err   error
}

func (e *entryError) Error() string {
	return fmt.Sprintf("%s: %v", e.where(), e.err)
}

func (e *entryError) Unwrap() error { return e.err }

func (e *entryError) where() string {
	w := "Bundle.entry[" + strconv.Itoa(e.index) + "]"
	if e.label != "" {
		w += " (" + e.label + ")"
	}
	return w
}

// txEntry is one entry of a batch or transaction, checked and authorized.
type txEntry struct {
	index   int
	label   string
	post    bool   // POST [type], else PUT
	typ, id string // id: PUT [type]/[id]
	// criteria are a conditional update's (PUT [type]?criteria), ifNoneExist a conditional
	// create's.
	criteria, ifNoneExist string
	ifMatch               int64
	fullURL               string
	raw                   json.RawMessage
	r                     fhir.Resource
	sa                    access // what the criteria may see
}

func (s *Server) bundleTx(r *request) (result, error) {
	res, err := r.readBody("Bundle")
	if err != nil {
		return result{}, err
	}
	b := res.(*fhir.Bundle)
	if b.BundleType != "batch" && b.BundleType != "transaction" {
		return result{}, fhir.Invalid(fhir.CodeInvalid, "POST to the base takes a batch or transaction Bundle, not one of type %q", truncate(b.BundleType))
	}
	if len(b.Entry) > maxBundleEntries {
		return result{}, fhir.Invalid(fhir.CodeTooCostly, "a %s Bundle may hold at most %d entries; this one has %d", b.BundleType, maxBundleEntries, len(b.Entry))
	}
	if b.BundleType == "batch" {
		return s.batch(r, b)
	}
	return s.transaction(r, b)
}

// batch runs the entries in order, each on its own: a failed entry is answered with its status
// and OperationOutcome and the others go on.
func (s *Server) batch(r *request, b *fhir.Bundle) (result, error) {
	ctx := r.ctx
	out := make([]fhir.BundleEntry, len(b.Entry))
	for i := range b.Entry {
		if err := ctx.Err(); err != nil {
			// Out of time: the entries left are not attempted, and say so.
			out[i] = s.failedEntry(r, err)
			continue
		}
		e, err := s.checkEntry(r, i, b.Entry[i])
		if err != nil {
			out[i] = s.failedEntry(r, err)
			continue
		}
		var status int
		var stored store.Entry
		switch {
		case e.post:
			status, stored, err = s.createOne(ctx, e.typ, e.r, e.ifNoneExist, e.sa)
		case e.id != "":
			status, stored, err = s.updateOne(ctx, e.typ, e.id, e.r, e.ifMatch)
		default:
			status, stored, err = s.conditionalUpdateOne(ctx, e.typ, e.r, e.criteria, e.ifMatch, e.sa)
		}
		if err != nil {
			out[i] = s.failedEntry(r, err)
			continue
		}
		out[i] = s.entryResponse(r, status, stored)
	}
	return result{status: http.StatusOK, resource: &fhir.Bundle{Base: fhir.Base{ResourceType: "Bundle"}, BundleType: "batch-response", Entry: out}}, nil
}

// transaction resolves every entry first (authorization, bodies, conditions), then writes them
// all in one store transaction: any failure fails the whole request with the entry's status and
// an OperationOutcome naming it, and nothing is written.
func (s *Server) transaction(r *request, b *fhir.Bundle) (result, error) {
	tx, ok := s.store.(store.Transactor)
	if !ok {
		return result{}, fhir.Errorf(http.StatusUnprocessableEntity, fhir.CodeNotSupported,
			"transactions are not available on this server's store (MongoDB, without multi-document transactions): send a batch Bundle; "+
				"its conditional creates and updates can be sent again safely if it fails part-way")
	}
	ctx := r.ctx
	entries := make([]txEntry, len(b.Entry))
	for i := range b.Entry {
		e, err := s.checkEntry(r, i, b.Entry[i])
		if err != nil {
			return result{}, err
		}
		entries[i] = e
	}
	// Processing order (http.html#transaction): POST, then PUT; no DELETE, PATCH or GET here.
	var order []int
	for _, post := range []bool{true, false} {
		for i, e := range entries {
			if e.post == post {
				order = append(order, i)
			}
		}
	}
	// Conditions are resolved under createMu, as for single requests; identifier conditions are
	// re-checked atomically inside the store transaction (TxOp.UniqueSystem), so a registration
	// by another instance since the search fails the transaction rather than duplicating.
	s.createMu.Lock()
	defer s.createMu.Unlock()
	plans := make([]writePlan, len(entries))
	for _, i := range order {
		e := &entries[i]
		var p writePlan
		var err error
		switch {
		case e.post:
			p, err = s.planCreate(ctx, e.typ, e.r, e.ifNoneExist, e.sa)
		case e.id != "":
			p, err = planUpdate(e.typ, e.id, e.r, e.ifMatch)
		default:
			p, err = s.planConditionalUpdate(ctx, e.typ, e.r, e.criteria, e.ifMatch, e.sa)
		}
		if err != nil {
			return result{}, &entryError{index: i, label: e.label, err: err}
		}
		if p.match == nil && p.op.Resource.Common().ID == "" {
			p.op.Resource.Common().ID = store.NewID()
		}
		plans[i] = p
	}
	if err := checkOverlap(entries, plans, order); err != nil {
		return result{}, err
	}
	if err := resolveURNs(entries, plans, order); err != nil {
		return result{}, err
	}
	var ops []store.TxOp
	var opEntry []int
	for _, i := range order {
		if plans[i].match == nil {
			ops = append(ops, plans[i].op)
			opEntry = append(opEntry, i)
		}
	}
	res, err := tx.Transact(ctx, ops)
	if err != nil {
		var te *store.TxError
		if errors.As(err, &te) && te.Index >= 0 && te.Index < len(opEntry) {
			i := opEntry[te.Index]
			return result{}, &entryError{index: i, label: entries[i].label, err: te.Err}
		}
		return result{}, err
	}
	out := make([]fhir.BundleEntry, len(entries))
	for k, tr := range res {
		status := http.StatusOK
		if tr.Created {
			status = http.StatusCreated
		}
		out[opEntry[k]] = s.entryResponse(r, status, tr.Entry)
	}
	for i, p := range plans {
		if p.match != nil {
			out[i] = s.entryResponse(r, http.StatusOK, *p.match)
		}
	}
	return result{status: http.StatusOK, resource: &fhir.Bundle{Base: fhir.Base{ResourceType: "Bundle"}, BundleType: "transaction-response", Entry: out}}, nil
}

// checkEntry parses entry i's request, authorizes it as the single request would be (before
// its resource is decoded), and decodes the resource. Errors are *entryError.
func (s *Server) checkEntry(r *request, i int, en fhir.BundleEntry) (txEntry, error) {
	e := txEntry{index: i, fullURL: en.FullURL, raw: en.Resource}
	fail := func(err error) (txEntry, error) { return txEntry{}, &entryError{index: i, label: e.label, err: err} }
	rq := en.Request
	if rq == nil {
		return fail(fhir.Invalid(fhir.CodeRequired, "Bundle.entry[%d].request: missing required element", i))
	}
	path, rawQuery, err := s.entryPath(rq.URL)
	if err != nil {
		return fail(err)
	}
	e.label = truncate(rq.Method + " " + path) // never the query: its values may identify a patient
	if rawQuery != "" {
		e.label += "?…"
	}
	typ, id, instance := strings.Cut(path, "/")
	if typ == "" || strings.Contains(id, "/") {
		return fail(fhir.Invalid(fhir.CodeNotSupported, "request.url %q: only [type] and [type]/[id] are supported", truncate(rq.URL)))
	}
	e.typ, e.id = typ, id
	if !s.reg.Supports(typ) {
		return fail(fhir.Errorf(http.StatusNotFound, fhir.CodeNotSupported, "resource type %q is not supported", truncate(typ)))
	}
	switch rq.Method {
	case http.MethodPost, http.MethodPut:
	default:
		return fail(fhir.Errorf(http.StatusMethodNotAllowed, fhir.CodeNotSupported,
			"request.method %q: batch and transaction entries may only POST or PUT Patients", truncate(rq.Method)))
	}
	if typ != "Patient" {
		return fail(fhir.Errorf(http.StatusMethodNotAllowed, fhir.CodeNotSupported, "%s %s is not allowed: only Patients are written over REST (%s is written only by the sync pipeline)", rq.Method, typ, typ))
	}
	if rq.IfNoneMatch != "" || rq.IfModifiedSince != "" {
		return fail(fhir.Invalid(fhir.CodeNotSupported, "request.ifNoneMatch and request.ifModifiedSince apply to reads, which entries here are not"))
	}
	e.post = rq.Method == http.MethodPost
	switch {
	case e.post:
		if instance || rawQuery != "" {
			return fail(fhir.Invalid(fhir.CodeInvalid, "POST creates at request.url [type], without id or query (ifNoneExist holds the conditions)"))
		}
		if rq.IfMatch != "" {
			return fail(fhir.Invalid(fhir.CodeInvalid, "request.ifMatch does not apply to POST"))
		}
		e.ifNoneExist = rq.IfNoneExist
		// Accepted as the query alone ("identifier=…") or with its type ("Patient?identifier=…").
		if t, q, ok := strings.Cut(e.ifNoneExist, "?"); ok && (t == "" || t == typ) {
			e.ifNoneExist = q
		}
		e.sa, err = s.authorizeCreate(r.principal, typ, e.ifNoneExist != "")
	case instance:
		if rq.IfNoneExist != "" {
			return fail(fhir.Invalid(fhir.CodeInvalid, "request.ifNoneExist applies to POST only"))
		}
		if !fhir.ValidID(id) {
			return fail(fhir.Invalid(fhir.CodeValue, "invalid id %q", truncate(id)))
		}
		err = s.authorizeUpdate(r.principal, typ, id)
	default:
		if rq.IfNoneExist != "" {
			return fail(fhir.Invalid(fhir.CodeInvalid, "request.ifNoneExist applies to POST only"))
		}
		if e.criteria, err = conditionalCriteria(rawQuery); err != nil {
			return fail(err)
		}
		if e.criteria == "" {
			return fail(fhir.Invalid(fhir.CodeInvalid, "PUT needs an id or search criteria in request.url"))
		}
		e.sa, err = s.authorizeConditionalUpdate(r.principal, typ)
	}
	if err != nil {
		return fail(err)
	}
	if e.ifMatch, err = parseIfMatch(rq.IfMatch); err != nil {
		return fail(err)
	}
	if len(e.raw) == 0 {
		return fail(fhir.Invalid(fhir.CodeRequired, "Bundle.entry[%d].resource: missing required element", i))
	}
	if e.r, err = fhir.Decode(e.raw, typ); err != nil {
		return fail(err)
	}
	return e, nil
}

// entryPath splits request.url, relative to the base or absolute on it (R5 or R4 base), into
// its path and query.
func (s *Server) entryPath(raw string) (path, rawQuery string, err error) {
	u := raw
	if strings.Contains(u, "://") {
		rest, ok := strings.CutPrefix(u, s.cfg.BaseURL+"/r4/")
		if !ok {
			rest, ok = strings.CutPrefix(u, s.cfg.BaseURL+"/")
		}
		if !ok {
			return "", "", fhir.Invalid(fhir.CodeNotSupported, "request.url %q is not on this server's base", truncate(raw))
		}
		u = rest
	}
	path, rawQuery, _ = strings.Cut(strings.TrimPrefix(u, "/"), "?")
	if path == "" {
		return "", "", fhir.Invalid(fhir.CodeRequired, "request.url: missing resource type")
	}
	return path, rawQuery, nil
}

// checkOverlap fails a transaction whose entries touch the same resource, or register the same
// identifier, twice: "If any resource identities (including resolved identities from
// conditional update/delete) overlap …, then the transaction SHALL fail" (http.html#trules).
func checkOverlap(entries []txEntry, plans []writePlan, order []int) error {
	seen := map[string]int{}
	for _, i := range order {
		p := plans[i]
		var keys []string
		if p.match != nil {
			keys = append(keys, p.match.Type+"/"+p.match.ID)
		} else {
			keys = append(keys, entries[i].typ+"/"+p.op.Resource.Common().ID)
		}
		if p.op.UniqueSystem != "" {
			keys = append(keys, "identifier "+p.op.UniqueSystem+"|"+p.op.UniqueValue)
		}
		for _, k := range keys {
			if j, dup := seen[k]; dup {
				return &entryError{index: i, label: entries[i].label,
					err: fhir.Invalid(fhir.CodeBusinessRule, "%s is also written by Bundle.entry[%d]: a transaction may write each resource once", k, j)}
			}
			seen[k] = i
		}
	}
	return nil
}

// resolveURNs replaces references to the urn:uuid fullUrls of the transaction's creates by the
// ids they get (http.html#trules: "the server SHALL … update … references").
func resolveURNs(entries []txEntry, plans []writePlan, order []int) error {
	ids := map[string]string{}
	for _, i := range order {
		if fu := entries[i].fullURL; entries[i].post && strings.HasPrefix(fu, "urn:uuid:") {
			if p := plans[i]; p.match != nil {
				ids[fu] = p.match.Type + "/" + p.match.ID
			} else {
				ids[fu] = entries[i].typ + "/" + p.op.Resource.Common().ID
			}
		}
	}
	if len(ids) == 0 {
		return nil
	}
	for _, i := range order {
		p := &plans[i]
		if p.match != nil || !bytes.Contains(entries[i].raw, []byte("urn:uuid:")) {
			continue
		}
		r, err := rewriteReferences(p.op.Resource, ids)
		if err != nil {
			return &entryError{index: i, label: entries[i].label, err: err}
		}
		p.op.Resource = r
	}
	return nil
}

// rewriteReferences returns r with every Reference.reference found in ids replaced.
func rewriteReferences(r fhir.Resource, ids map[string]string) (fhir.Resource, error) {
	data, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", r.Type(), err)
	}
	var doc any
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("decode %s: %w", r.Type(), err)
	}
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				if s, ok := e.(string); ok && k == "reference" {
					if to, ok := ids[s]; ok {
						x[k] = to
					}
					continue
				}
				walk(e)
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	walk(doc)
	if data, err = json.Marshal(doc); err != nil {
		return nil, fmt.Errorf("encode %s: %w", r.Type(), err)
	}
	return fhir.Decode(data, r.Type())
}

// entryResponse is the response entry of a stored write: status, Location, ETag and
// Last-Modified as the single request answers them, and the body per the Prefer header.
func (s *Server) entryResponse(r *request, status int, e store.Entry) fhir.BundleEntry {
	url := r.base + "/" + e.Type + "/" + e.ID
	en := fhir.BundleEntry{FullURL: url, Response: &fhir.BundleResponse{
		Status:       statusLine(status),
		Location:     url + "/_history/" + strconv.FormatInt(e.VersionID, 10),
		Etag:         etag(e.VersionID),
		LastModified: fhir.Instant(e.LastUpdated),
	}}
	switch r.preferReturn {
	case "minimal":
	case "OperationOutcome":
		en.Response.Outcome = s.outcomeJSON(r.version, fhir.NewOutcome("information", fhir.CodeInformational, fmt.Sprintf("%s/%s version %d stored", e.Type, e.ID, e.VersionID)))
	default:
		body, err := s.render(r, e, projection{})
		if err != nil {
			// Stored, but this representation cannot show it (an R4 answer, say).
			_, oo := outcomeFor(err, r.requestID)
			if oo != nil {
				oo.Issue[0].Severity = "warning"
				en.Response.Outcome = s.outcomeJSON(r.version, oo)
			}
			break
		}
		en.Resource = body
	}
	return en
}

// failedEntry is the response entry of a batch entry that failed.
func (s *Server) failedEntry(r *request, err error) fhir.BundleEntry {
	rid := r.requestID
	var ee *entryError
	if errors.As(err, &ee) {
		err = ee.err // the entry answers for itself, with the status its single request would get
	}
	status, oo := outcomeFor(err, rid)
	switch {
	case status == statusClientClosed:
		oo = fhir.NewOutcome("error", fhir.CodeTimeout, "the request was cancelled")
	case status >= 500:
		s.log.Error("batch entry failed", "request_id", rid, "status", status, "err", err)
	default:
		s.log.Debug("batch entry rejected", "request_id", rid, "status", status, "err", err)
	}
	return fhir.BundleEntry{Response: &fhir.BundleResponse{Status: statusLine(status), Outcome: s.outcomeJSON(r.version, oo)}}
}

// outcomeJSON encodes an OperationOutcome for the version being served.
func (s *Server) outcomeJSON(v Version, oo *fhir.OperationOutcome) json.RawMessage {
	var b []byte
	var err error
	if v == R4 {
		b, err = fhir.MarshalR4(oo, fhir.R4Options{})
	} else {
		b, err = json.Marshal(oo)
	}
	if err != nil {
		s.log.Error("encode outcome", "err", err)
		return json.RawMessage(`{"resourceType":"OperationOutcome","issue":[{"severity":"fatal","code":"exception","diagnostics":"internal error"}]}`)
	}
	return b
}

// statusLine is an HTTP status as Bundle.entry.response.status carries it: "201 Created".
func statusLine(status int) string {
	if t := http.StatusText(status); t != "" {
		return strconv.Itoa(status) + " " + t
	}
	return strconv.Itoa(status)
}
