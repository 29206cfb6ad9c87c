package fhir

import (
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// minimal R5 bodies the table below modifies.
const (
	obsHead = `{"resourceType":"Observation","id":"o1","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"29463-7"}]}`
	daHead  = `{"resourceType":"DeviceAssociation","id":"da1"`
)

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		wantType string // Decode's wantType
		code     string // issue code
		element  string // must appear in Diagnostics ("" to skip)
	}{
		// Unknown elements.
		{"unknown top-level element", obsHead + `,"foo":1}`, "Observation", CodeStructure, "foo"},
		{"unknown nested element", obsHead + `,"valueQuantity":{"value":1,"units":"kg"}}`, "Observation", CodeStructure, "units"},
		{"R4 element in R5 Device", `{"resourceType":"Device","deviceName":[{"name":"x","type":"other"}]}`, "Device", CodeStructure, "deviceName"},
		{"R4 SampledData.period", obsHead + `,"valueSampledData":{"origin":{"value":0},"period":2,"intervalUnit":"ms","dimensions":1}}`, "Observation", CodeStructure, "period"},

		// Wrong JSON types.
		{"string for valueQuantity.value", obsHead + `,"valueQuantity":{"value":"72.5","unit":"kg"}}`, "Observation", CodeStructure, "Observation.valueQuantity.value"},
		{"bool for component value", obsHead + `,"component":[{"code":{"text":"c"},"valueQuantity":{"value":true}}]}`, "Observation", CodeStructure, "Observation.component.valueQuantity.value"},
		{"number for status", `{"resourceType":"Observation","status":1,"code":{"text":"x"}}`, "Observation", CodeStructure, "Observation.status"},
		{"array for code", `{"resourceType":"Observation","status":"final","code":[{"text":"x"}]}`, "Observation", CodeStructure, "Observation.code"},
		{"number for id", `{"resourceType":"Observation","id":7,"status":"final","code":{"text":"x"}}`, "Observation", CodeStructure, "Observation.id"},
		{"string for boolean", `{"resourceType":"Patient","active":"true"}`, "Patient", CodeStructure, "Patient.active"},
		{"object for string", `{"resourceType":"Patient","gender":{"code":"female"}}`, "Patient", CodeStructure, "Patient.gender"},
		{"number for resourceType", `{"resourceType":5}`, "", CodeStructure, "resourceType"},
		{"string for decimal in extension", `{"resourceType":"Patient","extension":[{"url":"https://x.example/e","valueDecimal":"1.5"}]}`, "Patient", CodeStructure, "Patient.extension.valueDecimal"},

		// Missing required elements.
		{"missing Observation.status", `{"resourceType":"Observation","code":{"text":"x"}}`, "Observation", CodeRequired, "Observation.status"},
		{"missing Observation.code", `{"resourceType":"Observation","status":"final"}`, "Observation", CodeRequired, "Observation.code"},
		{"empty Observation.code", `{"resourceType":"Observation","status":"final","code":{}}`, "Observation", CodeRequired, "Observation.code"},
		{"missing DeviceAssociation.device", daHead + `,"status":{"coding":[{"system":"http://hl7.org/fhir/deviceassociation-status","code":"attached"}]}}`, "DeviceAssociation", CodeRequired, "DeviceAssociation.device"},
		{"missing DeviceAssociation.status", daHead + `,"device":{"reference":"Device/d1"}}`, "DeviceAssociation", CodeRequired, "DeviceAssociation.status"},
		{"missing Bundle.type", `{"resourceType":"Bundle"}`, "Bundle", CodeRequired, "Bundle.type"},
		{"missing OperationOutcome.issue", `{"resourceType":"OperationOutcome"}`, "OperationOutcome", CodeRequired, "OperationOutcome.issue"},
		{"missing resourceType", `{"status":"final","code":{"text":"x"}}`, "Observation", CodeRequired, "resourceType"},

		// Values outside value sets or formats.
		{"unknown status code", `{"resourceType":"Observation","status":"done","code":{"text":"x"}}`, "Observation", CodeValue, "Observation.status"},
		{"DeviceAssociation device is a Patient", daHead + `,"device":{"reference":"Patient/p1"},"status":{"text":"attached"}}`, "DeviceAssociation", CodeValue, "DeviceAssociation.device"},
		{"two value[x]", obsHead + `,"valueString":"a","valueBoolean":true}`, "Observation", CodeValue, "Observation.value[x]"},

		// Wrong resource type.
		{"other resourceType than wanted", `{"resourceType":"Patient"}`, "Observation", CodeInvalid, "resourceType"},
		{"unsupported resourceType", `{"resourceType":"Encounter","status":"planned"}`, "", CodeNotSupported, "Encounter"},

		// Trailing data and broken JSON.
		{"trailing object", obsHead + `} {}`, "Observation", CodeStructure, ""},
		{"trailing garbage", obsHead + `} x`, "Observation", CodeStructure, ""},
		{"truncated", obsHead, "Observation", CodeStructure, ""},
		{"empty body", ``, "Observation", CodeStructure, ""},
		{"not an object", `[` + obsHead + `}]`, "Observation", CodeStructure, ""},
		{"leading zero number", obsHead + `,"valueQuantity":{"value":072.5}}`, "Observation", CodeStructure, ""},

		// Invalid ids.
		{"id with space", `{"resourceType":"Patient","id":"a b"}`, "Patient", CodeValue, "Patient.id"},
		{"id too long", `{"resourceType":"Patient","id":"` + strings.Repeat("a", 65) + `"}`, "Patient", CodeValue, "Patient.id"},
		{"id with underscore", `{"resourceType":"Patient","id":"p_1"}`, "Patient", CodeValue, "Patient.id"},
		{"id non-ASCII", `{"resourceType":"Patient","id":"zürich"}`, "Patient", CodeValue, "Patient.id"},

		// Bad date formats.
		{"dateTime without zone", obsHead + `,"effectiveDateTime":"2024-03-05T07:32:10"}`, "Observation", CodeValue, "Observation.effectiveDateTime"},
		{"dateTime without seconds", obsHead + `,"effectiveDateTime":"2024-03-05T07:32Z"}`, "Observation", CodeValue, "Observation.effectiveDateTime"},
		{"dateTime with space", obsHead + `,"effectiveDateTime":"2024-03-05 07:32:10Z"}`, "Observation", CodeValue, "Observation.effectiveDateTime"},
		{"dateTime month 13", obsHead + `,"effectiveDateTime":"2024-13-05"}`, "Observation", CodeValue, "Observation.effectiveDateTime"},
		{"dateTime 30 February", obsHead + `,"effectiveDateTime":"2024-02-30T10:00:00Z"}`, "Observation", CodeValue, "Observation.effectiveDateTime"},
		{"dateTime zone +15:00", obsHead + `,"effectiveDateTime":"2024-03-05T07:32:10+15:00"}`, "Observation", CodeValue, "Observation.effectiveDateTime"},
		{"dateTime 10 fraction digits", obsHead + `,"effectiveDateTime":"2024-03-05T07:32:10.1234567890Z"}`, "Observation", CodeValue, "Observation.effectiveDateTime"},
		{"issued is a date", obsHead + `,"issued":"2024-03-05"}`, "Observation", CodeValue, "Observation.issued"},
		{"effectiveInstant without zone", obsHead + `,"effectiveInstant":"2024-03-05T07:32:10.250"}`, "Observation", CodeValue, "Observation.effectiveInstant"},
		{"period start", obsHead + `,"effectivePeriod":{"start":"2024-3-4"}}`, "Observation", CodeValue, "Observation.effectivePeriod.start"},
		{"birthDate with time", `{"resourceType":"Patient","birthDate":"1974-12-25T00:00:00Z"}`, "Patient", CodeValue, "Patient.birthDate"},
		{"birthDate unpadded", `{"resourceType":"Patient","birthDate":"1974-1-5"}`, "Patient", CodeValue, "Patient.birthDate"},
		{"birthDate 31 April", `{"resourceType":"Patient","birthDate":"1974-04-31"}`, "Patient", CodeValue, "Patient.birthDate"},
		{"birthDate 29 February non-leap", `{"resourceType":"Patient","birthDate":"2023-02-29"}`, "Patient", CodeValue, "Patient.birthDate"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := Decode([]byte(tc.in), tc.wantType)
			if err == nil {
				t.Fatalf("Decode succeeded (%T), want an error", r)
			}
			var fe *Error
			if !errors.As(err, &fe) {
				t.Fatalf("got %T %v, want *Error", err, err)
			}
			if fe.Status != http.StatusBadRequest {
				t.Errorf("Status: got %d, want 400", fe.Status)
			}
			if fe.Code != tc.code {
				t.Errorf("Code: got %q, want %q (diagnostics %q)", fe.Code, tc.code, fe.Diagnostics)
			}
			if !strings.Contains(fe.Diagnostics, tc.element) {
				t.Errorf("Diagnostics %q does not name %q", fe.Diagnostics, tc.element)
			}
		})
	}
}

