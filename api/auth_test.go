package api_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/openhealthexchange/ohx/api"
	"github.com/openhealthexchange/ohx/api/smart"
	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/fhir/search"
	"github.com/openhealthexchange/ohx/store/sqlite"
)

const testIssuer = "https://auth.ohx.test"

type authEnv struct {
	*env
	key      *ecdsa.PrivateKey
	verifier *smart.Verifier
}

// newAuthEnv starts the API with token enforcement; tokens are signed with an in-test key.
func newAuthEnv(t *testing.T) *authEnv {
	t.Helper()
	st, err := sqlite.Open(t.Context(), t.TempDir(), sqlite.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	e := &env{t: t, store: st}
	e.srv = httptest.NewUnstartedServer(nil)
	e.base = "http://" + e.srv.Listener.Addr().String() + "/fhir"
	v, err := smart.NewVerifier(smart.VerifierConfig{Issuer: testIssuer, Audience: e.base, RequireTyp: true,
		Keyfunc: func(tok *jwt.Token) (any, error) {
			if tok.Header["kid"] != "k1" {
				return nil, fmt.Errorf("unknown kid")
			}
			return &key.PublicKey, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	s, err := api.New(api.Config{BaseURL: e.base, CursorKey: bytes.Repeat([]byte("k"), 32), Auth: v,
		SMARTConfiguration: []byte(`{"token_endpoint":"x"}`)}, st, search.DefaultRegistry(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.srv.Config.Handler = s.Handler()
	e.srv.Start()
	t.Cleanup(e.srv.Close)
	ae := &authEnv{env: e, key: key, verifier: v}
	ae.seedCompartments()
	return ae
}

// mint signs an access token; edit may change the claims or header before signing.
func (e *authEnv) mint(scope, patient string, edit ...func(*smart.Claims, *jwt.Token)) string {
	now := time.Now()
	c := &smart.Claims{
		RegisteredClaims: jwt.RegisteredClaims{Issuer: testIssuer, Subject: "u1", Audience: jwt.ClaimStrings{e.base},
			IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour)), ID: fmt.Sprint(now.UnixNano())},
		ClientID: "app", Scope: scope, Patient: patient,
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, c)
	tok.Header["kid"] = "k1"
	tok.Header["typ"] = "at+jwt"
	for _, f := range edit {
		f(c, tok)
	}
	s, err := tok.SignedString(e.key)
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

// withUser sets the token's fhirUser claim.
func withUser(ref string) func(*smart.Claims, *jwt.Token) {
	return func(c *smart.Claims, _ *jwt.Token) { c.FHIRUser = ref }
}

func (e *authEnv) as(token, path string) response {
	return e.get(path, "Authorization", "Bearer "+token)
}

// seedCompartments stores two patients with their own devices, associations and observations,
// a laboratory result for p1, and a device nobody is associated with.
func (e *authEnv) seedCompartments() {
	ctx := e.t.Context()
	var rs []fhir.Resource
	for _, p := range []string{"p1", "p2"} {
		rs = append(rs,
			&fhir.Patient{Base: fhir.Base{ResourceType: "Patient", ID: p}, Identifier: []fhir.Identifier{{System: "urn:mrn", Value: p}}},
			&fhir.Device{Base: fhir.Base{ResourceType: "Device", ID: "dev-" + p}, Identifier: []fhir.Identifier{{System: "urn:dev", Value: p}}, Status: "active"},
			&fhir.DeviceAssociation{Base: fhir.Base{ResourceType: "DeviceAssociation", ID: "da-" + p}, Identifier: []fhir.Identifier{{System: "urn:da", Value: p}},
				Device:  fhir.Reference{Reference: "Device/dev-" + p},
				Status:  fhir.CodeableConcept{Coding: []fhir.Coding{{System: fhir.DeviceAssociationStatusSystem, Code: "attached"}}},
				Subject: &fhir.Reference{Reference: "Patient/" + p}},
			obs("vs-"+p, p, "dev-"+p, "29463-7", time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC), "70"),
		)
	}
	lab := obs("lab-p1", "p1", "", "2345-7", time.Date(2026, 1, 3, 0, 0, 0, 0, time.UTC), "5.5")
	lab.Category = []fhir.CodeableConcept{{Coding: []fhir.Coding{{System: "http://terminology.hl7.org/CodeSystem/observation-category", Code: "laboratory"}}}}
	rs = append(rs, lab, &fhir.Device{Base: fhir.Base{ResourceType: "Device", ID: "dev-orphan"}, Identifier: []fhir.Identifier{{System: "urn:dev", Value: "orphan"}}})
	if _, err := e.store.Upsert(ctx, rs); err != nil {
		e.t.Fatal(err)
	}
}

// compartmentOfP1 is everything a p1 patient token may ever see.
var compartmentOfP1 = []string{"Patient/p1", "Device/dev-p1", "DeviceAssociation/da-p1", "Observation/vs-p1", "Observation/lab-p1"}

func allIDs(t *testing.T, b fhir.Bundle) []string {
	return append(entryIDs(t, b, "match"), entryIDs(t, b, "include")...)
}

func TestAuthRequired(t *testing.T) {
	e := newAuthEnv(t)
	r := e.get("/fhir/Patient/p1")
	if r.status != 401 || r.header.Get("WWW-Authenticate") != `Bearer realm="ohx"` || r.outcome(t).Issue[0].Code != "login" {
		t.Errorf("no token: %d %q %s", r.status, r.header.Get("WWW-Authenticate"), r.body)
	}
	r = e.as("not-a-jwt", "/fhir/Patient/p1")
	if r.status != 401 || !strings.Contains(r.header.Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Errorf("garbage token: %d %q", r.status, r.header.Get("WWW-Authenticate"))
	}
	for _, path := range []string{"/fhir/metadata", "/fhir/.well-known/smart-configuration"} {
		if r := e.get(path, "Accept", "application/fhir+xml"); r.status != 200 && path != "/fhir/metadata" {
			t.Errorf("%s without a token: %d", path, r.status)
		}
	}
	if r := e.get("/fhir/.well-known/smart-configuration", "Accept", "application/xml"); r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") {
		t.Errorf("smart-configuration must be JSON whatever Accept says: %d %q", r.status, r.header.Get("Content-Type"))
	}
}

// TestTokenValidation covers every way a token can be bad.
func TestTokenValidation(t *testing.T) {
	e := newAuthEnv(t)
	rsaKeyPub := e.key.PublicKey
	for _, tc := range []struct {
		name  string
		token func() string
	}{
		{"alg none", func() string {
			tok := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{"iss": testIssuer, "aud": e.base, "exp": time.Now().Add(time.Hour).Unix(), "iat": time.Now().Unix(), "scope": "system/*.rs"})
			tok.Header["kid"] = "k1"
			s, _ := tok.SignedString(jwt.UnsafeAllowNoneSignatureType)
			return s
		}},
		{"HS256 with the public key as secret", func() string {
			pub, err := rsaKeyPub.Bytes()
			if err != nil {
				t.Fatal(err)
			}
			tok := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"iss": testIssuer, "aud": e.base, "exp": time.Now().Add(time.Hour).Unix(), "iat": time.Now().Unix(), "scope": "system/*.rs"})
			tok.Header["kid"] = "k1"
			tok.Header["typ"] = "at+jwt"
			s, _ := tok.SignedString(pub)
			return s
		}},
		{"expired", func() string {
			return e.mint("system/*.rs", "", func(c *smart.Claims, _ *jwt.Token) {
				c.ExpiresAt = jwt.NewNumericDate(time.Now().Add(-2 * time.Minute))
			})
		}},
		{"not yet valid", func() string {
			return e.mint("system/*.rs", "", func(c *smart.Claims, _ *jwt.Token) { c.NotBefore = jwt.NewNumericDate(time.Now().Add(5 * time.Minute)) })
		}},
		{"issued in the future", func() string {
			return e.mint("system/*.rs", "", func(c *smart.Claims, _ *jwt.Token) { c.IssuedAt = jwt.NewNumericDate(time.Now().Add(5 * time.Minute)) })
		}},
		{"wrong aud", func() string {
			return e.mint("system/*.rs", "", func(c *smart.Claims, _ *jwt.Token) { c.Audience = jwt.ClaimStrings{"https://other.test/fhir"} })
		}},
		{"wrong iss", func() string {
			return e.mint("system/*.rs", "", func(c *smart.Claims, _ *jwt.Token) { c.Issuer = "https://evil.test" })
		}},
		{"unknown kid", func() string {
			return e.mint("system/*.rs", "", func(_ *smart.Claims, tok *jwt.Token) { tok.Header["kid"] = "k2" })
		}},
		{"no exp", func() string {
			return e.mint("system/*.rs", "", func(c *smart.Claims, _ *jwt.Token) { c.ExpiresAt = nil })
		}},
		{"wrong typ", func() string {
			return e.mint("system/*.rs", "", func(_ *smart.Claims, tok *jwt.Token) { tok.Header["typ"] = "JWT" })
		}},
		{"tampered payload", func() string {
			s := e.mint("patient/*.rs", "p1")
			parts := strings.Split(s, ".")
			other := strings.Split(e.mint("system/*.rs", ""), ".")
			return parts[0] + "." + other[1] + "." + parts[2]
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.as(tc.token(), "/fhir/Observation")
			if r.status != 401 || !strings.Contains(r.header.Get("WWW-Authenticate"), `error="invalid_token"`) {
				t.Errorf("got %d %q, want 401 invalid_token", r.status, r.header.Get("WWW-Authenticate"))
			}
		})
	}
	// Within the 60 s leeway an expired token still works.
	tok := e.mint("system/*.rs", "", func(c *smart.Claims, _ *jwt.Token) {
		c.ExpiresAt = jwt.NewNumericDate(time.Now().Add(-30 * time.Second))
	})
	if r := e.as(tok, "/fhir/Observation"); r.status != 200 {
		t.Errorf("token expired 30 s ago (leeway 60 s): %d", r.status)
	}
}

