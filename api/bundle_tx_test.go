package api_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/openhealthexchange/ohx/api"
	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/fhir/search"
	"github.com/openhealthexchange/ohx/store"
	"github.com/openhealthexchange/ohx/store/sqlite"
)

// txEntry is one entry of a test batch or transaction.
type txEntry struct {
	method, url string
	resource    string // JSON, "" for none
	ifNoneExist string
	ifMatch     string
	fullURL     string
}

func patientJSON(id, mrn, family string) string {
	idPart := ""
	if id != "" {
		idPart = `"id":"` + id + `",`
	}
	return `{"resourceType":"Patient",` + idPart + `"identifier":[{"system":"urn:mrn","value":"` + mrn + `"}],"name":[{"family":"` + family + `"}]}`
}

func bundleJSON(typ string, entries ...txEntry) string {
	var b strings.Builder
	b.WriteString(`{"resourceType":"Bundle","type":"` + typ + `","entry":[`)
	for i, e := range entries {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('{')
		if e.fullURL != "" {
			b.WriteString(`"fullUrl":"` + e.fullURL + `",`)
		}
		if e.resource != "" {
			b.WriteString(`"resource":` + e.resource + `,`)
		}
		rq := map[string]string{"method": e.method, "url": e.url}
		if e.ifNoneExist != "" {
			rq["ifNoneExist"] = e.ifNoneExist
		}
		if e.ifMatch != "" {
			rq["ifMatch"] = e.ifMatch
		}
		js, _ := json.Marshal(rq)
		b.WriteString(`"request":` + string(js) + `}`)
	}
	b.WriteString(`]}`)
	return b.String()
}

var fhirJSONType = []string{"Content-Type", "application/fhir+json"}

func (e *env) postBundle(path, body string, headers ...string) response {
	e.t.Helper()
	return e.do("POST", path, body, append(slices.Clone(fhirJSONType), headers...)...)
}

// entryStatuses returns the response.status of every entry.
func entryStatuses(t *testing.T, b fhir.Bundle) []string {
	t.Helper()
	var out []string
	for i, en := range b.Entry {
		if en.Response == nil {
			t.Fatalf("entry %d has no response", i)
		}
		out = append(out, en.Response.Status)
	}
	return out
}

// patientCount is the number of live Patients in the store.
func (e *env) patientCount() int {
	e.t.Helper()
	q, _, err := search.DefaultRegistry().Parse("Patient", []search.NameValue{{Name: "_summary", Value: "count"}}, search.Options{})
	if err != nil {
		e.t.Fatal(err)
	}
	res, err := e.store.Search(e.t.Context(), q)
	if err != nil {
		e.t.Fatal(err)
	}
	return res.Total
}

func (e *env) byMRN(mrn string) []string {
	e.t.Helper()
	ids, err := e.store.FindByIdentifier(e.t.Context(), "Patient", "urn:mrn", mrn)
	if err != nil {
		e.t.Fatal(err)
	}
	return ids
}

