package fhir

// Base holds the elements common to every resource we model. It is embedded in each resource
// struct, so its fields are promoted into the resource's JSON object.
type Base struct {
	ResourceType      string      `json:"resourceType"`
	ID                string      `json:"id,omitempty"`
	Meta              *Meta       `json:"meta,omitempty"`
	ImplicitRules     string      `json:"implicitRules,omitempty"`
	Language          string      `json:"language,omitempty"`
	Text              *Narrative  `json:"text,omitempty"`
	Extension         []Extension `json:"extension,omitempty"`
	ModifierExtension []Extension `json:"modifierExtension,omitempty"`
}

// Resource is implemented by every resource type ohx stores.
type Resource interface {
	// Type returns the FHIR resource type name, e.g. "Observation".
	Type() string
	// Base returns the common elements, for reading and setting id and meta.
	Common() *Base
	// Validate checks required elements, value sets and formats; it returns an *Error (400).
	Validate() error
}

// Common returns the embedded common elements.
func (b *Base) Common() *Base { return b }

// Patient (R5) is a person receiving care.
type Patient struct {
	Base
	Identifier           []Identifier      `json:"identifier,omitempty"`
	Active               *bool             `json:"active,omitempty"`
	Name                 []HumanName       `json:"name,omitempty"`
	Telecom              []ContactPoint    `json:"telecom,omitempty"`
	Gender               string            `json:"gender,omitempty"`
	BirthDate            string            `json:"birthDate,omitempty"`
	DeceasedBoolean      *bool             `json:"deceasedBoolean,omitempty"`
	DeceasedDateTime     string            `json:"deceasedDateTime,omitempty"`
	Address              []Address         `json:"address,omitempty"`
	MaritalStatus        *CodeableConcept  `json:"maritalStatus,omitempty"`
	MultipleBirthBoolean *bool             `json:"multipleBirthBoolean,omitempty"`
	MultipleBirthInteger *int              `json:"multipleBirthInteger,omitempty"`
	Photo                []Attachment      `json:"photo,omitempty"`
	Contact              []PatientContact  `json:"contact,omitempty"`
	Communication        []PatientLanguage `json:"communication,omitempty"`
	GeneralPractitioner  []Reference       `json:"generalPractitioner,omitempty"`
	ManagingOrganization *Reference        `json:"managingOrganization,omitempty"`
	Link                 []PatientLink     `json:"link,omitempty"`
}

// PatientContact is a contact party for a patient.
type PatientContact struct {
	Relationship []CodeableConcept `json:"relationship,omitempty"`
	Name         *HumanName        `json:"name,omitempty"`
	Telecom      []ContactPoint    `json:"telecom,omitempty"`
	Address      *Address          `json:"address,omitempty"`
	Gender       string            `json:"gender,omitempty"`
	Organization *Reference        `json:"organization,omitempty"`
	Period       *Period           `json:"period,omitempty"`
}

// PatientLanguage is a language the patient may communicate in.
type PatientLanguage struct {
	Language  CodeableConcept `json:"language"`
	Preferred *bool           `json:"preferred,omitempty"`
}

// PatientLink links to another patient resource about the same person.
type PatientLink struct {
	Other Reference `json:"other"`
	Type  string    `json:"type"`
}

// Type implements Resource.
func (*Patient) Type() string { return "Patient" }

// Validate implements Resource.
func (p *Patient) Validate() error {
	var v validator
	v.code("Patient.gender", p.Gender, "male", "female", "other", "unknown")
	v.date("Patient.birthDate", p.BirthDate)
	v.dateTime("Patient.deceasedDateTime", p.DeceasedDateTime)
	if p.DeceasedBoolean != nil && p.DeceasedDateTime != "" {
		v.fail("Patient.deceased[x]", "only one of deceasedBoolean and deceasedDateTime may be given")
	}
	for i, n := range p.Name {
		v.code("Patient.name.use", n.Use, "usual", "official", "temp", "nickname", "anonymous", "old", "maiden")
		v.period("Patient.name.period", n.Period)
		_ = i
	}
	for _, id := range p.Identifier {
		v.code("Patient.identifier.use", id.Use, "usual", "official", "temp", "secondary", "old")
	}
	for _, c := range p.Telecom {
		v.code("Patient.telecom.system", c.System, "phone", "fax", "email", "pager", "url", "sms", "other")
	}
	for i, l := range p.Link {
		v.required("Patient.link.type", l.Type != "")
		v.code("Patient.link.type", l.Type, "replaced-by", "replaces", "refer", "seealso")
		v.required("Patient.link.other", l.Other.Reference != "" || l.Other.Identifier != nil)
		_ = i
	}
	v.reference("Patient.managingOrganization", p.ManagingOrganization, "Organization")
	return errOrNil(v.err)
}

