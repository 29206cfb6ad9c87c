package fhir

import "slices"

// KindsForCode returns, sorted, the sample kinds whose Observation.code holds a coding matching
// one token of a code search (https://hl7.org/fhir/R5/search.html#token): system|code,
// code alone (anySystem: any system), system| (anyCode: any code of the system) and |code
// (system "" and not anySystem: a coding without a system, which ohx never writes). It looks at
// Observation.code only, as the code search parameter does: component codes (systolic, a sleep
// stage) are no kind of their own. No match is nil: no kind ohx maps has that code.
func KindsForCode(system, code string, anySystem, anyCode bool) []SampleKind {
	var out []SampleKind
	for k, spec := range kindSpecs {
		if slices.ContainsFunc(spec.codes, func(c concept) bool {
			return (anySystem || c.system == system) && (anyCode || c.code == code)
		}) {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// KindOf returns the sample kind MapSample codes as exactly these Observation.code codings (in
// any order; displays ignored): a heart rate (8867-4) is not a resting heart rate (8867-4 and
// 40443-4). It is false when no kind, or more than one, has that code set.
func KindOf(codings []Coding) (SampleKind, bool) {
	var found SampleKind
	n := 0
	for k, spec := range kindSpecs {
		if len(spec.codes) != len(codings) {
			continue
		}
		if !slices.ContainsFunc(codings, func(c Coding) bool {
			return !slices.ContainsFunc(spec.codes, func(x concept) bool { return x.system == c.System && x.code == c.Code })
		}) {
			found, n = k, n+1
		}
	}
	return found, n == 1
}