func TestBatch(t *testing.T) {
	e := newEnv(t)
	e.seed() // Patients p1 (mrn-p1) and p2
	entries := []struct {
		entry  txEntry
		status string
	}{
		{txEntry{method: "POST", url: "Patient", resource: patientJSON("", "b1", "One"), ifNoneExist: "identifier=urn:mrn|b1"}, "201 Created"},
		// Entries run in order: the same registration again finds the first.
		{txEntry{method: "POST", url: "Patient", resource: patientJSON("", "b1", "Again"), ifNoneExist: "Patient?identifier=urn:mrn|b1"}, "200 OK"},
		{txEntry{method: "PUT", url: "Patient/p-new", resource: patientJSON("p-new", "b2", "New")}, "201 Created"},
		{txEntry{method: "PUT", url: e.base + "/Patient?identifier=urn:mrn|b3", resource: patientJSON("", "b3", "Three")}, "201 Created"},
		{txEntry{method: "PUT", url: "Patient?identifier=urn:mrn|mrn-p1", resource: patientJSON("", "mrn-p1", "Renamed")}, "200 OK"},
		{txEntry{method: "POST", url: "Patient", resource: `{"resourceType":"Patient"}`}, "201 Created"},
		// Failures are answered per entry; the others are kept.
		{txEntry{method: "POST", url: "Observation", resource: `{"resourceType":"Observation"}`}, "405 Method Not Allowed"},
		{txEntry{method: "GET", url: "Patient/p1"}, "405 Method Not Allowed"},
		{txEntry{method: "POST", url: "Patient", resource: `{"resourceType":"Patient","gender":"x"}`}, "400 Bad Request"},
		{txEntry{method: "PUT", url: "Patient/p2", resource: patientJSON("p2", "mrn-p2", "Stale"), ifMatch: `W/"9"`}, "412 Precondition Failed"},
		{txEntry{method: "PUT", url: "Patient/p2", resource: patientJSON("other", "mrn-p2", "Mismatch")}, "400 Bad Request"},
		{txEntry{method: "POST", url: "Patient"}, "400 Bad Request"},
		{txEntry{method: "POST", url: "Foo", resource: `{"resourceType":"Patient"}`}, "404 Not Found"},
		{txEntry{method: "POST", url: "https://elsewhere.example/fhir/Patient", resource: `{"resourceType":"Patient"}`}, "400 Bad Request"},
	}
	var in []txEntry
	var want []string
	for _, en := range entries {
		in = append(in, en.entry)
		want = append(want, en.status)
	}
	before := e.patientCount()
	r := e.postBundle("/fhir", bundleJSON("batch", in...))
	if r.status != http.StatusOK {
		t.Fatalf("batch: %d %s", r.status, r.body)
	}
	b := r.bundle(t)
	if b.BundleType != "batch-response" {
		t.Errorf("Bundle.type = %q, want batch-response", b.BundleType)
	}
	got := entryStatuses(t, b)
	if !slices.Equal(got, want) {
		t.Fatalf("entry statuses:\n got %q\nwant %q", got, want)
	}
	for i, en := range b.Entry {
		resp := en.Response
		if strings.HasPrefix(resp.Status, "20") {
			var p fhir.Patient
			if err := json.Unmarshal(en.Resource, &p); err != nil || p.ID == "" {
				t.Errorf("entry %d: resource %s (%v)", i, en.Resource, err)
				continue
			}
			wantLoc := fmt.Sprintf("%s/Patient/%s/_history/%s", e.base, p.ID, p.Meta.VersionID)
			if resp.Location != wantLoc || resp.Etag != `W/"`+p.Meta.VersionID+`"` || resp.LastModified != p.Meta.LastUpdated || en.FullURL != e.base+"/Patient/"+p.ID {
				t.Errorf("entry %d: response %+v fullUrl %q, want location %s and the resource's version", i, resp, en.FullURL, wantLoc)
			}
			continue
		}
		var oo fhir.OperationOutcome
		if err := json.Unmarshal(resp.Outcome, &oo); err != nil || len(oo.Issue) == 0 || en.Resource != nil {
			t.Errorf("entry %d (%s): want an outcome and no resource, got %s %s", i, resp.Status, resp.Outcome, en.Resource)
		}
	}
	// New Patients: b1 (once), p-new, b3 and one without identifier; p1 was updated.
	if n := e.patientCount(); n != before+4 {
		t.Errorf("Patients after the batch: %d, want %d", n, before+4)
	}
	if ids := e.byMRN("b1"); len(ids) != 1 {
		t.Errorf("Patients with MRN b1: %v, want one", ids)
	}
	if ids := e.byMRN("b3"); len(ids) != 1 {
		t.Errorf("Patients with MRN b3: %v, want one", ids)
	}
	if p1, err := e.store.Read(t.Context(), "Patient", "p1"); err != nil || p1.VersionID != 2 || !bytes.Contains(p1.JSON, []byte("Renamed")) {
		t.Errorf("p1 after the conditional update: version %d %s %v", p1.VersionID, p1.JSON, err)
	}
	if p2, _ := e.store.Read(t.Context(), "Patient", "p2"); p2.VersionID != 1 {
		t.Errorf("p2 after refused updates: version %d, want 1", p2.VersionID)
	}

	// Prefer applies to every entry.
	r = e.postBundle("/fhir", bundleJSON("batch", txEntry{method: "PUT", url: "Patient/p-new", resource: patientJSON("p-new", "b2", "Min")}), "Prefer", "return=minimal")
	if b := r.bundle(t); len(b.Entry) != 1 || b.Entry[0].Resource != nil || b.Entry[0].Response.Status != "200 OK" || b.Entry[0].Response.Etag != `W/"2"` {
		t.Errorf("batch with return=minimal: %s", r.body)
	}
}