// Practitioner is the read-only view of a practitioner user of the built-in authorization
// server (the resource its fhirUser names). Only the elements ohx fills are modelled; they have
// the same shape in R4 and R5.
type Practitioner struct {
	Base
	Identifier []Identifier `json:"identifier,omitempty"`
	Active     *bool        `json:"active,omitempty"`
	Name       []HumanName  `json:"name,omitempty"`
}

// UsernameSystem is the identifier system of a Practitioner's sign-in username.
const UsernameSystem = "urn:ohx:username"

// Type implements Resource.
func (*Practitioner) Type() string { return "Practitioner" }

// Validate implements Resource.
func (p *Practitioner) Validate() error {
	var v validator
	for _, n := range p.Name {
		v.code("Practitioner.name.use", n.Use, "usual", "official", "temp", "nickname", "anonymous", "old", "maiden")
	}
	return errOrNil(v.err)
}

// Device (R5) is a wearable, scale, cuff or other instrument. R5 Device has no patient element:
// the link to a patient is a DeviceAssociation.
type Device struct {
	Base
	Identifier         []Identifier       `json:"identifier,omitempty"`
	DisplayName        string             `json:"displayName,omitempty"`
	Definition         *CodeableReference `json:"definition,omitempty"`
	Status             string             `json:"status,omitempty"`
	AvailabilityStatus *CodeableConcept   `json:"availabilityStatus,omitempty"`
	Manufacturer       string             `json:"manufacturer,omitempty"`
	ManufactureDate    string             `json:"manufactureDate,omitempty"`
	ExpirationDate     string             `json:"expirationDate,omitempty"`
	LotNumber          string             `json:"lotNumber,omitempty"`
	SerialNumber       string             `json:"serialNumber,omitempty"`
	Name               []DeviceName       `json:"name,omitempty"`
	ModelNumber        string             `json:"modelNumber,omitempty"`
	PartNumber         string             `json:"partNumber,omitempty"`
	Category           []CodeableConcept  `json:"category,omitempty"`
	DeviceType         []CodeableConcept  `json:"type,omitempty"`
	Version            []DeviceVersion    `json:"version,omitempty"`
	Property           []DeviceProperty   `json:"property,omitempty"`
	Owner              *Reference         `json:"owner,omitempty"`
	Contact            []ContactPoint     `json:"contact,omitempty"`
	URL                string             `json:"url,omitempty"`
	Note               []Annotation       `json:"note,omitempty"`
	Parent             *Reference         `json:"parent,omitempty"`
}

// CodeableReference is a reference to a concept, by code or by resource reference (R5).
type CodeableReference struct {
	Concept   *CodeableConcept `json:"concept,omitempty"`
	Reference *Reference       `json:"reference,omitempty"`
}

// DeviceName is one of a device's names; type is from http://hl7.org/fhir/device-nametype.
type DeviceName struct {
	Value   string `json:"value"`
	Type    string `json:"type"`
	Display *bool  `json:"display,omitempty"`
}

// DeviceVersion is a firmware or software version of a device.
type DeviceVersion struct {
	Type        *CodeableConcept `json:"type,omitempty"`
	Component   *Identifier      `json:"component,omitempty"`
	InstallDate string           `json:"installDate,omitempty"`
	Value       string           `json:"value"`
}

// DeviceProperty is a static or dynamic property of a device, such as its battery level.
type DeviceProperty struct {
	Type                 CodeableConcept  `json:"type"`
	ValueQuantity        *Quantity        `json:"valueQuantity,omitempty"`
	ValueCodeableConcept *CodeableConcept `json:"valueCodeableConcept,omitempty"`
	ValueString          *string          `json:"valueString,omitempty"`
	ValueBoolean         *bool            `json:"valueBoolean,omitempty"`
	ValueInteger         *int64           `json:"valueInteger,omitempty"`
}

// Type implements Resource.
func (*Device) Type() string { return "Device" }