// TestScopeMatrix runs scope × type × interaction × patient context, asserting allowed or denied
// and that nothing outside the compartment ever appears.
func TestScopeMatrix(t *testing.T) {
	e := newAuthEnv(t)
	types := []string{"Patient", "Device", "DeviceAssociation", "Observation"}
	own := map[string]string{"Patient": "p1", "Device": "dev-p1", "DeviceAssociation": "da-p1", "Observation": "vs-p1"}
	other := map[string]string{"Patient": "p2", "Device": "dev-p2", "DeviceAssociation": "da-p2", "Observation": "vs-p2"}
	denyAll := map[string]bool{}
	for _, sc := range []struct {
		scope, patient string
		fhirUser       string
		read, search   map[string]bool // per type; nil = all true
		confined       bool
	}{
		{scope: "patient/*.rs", patient: "p1", confined: true},
		{scope: "patient/*.read", patient: "p1", confined: true},
		{scope: "patient/*.cruds", patient: "p1", confined: true},
		{scope: "patient/Observation.rs", patient: "p1", confined: true,
			read: map[string]bool{"Observation": true}, search: map[string]bool{"Observation": true}},
		{scope: "patient/Observation.r patient/Device.s", patient: "p1", confined: true,
			read: map[string]bool{"Observation": true}, search: map[string]bool{"Device": true}},
		// user/ scopes mean what the user may see: a practitioner every patient, a patient user
		// their own compartment (whatever else the token says), a token naming no user nothing.
		{scope: "user/*.rs", patient: "", fhirUser: "Practitioner/d1"},
		{scope: "user/*.read", patient: "p2", fhirUser: "Practitioner/d1"},
		{scope: "user/*.rs", patient: "", fhirUser: "Patient/p1", confined: true},
		{scope: "user/*.cruds", patient: "", fhirUser: "Patient/p1", confined: true},
		{scope: "user/*.read", patient: "", fhirUser: "Patient/p1", confined: true},
		{scope: "patient/*.rs user/*.rs", patient: "p1", fhirUser: "Patient/p1", confined: true},
		{scope: "user/*.rs", patient: "p1", fhirUser: "Patient/p1", confined: true},
		{scope: "user/*.rs", patient: "", fhirUser: "http://ehr.example/fhir/Patient/p1", confined: true},
		{scope: "user/Observation.rs", patient: "", fhirUser: "Patient/p1", confined: true,
			read: map[string]bool{"Observation": true}, search: map[string]bool{"Observation": true}},
		{scope: "system/*.rs", patient: "", fhirUser: "Patient/p1", confined: true},
		{scope: "user/*.rs", patient: "p2", fhirUser: "Patient/p1", read: denyAll, search: denyAll},
		{scope: "user/*.rs", patient: "", read: denyAll, search: denyAll},
		{scope: "user/*.rs", patient: "p1", read: denyAll, search: denyAll},
		{scope: "user/*.rs", patient: "", fhirUser: "RelatedPerson/r1", read: denyAll, search: denyAll},
		{scope: "system/*.read", patient: ""},
		{scope: "system/Device.rs system/DeviceAssociation.rs", patient: "",
			read: map[string]bool{"Device": true, "DeviceAssociation": true}, search: map[string]bool{"Device": true, "DeviceAssociation": true}},
		{scope: "patient/*.rs", patient: "", confined: true,
			read: map[string]bool{}, search: map[string]bool{}}, // patient scopes without a patient: nothing
		{scope: "launch/patient openid", patient: "p1", read: map[string]bool{}, search: map[string]bool{}},
	} {
		tok := e.mint(sc.scope, sc.patient, withUser(sc.fhirUser))
		for _, typ := range types {
			canRead := sc.read == nil || sc.read[typ]
			canSearch := sc.search == nil || sc.search[typ]
			name := fmt.Sprintf("%s[%s,%s]/%s", sc.scope, sc.patient, sc.fhirUser, typ)
			t.Run(name+"/read own", func(t *testing.T) {
				r := e.as(tok, "/fhir/"+typ+"/"+own[typ])
				want := map[bool]int{true: 200, false: 403}[canRead]
				if r.status != want {
					t.Errorf("got %d, want %d", r.status, want)
				}
			})
			t.Run(name+"/read other patient's", func(t *testing.T) {
				r := e.as(tok, "/fhir/"+typ+"/"+other[typ])
				want := 200
				switch {
				case !canRead:
					want = 403
				case sc.confined:
					want = 404 // never reveal that it exists
				}
				if r.status != want {
					t.Errorf("got %d, want %d", r.status, want)
				}
			})
			t.Run(name+"/search", func(t *testing.T) {
				r := e.as(tok, "/fhir/"+typ)
				if !canSearch {
					if r.status != 403 || !strings.Contains(r.header.Get("WWW-Authenticate"), "insufficient_scope") {
						t.Errorf("got %d %q, want 403 insufficient_scope", r.status, r.header.Get("WWW-Authenticate"))
					}
					return
				}
				ids := allIDs(t, r.bundle(t))
				if len(ids) == 0 {
					t.Errorf("no results")
				}
				for _, id := range ids {
					if sc.confined && !slices.Contains(compartmentOfP1, id) {
						t.Errorf("%s leaked to a p1 token", id)
					}
				}
			})
		}
	}
}

