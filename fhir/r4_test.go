package fhir

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/google/fhir/go/fhirversion"
	"github.com/google/fhir/go/jsonformat"
	bcrpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/bundle_and_contained_resource_go_proto"
	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/fhir")

// fixtureDir holds realistic R5 resources (r5/) and their expected R4 forms (r4/).
const fixtureDir = "../testdata/fhir"

// devicePatient is the Device.patient an API handler would take from the active DeviceAssociation.
var devicePatient = &Reference{Reference: "Patient/p-4f2a", Display: "Jane Chalmers"}

func readFixture(tb testing.TB, path string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join(fixtureDir, path))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// decodeFixture strictly decodes testdata/fhir/r5/<name>.
func decodeFixture(tb testing.TB, name string) Resource {
	tb.Helper()
	r, err := Decode(readFixture(tb, filepath.Join("r5", name)), "")
	if err != nil {
		tb.Fatalf("Decode(%s): %v", name, err)
	}
	return r
}

// validateR4 parses b with google/fhir/go's validating R4 unmarshaller and returns the contained
// resource; any validation error fails the test.
func validateR4(tb testing.TB, b []byte) *bcrpb.ContainedResource {
	tb.Helper()
	cr, err := unmarshalR4(tb, b)
	if err != nil {
		tb.Fatalf("R4 validation failed: %v\n%s", err, b)
	}
	return cr
}

func unmarshalR4(tb testing.TB, b []byte) (*bcrpb.ContainedResource, error) {
	tb.Helper()
	u, err := jsonformat.NewUnmarshaller("UTC", fhirversion.R4)
	if err != nil {
		tb.Fatal(err)
	}
	m, err := u.Unmarshal(b)
	if err != nil {
		return nil, err
	}
	cr, ok := m.(*bcrpb.ContainedResource)
	if !ok {
		tb.Fatalf("Unmarshal returned %T, want *ContainedResource", m)
	}
	return cr, nil
}

// containedType returns the resource type held by cr ("Observation", …).
func containedType(cr *bcrpb.ContainedResource) string {
	m := cr.ProtoReflect()
	fd := m.WhichOneof(m.Descriptor().Oneofs().Get(0))
	if fd == nil {
		return ""
	}
	return string(fd.Message().Name())
}

// jsonTree decodes JSON keeping numbers as written, so that 72.0 and 72 differ.
func jsonTree(tb testing.TB, b []byte) any {
	tb.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		tb.Fatalf("decode JSON: %v\n%s", err, b)
	}
	return v
}

