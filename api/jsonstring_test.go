package api

import (
	"encoding/json"
	"strings"
	"testing"
)

// The fast path of appendJSONString must produce exactly what the encoder (without HTML
// escaping) produces, for plain and for escaped strings.
func TestAppendJSONStringMatchesEncoder(t *testing.T) {
	for _, s := range []string{"", "http://ohx.test/fhir/Observation/o-1", "a&b<c>", `q"uote`, `back\slash`, "tab\there",
		"é", "line\u2028sep", "\x7f", "ctl\x01"} {
		var b strings.Builder
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false)
		enc.Encode(s)
		want := strings.TrimSuffix(b.String(), "\n")
		if got := string(appendJSONString([]byte("x"), s)); got != "x"+want {
			t.Errorf("appendJSONString(%q) = %s, want x%s", s, got, want)
		}
	}
}