func TestTransaction(t *testing.T) {
	e := newEnv(t)
	e.seed()
	link := `{"resourceType":"Patient","identifier":[{"system":"urn:mrn","value":"t2"}],"link":[{"other":{"reference":"urn:uuid:7f1c3a52-0c4e-4b7e-9d7a-3a1c2f1e0b11"},"type":"seealso"}]}`
	r := e.postBundle("/fhir", bundleJSON("transaction",
		// PUTs are processed after POSTs, whatever their place: the references still resolve.
		txEntry{method: "PUT", url: "Patient/p1", resource: patientJSON("p1", "mrn-p1", "Updated"), ifMatch: `W/"1"`},
		txEntry{method: "POST", url: "Patient", resource: link, fullURL: "urn:uuid:0b5d3c1a-2f4e-4c6b-8a9d-1e2f3a4b5c6d"},
		txEntry{method: "POST", url: "Patient", resource: patientJSON("", "t1", "First"), ifNoneExist: "identifier=urn:mrn|t1", fullURL: "urn:uuid:7f1c3a52-0c4e-4b7e-9d7a-3a1c2f1e0b11"},
		txEntry{method: "PUT", url: "Patient?identifier=urn:mrn|t3", resource: patientJSON("", "t3", "Third")},
		txEntry{method: "POST", url: "Patient", resource: patientJSON("", "mrn-p2", "Exists"), ifNoneExist: "identifier=urn:mrn|mrn-p2"},
	))
	if r.status != http.StatusOK {
		t.Fatalf("transaction: %d %s", r.status, r.body)
	}
	b := r.bundle(t)
	if want := []string{"200 OK", "201 Created", "201 Created", "201 Created", "200 OK"}; b.BundleType != "transaction-response" || !slices.Equal(entryStatuses(t, b), want) {
		t.Fatalf("transaction-response: type %q statuses %q, want %q", b.BundleType, entryStatuses(t, b), want)
	}
	var linked, first, existing fhir.Patient
	for i, p := range []*fhir.Patient{nil, &linked, &first, nil, &existing} {
		if p != nil {
			if err := json.Unmarshal(b.Entry[i].Resource, p); err != nil {
				t.Fatal(err)
			}
		}
	}
	if len(linked.Link) != 1 || linked.Link[0].Other.Reference != "Patient/"+first.ID {
		t.Errorf("urn:uuid reference: %+v, want Patient/%s", linked.Link, first.ID)
	}
	if existing.ID != "p2" {
		t.Errorf("conditional create of an existing identifier answered %q, want p2", existing.ID)
	}
	stored, err := e.store.Read(t.Context(), "Patient", linked.ID)
	if err != nil || !bytes.Contains(stored.JSON, []byte(`"Patient/`+first.ID+`"`)) {
		t.Errorf("stored linked Patient: %s %v", stored.JSON, err)
	}
	if ids := e.byMRN("t3"); len(ids) != 1 {
		t.Errorf("Patients with MRN t3: %v, want one", ids)
	}
	if p1, _ := e.store.Read(t.Context(), "Patient", "p1"); p1.VersionID != 2 {
		t.Errorf("p1: version %d, want 2", p1.VersionID)
	}

	// A failing entry fails the whole transaction: nothing is written.
	good := []txEntry{
		{method: "POST", url: "Patient", resource: patientJSON("", "rb1", "Gone"), ifNoneExist: "identifier=urn:mrn|rb1"},
		{method: "PUT", url: "Patient/rb-new", resource: patientJSON("rb-new", "rb2", "Gone")},
		{method: "PUT", url: "Patient/p2", resource: patientJSON("p2", "mrn-p2", "Changed")},
		{method: "PUT", url: "Patient?identifier=urn:mrn|rb3", resource: patientJSON("", "rb3", "Gone")},
	}
	mustNotExist := []string{"rb1", "rb2", "rb3", "rb4"}
	for _, tc := range []struct {
		name   string
		bad    txEntry
		status int
		code   string
	}{
		{"stale If-Match", txEntry{method: "PUT", url: "Patient/p1", resource: patientJSON("p1", "mrn-p1", "X"), ifMatch: `W/"1"`}, 412, "conflict"},
		{"invalid resource", txEntry{method: "POST", url: "Patient", resource: `{"resourceType":"Patient","gender":"x"}`}, 400, "value"},
		{"unknown element", txEntry{method: "POST", url: "Patient", resource: `{"resourceType":"Patient","foo":1}`}, 400, "structure"},
		{"read-only type", txEntry{method: "POST", url: "Observation", resource: `{"resourceType":"Observation"}`}, 422, "not-supported"},
		{"DELETE", txEntry{method: "DELETE", url: "Patient/p1"}, 422, "not-supported"},
		{"GET", txEntry{method: "GET", url: "Patient/p1"}, 422, "not-supported"},
		{"ambiguous condition", txEntry{method: "POST", url: "Patient", resource: patientJSON("", "rb4", "X"), ifNoneExist: "identifier=urn:mrn|"}, 412, "duplicate"},
		{"same resource twice", txEntry{method: "PUT", url: "Patient/rb-new", resource: patientJSON("rb-new", "rb2", "Twice")}, 400, "business-rule"},
		{"same registration twice", txEntry{method: "POST", url: "Patient", resource: patientJSON("", "rb1", "Twice"), ifNoneExist: "identifier=urn:mrn|rb1"}, 400, "business-rule"},
		{"bad condition", txEntry{method: "POST", url: "Patient", resource: patientJSON("", "rb4", "X"), ifNoneExist: "nonsense=1"}, 400, "not-supported"},
		{"no resource", txEntry{method: "PUT", url: "Patient/x"}, 400, "required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := e.patientCount()
			p1, _ := e.store.Read(t.Context(), "Patient", "p1")
			r := e.postBundle("/fhir", bundleJSON("transaction", append(slices.Clone(good), tc.bad)...))
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
			}
			oo := r.outcome(t)
			if is := oo.Issue[0]; is.Code != tc.code || !strings.HasPrefix(is.Diagnostics, "Bundle.entry[4]") || len(is.Expression) == 0 || is.Expression[0] != "Bundle.entry[4]" {
				t.Errorf("outcome %+v, want code %q naming Bundle.entry[4]", is, tc.code)
			}
			if n := e.patientCount(); n != before {
				t.Errorf("Patients after a failed transaction: %d, want %d", n, before)
			}
			for _, mrn := range mustNotExist {
				if ids := e.byMRN(mrn); len(ids) != 0 {
					t.Errorf("MRN %s stored by a failed transaction: %v", mrn, ids)
				}
			}
			if _, err := e.store.Read(t.Context(), "Patient", "rb-new"); err == nil {
				t.Errorf("Patient/rb-new stored by a failed transaction")
			}
			if now, _ := e.store.Read(t.Context(), "Patient", "p1"); now.VersionID != p1.VersionID {
				t.Errorf("p1 version %d after a failed transaction, want %d", now.VersionID, p1.VersionID)
			}
			if p2, _ := e.store.Read(t.Context(), "Patient", "p2"); bytes.Contains(p2.JSON, []byte("Changed")) {
				t.Errorf("p2 changed by a failed transaction")
			}
		})
	}
	// The same good entries alone commit.
	r = e.postBundle("/fhir", bundleJSON("transaction", good...))
	if want := []string{"201 Created", "201 Created", "200 OK", "201 Created"}; r.status != 200 || !slices.Equal(entryStatuses(t, r.bundle(t)), want) {
		t.Errorf("good transaction: %d %s", r.status, r.body)
	}
}

