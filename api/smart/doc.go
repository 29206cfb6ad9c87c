// Package smart is the resource-server side of SMART App Launch 2.x
// (https://hl7.org/fhir/smart-app-launch/) for ohx: scopes and what they grant, the claims of an
// access token and the compartment they confine a request to, and the verification of RFC 9068
// access tokens (https://www.rfc-editor.org/rfc/rfc9068) against the built-in issuer's keys or
// an external issuer's JWKS. The FHIR API needs exactly this, whoever issues its tokens; the
// built-in authorization server is package authserver, which builds on this one.
package smart
