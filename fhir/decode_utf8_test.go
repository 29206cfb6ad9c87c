package fhir

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// TestDecodeInvalidUTF8: a body that is not UTF-8 is refused before decoding, with the offset of
// the first bad byte, instead of being stored with U+FFFD in place of each bad byte.
func TestDecodeInvalidUTF8(t *testing.T) {
	const head = `{"resourceType":"Patient","name":[{"family":"`
	for _, tc := range []struct {
		name string
		bad  string // bytes placed inside Patient.name.family
	}{
		{"0xff", "\xff"},
		{"lone continuation byte", "\x80"},
		{"truncated sequence", "Jos\xc3"},
		{"overlong encoding of /", "\xc0\xaf"},
		{"UTF-16 surrogate", "\xed\xa0\x80"},
		{"beyond U+10FFFF", "\xf4\x90\x80\x80"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := head + tc.bad + `"}]}`
			want := fmt.Sprintf("offset %d", len(head)+strings.IndexFunc(tc.bad, func(r rune) bool { return r == '\uFFFD' }))
			for fn, decode := range map[string]func() error{
				"Decode":     func() error { _, err := Decode([]byte(body), "Patient"); return err },
				"DecodeInto": func() error { return DecodeInto([]byte(body), &Patient{}) },
			} {
				var fe *Error
				if err := decode(); !errors.As(err, &fe) {
					t.Fatalf("%s: got %v, want an *Error", fn, err)
				}
				if fe.Status != http.StatusBadRequest || fe.Code != CodeStructure {
					t.Errorf("%s: got %d %s, want 400 %s", fn, fe.Status, fe.Code, CodeStructure)
				}
				if !strings.Contains(fe.Diagnostics, "UTF-8") || !strings.Contains(fe.Diagnostics, want) {
					t.Errorf("%s: diagnostics %q, want UTF-8 and %q", fn, fe.Diagnostics, want)
				}
			}
		})
	}
	// Text that is UTF-8, a literal U+FFFD included, still decodes.
	p, err := Decode([]byte(head+"Jos\u00e9 \ufffd \U0001F600"+`"}]}`), "Patient")
	if err != nil {
		t.Fatalf("Decode of valid UTF-8: %v", err)
	}
	if got := p.(*Patient).Name[0].Family; got != "Jos\u00e9 \ufffd \U0001F600" {
		t.Errorf("family: got %q", got)
	}
}
