package authserver

import (
	"slices"
	"strings"
)

// audiences are the FHIR bases our access tokens are for: the R5 base and the R4 base of the
// same server. Every token lists both in aud (RFC 9068 §3: aud identifies the resource server),
// because both bases are one resource server: the same resources, read through the same access
// rules, in two representations (the R5 base even serves R4 on Accept: fhirVersion=4.0), so a
// token scoped to one base would protect nothing the other does not expose.
func (s *Server) audiences() []string { return []string{s.cfg.FHIRBaseURL, s.cfg.R4BaseURL} }

// validAudience reports whether aud, as an app sends it at authorize (SMART: the FHIR base URL
// it will use) or at the token endpoint, names one of our FHIR bases; a trailing slash is allowed.
func (s *Server) validAudience(aud string) bool {
	return aud != "" && slices.Contains(s.audiences(), strings.TrimSuffix(aud, "/"))
}

// audienceError is the error description for an aud that names neither base.
func (s *Server) audienceError() string {
	return "aud must be the FHIR base URL " + s.cfg.FHIRBaseURL + " or its R4 base " + s.cfg.R4BaseURL
}