// TestNoLeakThroughIncludes runs every include and revinclude under a p1 token.
func TestNoLeakThroughIncludes(t *testing.T) {
	e := newAuthEnv(t)
	tok := e.mint("patient/*.rs", "p1")
	for _, q := range []string{
		"/fhir/Observation?_include=Observation:device&_include=Observation:patient&_include=Observation:subject",
		"/fhir/Device?_revinclude=Observation:device&_revinclude=DeviceAssociation:device",
		"/fhir/Patient?_revinclude=Observation:patient&_revinclude=DeviceAssociation:patient",
		"/fhir/DeviceAssociation?_include=DeviceAssociation:device&_include=DeviceAssociation:patient",
		"/fhir/Observation?patient=p2&_include=Observation:device",
		"/fhir/Observation?subject=Patient/p2",
		"/fhir/Device?_id=dev-p2,dev-orphan",
		"/fhir/DeviceAssociation?patient=p2&_include=DeviceAssociation:device",
	} {
		b := e.as(tok, q).bundle(t)
		for _, id := range allIDs(t, b) {
			if !slices.Contains(compartmentOfP1, id) {
				t.Errorf("%s: %s leaked", q, id)
			}
		}
	}
	b := e.as(tok, "/fhir/Device?_revinclude=Observation:device").bundle(t)
	if got := allIDs(t, b); !slices.Contains(got, "Device/dev-p1") || !slices.Contains(got, "Observation/vs-p1") {
		t.Errorf("own device and its observations must be visible: %v", got)
	}
	// A cursor made for p1 does not page another patient's search.
	p1 := e.as(tok, "/fhir/Observation?_count=1").bundle(t)
	next := linkOf(p1, "next")
	if next == "" {
		t.Fatal("no next link")
	}
	if r := e.as(e.mint("patient/*.rs", "p2"), next); r.status != 400 {
		t.Errorf("p1's cursor with p2's token: %d, want 400", r.status)
	}
}

