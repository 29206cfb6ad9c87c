// Package search holds the search-parameter registry and turns FHIR search requests into a typed,
// store-neutral query (the IR). The registry is the single source for parsing, for the index
// entries written with each resource, and for the CapabilityStatement.
package search

import (
	"slices"

	"github.com/openhealthexchange/ohx/fhir"
)

// Type is a FHIR search parameter type.
type Type string

// Search parameter types (https://hl7.org/fhir/R5/search.html#ptypes).
const (
	Token     Type = "token"
	Reference Type = "reference"
	Date      Type = "date"
	String    Type = "string"
	Quantity  Type = "quantity"
	Composite Type = "composite"
	Special   Type = "special"
)

// Param is one supported search parameter.
type Param struct {
	Resource   string // resource type, or "" for parameters common to all types (_id, _lastUpdated)
	Name       string
	Type       Type
	Definition string // canonical URL of the SearchParameter
	Expression string // FHIRPath, for documentation
	Doc        string
	// Modifiers lists the modifiers accepted besides :missing (which every parameter takes).
	Modifiers []string
	// Targets lists the resource types a reference parameter may point to.
	Targets []string
	// Columns are the index keys searched. Usually just Name; parameters that are views of
	// another parameter's entries (patient = subject restricted to Patient, combo-code = code or
	// component-code) name those instead, so each fact is indexed once.
	Columns []string
	// Sortable reports whether _sort accepts this parameter.
	Sortable bool
}

// IsView reports whether the parameter is a reference parameter reading another parameter's
// entries restricted to some target types (patient = subject where it is a Patient): such
// entries count for it, :missing included, only when their type is one of Targets.
func (p *Param) IsView() bool {
	return p.Type == Reference && (len(p.Columns) != 1 || p.Columns[0] != p.Name)
}

// Include is a supported _include / _revinclude: the reference parameter Param of Source, whose
// targets are of type Target.
type Include struct {
	Source string
	Param  string
	Target string
}

// String returns the CapabilityStatement form "Source:param" (or "Source:param:Target").
func (i Include) String() string { return i.Source + ":" + i.Param }

// Registry is the set of supported resource types and their search parameters.
type Registry struct {
	types  []string
	params map[string][]*Param // by resource type; includes the common parameters
	byName map[string]map[string]*Param
	incl   []Include
}

const (
	spec = "http://hl7.org/fhir/SearchParameter/"
	// Token systems for coded elements that are plain codes in the resource.
	ObservationStatusSystem = "http://hl7.org/fhir/observation-status"
	DeviceStatusSystem      = "http://hl7.org/fhir/device-status"
	GenderSystem            = "http://hl7.org/fhir/administrative-gender"
)

var common = []Param{
	{Name: "_id", Type: Token, Definition: spec + "Resource-id", Expression: "Resource.id", Sortable: true, Modifiers: []string{"not"}},
	{Name: "_lastUpdated", Type: Date, Definition: spec + "Resource-lastUpdated", Expression: "Resource.meta.lastUpdated", Sortable: true},
}

