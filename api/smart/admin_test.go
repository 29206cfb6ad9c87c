package smart

import "testing"

func TestScopesAdmin(t *testing.T) {
	for _, tc := range []struct {
		scope string
		want  bool
	}{
		{"admin", true},
		{"openid admin", true},
		{"system/*.*", true},
		{"system/*.cruds", true},
		{"system/*.read system/*.write", true}, // together every permission
		{"system/*.rs system/*.cud", true},
		{"system/*.rs system/Observation.cud", false},
		{"system/*.rs user/*.cud", false},
		{"system/*.rs", false},
		{"system/*.cud", false},
		{"system/Observation.cruds", false},
		{"system/*.cruds?category=vital-signs", false},
		{"user/*.*", false},
		{"user/*.cruds", false},
		{"patient/*.*", false},
		{"patient/*.cruds", false},
		{"launch/patient openid fhirUser", false},
		{"administrator", false},
		{"", false},
	} {
		if got := ParseScopes(tc.scope).Admin(); got != tc.want {
			t.Errorf("ParseScopes(%q).Admin() = %v, want %v", tc.scope, got, tc.want)
		}
	}
}
