package api_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp"

	"github.com/openhealthexchange/ohx/api"
	"github.com/openhealthexchange/ohx/api/smart"
	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/fhir/search"
	"github.com/openhealthexchange/ohx/store"
	"github.com/openhealthexchange/ohx/store/sqlite"
)

// practitioners is a function-field fake of api.Practitioners.
type practitioners func(ctx context.Context, id string) (*fhir.Practitioner, error)

func (f practitioners) Practitioner(ctx context.Context, id string) (*fhir.Practitioner, error) {
	return f(ctx, id)
}

// doctor is the fake's one practitioner user, Practitioner/d1.
func doctor(_ context.Context, id string) (*fhir.Practitioner, error) {
	if id != "d1" {
		return nil, fmt.Errorf("no practitioner %s: %w", id, store.ErrNotFound)
	}
	active := true
	return &fhir.Practitioner{Base: fhir.Base{ResourceType: "Practitioner", ID: "d1"}, Active: &active,
		Identifier: []fhir.Identifier{{System: fhir.UsernameSystem, Value: "doc"}}, Name: []fhir.HumanName{{Text: "Dr Doc"}}}, nil
}

// newPractitionerEnv is newAuthEnv with Config.Practitioners set (nil: the doctor fake).
func newPractitionerEnv(t *testing.T, p api.Practitioners) *authEnv {
	t.Helper()
	if p == nil {
		p = practitioners(doctor)
	}
	st, err := sqlite.Open(t.Context(), t.TempDir(), sqlite.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	e := &env{t: t, store: st}
	e.srv = httptest.NewUnstartedServer(nil)
	e.base = "http://" + e.srv.Listener.Addr().String() + "/fhir"
	v, err := smart.NewVerifier(smart.VerifierConfig{Issuer: testIssuer, Audience: e.base, Audiences: []string{e.base + "/r4"}, RequireTyp: true,
		Keyfunc: func(*jwt.Token) (any, error) { return &key.PublicKey, nil }})
	if err != nil {
		t.Fatal(err)
	}
	s, err := api.New(api.Config{BaseURL: e.base, CursorKey: bytes.Repeat([]byte("k"), 32), Auth: v, Practitioners: p,
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

// TestPractitionerRead checks GET Practitioner/{id}: the practitioner themself (fhirUser, with the
// fhirUser scope or a scope that reads Practitioner) and unconstrained system readers see it;
// everyone else gets 404, as for an unknown id.
func TestPractitionerRead(t *testing.T) {
	e := newPractitionerEnv(t, nil)
	self := withUser("Practitioner/d1")
	for _, tc := range []struct {
		name  string
		path  string
		token string
		want  int
	}{
		{"themself with fhirUser", "/fhir/Practitioner/d1", e.mint("openid fhirUser", "", self), 200},
		{"themself with user scopes", "/fhir/Practitioner/d1", e.mint("user/*.rs", "", self), 200},
		{"themself with user/Practitioner.r", "/fhir/Practitioner/d1", e.mint("user/Practitioner.r", "", self), 200},
		{"themself, absolute fhirUser", "/fhir/Practitioner/d1", e.mint("openid fhirUser", "", withUser(e.base+"/Practitioner/d1")), 200},
		{"themself under R4", "/fhir/r4/Practitioner/d1", e.mint("openid fhirUser", "", self), 200},
		{"themself without a scope for it", "/fhir/Practitioner/d1", e.mint("launch/patient patient/Observation.rs", "p1", self), 404},
		{"another practitioner", "/fhir/Practitioner/d1", e.mint("openid fhirUser user/*.rs", "", withUser("Practitioner/d2")), 404},
		{"a patient user", "/fhir/Practitioner/d1", e.mint("openid fhirUser user/*.rs patient/*.rs", "p1", withUser("Patient/p1")), 404},
		{"system/Practitioner.rs", "/fhir/Practitioner/d1", e.mint("system/Practitioner.rs", ""), 200},
		{"system/*.read", "/fhir/r4/Practitioner/d1", e.mint("system/*.read", ""), 200},
		{"system, constrained", "/fhir/Practitioner/d1", e.mint("system/Practitioner.rs?identifier=urn:ohx:username|doc", ""), 404},
		{"system, other types", "/fhir/Practitioner/d1", e.mint("system/Patient.rs system/Observation.rs", ""), 404},
		{"system, unknown id", "/fhir/Practitioner/d9", e.mint("system/*.rs", ""), 404},
		{"system, invalid id", "/fhir/Practitioner/bad$id", e.mint("system/*.rs", ""), 404},
		{"no token", "/fhir/Practitioner/d1", "", 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r response
			if tc.token == "" {
				r = e.get(tc.path)
			} else {
				r = e.as(tc.token, tc.path)
			}
			if r.status != tc.want {
				t.Fatalf("status %d, want %d: %s", r.status, tc.want, r.body)
			}
			if r.status != 200 {
				if oo := r.outcome(t); r.status == 404 && oo.Issue[0].Code != "not-found" {
					t.Errorf("404 issue code %q, want not-found", oo.Issue[0].Code)
				}
				return
			}
			var got fhir.Practitioner
			if err := json.Unmarshal(r.body, &got); err != nil {
				t.Fatal(err)
			}
			want, _ := doctor(t.Context(), "d1")
			if diff := cmp.Diff(want, &got); diff != "" {
				t.Errorf("Practitioner (-want +got):\n%s", diff)
			}
			wantVersion := "fhirVersion=5.0"
			if slices.Contains([]string{"/fhir/r4/Practitioner/d1"}, tc.path) {
				wantVersion = "fhirVersion=4.0"
				validR4(t, tc.path, r.body)
			}
			if ct := r.header.Get("Content-Type"); !bytes.Contains([]byte(ct), []byte(wantVersion)) {
				t.Errorf("Content-Type %q, want %s", ct, wantVersion)
			}
		})
	}
	// The CapabilityStatements advertise the read, and nothing else, of Practitioner.
	for _, path := range []string{"/fhir/metadata", "/fhir/r4/metadata"} {
		var cs fhir.CapabilityStatement
		if err := json.Unmarshal(e.get(path).body, &cs); err != nil {
			t.Fatal(err)
		}
		i := slices.IndexFunc(cs.Rest[0].Resource, func(r fhir.CapabilityResource) bool { return r.Type == "Practitioner" })
		if i < 0 {
			t.Fatalf("%s does not list Practitioner", path)
		}
		res := cs.Rest[0].Resource[i]
		if diff := cmp.Diff([]fhir.CapabilityInteraction{{Code: "read"}}, res.Interaction); diff != "" || len(res.SearchParam) > 0 {
			t.Errorf("%s Practitioner interactions (-want +got):\n%s search params %v", path, diff, res.SearchParam)
		}
	}
	validR4(t, "R4 metadata", e.get("/fhir/r4/metadata").body)
}

// TestNoPractitionerWithoutUsers checks that without Config.Practitioners (an external issuer,
// or OHX_AUTH=off) Practitioner is an unsupported type, as before.
func TestNoPractitionerWithoutUsers(t *testing.T) {
	e := newEnv(t)
	if r := e.get("/fhir/Practitioner/d1"); r.status != http.StatusNotFound {
		t.Errorf("got %d, want 404", r.status)
	}
	var cs fhir.CapabilityStatement
	json.Unmarshal(e.get("/fhir/metadata").body, &cs)
	if slices.ContainsFunc(cs.Rest[0].Resource, func(r fhir.CapabilityResource) bool { return r.Type == "Practitioner" }) {
		t.Error("metadata lists Practitioner without a source of practitioners")
	}
}
