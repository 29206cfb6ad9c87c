package api_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/openhealthexchange/ohx/api"
	"github.com/openhealthexchange/ohx/api/smart"
	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/fhir/search"
	"github.com/openhealthexchange/ohx/providers"
	"github.com/openhealthexchange/ohx/store/sqlite"
)

// Every token below is confined to p1's compartment, by a different route: the launch patient of
// patient/ scopes, or the patient user behind user/ (and even system/) scopes.
var p1Tokens = []struct{ name, scope, patient, fhirUser string }{
	{"patient/ launch", "patient/*.rs", "p1", ""},
	{"patient user, user/", "user/*.rs", "", "Patient/p1"},
	{"patient user, patient/ and user/", "patient/*.rs user/*.rs", "p1", "Patient/p1"},
	{"patient user, v1 user/*.*", "user/*.*", "", "Patient/p1"},
	{"patient user, system/", "system/*.rs", "", "Patient/p1"},
}

// TestNoEscapeThroughIncludesOrChains runs includes, revincludes and reference searches that
// point at p2 under every p1 token.
func TestNoEscapeThroughIncludesOrChains(t *testing.T) {
	e := newAuthEnv(t)
	for _, tk := range p1Tokens {
		tok := e.mint(tk.scope, tk.patient, withUser(tk.fhirUser))
		for _, q := range []string{
			"/fhir/Patient",
			"/fhir/Patient?_id=p2",
			"/fhir/Patient?identifier=urn:mrn|p2",
			"/fhir/Observation?patient=p2",
			"/fhir/Observation?subject=Patient/p2&_include=Observation:subject",
			"/fhir/Observation?_include=Observation:device&_include=Observation:patient",
			"/fhir/Device?_revinclude=Observation:device&_revinclude=DeviceAssociation:device",
			"/fhir/Patient?_revinclude=Observation:patient&_revinclude=DeviceAssociation:patient",
			"/fhir/DeviceAssociation?patient=p2&_include=DeviceAssociation:device",
			"/fhir/Device?_id=dev-p2,dev-orphan",
			"/fhir/r4/Device?_id=dev-p2",
		} {
			r := e.as(tok, q)
			if r.status != http.StatusOK {
				t.Errorf("%s %s: %d", tk.name, q, r.status)
				continue
			}
			for _, id := range allIDs(t, r.bundle(t)) {
				if !slices.Contains(compartmentOfP1, id) {
					t.Errorf("%s %s: %s leaked", tk.name, q, id)
				}
			}
		}
		for _, path := range []string{"/fhir/Patient/p2", "/fhir/Observation/vs-p2", "/fhir/Device/dev-p2", "/fhir/DeviceAssociation/da-p2"} {
			if r := e.as(tok, path); r.status != http.StatusNotFound {
				t.Errorf("%s reading %s: %d, want 404", tk.name, path, r.status)
			}
		}
		if r := e.as(tok, "/fhir/Patient/p1"); r.status != http.StatusOK {
			t.Errorf("%s reading its own Patient: %d", tk.name, r.status)
		}
	}
}

// TestCursorAndCacheBoundToCaller: a page or cursor made for a practitioner's user/ token never
// serves a patient user's token with the same scope string, and the other way round.
func TestCursorAndCacheBoundToCaller(t *testing.T) {
	e := newAuthEnv(t)
	doc := e.mint("user/*.rs", "", withUser("Practitioner/d1"))
	ann := e.mint("user/*.rs", "", withUser("Patient/p1"))
	bob := e.mint("user/*.rs", "", withUser("Patient/p2"))
	// The practitioner's search is cached first; the patient users' identical searches must not
	// be served from it.
	if got := allIDs(t, e.as(doc, "/fhir/Patient").bundle(t)); !slices.Contains(got, "Patient/p2") {
		t.Fatalf("practitioner sees every patient: %v", got)
	}
	for i := 0; i < 2; i++ { // the second round is served from the cache
		if got := allIDs(t, e.as(ann, "/fhir/Patient").bundle(t)); !slices.Equal(got, []string{"Patient/p1"}) {
			t.Errorf("round %d: patient user p1 sees %v", i, got)
		}
		if got := allIDs(t, e.as(bob, "/fhir/Patient").bundle(t)); !slices.Equal(got, []string{"Patient/p2"}) {
			t.Errorf("round %d: patient user p2 sees %v", i, got)
		}
	}
	// A practitioner's cursor is refused under a patient user's token.
	next := linkOf(e.as(doc, "/fhir/Observation?_count=1").bundle(t), "next")
	if next == "" {
		t.Fatal("no next link")
	}
	if r := e.as(ann, next); r.status != http.StatusBadRequest {
		t.Errorf("practitioner's cursor with a patient user's token: %d, want 400", r.status)
	}
	// And a patient user's cursor is not another patient user's.
	next = linkOf(e.as(ann, "/fhir/Observation?_count=1").bundle(t), "next")
	if next == "" {
		t.Fatal("no next link for p1")
	}
	if r := e.as(bob, next); r.status != http.StatusBadRequest {
		t.Errorf("p1's cursor with p2's token: %d, want 400", r.status)
	}
}