func TestDecodeValid(t *testing.T) {
	tests := []struct {
		name, in, wantType string
	}{
		{"minimal Observation", obsHead + `}`, "Observation"},
		{"any type", obsHead + `}`, ""},
		{"whitespace around", " \n\t" + obsHead + "}\n ", "Observation"},
		{"partial dates", obsHead + `,"effectivePeriod":{"start":"2024","end":"2024-03"}}`, "Observation"},
		{"leap day", `{"resourceType":"Patient","birthDate":"2024-02-29"}`, "Patient"},
		{"dateTime offset -05:00", obsHead + `,"effectiveDateTime":"2024-03-05T07:32:10-05:00"}`, "Observation"},
		{"dateTime +14:00 with nanoseconds", obsHead + `,"effectiveDateTime":"2024-03-05T07:32:10.123456789+14:00"}`, "Observation"},
		{"id of 64 characters", `{"resourceType":"Patient","id":"` + strings.Repeat("A.-9", 16) + `"}`, "Patient"},
		{"DeviceAssociation by identifier", daHead + `,"device":{"identifier":{"system":"urn:x","value":"1"}},"status":{"text":"attached"}}`, "DeviceAssociation"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Decode([]byte(tc.in), tc.wantType); err != nil {
				t.Fatalf("Decode: %v", err)
			}
		})
	}
}

