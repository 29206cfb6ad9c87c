package api_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/openhealthexchange/ohx/api"
	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/fhir/search"
	"github.com/openhealthexchange/ohx/store"
	"github.com/openhealthexchange/ohx/store/sqlite"
)

type env struct {
	t     *testing.T
	srv   *httptest.Server
	store store.Store
	base  string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	st, err := sqlite.Open(t.Context(), t.TempDir(), sqlite.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e := &env{t: t, store: st}
	// The base URL must be known before the server starts: use a listener-first httptest server.
	e.srv = httptest.NewUnstartedServer(nil)
	e.base = "http://" + e.srv.Listener.Addr().String() + "/fhir"
	s, err := api.New(api.Config{BaseURL: e.base, CursorKey: bytes.Repeat([]byte("k"), 32), MaxBodyBytes: 64 << 10, DefaultCount: 50, MaxCount: 200},
		st, search.DefaultRegistry(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.srv.Config.Handler = s.Handler()
	e.srv.Start()
	t.Cleanup(e.srv.Close)
	return e
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (e *env) do(method, path string, body string, headers ...string) response {
	e.t.Helper()
	u := path
	if !strings.HasPrefix(path, "http") {
		u = e.srv.URL + path
	}
	req, err := http.NewRequestWithContext(e.t.Context(), method, u, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return response{res.StatusCode, res.Header, b}
}

func (e *env) get(path string, headers ...string) response { return e.do("GET", path, "", headers...) }

func (r response) outcome(t *testing.T) fhir.OperationOutcome {
	t.Helper()
	var oo fhir.OperationOutcome
	if err := json.Unmarshal(r.body, &oo); err != nil || oo.ResourceType != "OperationOutcome" || len(oo.Issue) == 0 {
		t.Fatalf("want an OperationOutcome, got %s (%v)", r.body, err)
	}
	return oo
}

func (r response) bundle(t *testing.T) fhir.Bundle {
	t.Helper()
	var b fhir.Bundle
	if err := json.Unmarshal(r.body, &b); err != nil || b.ResourceType != "Bundle" {
		t.Fatalf("want a Bundle, got %d %s (%v)", r.status, r.body, err)
	}
	return b
}

func linkOf(b fhir.Bundle, rel string) string {
	for _, l := range b.Link {
		if l.Relation == rel {
			return l.URL
		}
	}
	return ""
}

func entryIDs(t *testing.T, b fhir.Bundle, mode string) []string {
	t.Helper()
	var ids []string
	for _, en := range b.Entry {
		if en.Search == nil || en.Search.Mode != mode {
			continue
		}
		var r struct{ ResourceType, ID string }
		if err := json.Unmarshal(en.Resource, &r); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, r.ResourceType+"/"+r.ID)
	}
	return ids
}

func obs(id, patient, device, code string, at time.Time, value string) *fhir.Observation {
	v := fhir.Decimal(value)
	o := &fhir.Observation{
		Base:              fhir.Base{ResourceType: "Observation", ID: id},
		Identifier:        []fhir.Identifier{{System: "https://ohx.test/obs", Value: id}},
		Status:            "final",
		Category:          []fhir.CodeableConcept{{Coding: []fhir.Coding{{System: "http://terminology.hl7.org/CodeSystem/observation-category", Code: "vital-signs"}}}},
		Code:              fhir.CodeableConcept{Coding: []fhir.Coding{{System: "http://loinc.org", Code: code}}},
		Subject:           &fhir.Reference{Reference: "Patient/" + patient},
		EffectiveDateTime: at.Format(time.RFC3339),
		Value:             fhir.Value{ValueQuantity: &fhir.Quantity{Value: &v, Unit: "kg", System: "http://unitsofmeasure.org", Code: "kg"}},
	}
	if device != "" {
		o.Device = &fhir.Reference{Reference: "Device/" + device}
	}
	return o
}

// seed stores two patients, a device associated with p1, and observations.
func (e *env) seed() {
	e.t.Helper()
	ctx := e.t.Context()
	active := true
	for _, p := range []string{"p1", "p2"} {
		if _, err := e.store.Create(ctx, &fhir.Patient{Base: fhir.Base{ResourceType: "Patient", ID: p}, Active: &active,
			Identifier: []fhir.Identifier{{System: "urn:mrn", Value: "mrn-" + p}}, Name: []fhir.HumanName{{Family: "Fam" + p}}}); err != nil {
			e.t.Fatal(err)
		}
	}
	if _, err := e.store.Create(ctx, &fhir.Device{Base: fhir.Base{ResourceType: "Device", ID: "d1"}, Status: "active",
		Identifier:   []fhir.Identifier{{System: "https://ohx.test/device", Value: "d1"}},
		Manufacturer: "Withings", Name: []fhir.DeviceName{{Value: "Body+", Type: "user-friendly-name"}}}); err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.store.Create(ctx, &fhir.DeviceAssociation{Base: fhir.Base{ResourceType: "DeviceAssociation", ID: "a1"},
		Device:  fhir.Reference{Reference: "Device/d1"},
		Status:  fhir.CodeableConcept{Coding: []fhir.Coding{{System: fhir.DeviceAssociationStatusSystem, Code: "attached"}}},
		Subject: &fhir.Reference{Reference: "Patient/p1"}, Period: &fhir.Period{Start: "2026-01-01T00:00:00Z"}}); err != nil {
		e.t.Fatal(err)
	}
	var rs []fhir.Resource
	t0 := time.Date(2026, 1, 1, 7, 30, 0, 0, time.UTC)
	for i := range 12 {
		rs = append(rs, obs(fmt.Sprintf("w%02d", i), "p1", "d1", "29463-7", t0.AddDate(0, 0, i), fmt.Sprintf("7%d.0", i%10)))
	}
	rs = append(rs, obs("h1", "p2", "", "8302-2", t0, "180"))
	if _, err := e.store.Upsert(ctx, rs); err != nil {
		e.t.Fatal(err)
	}
}

func TestMetadata(t *testing.T) {
	e := newEnv(t)
	r := e.get("/fhir/metadata")
	if r.status != 200 {
		t.Fatalf("status %d", r.status)
	}
	cs, err := fhir.Decode(r.body, "CapabilityStatement")
	if err != nil {
		t.Fatalf("strict decode of our CapabilityStatement: %v", err)
	}
	reg := search.DefaultRegistry()
	got := map[string][]string{}
	for _, res := range cs.(*fhir.CapabilityStatement).Rest[0].Resource {
		for _, p := range res.SearchParam {
			got[res.Type] = append(got[res.Type], p.Name)
		}
	}
	for _, typ := range []string{"Patient", "Device", "DeviceAssociation", "Observation"} {
		var want []string
		for _, p := range reg.Params(typ) {
			want = append(want, p.Name)
		}
		if !slices.Equal(got[typ], want) || len(want) < 5 {
			t.Errorf("%s search params: got %v, want %v", typ, got[typ], want)
		}
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/fhir+json") {
		t.Errorf("Content-Type %q", ct)
	}
}

func TestReadAndConditionalRead(t *testing.T) {
	e := newEnv(t)
	e.seed()
	r := e.get("/fhir/Observation/w01")
	if r.status != 200 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	if r.header.Get("ETag") != `W/"1"` || r.header.Get("Last-Modified") == "" {
		t.Errorf("ETag %q Last-Modified %q", r.header.Get("ETag"), r.header.Get("Last-Modified"))
	}
	if _, err := fhir.Decode(r.body, "Observation"); err != nil {
		t.Errorf("R5 output does not round-trip through the strict decoder: %v", err)
	}
	if !bytes.Contains(r.body, []byte(`"value":71.0`)) {
		t.Errorf("decimal precision lost: %s", r.body)
	}
	if r := e.get("/fhir/Observation/w01", "If-None-Match", `W/"1"`); r.status != http.StatusNotModified || len(r.body) != 0 {
		t.Errorf("If-None-Match current: got %d %q, want 304", r.status, r.body)
	}
	if r := e.get("/fhir/Observation/w01", "If-None-Match", `W/"0"`); r.status != 200 {
		t.Errorf("If-None-Match stale: got %d, want 200", r.status)
	}
	future := time.Now().Add(time.Hour).UTC().Format(http.TimeFormat)
	if r := e.get("/fhir/Observation/w01", "If-Modified-Since", future); r.status != http.StatusNotModified {
		t.Errorf("If-Modified-Since: got %d, want 304", r.status)
	}
	for path, want := range map[string]int{"/fhir/Observation/nope": 404, "/fhir/Medication/x": 404, "/fhir/Observation/bad$id": 404} {
		r := e.get(path)
		if r.status != want {
			t.Errorf("%s: got %d, want %d", path, r.status, want)
		}
		r.outcome(t)
	}
	if err := e.store.Delete(t.Context(), "Observation", "w02"); err != nil {
		t.Fatal(err)
	}
	r = e.get("/fhir/Observation/w02")
	if r.status != http.StatusGone || r.outcome(t).Issue[0].Code != "deleted" {
		t.Errorf("deleted: got %d %s", r.status, r.body)
	}
}

func TestSearchPagingAndLinks(t *testing.T) {
	e := newEnv(t)
	e.seed()
	r := e.get("/fhir/Observation?patient=p1&code=http://loinc.org|29463-7&date=ge2026-01-03&_sort=-date&_count=4&unknown=1")
	if r.status != 200 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	b := r.bundle(t)
	self := linkOf(b, "self")
	if strings.Contains(self, "unknown") || !strings.Contains(self, "patient=p1") || !strings.Contains(self, "_count=4") {
		t.Errorf("self link %q must list exactly the applied parameters", self)
	}
	var all []string
	pages := 0
	for {
		pages++
		ids := entryIDs(t, b, "match")
		if len(ids) > 4 {
			t.Fatalf("page has %d matches, _count=4", len(ids))
		}
		all = append(all, ids...)
		next := linkOf(b, "next")
		if next == "" {
			break
		}
		// Writes between pages must not shift the cursor.
		if _, err := e.store.Upsert(t.Context(), []fhir.Resource{obs(fmt.Sprintf("new%d", pages), "p1", "", "29463-7", time.Date(2026, 1, 20, 0, 0, 0, 0, time.UTC), "80")}); err != nil {
			t.Fatal(err)
		}
		b = e.get(next).bundle(t)
	}
	want := []string{}
	for i := 11; i >= 2; i-- {
		want = append(want, fmt.Sprintf("Observation/w%02d", i))
	}
	if !slices.Equal(all, want) {
		t.Errorf("paged ids:\n got %v\nwant %v", all, want)
	}
	if pages != 3 {
		t.Errorf("pages: got %d, want 3", pages)
	}
	// A cursor cannot be moved to another search.
	r = e.get("/fhir/Observation?patient=p1&_count=2")
	next := linkOf(r.bundle(t), "next")
	u, _ := url.Parse(next)
	tampered := strings.Replace(u.String(), "patient=p1", "patient=p2", 1)
	if r := e.get(tampered); r.status != 400 {
		t.Errorf("cursor reused on another patient: got %d, want 400", r.status)
	}
	// Previous link leads back.
	p2 := e.get(next).bundle(t)
	prev := linkOf(p2, "previous")
	if prev == "" {
		t.Fatal("second page has no previous link")
	}
	if got, want := entryIDs(t, e.get(prev).bundle(t), "match"), entryIDs(t, r.bundle(t), "match"); !slices.Equal(got, want) {
		t.Errorf("previous page: got %v, want %v", got, want)
	}
}

func TestSearchResultParameters(t *testing.T) {
	e := newEnv(t)
	e.seed()
	b := e.get("/fhir/Observation?patient=p1&_summary=count").bundle(t)
	if b.Total == nil || *b.Total != 12 || len(b.Entry) != 0 {
		t.Errorf("_summary=count: total %v, %d entries", b.Total, len(b.Entry))
	}
	b = e.get("/fhir/Observation?patient=p1&_count=0").bundle(t)
	if b.Total == nil || *b.Total != 12 || len(b.Entry) != 0 {
		t.Errorf("_count=0: total %v, %d entries", b.Total, len(b.Entry))
	}
	b = e.get("/fhir/Observation?_id=w01&_elements=subject").bundle(t)
	if len(b.Entry) != 1 {
		t.Fatalf("_elements: %d entries", len(b.Entry))
	}
	var sub map[string]json.RawMessage
	json.Unmarshal(b.Entry[0].Resource, &sub)
	for _, k := range []string{"resourceType", "id", "meta", "subject", "status", "code"} {
		if _, ok := sub[k]; !ok {
			t.Errorf("_elements dropped %s", k)
		}
	}
	if _, ok := sub["valueQuantity"]; ok {
		t.Errorf("_elements kept valueQuantity")
	}
	if !bytes.Contains(sub["meta"], []byte("SUBSETTED")) {
		t.Errorf("subsetted resource not tagged: %s", sub["meta"])
	}
	b = e.get("/fhir/Observation?patient=p1&_count=2&_include=Observation:device&_include=Observation:patient").bundle(t)
	if got := entryIDs(t, b, "include"); !slices.Equal(sortd(got), []string{"Device/d1", "Patient/p1"}) {
		t.Errorf("includes: %v", got)
	}
	b = e.get("/fhir/DeviceAssociation?patient=p1&_include=DeviceAssociation:device").bundle(t)
	if m, i := entryIDs(t, b, "match"), entryIDs(t, b, "include"); !slices.Equal(m, []string{"DeviceAssociation/a1"}) || !slices.Equal(i, []string{"Device/d1"}) {
		t.Errorf("DeviceAssociation include: matches %v includes %v", m, i)
	}
	// POST _search is the same search.
	r := e.do("POST", "/fhir/Observation/_search", "patient=p2", "Content-Type", "application/x-www-form-urlencoded")
	if got := entryIDs(t, r.bundle(t), "match"); !slices.Equal(got, []string{"Observation/h1"}) {
		t.Errorf("POST _search: %v", got)
	}
	for q, want := range map[string]int{
		"/fhir/Observation?date=2026-13-01":               400,
		"/fhir/Observation?_count=x":                      400,
		"/fhir/Observation?_sort=value-quantity":          400,
		"/fhir/Observation?value-quantity=abc":            400,
		"/fhir/Observation?subject=Patient/p1/_history/1": 400,
	} {
		r := e.get(q)
		if r.status != want {
			t.Errorf("%s: got %d, want %d", q, r.status, want)
		}
		r.outcome(t)
	}
	if r := e.get("/fhir/Observation?foo=1", "Prefer", "handling=strict"); r.status != 400 || r.outcome(t).Issue[0].Code != "not-supported" {
		t.Errorf("strict unknown parameter: got %d %s", r.status, r.body)
	}
}

func sortd(s []string) []string { slices.Sort(s); return s }

func TestNegotiation(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		path   string
		header []string
		want   int
	}{
		{"/fhir/metadata", []string{"Accept", "application/fhir+xml"}, 406},
		{"/fhir/metadata?_format=xml", nil, 406},
		{"/fhir/metadata", []string{"Accept", "application/fhir+json; fhirVersion=3.0"}, 406},
		{"/fhir/metadata", []string{"Accept", "application/json"}, 200},
		{"/fhir/metadata", []string{"Accept", "text/html,application/xhtml+xml"}, 200},
		{"/fhir/metadata?_format=json", []string{"Accept", "application/fhir+xml"}, 200},
	} {
		r := e.get(tc.path, tc.header...)
		if r.status != tc.want {
			t.Errorf("%s %v: got %d, want %d", tc.path, tc.header, r.status, tc.want)
		}
		if r.status == 406 {
			r.outcome(t)
		}
	}
	r := e.get("/fhir/metadata", "Accept", "application/fhir+json; fhirVersion=4.0")
	var cs struct{ FHIRVersion string }
	json.Unmarshal(r.body, &cs)
	if cs.FHIRVersion != "4.0.1" || !strings.Contains(r.header.Get("Content-Type"), "fhirVersion=4.0") {
		t.Errorf("R4 metadata: fhirVersion %q, Content-Type %q", cs.FHIRVersion, r.header.Get("Content-Type"))
	}
}

func TestPatientWrites(t *testing.T) {
	e := newEnv(t)
	ct := []string{"Content-Type", "application/fhir+json"}
	body := `{"resourceType":"Patient","identifier":[{"system":"urn:mrn","value":"42"}],"name":[{"family":"Doe"}]}`
	r := e.do("POST", "/fhir/Patient", body, append(ct, "If-None-Exist", "identifier=urn:mrn|42")...)
	if r.status != 201 || r.header.Get("Location") == "" {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	var p fhir.Patient
	json.Unmarshal(r.body, &p)
	r = e.do("POST", "/fhir/Patient", body, append(ct, "If-None-Exist", "identifier=urn:mrn|42")...)
	var p2 fhir.Patient
	json.Unmarshal(r.body, &p2)
	if r.status != 200 || p2.ID != p.ID {
		t.Errorf("conditional create of an existing identifier: got %d id %q, want 200 id %q", r.status, p2.ID, p.ID)
	}
	upd := strings.Replace(body, `{"resourceType":"Patient",`, `{"resourceType":"Patient","id":"`+p.ID+`",`, 1)
	upd = strings.Replace(upd, "Doe", "Roe", 1)
	if r := e.do("PUT", "/fhir/Patient/"+p.ID, upd, append(ct, "If-Match", `W/"9"`)...); r.status != 412 {
		t.Errorf("stale If-Match: got %d, want 412", r.status)
	}
	r = e.do("PUT", "/fhir/Patient/"+p.ID, upd, append(ct, "If-Match", `W/"1"`)...)
	if r.status != 200 || r.header.Get("ETag") != `W/"2"` {
		t.Errorf("update: %d ETag %q %s", r.status, r.header.Get("ETag"), r.body)
	}
	if r := e.do("PUT", "/fhir/Patient/other", upd, ct...); r.status != 400 {
		t.Errorf("id mismatch: got %d, want 400", r.status)
	}
	r = e.do("PUT", "/fhir/Patient?identifier=urn:mrn|43", `{"resourceType":"Patient","identifier":[{"system":"urn:mrn","value":"43"}]}`, ct...)
	if r.status != 201 {
		t.Errorf("conditional update without match: got %d, want 201: %s", r.status, r.body)
	}
	for _, tc := range []struct {
		method, path, body string
		headers            []string
		want               int
		code               string
	}{
		{"POST", "/fhir/Patient", `{"resourceType":"Patient","foo":1}`, ct, 400, "structure"},
		{"POST", "/fhir/Patient", `{"resourceType":"Patient","gender":"x"}`, ct, 400, "value"},
		{"POST", "/fhir/Patient", `{"resourceType":"Patient","birthDate":19800101}`, ct, 400, "structure"},
		{"POST", "/fhir/Patient", `{"resourceType":"Observation"}`, ct, 400, "invalid"},
		{"POST", "/fhir/Patient", `{`, ct, 400, "structure"},
		{"POST", "/fhir/Patient", `{"resourceType":"Patient"}`, []string{"Content-Type", "application/xml"}, 415, "not-supported"},
		{"POST", "/fhir/Patient", `{"resourceType":"Patient","text":{"status":"generated","div":"` + strings.Repeat("x", 70<<10) + `"}}`, ct, 413, "too-costly"},
		{"POST", "/fhir/Observation", `{"resourceType":"Observation"}`, ct, 405, "not-supported"},
		{"PUT", "/fhir/Device/d1", `{"resourceType":"Device"}`, ct, 405, "not-supported"},
		{"DELETE", "/fhir/Patient/x", ``, nil, 405, "not-supported"},
	} {
		r := e.do(tc.method, tc.path, tc.body, tc.headers...)
		if r.status != tc.want {
			t.Errorf("%s %s %.40s: got %d, want %d (%s)", tc.method, tc.path, tc.body, r.status, tc.want, r.body)
			continue
		}
		if oo := r.outcome(t); oo.Issue[0].Code != tc.code {
			t.Errorf("%s %s %.40s: issue code %q, want %q", tc.method, tc.path, tc.body, oo.Issue[0].Code, tc.code)
		}
	}
}

func TestR4(t *testing.T) {
	e := newEnv(t)
	e.seed()
	r := e.get("/fhir/r4/Device/d1")
	var d struct {
		Patient *fhir.Reference `json:"patient"`
	}
	if r.status != 200 || json.Unmarshal(r.body, &d) != nil || d.Patient == nil || d.Patient.Reference != "Patient/p1" {
		t.Errorf("R4 Device.patient from the active association: %d %s", r.status, r.body)
	}
	if r := e.get("/fhir/r4/DeviceAssociation/a1"); r.status != 404 {
		t.Errorf("DeviceAssociation under R4: got %d, want 404", r.status)
	}
	b := e.get("/fhir/Observation?patient=p1&_count=2", "Accept", "application/fhir+json; fhirVersion=4.0").bundle(t)
	if len(b.Entry) != 2 || !strings.HasPrefix(linkOf(b, "next"), e.base+"/r4/Observation?") {
		t.Errorf("R4 search by Accept: %d entries, next %q, want it under the R4 base", len(b.Entry), linkOf(b, "next"))
	}
	b = e.get("/fhir/r4/Observation?patient=p1&_count=2").bundle(t)
	if !strings.HasPrefix(b.Entry[0].FullURL, e.base+"/r4/Observation/") {
		t.Errorf("fullUrl under the R4 base: %q", b.Entry[0].FullURL)
	}
}

func TestOperations(t *testing.T) {
	e := newEnv(t)
	for _, p := range []string{"/healthz", "/readyz"} {
		if r := e.get(p); r.status != 200 {
			t.Errorf("%s: %d", p, r.status)
		}
	}
	e.get("/fhir/Observation?patient=secret-patient-name")
	r := e.get("/metrics")
	if !bytes.Contains(r.body, []byte(`ohx_http_requests_total{method="GET",route="/fhir/:type",status="200"}`)) {
		t.Errorf("metrics lack the search route counter")
	}
	if bytes.Contains(r.body, []byte("secret-patient-name")) {
		t.Errorf("metrics leak query values")
	}
	if r := e.get("/nope"); r.status != 404 {
		t.Errorf("unknown path: %d", r.status)
	}
	if r := e.get("/fhir/metadata", "X-Request-ID", "abc-123"); r.header.Get("X-Request-ID") != "abc-123" {
		t.Errorf("request id not echoed")
	}
}

// TestSearchCache checks that a repeated search is served from the cache and that a write to
// the patient's data, and only that, invalidates it.
func TestSearchCache(t *testing.T) {
	e := newEnv(t)
	e.seed()
	q := "/fhir/Observation?patient=p1&code=http://loinc.org|29463-7&_sort=-date&_count=100"
	count := func(b fhir.Bundle) int { return len(entryIDs(t, b, "match")) }
	lookups := func(outcome string) string {
		for line := range strings.SplitSeq(string(e.get("/metrics").body), "\n") {
			if strings.HasPrefix(line, `ohx_search_cache_lookups_total{outcome="`+outcome+`"}`) {
				return strings.Fields(line)[1]
			}
		}
		return "0"
	}
	if n := count(e.get(q).bundle(t)); n != 12 {
		t.Fatalf("first search: %d", n)
	}
	if n := count(e.get(q).bundle(t)); n != 12 || lookups("hit") != "1" {
		t.Fatalf("repeat: %d entries, %s hits", n, lookups("hit"))
	}
	// Another patient's data does not invalidate the entry.
	if _, err := e.store.Upsert(t.Context(), []fhir.Resource{obs("x2", "p2", "", "29463-7", time.Now(), "1")}); err != nil {
		t.Fatal(err)
	}
	if e.get(q); lookups("hit") != "2" {
		t.Errorf("a write for p2 invalidated p1's search: hits %s", lookups("hit"))
	}
	// This patient's new Observation does, and the next answer has it.
	if _, err := e.store.Upsert(t.Context(), []fhir.Resource{obs("x1", "p1", "", "29463-7", time.Now(), "1")}); err != nil {
		t.Fatal(err)
	}
	if n := count(e.get(q).bundle(t)); n != 13 || lookups("stale") != "1" {
		t.Errorf("after a write for p1: %d entries (want 13), %s stale", n, lookups("stale"))
	}
	// So does a change to an included Device.
	qi := "/fhir/Observation?patient=p1&_include=Observation:device&_count=1"
	e.get(qi)
	if _, _, err := e.store.Put(t.Context(), &fhir.Device{Base: fhir.Base{ResourceType: "Device", ID: "d1"}, Status: "inactive"}, store.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	b := e.get(qi).bundle(t)
	var d fhir.Device
	for _, en := range b.Entry {
		if en.Search.Mode == "include" {
			json.Unmarshal(en.Resource, &d)
		}
	}
	if d.Status != "inactive" {
		t.Errorf("included Device served stale: status %q", d.Status)
	}
}

func TestReadCacheInvalidation(t *testing.T) {
	e := newEnv(t)
	e.seed()
	version := func() string { return e.get("/fhir/Observation/w03").header.Get("ETag") }
	if v := version(); v != `W/"1"` {
		t.Fatalf("first read: %s", v)
	}
	version() // now cached
	if _, _, err := e.store.Put(t.Context(), obs("w03", "p1", "", "29463-7", time.Now(), "99.9"), store.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if v := version(); v != `W/"2"` {
		t.Errorf("read after update: %s, want W/\"2\"", v)
	}
	if err := e.store.Delete(t.Context(), "Observation", "w03"); err != nil {
		t.Fatal(err)
	}
	if r := e.get("/fhir/Observation/w03"); r.status != http.StatusGone {
		t.Errorf("read after delete: %d", r.status)
	}
}