// Validate implements Resource.
func (d *Device) Validate() error {
	var v validator
	v.code("Device.status", d.Status, "active", "inactive", "entered-in-error")
	for _, n := range d.Name {
		v.required("Device.name.value", n.Value != "")
		v.required("Device.name.type", n.Type != "")
		v.code("Device.name.type", n.Type, "registered-name", "user-friendly-name", "patient-reported-name")
	}
	for _, ver := range d.Version {
		v.required("Device.version.value", ver.Value != "")
		v.dateTime("Device.version.installDate", ver.InstallDate)
	}
	for _, p := range d.Property {
		n := 0
		for _, set := range []bool{p.ValueQuantity != nil, p.ValueCodeableConcept != nil, p.ValueString != nil, p.ValueBoolean != nil, p.ValueInteger != nil} {
			if set {
				n++
			}
		}
		if n != 1 {
			v.fail("Device.property.value[x]", "exactly one value is required")
		}
		v.quantity("Device.property.valueQuantity", p.ValueQuantity)
	}
	v.dateTime("Device.manufactureDate", d.ManufactureDate)
	v.dateTime("Device.expirationDate", d.ExpirationDate)
	v.reference("Device.parent", d.Parent, "Device")
	return errOrNil(v.err)
}

// DeviceAssociation (R5) records that a device is (or was) used by a subject.
type DeviceAssociation struct {
	Base
	Identifier    []Identifier                 `json:"identifier,omitempty"`
	Device        Reference                    `json:"device"`
	Category      []CodeableConcept            `json:"category,omitempty"`
	Status        CodeableConcept              `json:"status"`
	StatusReason  []CodeableConcept            `json:"statusReason,omitempty"`
	Subject       *Reference                   `json:"subject,omitempty"`
	BodyStructure *Reference                   `json:"bodyStructure,omitempty"`
	Period        *Period                      `json:"period,omitempty"`
	Operation     []DeviceAssociationOperation `json:"operation,omitempty"`
}

// DeviceAssociationOperation is an operation status of the associated device.
type DeviceAssociationOperation struct {
	Status   CodeableConcept `json:"status"`
	Operator []Reference     `json:"operator,omitempty"`
	Period   *Period         `json:"period,omitempty"`
}

// DeviceAssociationStatusSystem is the R5 code system for DeviceAssociation.status.
const DeviceAssociationStatusSystem = "http://hl7.org/fhir/deviceassociation-status"

// Type implements Resource.
func (*DeviceAssociation) Type() string { return "DeviceAssociation" }

// Validate implements Resource.
func (a *DeviceAssociation) Validate() error {
	var v validator
	v.required("DeviceAssociation.device", a.Device.Reference != "" || a.Device.Identifier != nil)
	v.reference("DeviceAssociation.device", &a.Device, "Device")
	v.required("DeviceAssociation.status", len(a.Status.Coding) > 0 || a.Status.Text != "")
	for _, c := range a.Status.Coding {
		if c.System == DeviceAssociationStatusSystem {
			v.code("DeviceAssociation.status", c.Code, "implanted", "explanted", "attached", "entered-in-error", "unknown")
		}
	}
	v.reference("DeviceAssociation.subject", a.Subject, "Patient", "Group", "Practitioner", "RelatedPerson", "Device")
	v.period("DeviceAssociation.period", a.Period)
	return errOrNil(v.err)
}

// Observation (R5) is a measurement or simple assertion about a patient.
type Observation struct {
	Base
	Identifier        []Identifier      `json:"identifier,omitempty"`
	BasedOn           []Reference       `json:"basedOn,omitempty"`
	PartOf            []Reference       `json:"partOf,omitempty"`
	Status            string            `json:"status"`
	Category          []CodeableConcept `json:"category,omitempty"`
	Code              CodeableConcept   `json:"code"`
	Subject           *Reference        `json:"subject,omitempty"`
	Focus             []Reference       `json:"focus,omitempty"`
	Encounter         *Reference        `json:"encounter,omitempty"`
	EffectiveDateTime string            `json:"effectiveDateTime,omitempty"`
	EffectivePeriod   *Period           `json:"effectivePeriod,omitempty"`
	EffectiveInstant  string            `json:"effectiveInstant,omitempty"`
	Issued            string            `json:"issued,omitempty"`
	Performer         []Reference       `json:"performer,omitempty"`
	Value
	DataAbsentReason *CodeableConcept       `json:"dataAbsentReason,omitempty"`
	Interpretation   []CodeableConcept      `json:"interpretation,omitempty"`
	Note             []Annotation           `json:"note,omitempty"`
	BodySite         *CodeableConcept       `json:"bodySite,omitempty"`
	Method           *CodeableConcept       `json:"method,omitempty"`
	Device           *Reference             `json:"device,omitempty"`
	ReferenceRange   []ObservationRange     `json:"referenceRange,omitempty"`
	HasMember        []Reference            `json:"hasMember,omitempty"`
	DerivedFrom      []Reference            `json:"derivedFrom,omitempty"`
	Component        []ObservationComponent `json:"component,omitempty"`
}

