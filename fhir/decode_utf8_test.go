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

// TestDecodeUnpairedSurrogate: an escaped lone surrogate is valid UTF-8 but no character;
// encoding/json would store U+FFFD, so it is refused. Pairs and escaped backslashes are fine.
func TestDecodeUnpairedSurrogate(t *testing.T) {
	for _, tc := range []struct {
		family string
		ok     bool
	}{
		{`M\u00fcller`, true},
		{`\ud83d\ude00`, true},    // 😀 as a surrogate pair
		{`\\ud800`, true},         // an escaped backslash followed by the text "ud800"
		{`a\\\ud83d\ude00`, true}, // backslash, then a pair
		{`\ud800`, false},         // lone high surrogate
		{`\ud800x`, false},        // high surrogate followed by text
		{`\ud800\u0041`, false},   // high surrogate followed by another escape
		{`\udc00`, false},         // lone low surrogate
		{`\ude00\ud83d`, false},   // a pair in the wrong order
		{`ok\\\\\ud800`, false},   // escaped backslashes then a lone surrogate
		{`\uD800\uDFFF`, true},    // upper-case hex
	} {
		body := []byte(`{"resourceType":"Patient","name":[{"family":"` + tc.family + `"}]}`)
		_, err := Decode(body, "Patient")
		if (err == nil) != tc.ok {
			t.Errorf("family %s: err = %v, want ok=%v", tc.family, err, tc.ok)
		}
		if err != nil && !tc.ok && !strings.Contains(err.Error(), "surrogate") {
			t.Errorf("family %s: %v does not say what is wrong", tc.family, err)
		}
	}
}