// TestDecimalPrecision: decimals keep their exact text through Decode and json.Marshal, so 53.0
// stays 53.0 (FHIR treats it as more precise than 53).
func TestDecimalPrecision(t *testing.T) {
	for _, v := range []string{"53.0", "53", "0.0500", "-0.5", "1e3", "1.50E-2", "72.000000000000000001"} {
		t.Run(v, func(t *testing.T) {
			in := obsHead + `,"valueQuantity":{"value":` + v + `,"unit":"kg","system":"http://unitsofmeasure.org","code":"kg"}}`
			r, err := Decode([]byte(in), "Observation")
			if err != nil {
				t.Fatal(err)
			}
			o := r.(*Observation)
			if got := string(*o.ValueQuantity.Value); got != v {
				t.Errorf("decoded value: got %s, want %s", got, v)
			}
			b, err := json.Marshal(o)
			if err != nil {
				t.Fatal(err)
			}
			if want := `"value":` + v + `,`; !strings.Contains(string(b), want) {
				t.Errorf("marshalled JSON %s does not contain %s", b, want)
			}
		})
	}
	if _, err := json.Marshal(Decimal("1,5")); err == nil {
		t.Errorf("json.Marshal(Decimal(%q)) succeeded, want an error", "1,5")
	}
}

// TestDecodeRoundTrip: every R5 fixture decodes, marshals back to the same JSON (compared after
// decoding both sides, numbers as written), and decodes again to an equal value.
func TestDecodeRoundTrip(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(fixtureDir, "r5", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no fixtures in testdata/fhir/r5")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			in, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			first, err := Decode(in, "")
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			out, err := json.Marshal(first)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(jsonTree(t, in), jsonTree(t, out)); diff != "" {
				t.Errorf("marshalled JSON differs from the fixture (-want +got):\n%s", diff)
			}
			second, err := Decode(out, first.Type())
			if err != nil {
				t.Fatalf("Decode of marshalled resource: %v", err)
			}
			if diff := cmp.Diff(first, second); diff != "" {
				t.Errorf("round trip (-want +got):\n%s", diff)
			}
		})
	}
}

// TestDecodeIntoValidates: DecodeInto applies the same checks to a caller-chosen type.
func TestDecodeIntoValidates(t *testing.T) {
	var p Patient
	err := DecodeInto([]byte(obsHead+`}`), &p)
	var fe *Error
	if !errors.As(err, &fe) || fe.Status != http.StatusBadRequest {
		t.Fatalf("DecodeInto(Observation JSON, *Patient): got %v, want a 400 *Error", err)
	}
	var o Observation
	if err := DecodeInto([]byte(obsHead+`}`), &o); err != nil {
		t.Fatalf("DecodeInto: %v", err)
	}
	if o.Status != "final" || o.ID != "o1" {
		t.Errorf("got status %q id %q, want final o1", o.Status, o.ID)
	}
}

func TestDecodeExactKeys(t *testing.T) {
	for _, tc := range []struct{ name, body, want string }{
		{"wrong case", `{"resourceType":"Observation","Status":"final","code":{"text":"x"}}`, "Status"},
		{"null", `{"resourceType":"Patient","gender":null}`, "null"},
		{"empty array", `{"resourceType":"Patient","name":[]}`, "empty arrays"},
		{"empty string", `{"resourceType":"Patient","gender":""}`, "empty strings"},
		{"nested wrong case", `{"resourceType":"Patient","name":[{"Family":"x"}]}`, "Family"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode([]byte(tc.body), "")
			var fe *Error
			if !errors.As(err, &fe) || fe.Status != 400 || !strings.Contains(fe.Diagnostics, tc.want) {
				t.Errorf("got %v, want a 400 naming %q", err, tc.want)
			}
		})
	}
}
