package smart

import "strings"

// AdminScope is ohx's dedicated scope of the operator API (/admin): connections, syncs, the job
// queue and its dead letters. It is not a SMART resource scope, so it grants no FHIR access of
// its own, and a SMART app never asks for it; an operator's backend client does.
const AdminScope = "admin"

// Admin reports whether the scopes allow the operator API: the dedicated AdminScope, or
// unconstrained system scopes on every type that together grant every permission (v1
// system/*.*, or system/*.read with system/*.write; v2 system/*.cruds), which can read and
// change every resource anyway. Patient and user scopes never do, whatever their permissions:
// the operator API is not confined to a compartment.
func (ss Scopes) Admin() bool {
	if ss.Has(AdminScope) {
		return true
	}
	var perms strings.Builder
	for _, s := range ss.Resource {
		if s.Context == "system" && s.Resource == "*" && len(s.Query) == 0 {
			perms.WriteString(s.Perms)
		}
	}
	return containsAll(perms.String(), "cruds")
}

func containsAll(perms, want string) bool {
	for _, p := range want {
		if !strings.ContainsRune(perms, p) {
			return false
		}
	}
	return true
}
