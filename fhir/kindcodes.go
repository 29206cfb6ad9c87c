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