// TestCacheKeyIsTheParsedSearch: an encoded '=' and '&' inside one unknown parameter must not
// collide with the real parameters, for the same caller or another client with the same scopes.
func TestCacheKeyIsTheParsedSearch(t *testing.T) {
	e := newAuthEnv(t)
	a := e.mint("system/*.rs", "")
	b := e.mint("system/*.rs", "", func(c *smart.Claims, _ *jwt.Token) { c.ClientID = "other-backend" })
	// The first caller's parameter is one unknown name, ignored: every Observation comes back.
	all := entryIDs(t, e.as(a, "/fhir/Observation?patient%3Dp1%26_count=41").bundle(t), "match")
	if len(all) < 3 {
		t.Fatalf("unfiltered search: %v", all)
	}
	for _, tok := range []string{a, b} {
		got := entryIDs(t, e.as(tok, "/fhir/Observation?patient=p1&_count=41").bundle(t), "match")
		if slices.Contains(got, "Observation/vs-p2") || len(got) != 2 {
			t.Errorf("the filtered search got the unfiltered cached result: %v", got)
		}
	}
	// The same search with a differently spelled but equal query is still right (a cache hit
	// or a miss, never another search's body).
	got := entryIDs(t, e.as(b, "/fhir/Observation?_count=41&patient=Patient/p1").bundle(t), "match")
	if slices.Contains(got, "Observation/vs-p2") || len(got) != 2 {
		t.Errorf("equal search: %v", got)
	}
}

// TestConditionalCreateIsNoOracle: If-None-Exist is a search; a create-only token is refused
// before anything is looked up, so the answer is the same whether or not a Patient matches.
func TestConditionalCreateIsNoOracle(t *testing.T) {
	e := newAuthEnv(t)
	ct := "application/fhir+json"
	create := func(tok, cond string) response {
		return e.do("POST", "/fhir/Patient", `{"resourceType":"Patient","identifier":[{"system":"urn:mrn","value":"new"}]}`,
			"Content-Type", ct, "Authorization", "Bearer "+tok, "If-None-Exist", cond)
	}
	createOnly := e.mint("system/Patient.c", "")
	for _, cond := range []string{"identifier=urn:mrn|p2", "identifier=urn:mrn|nobody"} {
		r := create(createOnly, cond)
		if r.status != http.StatusForbidden || bytes.Contains(r.body, []byte(`"p2"`)) || r.header.Get("Location") != "" {
			t.Errorf("create-only token, If-None-Exist %s: %d %s", cond, r.status, r.body)
		}
	}
	if n := len(entryIDs(t, e.as(e.mint("system/*.rs", ""), "/fhir/Patient?identifier=urn:mrn|new").bundle(t), "match")); n != 0 {
		t.Errorf("a refused conditional create stored %d Patients", n)
	}
	// Create without a condition still works for a create-only token.
	if r := e.do("POST", "/fhir/Patient", `{"resourceType":"Patient"}`, "Content-Type", ct, "Authorization", "Bearer "+createOnly); r.status != http.StatusCreated {
		t.Errorf("plain create: %d", r.status)
	}
	// With search rights the match is answered (200) and nothing is created.
	cs := e.mint("system/Patient.cs", "")
	if r := create(cs, "identifier=urn:mrn|p2"); r.status != http.StatusOK || !bytes.Contains(r.body, []byte(`"id":"p2"`)) {
		t.Errorf("c+s token, matching condition: %d %s", r.status, r.body)
	}
	// A conditional update reveals the match through 200/201 and its Location: it needs s too.
	r := e.do("PUT", "/fhir/Patient?identifier=urn:mrn|p2", `{"resourceType":"Patient","identifier":[{"system":"urn:mrn","value":"p2"}]}`,
		"Content-Type", ct, "Authorization", "Bearer "+e.mint("system/Patient.cu", ""))
	if r.status != http.StatusForbidden {
		t.Errorf("conditional update without s: %d", r.status)
	}
	// Patient users never register patients, whatever their scopes.
	for _, tk := range p1Tokens {
		if r := create(e.mint(tk.scope+" user/Patient.cs patient/Patient.cs", tk.patient, withUser(tk.fhirUser)), "identifier=urn:mrn|p2"); r.status != http.StatusForbidden {
			t.Errorf("%s conditional create: %d %s", tk.name, r.status, r.body)
		}
	}
}