// Value is the value[x] choice shared by Observation and its components.
type Value struct {
	ValueQuantity        *Quantity        `json:"valueQuantity,omitempty"`
	ValueCodeableConcept *CodeableConcept `json:"valueCodeableConcept,omitempty"`
	ValueString          *string          `json:"valueString,omitempty"`
	ValueBoolean         *bool            `json:"valueBoolean,omitempty"`
	ValueInteger         *int64           `json:"valueInteger,omitempty"`
	ValueRange           *Range           `json:"valueRange,omitempty"`
	ValueSampledData     *SampledData     `json:"valueSampledData,omitempty"`
	ValueTime            *string          `json:"valueTime,omitempty"`
	ValueDateTime        *string          `json:"valueDateTime,omitempty"`
	ValuePeriod          *Period          `json:"valuePeriod,omitempty"`
}

func (x *Value) count() int {
	n := 0
	for _, set := range []bool{x.ValueQuantity != nil, x.ValueCodeableConcept != nil, x.ValueString != nil,
		x.ValueBoolean != nil, x.ValueInteger != nil, x.ValueRange != nil, x.ValueSampledData != nil,
		x.ValueTime != nil, x.ValueDateTime != nil, x.ValuePeriod != nil} {
		if set {
			n++
		}
	}
	return n
}

// ObservationComponent is one component of a multi-part observation (e.g. systolic of a BP panel).
type ObservationComponent struct {
	Code CodeableConcept `json:"code"`
	Value
	DataAbsentReason *CodeableConcept   `json:"dataAbsentReason,omitempty"`
	Interpretation   []CodeableConcept  `json:"interpretation,omitempty"`
	ReferenceRange   []ObservationRange `json:"referenceRange,omitempty"`
}

// ObservationRange is a reference range for interpreting a value.
type ObservationRange struct {
	Low  *Quantity        `json:"low,omitempty"`
	High *Quantity        `json:"high,omitempty"`
	Type *CodeableConcept `json:"type,omitempty"`
	Text string           `json:"text,omitempty"`
}

// Type implements Resource.
func (*Observation) Type() string { return "Observation" }

// Validate implements Resource.
func (o *Observation) Validate() error {
	var v validator
	v.required("Observation.status", o.Status != "")
	v.code("Observation.status", o.Status, "registered", "preliminary", "final", "amended", "corrected", "cancelled", "entered-in-error", "unknown")
	v.required("Observation.code", len(o.Code.Coding) > 0 || o.Code.Text != "")
	v.cc("Observation.code", &o.Code)
	v.reference("Observation.subject", o.Subject, "Patient", "Group", "Device", "Location", "Organization", "Procedure", "Practitioner", "Medication", "Substance", "BiologicallyDerivedProduct", "NutritionProduct")
	v.reference("Observation.device", o.Device, "Device", "DeviceMetric")
	n := 0
	for _, set := range []bool{o.EffectiveDateTime != "", o.EffectivePeriod != nil, o.EffectiveInstant != ""} {
		if set {
			n++
		}
	}
	if n > 1 {
		v.fail("Observation.effective[x]", "only one effective[x] may be given")
	}
	v.dateTime("Observation.effectiveDateTime", o.EffectiveDateTime)
	v.instant("Observation.effectiveInstant", o.EffectiveInstant)
	v.period("Observation.effectivePeriod", o.EffectivePeriod)
	v.instant("Observation.issued", o.Issued)
	if o.Value.count() > 1 {
		v.fail("Observation.value[x]", "only one value[x] may be given")
	}
	if o.Value.count() > 0 && o.DataAbsentReason != nil {
		// obs-6: dataAbsentReason SHALL only be present if value[x] is not present.
		v.fail("Observation.dataAbsentReason", "must be absent when a value is given (obs-6)")
	}
	v.quantity("Observation.valueQuantity", o.ValueQuantity)
	for i := range o.Component {
		c := &o.Component[i]
		v.required("Observation.component.code", len(c.Code.Coding) > 0 || c.Code.Text != "")
		if c.Value.count() > 1 {
			v.fail("Observation.component.value[x]", "only one value[x] may be given")
		}
		v.quantity("Observation.component.valueQuantity", c.ValueQuantity)
	}
	if sd := o.ValueSampledData; sd != nil {
		v.required("Observation.valueSampledData.intervalUnit", sd.IntervalUnit != "")
		v.required("Observation.valueSampledData.dimensions", sd.Dimensions > 0)
	}
	return errOrNil(v.err)
}

// errOrNil avoids the typed-nil trap when returning *Error as error.
func errOrNil(e *Error) error {
	if e == nil {
		return nil
	}
	return e
}
