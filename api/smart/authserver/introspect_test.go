package authserver

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp"
)

// postIntrospect posts form to /auth/introspect with the given Authorization header ("" for
// none) or, with basic, HTTP Basic credentials.
func postIntrospect(t *testing.T, e *env, form url.Values, authorization string, basic ...string) resp {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.url+"/auth/introspect", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	if len(basic) == 2 {
		req.SetBasicAuth(basic[0], basic[1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	r := resp{status: res.StatusCode, header: res.Header}
	if err := json.Unmarshal(b, &r.body); err != nil {
		t.Fatalf("introspect: %d non-JSON body %q", res.StatusCode, b)
	}
	return r
}

// TestIntrospectionNeedsClientAuthentication: RFC 7662 §2.1. Only an authenticated confidential
// client or a backend client with a private_key_jwt assertion may introspect; a bearer token
// (here a patient's, reading a practitioner's token) or a public client gets 401 invalid_client
// and learns nothing about the token.
func TestIntrospectionNeedsClientAuthentication(t *testing.T) {
	e := newEnv(t)
	verifier, challenge := pkce()
	r := e.exchange("app", e.login("app", "ann", "launch/patient patient/*.rs", challenge, ""), verifier)
	patientToken := r.body["access_token"].(string)
	verifier, challenge = pkce()
	r = e.exchange("app", e.login("app", "doc", "user/*.rs", challenge, ""), verifier)
	docToken := r.body["access_token"].(string)
	r = e.post("/auth/token", backendForm(e.assertion(jwt.SigningMethodES384, e.ecKey, "ec1", nil)))
	backendToken := r.body["access_token"].(string)
	if patientToken == "" || docToken == "" || backendToken == "" {
		t.Fatal("could not get the tokens")
	}
	tokenForm := func(extra ...string) url.Values {
		f := url.Values{"token": {docToken}}
		for i := 0; i+1 < len(extra); i += 2 {
			f.Set(extra[i], extra[i+1])
		}
		return f
	}

	for _, tt := range []struct {
		name          string
		form          url.Values
		authorization string
	}{
		{"a patient's access token as bearer", tokenForm(), "Bearer " + patientToken},
		{"a backend access token as bearer", tokenForm(), "Bearer " + backendToken},
		{"a bearer token and a client_id", tokenForm("client_id", "conf"), "Bearer " + patientToken},
		{"a public client", tokenForm("client_id", "app"), ""},
		{"no authentication", tokenForm(), ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := postIntrospect(t, e, tt.form, tt.authorization)
			if got.status != http.StatusUnauthorized || got.body["error"] != "invalid_client" {
				t.Errorf("got %d %v, want 401 invalid_client", got.status, got.body)
			}
			if !strings.HasPrefix(got.header.Get("WWW-Authenticate"), "Basic ") {
				t.Errorf("WWW-Authenticate %q, want a Basic challenge", got.header.Get("WWW-Authenticate"))
			}
			for _, k := range []string{"active", "sub", "patient", "fhirUser", "scope"} {
				if _, ok := got.body[k]; ok {
					t.Errorf("the refusal carries token data %s=%v", k, got.body[k])
				}
			}
		})
	}

	want := map[string]any{"active": true, "sub": "ann", "patient": "p1", "fhirUser": "Patient/p1", "client_id": "app",
		"scope": "launch/patient patient/*.rs"}
	for _, tt := range []struct {
		name string
		post func() resp
	}{
		{"a confidential client", func() resp {
			return postIntrospect(t, e, url.Values{"token": {patientToken}}, "", "conf", e.secret)
		}},
		{"a backend client assertion", func() resp {
			return postIntrospect(t, e, url.Values{"token": {patientToken}, "client_assertion_type": {assertionType},
				"client_assertion": {e.assertion(jwt.SigningMethodES384, e.ecKey, "ec1", nil)}}, "")
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.post()
			if r.status != http.StatusOK {
				t.Fatalf("got %d %v, want 200", r.status, r.body)
			}
			got := map[string]any{}
			for k := range want {
				got[k] = r.body[k]
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("introspection (-want +got):\n%s", diff)
			}
		})
	}
}

// TestIntrospectionDiscovery: the OpenID configuration names the authentication methods the
// introspection endpoint accepts (RFC 8414 §2), and "none" is not one of them.
func TestIntrospectionDiscovery(t *testing.T) {
	e := newEnv(t)
	res, err := http.Get(e.url + "/auth/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var doc struct {
		Endpoint string   `json:"introspection_endpoint"`
		Methods  []string `json:"introspection_endpoint_auth_methods_supported"`
	}
	if err := json.NewDecoder(res.Body).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	slices.Sort(doc.Methods)
	if doc.Endpoint != e.s.Endpoints().Introspect || !slices.Equal(doc.Methods, []string{"client_secret_basic", "private_key_jwt"}) {
		t.Errorf("got %+v, want the endpoint with client_secret_basic and private_key_jwt", doc)
	}
}
