package publish_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"
)

// fakeEHR is an independent FHIR server for the tests: it implements a transaction of
// conditional updates on identifier (https://hl7.org/fhir/R5/http.html#trules) with fullUrl and
// conditional references, all or nothing, stores by identifier and counts. It shares no code
// with the publisher. Any literal reference it cannot resolve among its own resources fails the
// transaction with 400, so an ohx-local id leaking into the bundle is caught.
type fakeEHR struct {
	t          testing.TB
	srv        *httptest.Server
	version    string                  // the fhirVersion MIME parameter it requires ("4.0", "5.0")
	accept     func(token string) bool // the bearer tokens it accepts (nil: no token needed)
	mu         sync.Mutex
	res        map[string]*ehrResource // "Type/id"
	nextID     int
	bundles    []map[string]any // the transactions it accepted or refused, as received
	fail       []ehrFailure     // answers given before any transaction is processed
	authFailed int
}

type ehrResource struct {
	typ, id string
	version int
	body    map[string]any
}

type ehrFailure struct {
	status     int
	retryAfter string
	code       string // OperationOutcome issue code
}

func newFakeEHR(t testing.TB, version string) *fakeEHR {
	f := &fakeEHR{t: t, version: version, res: map[string]*ehrResource{}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeEHR) URL() string { return f.srv.URL + "/fhir" }

// addPatient stores a Patient known by an identifier, as the EHR has it before ohx publishes.
func (f *fakeEHR) addPatient(system, value string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nextID++
	id := fmt.Sprintf("pt-%d", f.nextID)
	f.res["Patient/"+id] = &ehrResource{typ: "Patient", id: id, version: 1, body: map[string]any{
		"resourceType": "Patient", "id": id, "identifier": []any{map[string]any{"system": system, "value": value}},
	}}
	return "Patient/" + id
}

// failNext makes the next transactions fail with these answers, in turn.
func (f *fakeEHR) failNext(fs ...ehrFailure) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail = append(f.fail, fs...)
}

func (f *fakeEHR) received() []map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]map[string]any(nil), f.bundles...)
}

// ofType returns the stored resources of a type.
func (f *fakeEHR) ofType(typ string) []*ehrResource {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*ehrResource
	for _, r := range f.res {
		if r.typ == typ {
			out = append(out, r)
		}
	}
	return out
}

// byIdentifier returns the stored resource of a type carrying the identifier, nil if none.
func (f *fakeEHR) byIdentifier(typ, system, value string) *ehrResource {
	f.mu.Lock()
	defer f.mu.Unlock()
	ms := match(f.res, typ, system, value)
	if len(ms) == 1 {
		return ms[0]
	}
	return nil
}

func match(res map[string]*ehrResource, typ, system, value string) []*ehrResource {
	var out []*ehrResource
	for _, r := range res {
		if r.typ != typ {
			continue
		}
		ids, _ := r.body["identifier"].([]any)
		for _, i := range ids {
			m, _ := i.(map[string]any)
			if m["system"] == system && m["value"] == value {
				out = append(out, r)
				break
			}
		}
	}
	return out
}

func (f *fakeEHR) outcome(w http.ResponseWriter, status int, code, diag string) {
	w.Header().Set("Content-Type", "application/fhir+json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"resourceType": "OperationOutcome", "issue": []any{
		map[string]any{"severity": "error", "code": code, "diagnostics": diag},
	}})
}

func (f *fakeEHR) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/fhir" {
		f.t.Errorf("fake EHR: unexpected %s %s", r.Method, r.URL.Path)
		f.outcome(w, 404, "not-found", "unknown endpoint")
		return
	}
	tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if f.accept != nil && !f.accept(tok) {
		f.mu.Lock()
		f.authFailed++
		f.mu.Unlock()
		f.outcome(w, 401, "login", "bad token")
		return
	}
	ct := r.Header.Get("Content-Type")
	if !strings.HasPrefix(ct, "application/fhir+json") || !strings.Contains(ct, "fhirVersion="+f.version) {
		f.outcome(w, 415, "not-supported", "content type "+ct)
		return
	}
	raw, _ := io.ReadAll(r.Body)
	var b map[string]any
	d := json.NewDecoder(strings.NewReader(string(raw)))
	d.UseNumber()
	if err := d.Decode(&b); err != nil {
		f.outcome(w, 400, "structure", err.Error())
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.bundles = append(f.bundles, b)
	if len(f.fail) > 0 {
		fl := f.fail[0]
		f.fail = f.fail[1:]
		if fl.retryAfter != "" {
			w.Header().Set("Retry-After", fl.retryAfter)
		}
		f.outcome(w, fl.status, fl.code, "injected failure")
		return
	}
	resp, status, code, diag := f.transact(b)
	if status != 200 {
		f.outcome(w, status, code, diag)
		return
	}
	w.Header().Set("Content-Type", "application/fhir+json")
	json.NewEncoder(w).Encode(resp)
}

