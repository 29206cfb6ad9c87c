package capability

import (
	"encoding/json"
	"slices"

	"github.com/openhealthexchange/ohx/fhir"
)

// SMART describes the authorization server that protects the FHIR endpoint.
type SMART struct {
	// Issuer is published with sso-openid-connect (SMART requires it then, and only then).
	Issuer                                                    string
	AuthorizeURL, TokenURL, IntrospectURL, RevokeURL, JWKSURL string
	// Capabilities are the SMART capability strings actually supported.
	Capabilities []string
	// GrantTypes, AuthMethods, AuthSigningAlgs and Scopes describe the token endpoint.
	GrantTypes      []string
	AuthMethods     []string
	AuthSigningAlgs []string
	Scopes          []string
}

// BuiltInSMART is what ohx's own authorization server supports (SMART App Launch 2.2 capabilities, https://hl7.org/fhir/smart-app-launch/conformance.html#capabilities),
// including OpenID Connect id_tokens with fhirUser (sso-openid-connect).
func BuiltInSMART(issuer, authorize, token, introspect, revoke, jwks string) SMART {
	return SMART{
		Issuer:       issuer,
		AuthorizeURL: authorize, TokenURL: token, IntrospectURL: introspect, RevokeURL: revoke, JWKSURL: jwks,
		Capabilities: []string{"launch-standalone", "launch-ehr", "authorize-post", "sso-openid-connect", "client-public",
			"client-confidential-symmetric", "client-confidential-asymmetric", "context-standalone-patient",
			"context-ehr-patient", "permission-patient", "permission-user", "permission-offline",
			"permission-v1", "permission-v2"},
		GrantTypes:      []string{"authorization_code", "client_credentials", "refresh_token"},
		AuthMethods:     []string{"client_secret_basic", "private_key_jwt"},
		AuthSigningAlgs: []string{"RS384", "ES384"},
		Scopes: []string{"openid", "fhirUser", "launch", "launch/patient", "offline_access", "patient/*.rs", "patient/*.read",
			"user/*.rs", "user/*.read", "system/*.rs", "system/*.read", "patient/Observation.rs",
			"patient/Patient.rs", "patient/Device.rs", "patient/DeviceAssociation.rs"},
	}
}

// SMARTConfiguration returns the /.well-known/smart-configuration document (SMART App Launch
// 2.2 conformance.md): absolute URLs, S256 only, and issuer only with sso-openid-connect.
func SMARTConfiguration(s SMART) ([]byte, error) {
	doc := map[string]any{
		"token_endpoint":                   s.TokenURL,
		"grant_types_supported":            s.GrantTypes,
		"capabilities":                     s.Capabilities,
		"code_challenge_methods_supported": []string{"S256"},
		"response_types_supported":         []string{"code"},
	}
	set := func(k, v string) {
		if v != "" {
			doc[k] = v
		}
	}
	set("authorization_endpoint", s.AuthorizeURL)
	set("introspection_endpoint", s.IntrospectURL)
	set("revocation_endpoint", s.RevokeURL)
	set("jwks_uri", s.JWKSURL)
	if slices.Contains(s.Capabilities, "sso-openid-connect") {
		set("issuer", s.Issuer)
	}
	if len(s.AuthMethods) > 0 {
		doc["token_endpoint_auth_methods_supported"] = s.AuthMethods
	}
	if len(s.AuthSigningAlgs) > 0 {
		doc["token_endpoint_auth_signing_alg_values_supported"] = s.AuthSigningAlgs
	}
	if len(s.Scopes) > 0 {
		doc["scopes_supported"] = s.Scopes
	}
	return json.Marshal(doc)
}

// OAuthURIs is the extension SMART 1.0 clients and Inferno's STU1 discovery tests read.
const OAuthURIs = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"

// Security returns CapabilityStatement.rest.security for s: the SMART-on-FHIR service coding and
// the oauth-uris extension, generated from the same values as the SMART configuration.
func Security(s SMART) *fhir.CapabilitySecurity {
	var sub []fhir.Extension
	for _, u := range []struct{ name, url string }{
		{"authorize", s.AuthorizeURL}, {"token", s.TokenURL}, {"introspect", s.IntrospectURL}, {"revoke", s.RevokeURL},
	} {
		if u.url != "" {
			v := u.url
			sub = append(sub, fhir.Extension{URL: u.name, ValueURI: &v})
		}
	}
	cors := true
	return &fhir.CapabilitySecurity{
		Extension: []fhir.Extension{{URL: OAuthURIs, Extension: sub}},
		Cors:      &cors,
		Service: []fhir.CodeableConcept{{Coding: []fhir.Coding{{
			System: "http://terminology.hl7.org/CodeSystem/restful-security-service", Code: "SMART-on-FHIR", Display: "SMART-on-FHIR",
		}}, Text: "OAuth2 using SMART-on-FHIR profile (see http://docs.smarthealthit.org)"}},
		Description: "Every request except metadata and discovery needs a SMART access token (RFC 9068 JWT).",
	}
}