func TestBundleLimits(t *testing.T) {
	e := newEnv(t)
	var many []txEntry
	for i := range 101 {
		many = append(many, txEntry{method: "POST", url: "Patient", resource: `{"resourceType":"Patient"}`, fullURL: fmt.Sprintf("urn:uuid:00000000-0000-0000-0000-%012d", i)})
	}
	for _, tc := range []struct {
		name, body string
		headers    []string
		status     int
		code       string
	}{
		{"101 entries batch", bundleJSON("batch", many...), fhirJSONType, 400, "too-costly"},
		{"101 entries transaction", bundleJSON("transaction", many...), fhirJSONType, 400, "too-costly"},
		{"body too large", bundleJSON("batch", txEntry{method: "POST", url: "Patient", resource: `{"resourceType":"Patient","text":{"status":"generated","div":"` + strings.Repeat("x", 70<<10) + `"}}`}), fhirJSONType, 413, "too-costly"},
		{"collection", `{"resourceType":"Bundle","type":"collection"}`, fhirJSONType, 400, "invalid"},
		{"not a Bundle", `{"resourceType":"Patient"}`, fhirJSONType, 400, "invalid"},
		{"entry without request", `{"resourceType":"Bundle","type":"transaction","entry":[{"resource":{"resourceType":"Patient"}}]}`, fhirJSONType, 400, "required"},
		{"XML", `<Bundle/>`, []string{"Content-Type", "application/fhir+xml"}, 415, "not-supported"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do("POST", "/fhir", tc.body, tc.headers...)
			if r.status != tc.status || r.outcome(t).Issue[0].Code != tc.code {
				t.Errorf("got %d %s, want %d %s", r.status, r.body, tc.status, tc.code)
			}
		})
	}
	if n := e.patientCount(); n != 0 {
		t.Errorf("refused bundles stored %d Patients", n)
	}
	// 100 entries are accepted.
	r := e.postBundle("/fhir", bundleJSON("transaction", many[:100]...))
	if r.status != 200 || len(r.bundle(t).Entry) != 100 || e.patientCount() != 100 {
		t.Errorf("100 entries: %d, %d Patients stored", r.status, e.patientCount())
	}
}