// transact processes a transaction on a copy of the resources and keeps the copy only if every
// entry succeeded.
func (f *fakeEHR) transact(b map[string]any) (map[string]any, int, string, string) {
	if b["resourceType"] != "Bundle" || b["type"] != "transaction" {
		return nil, 400, "invalid", "not a transaction Bundle"
	}
	work := map[string]*ehrResource{}
	for k, v := range f.res {
		c := *v
		work[k] = &c
	}
	next := f.nextID
	entries, _ := b["entry"].([]any)
	type op struct {
		target *ehrResource
		body   map[string]any
		create bool
	}
	var ops []op
	full := map[string]string{} // fullUrl → Type/id
	for i, e := range entries {
		en, _ := e.(map[string]any)
		req, _ := en["request"].(map[string]any)
		res, _ := en["resource"].(map[string]any)
		if req["method"] != "PUT" {
			return nil, 400, "not-supported", fmt.Sprintf("entry %d: method %v", i, req["method"])
		}
		typ, query, ok := strings.Cut(fmt.Sprint(req["url"]), "?")
		if !ok || res["resourceType"] != typ {
			return nil, 400, "invalid", fmt.Sprintf("entry %d: url %v for a %v", i, req["url"], res["resourceType"])
		}
		if _, has := res["id"]; has {
			return nil, 400, "invalid", fmt.Sprintf("entry %d: a conditional update with an id", i)
		}
		system, value, err := identifierParam(query)
		if err != nil {
			return nil, 400, "invalid", fmt.Sprintf("entry %d: %v", i, err)
		}
		if len(match(map[string]*ehrResource{"x": {typ: typ, body: res}}, typ, system, value)) != 1 {
			return nil, 400, "invalid", fmt.Sprintf("entry %d: the resource does not carry the identifier it is matched by", i)
		}
		ms := match(work, typ, system, value)
		var t *ehrResource
		switch len(ms) {
		case 0:
			next++
			t = &ehrResource{typ: typ, id: fmt.Sprintf("%s-%d", strings.ToLower(typ), next)}
			work[typ+"/"+t.id] = t
		case 1:
			t = ms[0]
		default:
			return nil, 412, "multiple-matches", fmt.Sprintf("entry %d: several matches", i)
		}
		if fu, _ := en["fullUrl"].(string); fu != "" {
			full[fu] = typ + "/" + t.id
		}
		ops = append(ops, op{target: t, body: res, create: len(ms) == 0})
	}
	var out []any
	for i, o := range ops {
		body, err := resolveRefs(o.body, full, work)
		if err != nil {
			return nil, 400, "invalid", fmt.Sprintf("entry %d: %v", i, err)
		}
		m := body.(map[string]any)
		m["id"] = o.target.id
		status := "200 OK"
		switch {
		case o.create:
			o.target.version = 1
			status = "201 Created"
		case sameContent(o.target.body, m):
			// An update without change makes no new version (as HAPI FHIR does).
		default:
			o.target.version++
		}
		o.target.body = m
		out = append(out, map[string]any{"response": map[string]any{"status": status,
			"location": fmt.Sprintf("%s/%s/_history/%d", o.target.typ, o.target.id, o.target.version)}})
	}
	f.res, f.nextID = work, next
	return map[string]any{"resourceType": "Bundle", "type": "transaction-response", "entry": out}, 200, "", ""
}

// identifierParam parses identifier=system|value (search escaping: \| \, \$ \\).
func identifierParam(query string) (string, string, error) {
	v, err := url.ParseQuery(query)
	if err != nil || len(v) != 1 || len(v["identifier"]) != 1 {
		return "", "", fmt.Errorf("want one identifier parameter, got %q", query)
	}
	s := v["identifier"][0]
	var parts []string
	var cur strings.Builder
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
		case s[i] == '|':
			parts = append(parts, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(s[i])
		}
	}
	parts = append(parts, cur.String())
	if len(parts) != 2 || parts[0] == "" || parts[1] == "" {
		return "", "", fmt.Errorf("want system|value, got %q", s)
	}
	return parts[0], parts[1], nil
}

// resolveRefs replaces fullUrls and conditional references by the ids they resolve to; a
// literal reference must name a stored resource.
func resolveRefs(v any, full map[string]string, res map[string]*ehrResource) (any, error) {
	switch x := v.(type) {
	case map[string]any:
		m := map[string]any{}
		for k, e := range x {
			if s, ok := e.(string); ok && k == "reference" {
				switch typ, q, cond := strings.Cut(s, "?"); {
				case strings.HasPrefix(s, "urn:uuid:"):
					to, ok := full[s]
					if !ok {
						return nil, fmt.Errorf("reference %s names no entry", s)
					}
					s = to
				case cond:
					system, value, err := identifierParam(q)
					if err != nil {
						return nil, err
					}
					ms := match(res, typ, system, value)
					if len(ms) != 1 {
						return nil, fmt.Errorf("conditional reference %s matches %d resources", s, len(ms))
					}
					s = typ + "/" + ms[0].id
				default:
					if res[s] == nil {
						return nil, fmt.Errorf("reference %s does not resolve", s)
					}
				}
				m[k] = s
				continue
			}
			ne, err := resolveRefs(e, full, res)
			if err != nil {
				return nil, err
			}
			m[k] = ne
		}
		return m, nil
	case []any:
		s := make([]any, len(x))
		for i, e := range x {
			ne, err := resolveRefs(e, full, res)
			if err != nil {
				return nil, err
			}
			s[i] = ne
		}
		return s, nil
	}
	return v, nil
}

func sameContent(a, b map[string]any) bool {
	strip := func(m map[string]any) map[string]any {
		c := map[string]any{}
		for k, v := range m {
			if k != "meta" && k != "id" {
				c[k] = v
			}
		}
		return c
	}
	return reflect.DeepEqual(strip(a), strip(b))
}
