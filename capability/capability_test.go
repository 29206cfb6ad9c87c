package capability

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/fhir/search"
)

func TestBuildFromRegistry(t *testing.T) {
	reg := search.DefaultRegistry()
	cs := Build(reg, Config{BaseURL: "https://ohx.test/fhir", Version: "1.2.3", DefaultCount: 50, MaxCount: 1000, Started: time.Unix(0, 0)})
	b, err := json.Marshal(cs)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fhir.Decode(b, "CapabilityStatement"); err != nil {
		t.Fatalf("our CapabilityStatement fails strict decoding: %v", err)
	}
	if cs.FHIRVersion != "5.0.0" || cs.Implementation.URL != "https://ohx.test/fhir" || cs.Software.Version != "1.2.3" {
		t.Errorf("header: %+v", cs)
	}
	var types []string
	for _, r := range cs.Rest[0].Resource {
		types = append(types, r.Type)
		if len(r.SearchParam) != len(reg.Params(r.Type)) {
			t.Errorf("%s: %d search params published, registry has %d", r.Type, len(r.SearchParam), len(reg.Params(r.Type)))
		}
		for _, p := range r.SearchParam {
			rp := reg.Param(r.Type, p.Name)
			if rp == nil || string(rp.Type) != p.Type || !strings.HasPrefix(p.Definition, "http://hl7.org/fhir/SearchParameter/") {
				t.Errorf("%s.%s: published %+v", r.Type, p.Name, p)
			}
		}
		var inter []string
		for _, i := range r.Interaction {
			inter = append(inter, i.Code)
		}
		want := []string{"read", "vread", "history-instance", "search-type"}
		if r.Type == "Patient" {
			want = append(want, "create", "update")
		}
		if !slices.Equal(inter, want) {
			t.Errorf("%s interactions %v, want %v", r.Type, inter, want)
		}
	}
	if !slices.Equal(types, []string{"Patient", "Device", "DeviceAssociation", "Observation"}) {
		t.Errorf("types %v", types)
	}
	obs := cs.Rest[0].Resource[3]
	if !slices.Contains(obs.SearchInclude, "Observation:device") || !slices.Contains(cs.Rest[0].Resource[1].SearchRevInclude, "DeviceAssociation:device") {
		t.Errorf("includes: %v / %v", obs.SearchInclude, cs.Rest[0].Resource[1].SearchRevInclude)
	}
	r4, err := fhir.MarshalR4(cs, fhir.R4Options{})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(r4), `"type":"DeviceAssociation"`) || !strings.Contains(string(r4), `"fhirVersion":"4.0.1"`) {
		t.Errorf("R4 statement must drop DeviceAssociation and say 4.0.1")
	}
}

func TestSMARTDiscovery(t *testing.T) {
	s := BuiltInSMART("https://h/auth", "https://h/auth/authorize", "https://h/auth/token", "https://h/auth/introspect", "https://h/auth/revoke", "https://h/auth/jwks")
	b, err := SMARTConfiguration(s)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	json.Unmarshal(b, &doc)
	for _, k := range []string{"authorization_endpoint", "token_endpoint", "grant_types_supported", "capabilities", "code_challenge_methods_supported"} {
		if doc[k] == nil {
			t.Errorf("smart-configuration lacks required %s", k)
		}
	}
	if doc["issuer"] != "https://h/auth" || doc["jwks_uri"] == nil {
		t.Errorf("sso-openid-connect requires issuer and jwks_uri: %v", doc)
	}
	s.Capabilities = slices.DeleteFunc(slices.Clone(s.Capabilities), func(c string) bool { return c == "sso-openid-connect" })
	b2, _ := SMARTConfiguration(s)
	var doc2 map[string]any
	json.Unmarshal(b2, &doc2)
	if _, ok := doc2["issuer"]; ok {
		t.Errorf("issuer must be absent without sso-openid-connect")
	}
	if m := doc["code_challenge_methods_supported"].([]any); len(m) != 1 || m[0] != "S256" {
		t.Errorf("code_challenge_methods_supported %v", m)
	}
	sec := Security(s)
	got := map[string]string{}
	for _, e := range sec.Extension[0].Extension {
		got[e.URL] = *e.ValueURI
	}
	if got["authorize"] != doc["authorization_endpoint"] || got["token"] != doc["token_endpoint"] {
		t.Errorf("oauth-uris %v must equal the smart-configuration", got)
	}
}