func TestBundleAuthorization(t *testing.T) {
	e := newAuthEnv(t) // Patients p1 and p2 with MRNs p1 and p2
	batch := bundleJSON("batch",
		txEntry{method: "POST", url: "Patient", resource: patientJSON("", "a1", "Plain")},
		txEntry{method: "POST", url: "Patient", resource: patientJSON("", "a2", "Cond"), ifNoneExist: "identifier=urn:mrn|a2"},
		txEntry{method: "PUT", url: "Patient/p1", resource: patientJSON("p1", "p1", "Own")},
		txEntry{method: "PUT", url: "Patient/p2", resource: patientJSON("p2", "p2", "Other")},
		txEntry{method: "PUT", url: "Patient?identifier=urn:mrn|a3", resource: patientJSON("", "a3", "CondPut")},
	)
	for _, tc := range []struct {
		name, token string
		want        []string
	}{
		{"create only", e.mint("system/Patient.c", ""), []string{"201 Created", "403 Forbidden", "403 Forbidden", "403 Forbidden", "403 Forbidden"}},
		{"create and search", e.mint("system/Patient.cs", ""), []string{"201 Created", "201 Created", "403 Forbidden", "403 Forbidden", "403 Forbidden"}},
		{"update only", e.mint("system/Patient.u", ""), []string{"403 Forbidden", "403 Forbidden", "200 OK", "200 OK", "403 Forbidden"}},
		{"patient context", e.mint("patient/Patient.cruds", "p1"), []string{"403 Forbidden", "403 Forbidden", "200 OK", "403 Forbidden", "403 Forbidden"}},
		{"patient user", e.mint("user/Patient.cruds", "", withUser("Patient/p1")), []string{"403 Forbidden", "403 Forbidden", "200 OK", "403 Forbidden", "403 Forbidden"}},
		{"read only", e.mint("system/Patient.rs", ""), []string{"403 Forbidden", "403 Forbidden", "403 Forbidden", "403 Forbidden", "403 Forbidden"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.postBundle("/fhir", batch, "Authorization", "Bearer "+tc.token)
			if r.status != 200 {
				t.Fatalf("batch: %d %s", r.status, r.body)
			}
			b := r.bundle(t)
			if got := entryStatuses(t, b); !slices.Equal(got, tc.want) {
				t.Errorf("statuses %q, want %q", got, tc.want)
			}
			for i, en := range b.Entry {
				if en.Response.Status == "403 Forbidden" {
					var oo fhir.OperationOutcome
					if json.Unmarshal(en.Response.Outcome, &oo) != nil || oo.Issue[0].Code != "forbidden" || en.Resource != nil || en.Response.Location != "" {
						t.Errorf("entry %d: refused with %s, resource %s", i, en.Response.Outcome, en.Resource)
					}
				}
			}
		})
	}
	// No token: 401 for the whole request.
	if r := e.postBundle("/fhir", batch); r.status != 401 {
		t.Errorf("batch without a token: %d", r.status)
	}
	// A transaction with one refused entry is refused whole, with the challenge, and writes nothing.
	before := e.patientCount()
	tx := bundleJSON("transaction",
		txEntry{method: "POST", url: "Patient", resource: patientJSON("", "t1", "Plain")},
		txEntry{method: "PUT", url: "Patient/p2", resource: patientJSON("p2", "p2", "Other")},
	)
	r := e.postBundle("/fhir", tx, "Authorization", "Bearer "+e.mint("patient/Patient.cruds", "p1"))
	if r.status != 403 || !strings.Contains(r.header.Get("WWW-Authenticate"), "insufficient_scope") || r.outcome(t).Issue[0].Expression[0] != "Bundle.entry[0]" {
		t.Errorf("transaction with a refused entry: %d %q %s", r.status, r.header.Get("WWW-Authenticate"), r.body)
	}
	if n := e.patientCount(); n != before {
		t.Errorf("a refused transaction stored %d Patients", n-before)
	}
	if r := e.postBundle("/fhir", tx, "Authorization", "Bearer "+e.mint("system/Patient.cu", "")); r.status != 200 {
		t.Errorf("transaction with c and u: %d %s", r.status, r.body)
	}
}

