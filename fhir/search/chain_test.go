package search

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/openhealthexchange/ohx/fhir"
)

// TestParseChain: each supported chain becomes one clause on the reference parameter whose
// Chain names the target parameter of every type it may reach and carries the token values.
func TestParseChain(t *testing.T) {
	reg := DefaultRegistry()
	pid, did := reg.Param("Patient", "identifier"), reg.Param("Device", "identifier")
	for _, tc := range []struct {
		typ, raw string
		param    string // the reference parameter the clause is on
		targets  []*Param
		values   []Value
	}{
		{"Observation", "patient.identifier=urn:mrn|42", "patient", []*Param{pid}, []Value{{System: "urn:mrn", Code: "42"}}},
		{"Observation", "subject:Patient.identifier=urn:mrn|42", "subject", []*Param{pid}, []Value{{System: "urn:mrn", Code: "42"}}},
		{"Observation", "subject:Device.identifier=W-1", "subject", []*Param{did}, []Value{{Code: "W-1", AnySystem: true}}},
		{"Observation", "subject.identifier=42", "subject", []*Param{pid, did}, []Value{{Code: "42", AnySystem: true}}},
		{"Observation", "device.identifier=|W-1", "device", []*Param{did}, []Value{{Code: "W-1"}}},
		{"Observation", "patient.identifier=urn:mrn|", "patient", []*Param{pid}, []Value{{System: "urn:mrn", AnyCode: true}}},
		{"Observation", "patient.identifier=urn:mrn|42,urn:mrn|43", "patient", []*Param{pid}, []Value{{System: "urn:mrn", Code: "42"}, {System: "urn:mrn", Code: "43"}}},
		{"Observation", `patient.identifier=a\|b|c\,d`, "patient", []*Param{pid}, []Value{{System: "a|b", Code: "c,d"}}},
		{"DeviceAssociation", "patient.identifier=urn:mrn|42", "patient", []*Param{pid}, []Value{{System: "urn:mrn", Code: "42"}}},
		{"DeviceAssociation", "device.identifier=urn:dev|W-1", "device", []*Param{did}, []Value{{System: "urn:dev", Code: "W-1"}}},
		{"DeviceAssociation", "subject:Patient.identifier=42", "subject", []*Param{pid}, []Value{{Code: "42", AnySystem: true}}},
	} {
		t.Run(tc.typ+"?"+tc.raw, func(t *testing.T) {
			q := mustParse(t, tc.typ, tc.raw, Options{Strict: true})
			if len(q.Clauses) != 1 {
				t.Fatalf("clauses: %d, want 1", len(q.Clauses))
			}
			c := q.Clauses[0]
			if c.Param.Resource != tc.typ || c.Param.Name != tc.param || c.Modifier != "" || len(c.Values) != 0 || c.Chain == nil {
				t.Fatalf("clause %+v, want a chain on %s.%s without own values or modifier", c, tc.typ, tc.param)
			}
			if diff := cmp.Diff(tc.targets, c.Chain.Targets); diff != "" {
				t.Errorf("targets (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.values, c.Chain.Values); diff != "" {
				t.Errorf("values (-want +got):\n%s", diff)
			}
			// The self link lists the chain as written.
			name, value, _ := strings.Cut(tc.raw, "=")
			if want := []NameValue{{name, mustUnescape(t, value)}}; !cmp.Equal(want, q.Applied) {
				t.Errorf("applied %v, want %v", q.Applied, want)
			}
		})
	}
}

func mustUnescape(t *testing.T, s string) string {
	t.Helper()
	pairs, err := ParseRawQuery("x=" + s)
	if err != nil {
		t.Fatal(err)
	}
	return pairs[0].Value
}

// TestParseChainUnsupported: chains ohx cannot answer from indexes are a 400 not-supported under
// Prefer: handling=strict and are dropped (with the self link not listing them) otherwise.
func TestParseChainUnsupported(t *testing.T) {
	for _, tc := range []struct{ typ, raw string }{
		{"Observation", "patient.name=smith"},                // not a chainable target parameter
		{"Observation", "patient.organization.name=x"},       // deeper chain
		{"Observation", "patient.identifier.value=x"},        // deeper chain
		{"Observation", "patient.identifier:not=urn:mrn|42"}, // modifier on the chained parameter
		{"Observation", "patient.identifier:missing=true"},
		{"Observation", "patient.identifier:of-type=a|b|c"},
		{"Observation", "patient:missing.identifier=x"},  // not a type modifier
		{"Observation", "patient:Device.identifier=x"},   // not a target of patient
		{"Observation", "subject:Group.identifier=x"},    // a target ohx does not serve
		{"Observation", "subject:Location.identifier=x"}, // idem
		{"Observation", "code.identifier=x"},             // not a reference parameter
		{"Observation", "identifier.identifier=x"},       // idem
		{"Observation", "performer.identifier=x"},        // unknown reference parameter
		{"Observation", "_id.identifier=x"},              // idem
		{"Observation", ".identifier=x"},                 // no parameter
		{"Observation", "patient.=x"},                    // no chained parameter
		{"DeviceAssociation", "subject:Practitioner.identifier=x"},
		{"Patient", "link.identifier=x"},
	} {
		t.Run(tc.typ+"?"+tc.raw, func(t *testing.T) {
			pairs, err := ParseRawQuery(tc.raw + "&_id=x")
			if err != nil {
				t.Fatal(err)
			}
			_, _, err = DefaultRegistry().Parse(tc.typ, pairs, Options{Strict: true})
			var fe *fhir.Error
			if !errors.As(err, &fe) || fe.Status != http.StatusBadRequest || fe.Code != fhir.CodeNotSupported {
				t.Fatalf("strict: got %v, want 400 %s", err, fhir.CodeNotSupported)
			}
			q, _, err := DefaultRegistry().Parse(tc.typ, pairs, Options{})
			if err != nil {
				t.Fatalf("lenient: %v", err)
			}
			if len(q.Clauses) != 1 || q.Clauses[0].Chain != nil || len(q.Applied) != 1 || q.Applied[0].Name != "_id" {
				t.Errorf("lenient parsing kept the chain: clauses %+v, applied %v", q.Clauses, q.Applied)
			}
		})
	}
}

// TestParseChainErrors: a chain's values follow the target parameter's syntax, and the
// diagnostics name the chain.
func TestParseChainErrors(t *testing.T) {
	for _, raw := range []string{"patient.identifier=a|b|c", "device.identifier=|", "subject:Patient.identifier=x|y|z"} {
		pairs, err := ParseRawQuery(raw)
		if err != nil {
			t.Fatal(err)
		}
		_, _, err = DefaultRegistry().Parse("Observation", pairs, Options{})
		var fe *fhir.Error
		if !errors.As(err, &fe) || fe.Status != http.StatusBadRequest || fe.Code != fhir.CodeValue {
			t.Fatalf("%s: got %v, want 400 %s", raw, err, fhir.CodeValue)
		}
		if name, _, _ := strings.Cut(raw, "="); !strings.Contains(fe.Diagnostics, name) {
			t.Errorf("%s: diagnostics %q do not name the chain", raw, fe.Diagnostics)
		}
	}
}

// TestParseChainLimits: a chain's values count toward MaxParamValues and MaxValues like any
// parameter's.
func TestParseChainLimits(t *testing.T) {
	chain := func(n int) string {
		return "patient.identifier=" + repeat(n, ",", func(i int) string { return "urn:mrn|" + string(rune('a'+i%26)) })
	}
	for _, tc := range []struct {
		name string
		raw  string
		ok   bool
	}{
		{"MaxParamValues values", chain(MaxParamValues), true},
		{"one value more", chain(MaxParamValues + 1), false},
		{"MaxValues in all", repeat(MaxValues/MaxParamValues-1, "&", func(int) string { return codes(MaxParamValues) }) + "&" + chain(MaxParamValues), true},
		{"one value more in all", repeat(MaxValues/MaxParamValues-1, "&", func(int) string { return codes(MaxParamValues) }) + "&" + chain(MaxParamValues) + "&device.identifier=x", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pairs, err := ParseRawQuery(tc.raw)
			if err != nil {
				t.Fatal(err)
			}
			_, _, err = DefaultRegistry().Parse("Observation", pairs, Options{})
			if tc.ok {
				if err != nil {
					t.Fatalf("Parse: %v, want success at the limit", err)
				}
				return
			}
			var fe *fhir.Error
			if !errors.As(err, &fe) || fe.Status != http.StatusBadRequest || fe.Code != fhir.CodeTooCostly {
				t.Fatalf("got %v, want 400 %s", err, fhir.CodeTooCostly)
			}
		})
	}
}

