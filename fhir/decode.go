package fhir

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"unicode/utf8"
)

// New returns an empty resource of the named type, or nil if ohx does not model it.
func New(resourceType string) Resource {
	switch resourceType {
	case "Patient":
		return &Patient{}
	case "Device":
		return &Device{}
	case "DeviceAssociation":
		return &DeviceAssociation{}
	case "Observation":
		return &Observation{}
	case "Bundle":
		return &Bundle{}
	case "OperationOutcome":
		return &OperationOutcome{}
	case "CapabilityStatement":
		return &CapabilityStatement{}
	}
	return nil
}

// Decode strictly decodes one resource from JSON: invalid UTF-8, unknown elements, wrong JSON
// types, a wrong or missing resourceType, trailing data and missing required elements are all
// errors. Every error is an *Error (400) whose diagnostics name the offending element.
func Decode(data []byte, wantType string) (Resource, error) {
	if err := checkUTF8(data); err != nil {
		return nil, err
	}
	var head struct {
		ResourceType string `json:"resourceType"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return nil, decodeError(wantType, err)
	}
	if head.ResourceType == "" {
		return nil, Invalid(CodeRequired, "resourceType: missing required element")
	}
	if wantType != "" && head.ResourceType != wantType {
		return nil, Invalid(CodeInvalid, "resourceType: got %q, want %q", truncate(head.ResourceType, 64), wantType)
	}
	r := New(head.ResourceType)
	if r == nil {
		return nil, Errorf(400, CodeNotSupported, "resourceType: %q is not supported", truncate(head.ResourceType, 64))
	}
	if err := decodeInto(data, r); err != nil {
		return nil, err
	}
	return r, nil
}

// DecodeInto strictly decodes data into r (see Decode) and validates it.
func DecodeInto(data []byte, r Resource) error {
	if err := checkUTF8(data); err != nil {
		return err
	}
	return decodeInto(data, r)
}

// checkUTF8 refuses bodies that are not UTF-8, which JSON exchanged between systems must be
// (RFC 8259 §8.1): encoding/json would silently replace each invalid byte with U+FFFD, storing
// text the client never sent.
func checkUTF8(data []byte) error {
	if utf8.Valid(data) {
		return checkSurrogates(data)
	}
	off := 0
	for off < len(data) {
		r, n := utf8.DecodeRune(data[off:])
		if r == utf8.RuneError && n == 1 {
			break
		}
		off += n
	}
	return Invalid(CodeStructure, "the body is not valid UTF-8 (invalid byte at offset %d)", off)
}

// checkSurrogates refuses \u escapes of UTF-16 surrogates that do not form a pair ("\ud800"):
// the text is valid UTF-8 but names no character, and encoding/json would store U+FFFD instead
// (RFC 8259 §8.2 leaves such strings' behaviour unpredictable). A backslash can only start an
// escape (inside a string, else the JSON is invalid anyway), so a flat scan is exact.
func checkSurrogates(data []byte) error {
	if !bytes.Contains(data, []byte(`\u`)) {
		return nil
	}
	hex4 := func(i int) (rune, bool) {
		if i+4 > len(data) {
			return 0, false
		}
		var r rune
		for _, c := range data[i : i+4] {
			switch {
			case c >= '0' && c <= '9':
				r = r<<4 | rune(c-'0')
			case c >= 'a' && c <= 'f':
				r = r<<4 | rune(c-'a'+10)
			case c >= 'A' && c <= 'F':
				r = r<<4 | rune(c-'A'+10)
			default:
				return 0, false
			}
		}
		return r, true
	}
	for i := 0; i < len(data); i++ {
		if data[i] != '\\' {
			continue
		}
		if i+1 >= len(data) || data[i+1] != 'u' {
			i++ // a one-character escape, e.g. \\ or \"
			continue
		}
		r, ok := hex4(i + 2)
		if !ok {
			return nil // a malformed escape: the JSON decoder reports it
		}
		switch {
		case r >= 0xD800 && r <= 0xDBFF:
			if i+12 <= len(data) && data[i+6] == '\\' && data[i+7] == 'u' {
				if lo, ok := hex4(i + 8); ok && lo >= 0xDC00 && lo <= 0xDFFF {
					i += 11
					continue
				}
			}
			return Invalid(CodeStructure, "the body escapes an unpaired UTF-16 surrogate (\\u%04X at offset %d)", r, i)
		case r >= 0xDC00 && r <= 0xDFFF:
			return Invalid(CodeStructure, "the body escapes an unpaired UTF-16 surrogate (\\u%04X at offset %d)", r, i)
		}
		i += 5
	}
	return nil
}

func decodeInto(data []byte, r Resource) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(r); err != nil {
		return decodeError(r.Type(), err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Invalid(CodeStructure, "%s: unexpected data after the resource", r.Type())
	}
	if r.Common().ResourceType != r.Type() {
		return Invalid(CodeInvalid, "resourceType: got %q, want %q", truncate(r.Common().ResourceType, 64), r.Type())
	}
	if err := exactKeys(data, r); err != nil {
		return err
	}
	if id := r.Common().ID; id != "" && !ValidID(id) {
		return Invalid(CodeValue, "%s.id: invalid id %q", r.Type(), truncate(id, 70))
	}
	return r.Validate()
}

// decodeError turns encoding/json errors into client-safe diagnostics naming the element.
func decodeError(typ string, err error) *Error {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return &Error{Status: 400, Code: CodeStructure, Diagnostics: fmt.Sprintf("invalid JSON at offset %d", se.Offset), Err: err}
	case errors.As(err, &te):
		path := typ
		if f := elementPath(te.Field); f != "" && path != "" {
			path += "." + f
		} else if f != "" {
			path = f
		}
		want := jsonKind(te.Type.Kind().String())
		if te.Type == reflect.TypeFor[Decimal]() {
			want = "a number" // string-backed, but a JSON number on the wire
		}
		return &Error{Status: 400, Code: CodeStructure, Diagnostics: fmt.Sprintf("%s: expected %s, got JSON %s", path, want, te.Value), Err: err}
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return &Error{Status: 400, Code: CodeStructure, Diagnostics: "empty or truncated JSON body", Err: err}
	}
	msg := err.Error()
	if f, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		return &Error{Status: 400, Code: CodeStructure, Diagnostics: fmt.Sprintf("%s: unknown element %s", typ, f), Err: err}
	}
	// Errors from our own UnmarshalJSON methods (Decimal) carry no field path in encoding/json v1.
	return &Error{Status: 400, Code: CodeStructure, Diagnostics: fmt.Sprintf("%s: %s", typ, strings.TrimPrefix(msg, "json: ")), Err: err}
}

// elementPath turns an encoding/json field path into a FHIR element path: encoding/json includes the
// Go names of embedded structs ("Value.valueQuantity.value", "Base.id"), and FHIR element names
// never start with an upper-case letter.
func elementPath(field string) string {
	parts := strings.Split(field, ".")
	out := parts[:0]
	for _, p := range parts {
		if p != "" && (p[0] < 'A' || p[0] > 'Z') {
			out = append(out, p)
		}
	}
	return strings.Join(out, ".")
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "a string"
	case "bool":
		return "a boolean"
	case "int", "int64", "float64", "int32":
		return "a number"
	case "slice":
		return "an array"
	case "struct", "map", "ptr":
		return "an object"
	}
	return goKind
}

// exactKeys closes the gaps encoding/json leaves open: it matches member names without regard to
// case ("Status" fills Status) and accepts null. FHIR JSON names are case-sensitive and forbids
// null and empty arrays, so the input's members must all reappear, spelled the same, when the
// decoded resource is encoded again.
func exactKeys(data []byte, r Resource) error {
	var in any
	if err := json.Unmarshal(data, &in); err != nil {
		return decodeError(r.Type(), err)
	}
	out, err := json.Marshal(r)
	if err != nil {
		return Invalid(CodeStructure, "%s: %v", r.Type(), err)
	}
	var back any
	if err := json.Unmarshal(out, &back); err != nil {
		return Invalid(CodeStructure, "%s: %v", r.Type(), err)
	}
	return compareKeys(r.Type(), in, back)
}

func compareKeys(path string, in, out any) error {
	switch x := in.(type) {
	case nil:
		return Invalid(CodeStructure, "%s: null is not allowed in FHIR JSON", path)
	case map[string]any:
		o, _ := out.(map[string]any)
		for k, v := range x {
			p := path + "." + k
			ov, ok := o[k]
			if !ok {
				switch vv := v.(type) {
				case nil:
					return Invalid(CodeStructure, "%s: null is not allowed in FHIR JSON", p)
				case string:
					if vv == "" {
						return Invalid(CodeValue, "%s: empty strings are not allowed in FHIR JSON", p)
					}
				case []any:
					if len(vv) == 0 {
						return Invalid(CodeStructure, "%s: empty arrays are not allowed in FHIR JSON", p)
					}
				case map[string]any:
					if len(vv) == 0 {
						return Invalid(CodeStructure, "%s: empty objects are not allowed in FHIR JSON", p)
					}
				}
				return Invalid(CodeStructure, "%s: unknown element %q", path, k)
			}
			if err := compareKeys(p, v, ov); err != nil {
				return err
			}
		}
	case []any:
		o, _ := out.([]any)
		if len(o) != len(x) {
			return Invalid(CodeStructure, "%s: empty or null array members are not allowed", path)
		}
		for i := range x {
			if err := compareKeys(path, x[i], o[i]); err != nil {
				return err
			}
		}
	}
	return nil
}