// DefaultRegistry returns the registry of everything ohx supports.
func DefaultRegistry() *Registry {
	tok := []string{"not"}
	str := []string{"exact", "contains"}
	defs := []Param{
		// Observation (https://hl7.org/fhir/R5/observation-search.html)
		{Resource: "Observation", Name: "patient", Type: Reference, Definition: spec + "clinical-patient", Expression: "Observation.subject.where(resolve() is Patient)", Targets: []string{"Patient"}, Columns: []string{"subject"}},
		{Resource: "Observation", Name: "subject", Type: Reference, Definition: spec + "Observation-subject", Expression: "Observation.subject", Targets: []string{"Patient", "Group", "Device", "Location"}},
		{Resource: "Observation", Name: "code", Type: Token, Definition: spec + "clinical-code", Expression: "Observation.code", Modifiers: tok},
		{Resource: "Observation", Name: "category", Type: Token, Definition: spec + "Observation-category", Expression: "Observation.category", Modifiers: tok},
		{Resource: "Observation", Name: "date", Type: Date, Definition: spec + "clinical-date", Expression: "Observation.effective.ofType(dateTime) | Observation.effective.ofType(Period) | Observation.effective.ofType(instant)", Sortable: true},
		{Resource: "Observation", Name: "device", Type: Reference, Definition: spec + "Observation-device", Expression: "Observation.device", Targets: []string{"Device"}},
		{Resource: "Observation", Name: "identifier", Type: Token, Definition: spec + "clinical-identifier", Expression: "Observation.identifier", Modifiers: tok},
		{Resource: "Observation", Name: "status", Type: Token, Definition: spec + "Observation-status", Expression: "Observation.status", Modifiers: tok},
		{Resource: "Observation", Name: "value-quantity", Type: Quantity, Definition: spec + "Observation-value-quantity", Expression: "Observation.value.ofType(Quantity)"},
		{Resource: "Observation", Name: "combo-code", Type: Token, Definition: spec + "Observation-combo-code", Expression: "Observation.code | Observation.component.code", Modifiers: tok, Columns: []string{"code", "component-code"}},
		// Patient (https://hl7.org/fhir/R5/patient-search.html)
		{Resource: "Patient", Name: "identifier", Type: Token, Definition: spec + "Patient-identifier", Expression: "Patient.identifier", Modifiers: tok},
		{Resource: "Patient", Name: "name", Type: String, Definition: spec + "Patient-name", Expression: "Patient.name", Modifiers: str},
		{Resource: "Patient", Name: "family", Type: String, Definition: spec + "individual-family", Expression: "Patient.name.family", Modifiers: str},
		{Resource: "Patient", Name: "given", Type: String, Definition: spec + "individual-given", Expression: "Patient.name.given", Modifiers: str},
		{Resource: "Patient", Name: "birthdate", Type: Date, Definition: spec + "individual-birthdate", Expression: "Patient.birthDate", Sortable: true},
		{Resource: "Patient", Name: "gender", Type: Token, Definition: spec + "individual-gender", Expression: "Patient.gender", Modifiers: tok},
		// Device (https://hl7.org/fhir/R5/device-search.html)
		{Resource: "Device", Name: "identifier", Type: Token, Definition: spec + "Device-identifier", Expression: "Device.identifier", Modifiers: tok},
		{Resource: "Device", Name: "type", Type: Token, Definition: spec + "Device-type", Expression: "Device.type", Modifiers: tok},
		{Resource: "Device", Name: "manufacturer", Type: String, Definition: spec + "Device-manufacturer", Expression: "Device.manufacturer", Modifiers: str},
		{Resource: "Device", Name: "model", Type: String, Definition: spec + "Device-model", Expression: "Device.modelNumber", Modifiers: str},
		{Resource: "Device", Name: "status", Type: Token, Definition: spec + "Device-status", Expression: "Device.status", Modifiers: tok},
		{Resource: "Device", Name: "device-name", Type: String, Definition: spec + "Device-device-name", Expression: "Device.name.value | Device.type.coding.display | Device.type.text", Modifiers: str},
		// DeviceAssociation (https://hl7.org/fhir/R5/deviceassociation-search.html)
		{Resource: "DeviceAssociation", Name: "patient", Type: Reference, Definition: spec + "DeviceAssociation-patient", Expression: "DeviceAssociation.subject.where(resolve() is Patient)", Targets: []string{"Patient"}, Columns: []string{"subject"}},
		{Resource: "DeviceAssociation", Name: "subject", Type: Reference, Definition: spec + "DeviceAssociation-subject", Expression: "DeviceAssociation.subject", Targets: []string{"Patient", "Group", "Practitioner", "RelatedPerson", "Device"}},
		{Resource: "DeviceAssociation", Name: "device", Type: Reference, Definition: spec + "DeviceAssociation-device", Expression: "DeviceAssociation.device", Targets: []string{"Device"}},
		{Resource: "DeviceAssociation", Name: "status", Type: Token, Definition: spec + "DeviceAssociation-status", Expression: "DeviceAssociation.status", Modifiers: tok},
		{Resource: "DeviceAssociation", Name: "identifier", Type: Token, Definition: spec + "DeviceAssociation-identifier", Expression: "DeviceAssociation.identifier", Modifiers: tok},
	}
	r := &Registry{
		types:  []string{"Patient", "Device", "DeviceAssociation", "Observation"},
		params: map[string][]*Param{},
		byName: map[string]map[string]*Param{},
		incl: []Include{
			{Source: "Observation", Param: "patient", Target: "Patient"},
			{Source: "Observation", Param: "subject", Target: "Patient"},
			{Source: "Observation", Param: "device", Target: "Device"},
			{Source: "DeviceAssociation", Param: "device", Target: "Device"},
			{Source: "DeviceAssociation", Param: "patient", Target: "Patient"},
			{Source: "DeviceAssociation", Param: "subject", Target: "Patient"},
		},
	}
	for _, t := range r.types {
		r.byName[t] = map[string]*Param{}
		for _, c := range common {
			p := c
			p.Resource = t
			r.add(&p)
		}
	}
	for i := range defs {
		r.add(&defs[i])
	}
	return r
}