// TestToR4Golden converts every R5 fixture, validates the R4 JSON with google/fhir/go and compares
// it with testdata/fhir/r4 (after decoding both sides). Regenerate with go test ./fhir -update.
func TestToR4Golden(t *testing.T) {
	tests := []struct {
		file string
		opt  R4Options
	}{
		{file: "patient.json"},
		{file: "device-scale.json", opt: R4Options{DevicePatient: devicePatient}},
		{file: "device-watch.json"},
		{file: "observation-weight.json"},
		{file: "observation-bp.json"},
		{file: "observation-steps.json"},
		{file: "observation-ecg.json"},
		{file: "observation-spo2-trend.json"},
		{file: "observation-string.json"},
		{file: "observation-smoking.json"},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			r := decodeFixture(t, tc.file)
			before, err := json.Marshal(r)
			if err != nil {
				t.Fatal(err)
			}
			got, err := MarshalR4(r, tc.opt)
			if err != nil {
				t.Fatalf("MarshalR4: %v", err)
			}
			cr := validateR4(t, got)
			if typ := containedType(cr); typ != r.Type() {
				t.Errorf("R4 resource type: got %s, want %s", typ, r.Type())
			}
			after, err := json.Marshal(r)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(before, after) {
				t.Errorf("ToR4 modified its input:\nbefore %s\nafter  %s", before, after)
			}

			golden := filepath.Join(fixtureDir, "r4", tc.file)
			if *update {
				v, err := ToR4(r, tc.opt)
				if err != nil {
					t.Fatal(err)
				}
				b, err := json.MarshalIndent(v, "", "  ")
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(golden, append(b, '\n'), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want := readFixture(t, filepath.Join("r4", tc.file))
			if diff := cmp.Diff(jsonTree(t, want), jsonTree(t, got)); diff != "" {
				t.Errorf("R4 JSON mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestToR4SampledData checks the R5 interval + intervalUnit → R4 period (ms) conversion as seen by
// the R4 parser.
func TestToR4SampledData(t *testing.T) {
	ecg := validateR4(t, mustMarshalR4(t, decodeFixture(t, "observation-ecg.json"), R4Options{}))
	if got := ecg.GetObservation().GetValue().GetSampledData().GetPeriod().GetValue(); got != "2" {
		t.Errorf("ECG period: got %q, want 2 (2 ms)", got)
	}
	spo2 := validateR4(t, mustMarshalR4(t, decodeFixture(t, "observation-spo2-trend.json"), R4Options{}))
	comps := spo2.GetObservation().GetComponent()
	if len(comps) != 1 {
		t.Fatalf("SpO2 trend: got %d components, want 1", len(comps))
	}
	if got := comps[0].GetValue().GetSampledData().GetPeriod().GetValue(); got != "500" {
		t.Errorf("SpO2 trend period: got %q, want 500 (0.5 s)", got)
	}
}

func mustMarshalR4(tb testing.TB, r Resource, opt R4Options) []byte {
	tb.Helper()
	b, err := MarshalR4(r, opt)
	if err != nil {
		tb.Fatalf("MarshalR4(%s): %v", r.Type(), err)
	}
	return b
}

func TestIntervalToMillis(t *testing.T) {
	tests := []struct {
		interval Decimal
		unit     string
		want     Decimal
		ok       bool
	}{
		{"2", "ms", "2", true},
		{"2.0", "ms", "2.0", true}, // already ms: kept verbatim, precision included
		{"0.5", "s", "500", true},
		{"0.1", "s", "100", true},
		{"0.3", "s", "300", true},     // 0.3*1000 is 300.00000000000006 in float64
		{"0.7", "min", "42000", true}, // 0.7*60000 is 42000.00000000001 in float64
		{"1.25", "min", "75000", true},
		{"0.001", "h", "3600", true},
		{"1", "d", "86400000", true},
		{"250", "us", "0.25", true},
		{"0.004", "s", "4", true},
		{"0.0015", "s", "1.5", true},
		{"1e-3", "s", "1", true},
		{"1.5E2", "s", "150000", true},
		{"0.000001", "s", "0.001", true},
		{"-0.5", "s", "-500", true},
		{"2", "wk", "", false},          // not a unit we convert
		{"2", "", "", false},            // intervalUnit missing
		{"2", "S", "", false},           // UCUM is case-sensitive
		{"1e999999999", "s", "", false}, // exponent too large to compute with
		{"abc", "s", "", false},
	}
	for _, tc := range tests {
		got, ok := intervalToMillis(tc.interval, tc.unit)
		if got != tc.want || ok != tc.ok {
			t.Errorf("intervalToMillis(%q, %q) = %q, %v; want %q, %v", tc.interval, tc.unit, got, ok, tc.want, tc.ok)
		}
	}
}

// TestToR4SampledDataUnsupported: sampled data R4 cannot carry becomes dataAbsentReason, and the
// result is still valid R4.
func TestToR4SampledDataUnsupported(t *testing.T) {
	interval := Decimal("1")
	tests := map[string]SampledData{
		"offsets":  {Origin: Quantity{Value: ptr(Decimal("0"))}, IntervalUnit: "ms", Dimensions: 1, Offsets: "0 3 9", Data: "1 2 3"},
		"codeMap":  {Origin: Quantity{Value: ptr(Decimal("0"))}, Interval: &interval, IntervalUnit: "ms", Dimensions: 1, CodeMap: "https://example.org/ConceptMap/x", Data: "1 2"},
		"unit":     {Origin: Quantity{Value: ptr(Decimal("0"))}, Interval: &interval, IntervalUnit: "wk", Dimensions: 1, Data: "1 2"},
		"no-value": {Origin: Quantity{Value: ptr(Decimal("0"))}, IntervalUnit: "ms", Dimensions: 1},
	}
	for name, sd := range tests {
		t.Run(name, func(t *testing.T) {
			o := &Observation{
				Base:   Base{ResourceType: "Observation", ID: "sd"},
				Status: "final",
				Code:   CodeableConcept{Text: "waveform"},
				Value:  Value{ValueSampledData: &sd},
			}
			cr := validateR4(t, mustMarshalR4(t, o, R4Options{}))
			obs := cr.GetObservation()
			if obs.GetValue() != nil {
				t.Errorf("value[x] present, want none")
			}
			codings := obs.GetDataAbsentReason().GetCoding()
			if len(codings) != 1 || codings[0].GetCode().GetValue() != "unsupported" || codings[0].GetSystem().GetValue() != DataAbsentReasonSystem {
				t.Errorf("dataAbsentReason: got %v, want %s|unsupported", codings, DataAbsentReasonSystem)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

// TestToR4Device checks the Device rules that the golden file alone does not explain.
func TestToR4Device(t *testing.T) {
	v, err := ToR4(decodeFixture(t, "device-scale.json"), R4Options{DevicePatient: devicePatient})
	if err != nil {
		t.Fatal(err)
	}
	d, ok := v.(*r4Device)
	if !ok {
		t.Fatalf("ToR4(Device) returned %T", v)
	}
	wantNames := []r4DeviceName{
		{Name: "Body Cardio", Type: "manufacturer-name"},
		{Name: "Bathroom scale", Type: "patient-reported-name"},
		{Name: "Jane's scale", Type: "user-friendly-name"}, // from displayName
	}
	if diff := cmp.Diff(wantNames, d.DeviceName); diff != "" {
		t.Errorf("deviceName (-want +got):\n%s", diff)
	}
	if d.Type == nil || !d.Type.HasCoding("http://snomed.info/sct", "19892000") {
		t.Errorf("type: got %+v, want the first R5 type (SNOMED 19892000)", d.Type)
	}
	var props []string
	for _, p := range d.Property {
		props = append(props, p.Type.Text)
	}
	if diff := cmp.Diff([]string{"Battery level", "Measurement mode"}, props); diff != "" {
		t.Errorf("properties carried over (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(devicePatient, d.Patient); diff != "" {
		t.Errorf("patient (-want +got):\n%s", diff)
	}

	// The battery level survives the R4 parser with its exact value and unit.
	cr := validateR4(t, mustMarshalR4(t, decodeFixture(t, "device-scale.json"), R4Options{DevicePatient: devicePatient}))
	q := cr.GetDevice().GetProperty()[0].GetValueQuantity()
	if len(q) != 1 || q[0].GetValue().GetValue() != "85" || q[0].GetCode().GetValue() != "%" {
		t.Errorf("battery property: got %v, want 85 %%", q)
	}
	if got := cr.GetDevice().GetPatient().GetPatientId().GetValue(); got != "p-4f2a" {
		t.Errorf("R4 Device.patient id: got %q, want p-4f2a", got)
	}

	// A displayName equal to an existing name is not repeated.
	watch, err := ToR4(decodeFixture(t, "device-watch.json"), R4Options{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]r4DeviceName{{Name: "Charge 6", Type: "user-friendly-name"}}, watch.(*r4Device).DeviceName); diff != "" {
		t.Errorf("watch deviceName (-want +got):\n%s", diff)
	}
}

func TestToR4Patient(t *testing.T) {
	cr := validateR4(t, mustMarshalR4(t, decodeFixture(t, "patient.json"), R4Options{}))
	p := cr.GetPatient()
	if got := p.GetPhoto()[0].GetSize().GetValue(); got != 48213 {
		t.Errorf("photo size: got %d, want 48213 (R5 integer64 string → R4 unsignedInt)", got)
	}
	if got := len(p.GetExtension()); got != 3 {
		t.Errorf("extensions: got %d, want 3", got)
	}
	if got := p.GetName()[0].GetFamily().GetValue(); got != "Chalmers" {
		t.Errorf("family name: got %q, want Chalmers", got)
	}

	// A size beyond R4 unsignedInt is left out rather than failing the resource.
	big := &Patient{Base: Base{ResourceType: "Patient"}, Photo: []Attachment{{ContentType: "image/png", Size: "3000000000"}}}
	cr = validateR4(t, mustMarshalR4(t, big, R4Options{}))
	if cr.GetPatient().GetPhoto()[0].GetSize() != nil {
		t.Errorf("photo size 3000000000 should be dropped in R4")
	}
}

func TestToR4DeviceAssociation(t *testing.T) {
	r := decodeFixture(t, "device-association.json")
	for name, f := range map[string]func() error{
		"ToR4":      func() error { _, err := ToR4(r, R4Options{}); return err },
		"MarshalR4": func() error { _, err := MarshalR4(r, R4Options{}); return err },
	} {
		err := f()
		if !errors.Is(err, ErrNoR4Form) {
			t.Errorf("%s: got %v, want ErrNoR4Form", name, err)
		}
		var fe *Error
		if !errors.As(err, &fe) {
			t.Fatalf("%s: got %T, want *Error", name, err)
		}
		if fe.Status != http.StatusNotFound || fe.Code != CodeNotSupported {
			t.Errorf("%s: got %d %s, want 404 not-supported", name, fe.Status, fe.Code)
		}
	}
}

func TestToR4Bundle(t *testing.T) {
	total := 3
	b := &Bundle{
		Base:       Base{ResourceType: "Bundle", ID: "search-1", Meta: &Meta{LastUpdated: "2024-03-05T10:00:00.123456Z"}},
		BundleType: "searchset",
		Timestamp:  "2024-03-05T10:00:00.123456Z",
		Total:      &total,
		Link: []BundleLink{
			{Relation: "self", URL: "https://ohx.example.org/fhir/Observation?patient=p-4f2a&_count=2"},
			{Relation: "next", URL: "https://ohx.example.org/fhir/Observation?patient=p-4f2a&_count=2&_cursor=abc"},
		},
	}
	for _, name := range []string{"observation-weight.json", "observation-bp.json"} {
		r := decodeFixture(t, name)
		b.Entry = append(b.Entry, BundleEntry{
			FullURL:  "https://ohx.example.org/fhir/Observation/" + r.Common().ID,
			Resource: mustMarshalR4(t, r, R4Options{}),
			Search:   &BundleSearch{Mode: "match", Score: ptr(Decimal("1"))},
		})
	}
	b.Entry = append(b.Entry, BundleEntry{
		Resource: mustMarshalR4(t, NewOutcome("warning", CodeThrottled, "Withings rate limit reached; results may be stale"), R4Options{}),
		Search:   &BundleSearch{Mode: "outcome"},
	})
	cr := validateR4(t, mustMarshalR4(t, b, R4Options{}))
	entries := cr.GetBundle().GetEntry()
	if len(entries) != 3 {
		t.Fatalf("entries: got %d, want 3", len(entries))
	}
	if got := entries[1].GetResource().GetObservation().GetComponent()[0].GetValue().GetQuantity().GetCode().GetValue(); got != "mm[Hg]" {
		t.Errorf("BP systolic unit: got %q, want mm[Hg]", got)
	}
	if got := entries[0].GetResource().GetObservation().GetValue().GetQuantity().GetValue().GetValue(); got != "72.0" {
		t.Errorf("weight: got %q, want 72.0 (precision kept)", got)
	}

	_, err := ToR4(&Bundle{Base: Base{ResourceType: "Bundle"}, BundleType: "subscription-notification"}, R4Options{})
	if !errors.Is(err, ErrNoR4Form) {
		t.Errorf("subscription-notification: got %v, want ErrNoR4Form", err)
	}
}

func TestToR4OperationOutcome(t *testing.T) {
	o := NewOutcome("error", CodeInvalid, "Observation.status: missing required element")
	o.Issue[0].Expression = []string{"Observation.status"}
	o.Issue = append(o.Issue,
		OutcomeIssue{Severity: "success", Code: "success", Diagnostics: "stored"},
		OutcomeIssue{Severity: "warning", Code: "limited-filter", Diagnostics: "_filter ignored"},
	)
	cr := validateR4(t, mustMarshalR4(t, o, R4Options{}))
	issues := cr.GetOperationOutcome().GetIssue()
	if len(issues) != 3 {
		t.Fatalf("issues: got %d, want 3", len(issues))
	}
	v, err := ToR4(o, R4Options{})
	if err != nil {
		t.Fatal(err)
	}
	var got [][2]string
	for _, is := range v.(*OperationOutcome).Issue {
		got = append(got, [2]string{is.Severity, is.Code})
	}
	want := [][2]string{{"error", "invalid"}, {"information", "informational"}, {"warning", "processing"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("severity/code (-want +got):\n%s", diff)
	}
	if o.Issue[1].Severity != "success" {
		t.Errorf("ToR4 modified its input")
	}
}

func testCapabilityStatement() *CapabilityStatement {
	read := []CapabilityInteraction{{Code: "read"}, {Code: "vread"}, {Code: "search-type"}}
	smartURIs := "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
	authorize, token := "https://ohx.example.org/auth/authorize", "https://ohx.example.org/auth/token"
	return &CapabilityStatement{
		Base:           Base{ResourceType: "CapabilityStatement", ID: "ohx"},
		Name:           "OHXServer",
		Title:          "Open Health Exchange FHIR facade",
		Status:         "active",
		Date:           "2024-03-01",
		Publisher:      "Open Health Exchange",
		Kind:           "instance",
		Software:       &CapabilitySoftware{Name: "ohx", Version: "0.1.0"},
		Implementation: &CapabilityImplementation{Description: "ohx test instance", URL: "https://ohx.example.org/fhir"},
		FHIRVersion:    "5.0.0",
		Format:         []string{"application/fhir+json", "json"},
		Rest: []CapabilityRest{{
			Mode: "server",
			Security: &CapabilitySecurity{
				Extension: []Extension{{URL: smartURIs, Extension: []Extension{
					{URL: "authorize", ValueURI: &authorize},
					{URL: "token", ValueURI: &token},
				}}},
				Cors: ptr(true),
				Service: []CodeableConcept{{Coding: []Coding{{
					System: "http://terminology.hl7.org/CodeSystem/restful-security-service", Code: "SMART-on-FHIR",
				}}}},
			},
			Resource: []CapabilityResource{
				{
					Type: "Patient", Interaction: read, Versioning: "versioned", ReadHistory: ptr(false),
					SearchRevInclude: []string{"Observation:subject", "DeviceAssociation:subject"},
					SearchParam:      []CapabilitySearchParam{{Name: "identifier", Type: "token", Definition: "http://hl7.org/fhir/SearchParameter/Patient-identifier"}},
				},
				{
					Type: "Device", Interaction: read,
					SearchRevInclude: []string{"DeviceAssociation:device"},
					SearchParam:      []CapabilitySearchParam{{Name: "patient", Type: "reference"}},
				},
				{
					Type: "DeviceAssociation", Interaction: read,
					SearchParam: []CapabilitySearchParam{{Name: "patient", Type: "reference"}},
				},
				{
					Type: "Observation", Interaction: read, ConditionalRead: "not-supported",
					SearchInclude: []string{"Observation:device", "Observation:patient:Patient", "Observation:subject:DeviceAssociation"},
					SearchParam: []CapabilitySearchParam{
						{Name: "patient", Type: "reference"},
						{Name: "code", Type: "token"},
						{Name: "date", Type: "date", Documentation: "Dates without a zone are UTC."},
						{Name: "_in", Type: "resource"},
					},
					Operation: []CapabilityOperation{{Name: "lastn", Definition: "http://hl7.org/fhir/OperationDefinition/Observation-lastn", Documentation: "max per code"}},
				},
			},
			Interaction: []CapabilityInteraction{{Code: "search-system"}},
			SearchParam: []CapabilitySearchParam{{Name: "_lastUpdated", Type: "date"}},
			Operation:   []CapabilityOperation{{Name: "export", Definition: "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export"}},
			Compartment: []string{"http://hl7.org/fhir/CompartmentDefinition/patient"},
		}},
	}
}

func TestToR4CapabilityStatement(t *testing.T) {
	cs := testCapabilityStatement()
	before, err := json.Marshal(cs)
	if err != nil {
		t.Fatal(err)
	}
	b := mustMarshalR4(t, cs, R4Options{})
	cr := validateR4(t, b)
	got := cr.GetCapabilityStatement()
	if v := got.GetFhirVersion().GetValue().String(); v != "V_4_0_1" {
		t.Errorf("fhirVersion: got %s, want V_4_0_1", v)
	}
	after, err := json.Marshal(cs)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Errorf("ToR4 modified its input")
	}

	v, err := ToR4(cs, R4Options{})
	if err != nil {
		t.Fatal(err)
	}
	r4 := v.(*CapabilityStatement)
	if r4.FHIRVersion != R4Version {
		t.Errorf("fhirVersion: got %q, want %q", r4.FHIRVersion, R4Version)
	}
	var types []string
	for _, res := range r4.Rest[0].Resource {
		types = append(types, res.Type)
	}
	if diff := cmp.Diff([]string{"Patient", "Device", "Observation"}, types); diff != "" {
		t.Errorf("resource types (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"Observation:subject"}, r4.Rest[0].Resource[0].SearchRevInclude); diff != "" {
		t.Errorf("Patient revinclude (-want +got):\n%s", diff)
	}
	if got := r4.Rest[0].Resource[1].SearchRevInclude; got != nil {
		t.Errorf("Device revinclude: got %v, want none", got)
	}
	obs := r4.Rest[0].Resource[2]
	if diff := cmp.Diff([]string{"Observation:device", "Observation:patient:Patient"}, obs.SearchInclude); diff != "" {
		t.Errorf("Observation include (-want +got):\n%s", diff)
	}
	for _, p := range obs.SearchParam {
		if p.Type == "resource" {
			t.Errorf("search parameter %s of the R5-only type resource kept", p.Name)
		}
	}
	if strings.Contains(string(b), "DeviceAssociation") {
		t.Errorf("R4 statement still mentions DeviceAssociation:\n%s", b)
	}
	// Operations and compartments have the same shape in R4 and pass its validator.
	rest := got.GetRest()[0]
	if len(rest.GetCompartment()) != 1 || len(rest.GetResource()[2].GetOperation()) != 1 {
		t.Errorf("R4 statement lost rest.compartment or Observation's operation:\n%s", b)
	}
}

// TestToR4Errors covers content R4 cannot express and programming errors.
func TestToR4Errors(t *testing.T) {
	obs := func(mod func(*Observation)) *Observation {
		o := &Observation{
			Base:   Base{ResourceType: "Observation", ID: "x"},
			Status: "final",
			Code:   CodeableConcept{Coding: []Coding{{System: "http://loinc.org", Code: "29463-7"}}},
		}
		mod(o)
		return o
	}
	notAcceptable := []struct {
		name string
		r    Resource
	}{
		{"subject Practitioner", obs(func(o *Observation) { o.Subject = &Reference{Reference: "Practitioner/dr-meier"} })},
		{"derivedFrom ImagingSelection", obs(func(o *Observation) {
			o.DerivedFrom = []Reference{{Reference: "ImagingSelection/is1"}}
		})},
		{"comparator ad", obs(func(o *Observation) {
			o.ValueQuantity = &Quantity{Value: ptr(Decimal("5")), Comparator: "ad", Unit: "mL"}
		})},
		{"component range comparator ad", obs(func(o *Observation) {
			o.Component = []ObservationComponent{{
				Code:           CodeableConcept{Text: "c"},
				ReferenceRange: []ObservationRange{{Low: &Quantity{Value: ptr(Decimal("1")), Comparator: "ad"}}},
			}}
		})},
		{"note by PractitionerRole", obs(func(o *Observation) {
			o.Note = []Annotation{{AuthorReference: &Reference{Reference: "PractitionerRole/pr1"}, Text: "n"}}
		})},
		{"device property comparator ad", &Device{
			Base:     Base{ResourceType: "Device"},
			Property: []DeviceProperty{{Type: CodeableConcept{Text: "t"}, ValueQuantity: &Quantity{Value: ptr(Decimal("1")), Comparator: "ad"}}},
		}},
	}
	for _, tc := range notAcceptable {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ToR4(tc.r, R4Options{})
			if !errors.Is(err, ErrNoR4Form) {
				t.Fatalf("got %v, want ErrNoR4Form", err)
			}
			var fe *Error
			if !errors.As(err, &fe) || fe.Status != http.StatusNotAcceptable || fe.Code != CodeNotSupported {
				t.Errorf("got %#v, want *Error 406 not-supported", err)
			}
		})
	}

	// Programming errors are plain errors (500 in the API), never a client-facing *Error.
	programming := []struct {
		name string
		r    Resource
		opt  R4Options
	}{
		{"nil resource", nil, R4Options{}},
		{"nil *Observation", (*Observation)(nil), R4Options{}},
		{"DevicePatient is a Group", &Device{Base: Base{ResourceType: "Device"}}, R4Options{DevicePatient: &Reference{Reference: "Group/g1"}}},
	}
	for _, tc := range programming {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ToR4(tc.r, tc.opt)
			if err == nil {
				t.Fatal("got nil error")
			}
			var fe *Error
			if errors.As(err, &fe) {
				t.Errorf("got *Error %v, want a plain error", fe)
			}
		})
	}
}

// TestR4ValidatorBites proves the validator used above rejects invalid R4, including the R5 shapes
// that ToR4 exists to remove.
func TestR4ValidatorBites(t *testing.T) {
	tests := map[string]string{
		"Observation without status": `{"resourceType":"Observation","code":{"text":"weight"}}`,
		"Observation bad status":     `{"resourceType":"Observation","status":"done","code":{"text":"weight"}}`,
		"R5 sampled data shape": `{"resourceType":"Observation","status":"final","code":{"text":"ecg"},
			"valueSampledData":{"origin":{"value":0},"interval":2,"intervalUnit":"ms","dimensions":1,"data":"1 2"}}`,
		"subject Practitioner":              `{"resourceType":"Observation","status":"final","code":{"text":"w"},"subject":{"reference":"Practitioner/1"}}`,
		"dateTime without zone":             `{"resourceType":"Observation","status":"final","code":{"text":"w"},"effectiveDateTime":"2024-03-05T07:32:10"}`,
		"decimal as string":                 `{"resourceType":"Observation","status":"final","code":{"text":"w"},"valueQuantity":{"value":"72.0"}}`,
		"R5 Device name":                    `{"resourceType":"Device","name":[{"value":"Body Cardio","type":"registered-name"}]}`,
		"R5 Device displayName":             `{"resourceType":"Device","displayName":"Jane's scale"}`,
		"DeviceAssociation":                 string(readFixture(t, "r5/device-association.json")),
		"R5 Attachment size":                `{"resourceType":"Patient","photo":[{"contentType":"image/png","size":"48213"}]}`,
		"OperationOutcome success severity": `{"resourceType":"OperationOutcome","issue":[{"severity":"success","code":"informational"}]}`,
	}
	for name, in := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := unmarshalR4(t, []byte(in))
			if err == nil {
				t.Fatalf("R4 validator accepted invalid input:\n%s", in)
			}
			t.Logf("rejected: %v", err)
		})
	}
	// And the valid counterpart of the first case passes.
	validateR4(t, []byte(`{"resourceType":"Observation","status":"final","code":{"text":"weight"}}`))
}

// jsonNames returns the JSON element names of a struct type, flattening embedded structs the way
// encoding/json does.
func jsonNames(t reflect.Type) map[string]bool {
	names := map[string]bool{}
	for i := range t.NumField() {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if f.Anonymous && tag == "" {
			for n := range jsonNames(f.Type) {
				names[n] = true
			}
			continue
		}
		if tag == "" || tag == "-" {
			continue
		}
		names[tag] = true
	}
	return names
}

// TestR4Coverage fails when an element is added to one of our R5 structs without deciding its R4
// fate: every R5 element must exist in the R4 struct or be listed here as converted or dropped.
func TestR4Coverage(t *testing.T) {
	tests := []struct {
		r5, r4  reflect.Type
		handled []string // converted into another element, or dropped (documented in r4.go)
	}{
		{reflect.TypeFor[Patient](), reflect.TypeFor[r4Patient](), nil},
		{reflect.TypeFor[Observation](), reflect.TypeFor[r4Observation](), nil},
		{reflect.TypeFor[ObservationComponent](), reflect.TypeFor[r4ObservationComponent](), nil},
		{reflect.TypeFor[SampledData](), reflect.TypeFor[r4SampledData](), []string{"interval", "intervalUnit", "codeMap", "offsets"}},
		{reflect.TypeFor[Attachment](), reflect.TypeFor[r4Attachment](), nil},
		{reflect.TypeFor[Device](), reflect.TypeFor[r4Device](), []string{"name", "displayName", "availabilityStatus", "category"}},
		{reflect.TypeFor[DeviceVersion](), reflect.TypeFor[r4DeviceVersion](), []string{"installDate"}},
		{reflect.TypeFor[DeviceProperty](), reflect.TypeFor[r4DeviceProperty](), []string{"valueCodeableConcept", "valueString", "valueBoolean", "valueInteger"}},
	}
	for _, tc := range tests {
		r4 := jsonNames(tc.r4)
		for _, h := range tc.handled {
			r4[h] = true
		}
		for n := range jsonNames(tc.r5) {
			if !r4[n] {
				t.Errorf("%s.%s has no R4 mapping: add it to %s or document why it is dropped", tc.r5.Name(), n, tc.r4.Name())
			}
		}
	}
}