// TestScopeConstraints checks v2 finer-grained scopes on category.
func TestScopeConstraints(t *testing.T) {
	e := newAuthEnv(t)
	cat := "http://terminology.hl7.org/CodeSystem/observation-category|"
	vital := e.mint("patient/Observation.rs?category="+cat+"vital-signs", "p1")
	if got := entryIDs(t, e.as(vital, "/fhir/Observation").bundle(t), "match"); !slices.Equal(got, []string{"Observation/vs-p1"}) {
		t.Errorf("vital-signs scope search: %v", got)
	}
	if r := e.as(vital, "/fhir/Observation/lab-p1"); r.status != 404 {
		t.Errorf("vital-signs scope reading a lab result: %d, want 404", r.status)
	}
	both := e.mint("patient/Observation.rs?category="+cat+"vital-signs patient/Observation.rs?category="+cat+"laboratory", "p1")
	if got := sortd(entryIDs(t, e.as(both, "/fhir/Observation").bundle(t), "match")); !slices.Equal(got, []string{"Observation/lab-p1", "Observation/vs-p1"}) {
		t.Errorf("two category scopes: %v", got)
	}
	mixed := e.mint("patient/Observation.rs?category="+cat+"laboratory patient/Observation.rs?code=http://loinc.org|29463-7", "p1")
	if got := sortd(entryIDs(t, e.as(mixed, "/fhir/Observation").bundle(t), "match")); !slices.Equal(got, []string{"Observation/lab-p1", "Observation/vs-p1"}) {
		t.Errorf("category or code scopes: %v", got)
	}
	onlyCode := e.mint("patient/Observation.rs?code=http://loinc.org|8867-4", "p1")
	if got := entryIDs(t, e.as(onlyCode, "/fhir/Observation").bundle(t), "match"); len(got) != 0 {
		t.Errorf("code scope matching nothing: %v", got)
	}
}