// TestMatchesChain: the normative semantics of a chained clause over resolved targets.
func TestMatchesChain(t *testing.T) {
	targets := map[string]Index{
		"Patient/p1": {Entries: []Entry{{Column: "identifier", Type: Token, System: "urn:mrn", Code: "42"}}},
		"Patient/p2": {Entries: []Entry{{Column: "identifier", Type: Token, System: "urn:mrn", Code: "43"}, {Column: "identifier", Type: Token, Code: "x"}}},
		"Device/d1":  {Entries: []Entry{{Column: "identifier", Type: Token, System: "urn:dev", Code: "42"}}},
	}
	resolve := func(typ, id string) (Index, bool) {
		idx, ok := targets[typ+"/"+id]
		return idx, ok
	}
	subject := func(e Entry) Index { e.Column, e.Type = "subject", Reference; return Index{Entries: []Entry{e}} }
	for _, tc := range []struct {
		query string
		idx   Index
		want  bool
	}{
		{"patient.identifier=urn:mrn|42", subject(Entry{RefType: "Patient", RefID: "p1"}), true},
		{"patient.identifier=urn:mrn|42", subject(Entry{RefType: "Patient", RefID: "p2"}), false},
		{"patient.identifier=urn:mrn|42,urn:mrn|43", subject(Entry{RefType: "Patient", RefID: "p2"}), true},
		{"patient.identifier=urn:mrn|", subject(Entry{RefType: "Patient", RefID: "p2"}), true},
		{"patient.identifier=|x", subject(Entry{RefType: "Patient", RefID: "p2"}), true},
		{"patient.identifier=42", subject(Entry{RefType: "Patient", RefID: "p1"}), true},
		{"patient.identifier=urn:mrn|42", subject(Entry{RefType: "Patient", RefID: "gone"}), false},                             // unresolved
		{"patient.identifier=urn:mrn|42", subject(Entry{RefType: "Patient", RefURL: "https://x.test/Patient/p1"}), false},       // absolute URL
		{"patient.identifier=urn:dev|42", subject(Entry{RefType: "Device", RefID: "d1"}), false},                                // not a Patient
		{"subject.identifier=42", subject(Entry{RefType: "Device", RefID: "d1"}), true},                                         // any target type
		{"subject:Patient.identifier=urn:dev|42", subject(Entry{RefType: "Device", RefID: "d1"}), false},                        // only Patients
		{"subject:Device.identifier=urn:dev|42", subject(Entry{RefType: "Device", RefID: "d1"}), true},                          // only Devices
		{"patient.identifier=urn:mrn|42", Index{}, false},                                                                       // no subject
		{"patient.identifier=urn:mrn|42&patient.identifier=urn:mrn|43", subject(Entry{RefType: "Patient", RefID: "p1"}), false}, // ANDed
	} {
		t.Run(tc.query, func(t *testing.T) {
			q := mustParse(t, "Observation", tc.query, Options{})
			if got := MatchesWith(q, "o1", 0, tc.idx, resolve); got != tc.want {
				t.Errorf("MatchesWith: got %v, want %v", got, tc.want)
			}
			if Matches(q, "o1", 0, tc.idx) {
				t.Errorf("Matches without a resolver accepted a chained clause")
			}
		})
	}
}

// TestRegistryChains: what the CapabilityStatement advertises.
func TestRegistryChains(t *testing.T) {
	reg := DefaultRegistry()
	names := func(ps []*Param) []string {
		var out []string
		for _, p := range ps {
			out = append(out, p.Resource+"."+p.Name)
		}
		return out
	}
	for _, tc := range []struct {
		typ, param string
		want       []string
	}{
		{"Observation", "patient", []string{"Patient.identifier"}},
		{"Observation", "subject", []string{"Patient.identifier", "Device.identifier"}},
		{"Observation", "device", []string{"Device.identifier"}},
		{"DeviceAssociation", "patient", []string{"Patient.identifier"}},
		{"DeviceAssociation", "subject", []string{"Patient.identifier", "Device.identifier"}},
		{"DeviceAssociation", "device", []string{"Device.identifier"}},
		{"Observation", "code", nil},
		{"Patient", "identifier", nil},
	} {
		if got := names(reg.Chains(reg.Param(tc.typ, tc.param))); !cmp.Equal(tc.want, got) {
			t.Errorf("%s.%s chains %v, want %v", tc.typ, tc.param, got, tc.want)
		}
	}
}
