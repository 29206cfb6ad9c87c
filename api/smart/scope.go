package smart

import (
	"net/url"
	"slices"
	"strings"
)

// Scope is one SMART resource scope, e.g. patient/Observation.rs?category=…|vital-signs.
// https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html
type Scope struct {
	// Context is "patient", "user" or "system".
	Context string
	// Resource is a resource type or "*".
	Resource string
	// Perms is a subset of "cruds" in that order (v1 scopes are converted: read → rs,
	// write → cud, * → cruds).
	Perms string
	// Query holds v2 finer-grained constraints (search parameters that must match), or nil.
	Query url.Values
	// V1 records that the scope was written in the v1 grammar.
	V1 bool
}

// Scopes is a granted scope string, parsed.
type Scopes struct {
	Resource []Scope
	// Other holds the non-resource scopes (launch, launch/patient, openid, fhirUser,
	// offline_access, online_access…).
	Other []string
}

// ParseScopes parses a space-separated scope string. Malformed resource scopes are dropped
// (the SMART spec lets servers ignore them), so they grant nothing.
func ParseScopes(s string) Scopes {
	var out Scopes
	for f := range strings.FieldsSeq(s) {
		if sc, ok := ParseScope(f); ok {
			out.Resource = append(out.Resource, sc)
		} else if !strings.Contains(f, "/") || strings.HasPrefix(f, "launch/") {
			out.Other = append(out.Other, f)
		}
	}
	return out
}

// ParseScope parses one SMART resource scope such as patient/Observation.rs. It reports false
// for anything else: a non-resource scope (openid, launch/patient…) or a malformed one, which
// ParseScopes drops.
func ParseScope(f string) (Scope, bool) {
	ctx, rest, ok := strings.Cut(f, "/")
	if !ok || (ctx != "patient" && ctx != "user" && ctx != "system") {
		return Scope{}, false
	}
	rest, query, hasQuery := strings.Cut(rest, "?")
	typ, perm, ok := strings.Cut(rest, ".")
	if !ok || typ == "" || (typ != "*" && !isTypeName(typ)) {
		return Scope{}, false
	}
	sc := Scope{Context: ctx, Resource: typ}
	switch perm {
	case "read":
		sc.Perms, sc.V1 = "rs", true
	case "write":
		sc.Perms, sc.V1 = "cud", true
	case "*":
		sc.Perms, sc.V1 = "cruds", true
	default:
		if !validPerms(perm) {
			return Scope{}, false
		}
		sc.Perms = perm
	}
	if hasQuery {
		if sc.V1 {
			return Scope{}, false
		}
		q, err := url.ParseQuery(query)
		if err != nil || len(q) == 0 {
			return Scope{}, false
		}
		sc.Query = q
	}
	return sc, true
}

func isTypeName(s string) bool {
	if s[0] < 'A' || s[0] > 'Z' {
		return false
	}
	for _, r := range s {
		if !(r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// validPerms accepts a non-empty subsequence of "cruds".
func validPerms(p string) bool {
	if p == "" {
		return false
	}
	i := 0
	for _, c := range p {
		j := strings.IndexRune("cruds"[i:], c)
		if j < 0 {
			return false
		}
		i += j + 1
	}
	return true
}

// String formats the scope back in the grammar it came in.
func (s Scope) String() string {
	perm := s.Perms
	if s.V1 {
		switch s.Perms {
		case "rs":
			perm = "read"
		case "cud":
			perm = "write"
		case "cruds":
			perm = "*"
		}
	}
	out := s.Context + "/" + s.Resource + "." + perm
	if len(s.Query) > 0 {
		out += "?" + s.Query.Encode()
	}
	return out
}

// Has reports whether a non-resource scope (e.g. "offline_access") was granted.
func (ss Scopes) Has(name string) bool { return slices.Contains(ss.Other, name) }

// Grant is what the scopes allow for one resource type and permission.
type Grant struct {
	// Allowed is false when no scope grants the permission.
	Allowed bool
	// Constraints lists the v2 query constraints of the granting scopes; the request is allowed
	// for resources matching any one of them. Empty when some granting scope is unconstrained.
	Constraints []url.Values
	// Contexts lists the scope contexts (patient, user, system) that grant it.
	Contexts []string
}

// Allows reports what the scopes grant for permission perm (one of c r u d s) on typ. Scopes are
// a union: one unconstrained grant makes the whole grant unconstrained.
func (ss Scopes) Allows(typ string, perm byte) Grant {
	var g Grant
	unconstrained := false
	for _, s := range ss.Resource {
		if (s.Resource != "*" && s.Resource != typ) || strings.IndexByte(s.Perms, perm) < 0 {
			continue
		}
		g.Allowed = true
		if !slices.Contains(g.Contexts, s.Context) {
			g.Contexts = append(g.Contexts, s.Context)
		}
		if len(s.Query) == 0 {
			unconstrained = true
		} else {
			g.Constraints = append(g.Constraints, s.Query)
		}
	}
	if unconstrained {
		g.Constraints = nil
	}
	return g
}