func TestAuthWrites(t *testing.T) {
	e := newAuthEnv(t)
	ct := "application/fhir+json"
	put := func(tok, id string) int {
		body := `{"resourceType":"Patient","id":"` + id + `","identifier":[{"system":"urn:mrn","value":"` + id + `"}]}`
		return e.do("PUT", "/fhir/Patient/"+id, body, "Content-Type", ct, "Authorization", "Bearer "+tok).status
	}
	if got := put(e.mint("patient/Patient.u", "p1"), "p1"); got != 200 {
		t.Errorf("patient updating itself: %d", got)
	}
	if got := put(e.mint("patient/Patient.u", "p1"), "p2"); got != 403 {
		t.Errorf("patient updating another patient: %d", got)
	}
	if got := put(e.mint("system/*.rs", ""), "p2"); got != 403 {
		t.Errorf("read-only system token updating: %d", got)
	}
	if got := put(e.mint("system/Patient.cu", ""), "p3"); got != 201 {
		t.Errorf("system token creating by PUT: %d", got)
	}
	post := func(tok string) int {
		return e.do("POST", "/fhir/Patient", `{"resourceType":"Patient"}`, "Content-Type", ct, "Authorization", "Bearer "+tok).status
	}
	if got := post(e.mint("patient/Patient.c", "p1")); got != 403 {
		t.Errorf("patient token creating a patient: %d", got)
	}
	if got := post(e.mint("system/Patient.c", "")); got != 201 {
		t.Errorf("system token creating a patient: %d", got)
	}
	var oo struct{ Issue []struct{ Code string } }
	r := e.do("POST", "/fhir/Patient", `{"resourceType":"Patient"}`, "Content-Type", ct, "Authorization", "Bearer "+e.mint("system/Patient.rs", ""))
	json.Unmarshal(r.body, &oo)
	if r.status != http.StatusForbidden || len(oo.Issue) == 0 || oo.Issue[0].Code != "forbidden" {
		t.Errorf("create without c: %d %s", r.status, r.body)
	}
}
