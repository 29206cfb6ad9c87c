package smart

import (
	"github.com/golang-jwt/jwt/v5"
)

// Claims are the claims of an ohx access token: the RFC 9068 JWT profile
// (https://www.rfc-editor.org/rfc/rfc9068) with SMART launch context as private claims. The JWT
// header has typ "at+jwt".
type Claims struct {
	jwt.RegisteredClaims
	ClientID string `json:"client_id"`
	Scope    string `json:"scope,omitempty"`
	// Patient is the launch context patient id (SMART "patient").
	Patient string `json:"patient,omitempty"`
	// FHIRUser is the authenticated user as a FHIR reference (e.g. "Practitioner/1").
	FHIRUser string `json:"fhirUser,omitempty"`
}

// TokenType is the JWT typ of access tokens (RFC 9068 §2.1).
const TokenType = "at+jwt"

// AllowedAlgs are the only signing algorithms accepted on access tokens: none and the HMAC
// family are never accepted, so a public key can never be used as an HMAC secret.
var AllowedAlgs = []string{"RS256", "RS384", "ES256", "ES384"}