// TestConnectManagementConfined: a patient user's user/Patient.u token manages only their own
// vendor connections.
func TestConnectManagementConfined(t *testing.T) {
	st, err := sqlite.Open(t.Context(), t.TempDir(), sqlite.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ae := newAuthEnv(t)
	srv := httptest.NewServer(nil)
	t.Cleanup(srv.Close)
	s, err := api.New(api.Config{BaseURL: ae.base, CursorKey: bytes.Repeat([]byte("k"), 32), Auth: ae.verifier,
		Connect: &api.ConnectConfig{Providers: providers.NewRegistry()}}, st, search.DefaultRegistry(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = s.Handler()
	status := func(tok, patient string) int {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/connect/status?patient="+patient, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	ann := ae.mint("user/*.cruds", "", withUser("Patient/p1"))
	if got := status(ann, "p2"); got != http.StatusForbidden {
		t.Errorf("patient user p1 reading p2's connections: %d, want 403", got)
	}
	if got := status(ann, "p1"); got != http.StatusOK {
		t.Errorf("patient user p1 reading their own connections: %d", got)
	}
	if got := status(ae.mint("user/Patient.u", "", withUser("Practitioner/d1")), "p2"); got != http.StatusOK {
		t.Errorf("practitioner: %d", got)
	}
	// Seeing the state needs only read access to the Patient (the viewer's practitioner).
	if got := status(ae.mint("user/Patient.rs", "", withUser("Practitioner/d1")), "p2"); got != http.StatusOK {
		t.Errorf("practitioner with read access: %d", got)
	}
	if got := status(ae.mint("patient/Patient.rs", "p1"), "p2"); got != http.StatusForbidden {
		t.Errorf("a launch confined to p1 reading p2's connections: %d, want 403", got)
	}
	if got := status(ae.mint("patient/Observation.rs", "p1"), "p1"); got != http.StatusForbidden {
		t.Errorf("a token without Patient read: %d, want 403", got)
	}
}

// TestDeviceCacheFollowsAssociations: a patient token's Device search is confined through the
// patient's DeviceAssociations, so a cached page must not outlive a change to them.
func TestDeviceCacheFollowsAssociations(t *testing.T) {
	e := newAuthEnv(t)
	tok := e.mint("patient/*.rs", "p1")
	for i := 0; i < 2; i++ { // the second is a cache hit
		if got := allIDs(t, e.as(tok, "/fhir/Device").bundle(t)); !slices.Equal(got, []string{"Device/dev-p1"}) {
			t.Fatalf("p1's devices: %v", got)
		}
	}
	da := &fhir.DeviceAssociation{Base: fhir.Base{ResourceType: "DeviceAssociation", ID: "da-p1-orphan"},
		Identifier: []fhir.Identifier{{System: "urn:da", Value: "p1-orphan"}}, Device: fhir.Reference{Reference: "Device/dev-orphan"},
		Status:  fhir.CodeableConcept{Coding: []fhir.Coding{{System: fhir.DeviceAssociationStatusSystem, Code: "attached"}}},
		Subject: &fhir.Reference{Reference: "Patient/p1"}}
	if _, err := e.store.Upsert(t.Context(), []fhir.Resource{da}); err != nil {
		t.Fatal(err)
	}
	if got := sortd(allIDs(t, e.as(tok, "/fhir/Device").bundle(t))); !slices.Equal(got, []string{"Device/dev-orphan", "Device/dev-p1"}) {
		t.Errorf("after a new association the cached page was served: %v", got)
	}
}
