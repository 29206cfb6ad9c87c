package googlehealthsim

import (
	"net/http"
	"slices"
	"strings"

	"github.com/openhealthexchange/ohx/providers/sim"
)

// Scope areas (https://developers.google.com/health/reference/rest/v4/users.dataTypes.dataPoints/list,
// "Authorization scopes"): the read-only scope is scopePrefix + area + ".readonly", as the adapter
// requests them.
const (
	scopePrefix       = "https://www.googleapis.com/auth/googlehealth."
	areaActivity      = "activity_and_fitness"
	areaHealthMetrics = "health_metrics_and_measurements"
	areaSleep         = "sleep"
	areaECG           = "ecg"
	areaSettings      = "settings"
)

// caller is the authenticated user of an API request.
type caller struct {
	p      *sim.Person
	scopes []string
}

// authenticate resolves the request's bearer token; a missing, unknown or expired token is
// 401 UNAUTHENTICATED (testdata/googlehealth/error_unauthenticated.json).
func (s *Simulator) authenticate(w http.ResponseWriter, r *http.Request) (caller, bool) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	now := s.now()
	s.mu.Lock()
	a := s.access[strings.TrimSpace(tok)]
	s.mu.Unlock()
	if !ok || a == nil || now.After(a.expires) {
		googleError(w, http.StatusUnauthorized, "UNAUTHENTICATED",
			"Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.", "")
		return caller{}, false
	}
	c := caller{p: s.person(a.grant.person), scopes: a.grant.scopes}
	// users/me names the caller; the caller's own healthUserId is accepted too, anyone else's is
	// not readable with this token.
	if u := r.PathValue("user"); u != "me" && u != s.ids[c.p.Key] {
		googleError(w, http.StatusForbidden, "PERMISSION_DENIED", "The caller does not have permission", "")
		return caller{}, false
	}
	return c, true
}

// granted reports whether the caller's grant covers an area (read-only or read-write scope).
func (c caller) granted(area string) bool {
	return area == "" || slices.Contains(c.scopes, scopePrefix+area+".readonly") || slices.Contains(c.scopes, scopePrefix+area)
}

// scopeDenied is the 403 of a token without the data's scope
// (testdata/googlehealth/error_permission_denied.json).
func scopeDenied(w http.ResponseWriter) {
	googleError(w, http.StatusForbidden, "PERMISSION_DENIED", "Request had insufficient authentication scopes.", "ACCESS_TOKEN_SCOPE_INSUFFICIENT")
}

// api wraps a handler that needs a token with the scope area (none for "").
func (s *Simulator) api(area string, h func(http.ResponseWriter, *http.Request, caller)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, ok := s.authenticate(w, r)
		if !ok {
			return
		}
		if !c.granted(area) {
			scopeDenied(w)
			return
		}
		h(w, r, c)
	}
}

// dataAPI wraps a data-type handler: the data type must exist, and the token must carry its
// scope.
func (s *Simulator) dataAPI(h func(http.ResponseWriter, *http.Request, caller, dataType)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, ok := s.authenticate(w, r)
		if !ok {
			return
		}
		d, ok := typeByName(r.PathValue("type"))
		if !ok {
			googleError(w, http.StatusNotFound, "NOT_FOUND", "Data type "+r.PathValue("type")+" was not found.", "")
			return
		}
		if !c.granted(d.area) {
			scopeDenied(w)
			return
		}
		h(w, r, c, d)
	}
}