func (r *Registry) add(p *Param) {
	if len(p.Columns) == 0 {
		p.Columns = []string{p.Name}
	}
	r.params[p.Resource] = append(r.params[p.Resource], p)
	r.byName[p.Resource][p.Name] = p
}

// Types returns the supported resource types.
func (r *Registry) Types() []string { return slices.Clone(r.types) }

// Supports reports whether the resource type is served.
func (r *Registry) Supports(typ string) bool { return slices.Contains(r.types, typ) }

// Params returns the search parameters of a resource type, common ones first.
func (r *Registry) Params(typ string) []*Param { return r.params[typ] }

// Param returns a parameter by resource type and name, or nil.
func (r *Registry) Param(typ, name string) *Param { return r.byName[typ][name] }

// chainable lists the parameters a chain may end in. ohx answers a chain from the target
// type's own index, one level deep, and only for token parameters, which every store matches
// with the same index lookups as a plain search of the target: identifier is the chain
// clients need (an EHR knows its MRN, not our ids).
var chainable = []string{"identifier"}

// ChainTargets returns, for the chain p[:typeMod].name, the parameter name of every target type
// it may reach: the targets of p (only typeMod when given) that ohx serves and whose name
// parameter may end a chain. It returns nil when ohx cannot answer that chain.
func (r *Registry) ChainTargets(p *Param, typeMod, name string) []*Param {
	if p == nil || p.Type != Reference || !slices.Contains(chainable, name) {
		return nil
	}
	if typeMod != "" && !slices.Contains(p.Targets, typeMod) {
		return nil
	}
	var out []*Param
	for _, t := range p.Targets {
		if typeMod != "" && t != typeMod {
			continue
		}
		if tp := r.Param(t, name); tp != nil && tp.Type == Token {
			out = append(out, tp)
		}
	}
	return out
}

// Chains returns every chained parameter reachable from the reference parameter p, one per
// target type and chainable name (for the CapabilityStatement), or nil.
func (r *Registry) Chains(p *Param) []*Param {
	var out []*Param
	for _, name := range chainable {
		out = append(out, r.ChainTargets(p, "", name)...)
	}
	return out
}

// Includes returns the _include values supported on searches of typ.
func (r *Registry) Includes(typ string) []Include {
	var out []Include
	for _, i := range r.incl {
		if i.Source == typ {
			out = append(out, i)
		}
	}
	return out
}

// RevIncludes returns the _revinclude values supported on searches of typ.
func (r *Registry) RevIncludes(typ string) []Include {
	var out []Include
	for _, i := range r.incl {
		if i.Target == typ {
			out = append(out, i)
		}
	}
	return out
}

// SortDateParam returns the date parameter of typ whose value is kept as the resource's sort
// date (Observation.date, Patient.birthdate), or "".
func SortDateParam(typ string) string {
	switch typ {
	case "Observation":
		return "date"
	case "Patient":
		return "birthdate"
	}
	return ""
}

// PatientOf returns the id of the patient whose compartment a resource belongs to, or "".
func PatientOf(res fhir.Resource) string {
	var ref *fhir.Reference
	switch r := res.(type) {
	case *fhir.Patient:
		return r.ID
	case *fhir.Observation:
		ref = r.Subject
	case *fhir.DeviceAssociation:
		ref = r.Subject
	}
	if ref == nil {
		return ""
	}
	if t, id, ok := fhir.SplitReference(ref.Reference); ok && t == "Patient" {
		return id
	}
	return ""
}
