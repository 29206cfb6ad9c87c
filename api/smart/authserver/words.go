package authserver

import (
	"net/url"
	"slices"
	"strings"

	"github.com/openhealthexchange/ohx/api/smart"
)

// describeScopes turns a granted scope string into sentences for the consent page, e.g.
// "Read and search your Observations (vital signs only)". own is true when the signed-in user
// is the patient.
func describeScopes(scope string, own bool) []string {
	var out []string
	for f := range strings.FieldsSeq(scope) {
		if d := describeScope(f, own); d != "" && !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	return out
}

func describeScope(f string, own bool) string {
	switch f {
	case "launch/patient":
		return "Know which patient's record is open"
	case "launch":
		return "Receive the context the app was launched in"
	case "offline_access":
		return "Keep access after you close the app, until you revoke it"
	case "online_access":
		return "Keep access while you are signed in"
	case "openid", "fhirUser":
		return "Know who you are"
	}
	sc, ok := smart.ParseScope(f)
	if !ok {
		return ""
	}
	verbs := permWords(sc.Perms)
	var whose string
	switch sc.Context {
	case "patient":
		whose = "the selected patient's"
		if own {
			whose = "your"
		}
	case "user":
		// What the user may see (smart.Claims.Compartment): a patient only their own record, a
		// practitioner every patient's.
		whose = "every patient's"
		if own {
			whose = "your"
		}
	default:
		whose = "all"
	}
	what := "health records"
	if sc.Resource != "*" {
		what = plural(sc.Resource)
	}
	s := verbs + " " + whose + " " + what
	if q := describeQuery(sc.Query); q != "" {
		s += " (" + q + ")"
	}
	return s
}

// permWords spells "cruds" permissions: r and s read as "read and search" etc.
func permWords(perms string) string {
	names := map[rune]string{'c': "create", 'r': "read", 'u': "update", 'd': "delete", 's': "search"}
	var w []string
	for _, p := range perms {
		w = append(w, names[p])
	}
	var s string
	switch len(w) {
	case 1:
		s = w[0]
	default:
		s = strings.Join(w[:len(w)-1], ", ") + " and " + w[len(w)-1]
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

func plural(typ string) string {
	switch {
	case typ == "Patient":
		return "patient details"
	case strings.HasSuffix(typ, "y") && !strings.HasSuffix(typ, "ey"):
		return typ[:len(typ)-1] + "ies"
	case strings.HasSuffix(typ, "s"):
		return typ + "es"
	}
	return typ + "s"
}

// describeQuery renders v2 finer-grained constraints: category=…|vital-signs → "vital signs only".
func describeQuery(q url.Values) string {
	if len(q) == 0 {
		return ""
	}
	var parts []string
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		for _, v := range q[k] {
			var codes []string
			for c := range strings.SplitSeq(v, ",") {
				if i := strings.LastIndexByte(c, '|'); i >= 0 {
					c = c[i+1:]
				}
				codes = append(codes, strings.ReplaceAll(c, "-", " "))
			}
			if k == "category" {
				parts = append(parts, strings.Join(codes, ", ")+" only")
			} else {
				parts = append(parts, k+": "+strings.Join(codes, ", "))
			}
		}
	}
	return strings.Join(parts, "; ")
}