func TestBundleR4(t *testing.T) {
	e := newEnv(t)
	e.seed()
	for _, typ := range []string{"batch", "transaction"} {
		t.Run(typ, func(t *testing.T) {
			mrn := "r4-" + typ
			entries := []txEntry{
				{method: "POST", url: "Patient", resource: patientJSON("", mrn, "Four"), ifNoneExist: "identifier=urn:mrn|" + mrn},
				{method: "PUT", url: e.base + "/r4/Patient/p2", resource: patientJSON("p2", "mrn-p2", "Four"), fullURL: e.base + "/r4/Patient/p2"},
			}
			if typ == "batch" {
				entries = append(entries, txEntry{method: "POST", url: "Observation", resource: `{"resourceType":"Observation"}`})
			}
			r := e.postBundle("/fhir/r4", bundleJSON(typ, entries...))
			if r.status != 200 || !strings.Contains(r.header.Get("Content-Type"), "fhirVersion=4.0") {
				t.Fatalf("%s on the R4 base: %d %q %s", typ, r.status, r.header.Get("Content-Type"), r.body)
			}
			validR4(t, typ+"-response", r.body)
			b := r.bundle(t)
			for i, en := range b.Entry[:2] {
				if !strings.HasPrefix(en.Response.Location, e.base+"/r4/Patient/") || !strings.HasPrefix(en.FullURL, e.base+"/r4/Patient/") {
					t.Errorf("entry %d: location %q fullUrl %q, want the R4 base", i, en.Response.Location, en.FullURL)
				}
			}
		})
	}
	// The R4 CapabilityStatement advertises both, and a refused transaction is valid R4 too.
	validR4(t, "refused transaction", e.postBundle("/fhir/r4", bundleJSON("transaction", txEntry{method: "GET", url: "Patient/p1"})).body)
}

// noTx hides the store's Transactor implementation, as the MongoDB store has none.
type noTx struct{ store.Store }

