package fhir

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestKindsForCode: a code search names the kinds whose Observation.code has the coding, by
// system|code, code alone, system| and |code; a code used by two kinds (heart rate, which the
// resting heart rate also carries) names both; component codes and unknown codes name none.
func TestKindsForCode(t *testing.T) {
	for _, tc := range []struct {
		name              string
		system, code      string
		anySystem, anyAll bool
		want              []SampleKind
	}{
		{"system|code", LOINCSystem, "29463-7", false, false, []SampleKind{KindWeight}},
		{"code alone", "", "29463-7", true, false, []SampleKind{KindWeight}},
		{"wrong system", "http://snomed.info/sct", "29463-7", false, false, nil},
		{"|code: no system", "", "29463-7", false, false, nil},
		{"shared code", LOINCSystem, "8867-4", false, false, []SampleKind{KindHeartRate, KindRestingHeartRate}},
		{"local code", ObservationCodeSystem, "vo2max", false, false, []SampleKind{KindVO2Max}},
		{"component code", LOINCSystem, "8480-6", false, false, nil},
		{"lab code", LOINCSystem, "2345-7", false, false, nil},
		{"MDC ECG", MDCSystem, "131328", false, false, []SampleKind{KindECG}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := KindsForCode(tc.system, tc.code, tc.anySystem, tc.anyAll)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("KindsForCode(%q, %q) (-want +got):\n%s", tc.system, tc.code, diff)
			}
		})
	}
	// system| reaches every kind coded in the system.
	local := KindsForCode(ObservationCodeSystem, "", false, true)
	for _, k := range []SampleKind{KindFatMass, KindVO2Max, KindDistance} {
		found := false
		for _, g := range local {
			found = found || g == k
		}
		if !found {
			t.Errorf("KindsForCode(local|) = %v, missing %s", local, k)
		}
	}
	for _, g := range local {
		if g == KindWeight {
			t.Errorf("KindsForCode(local|) holds %s, a LOINC-coded kind", g)
		}
	}
}