func TestTransactionNeedsTransactor(t *testing.T) {
	st, err := sqlite.Open(t.Context(), t.TempDir(), sqlite.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	s, err := api.New(api.Config{BaseURL: "http://ohx.test/fhir", CursorKey: bytes.Repeat([]byte("k"), 32)}, noTx{st}, search.DefaultRegistry(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	e := &env{t: t, srv: srv, store: st, base: "http://ohx.test/fhir"}

	interactions := func(r response) []string {
		var cs fhir.CapabilityStatement
		if err := json.Unmarshal(r.body, &cs); err != nil {
			t.Fatal(err)
		}
		var codes []string
		for _, i := range cs.Rest[0].Interaction {
			codes = append(codes, i.Code)
		}
		return codes
	}
	if got := interactions(e.get("/fhir/metadata")); !slices.Equal(got, []string{"batch"}) {
		t.Errorf("interactions without transactions: %v, want [batch]", got)
	}
	if got := interactions(newEnv(t).get("/fhir/metadata")); !slices.Equal(got, []string{"batch", "transaction"}) {
		t.Errorf("interactions on SQLite: %v, want [batch transaction]", got)
	}
	tx := []txEntry{{method: "POST", url: "Patient", resource: patientJSON("", "m1", "Mongo"), ifNoneExist: "identifier=urn:mrn|m1"}}
	r := e.postBundle("/fhir", bundleJSON("transaction", tx...))
	if r.status != 422 || r.outcome(t).Issue[0].Code != "not-supported" || !strings.Contains(string(r.body), "batch") {
		t.Errorf("transaction without a Transactor: %d %s", r.status, r.body)
	}
	if n := e.patientCount(); n != 0 {
		t.Errorf("a refused transaction stored %d Patients", n)
	}
	// The batch is offered, and repeating it does not register the Patient twice.
	for range 2 {
		if r := e.postBundle("/fhir", bundleJSON("batch", tx...)); r.status != 200 {
			t.Errorf("batch: %d %s", r.status, r.body)
		}
	}
	if ids := e.byMRN("m1"); len(ids) != 1 {
		t.Errorf("Patients with MRN m1 after the batch twice: %v, want one", ids)
	}
}

// TestConditionalCreateAcrossInstances runs two API servers, each with its own store handle on
// one database file (two ohx processes), and registers the same identifier through both at once,
// by conditional create, conditional update and batch: one Patient results, and every answer
// names it. createMu is per server, so only the store's CreateUnique can make this hold.
func TestConditionalCreateAcrossInstances(t *testing.T) {
	dir := t.TempDir()
	var urls []string
	var st store.Store
	for range 2 {
		h, err := sqlite.Open(t.Context(), dir, sqlite.Options{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h.Close() })
		st = h
		s, err := api.New(api.Config{BaseURL: "http://ohx.test/fhir", CursorKey: bytes.Repeat([]byte("k"), 32)}, h, search.DefaultRegistry(), nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(s.Handler())
		t.Cleanup(srv.Close)
		urls = append(urls, srv.URL)
	}
	for round := range 5 {
		mrn := fmt.Sprint("x-", round)
		body := patientJSON("", mrn, "Racer")
		requests := []struct{ method, path, body, cond string }{
			{"POST", "/fhir/Patient", body, "identifier=urn:mrn|" + mrn},
			{"PUT", "/fhir/Patient?identifier=urn:mrn|" + mrn, body, ""},
			{"POST", "/fhir", bundleJSON("batch", txEntry{method: "POST", url: "Patient", resource: body, ifNoneExist: "identifier=urn:mrn|" + mrn}), ""},
		}
		type answer struct {
			status   string
			location string
		}
		answers := make(chan answer, 2*2*len(requests))
		start := make(chan struct{})
		var wg sync.WaitGroup
		for _, u := range urls {
			for range 2 {
				for _, rq := range requests {
					wg.Go(func() {
						<-start
						req, _ := http.NewRequestWithContext(t.Context(), rq.method, u+rq.path, strings.NewReader(rq.body))
						req.Header.Set("Content-Type", "application/fhir+json")
						if rq.cond != "" {
							req.Header.Set("If-None-Exist", rq.cond)
						}
						res, err := http.DefaultClient.Do(req)
						if err != nil {
							t.Error(err)
							return
						}
						defer res.Body.Close()
						a := answer{status: strconv.Itoa(res.StatusCode), location: res.Header.Get("Location")}
						if rq.path == "/fhir" {
							var b fhir.Bundle
							if err := json.NewDecoder(res.Body).Decode(&b); err != nil || len(b.Entry) != 1 {
								t.Errorf("batch: %d (%v)", res.StatusCode, err)
								return
							}
							a = answer{status: b.Entry[0].Response.Status[:3], location: b.Entry[0].Response.Location}
						}
						answers <- a
					})
				}
			}
		}
		close(start)
		wg.Wait()
		close(answers)
		created, ids := 0, map[string]bool{}
		for a := range answers {
			if a.status == "201" {
				created++
			} else if a.status != "200" {
				t.Errorf("%s: answer %s", mrn, a.status)
			}
			// …/Patient/{id}/_history/{version}
			parts := strings.Split(a.location, "/")
			if len(parts) < 4 {
				t.Errorf("%s: Location %q", mrn, a.location)
				continue
			}
			ids[parts[len(parts)-3]] = true
		}
		stored, err := st.FindByIdentifier(t.Context(), "Patient", "urn:mrn", mrn)
		if err != nil {
			t.Fatal(err)
		}
		if created != 1 || len(ids) != 1 || len(stored) != 1 || !ids[stored[0]] {
			t.Errorf("%s: %d creates, answers name %v, stored %v; want one Patient named by every answer", mrn, created, ids, stored)
		}
	}
}
