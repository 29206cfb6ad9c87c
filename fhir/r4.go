package fhir

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"strconv"
	"strings"
)

// R4Version is the FHIR version of the documents produced by ToR4 (FHIR R4 technical correction 1).
const R4Version = "4.0.1"

// ErrNoR4Form reports that a resource, or an element it depends on, cannot be expressed in FHIR R4.
// ToR4 returns it wrapped in an *Error (see ToR4 for the statuses used).
var ErrNoR4Form = errors.New("no FHIR R4 form")

// R4Options carries what ToR4 needs beyond the R5 resource itself.
type R4Options struct {
	// DevicePatient becomes R4 Device.patient. R5 moved the device–patient link out of Device into
	// DeviceAssociation, so the caller fills it from the device's active association. It must be a
	// reference to a Patient (R4 Device.patient is Reference(Patient)); nil leaves Device.patient out.
	DevicePatient *Reference
}

// MarshalR4 converts r with ToR4 and encodes the result as FHIR R4 JSON. Errors are those of ToR4.
func MarshalR4(r Resource, opt R4Options) ([]byte, error) {
	v, err := ToR4(r, opt)
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("marshal R4 %s: %w", r.Type(), err)
	}
	return b, nil
}

// ToR4 down-converts one of our R5 resources to FHIR R4 (4.0.1) for R4 clients. The result is a
// value that encoding/json marshals to valid R4 JSON; r is never modified and the result may
// share unchanged sub-elements with it, so do not mutate either while the other is in use.
//
// Conversion, per type:
//   - Patient: same shape; Patient.photo.size (R5 integer64, a JSON string) becomes an R4
//     unsignedInt (a JSON number) and is left out if it does not fit.
//   - Observation: same shape except valueSampledData, whose R5 interval + intervalUnit becomes the
//     R4 period in milliseconds (exact decimal arithmetic). Sampled data that R4 cannot carry
//     (offsets instead of an interval, a codeMap, a unit other than us, ms, s, min, h, d) is
//     replaced by dataAbsentReason "unsupported" rather than failing the whole resource.
//   - Device: R5 name → R4 deviceName, type[] → the first type, version and property reshaped,
//     R5-only elements dropped, Device.patient from opt (see r4Device for every rule).
//   - Practitioner: same shape (only identifier, active and name are modelled).
//   - OperationOutcome: same shape; the R5-only severity and issue codes are mapped to R4 codes.
//   - Bundle: same shape; entries are raw JSON and stay untouched — the caller converts each
//     entry's resource before building the bundle.
//   - CapabilityStatement: fhirVersion 4.0.1; DeviceAssociation, the _include/_revinclude values
//     that name it and R5-only search parameter types are removed.
//
// Errors: DeviceAssociation (R5-only) and a subscription-notification Bundle return an *Error with
// Status 404 and Code not-supported wrapping ErrNoR4Form. Content that R4 cannot express without
// changing its meaning (a reference to a resource type R4 does not allow at that element, the R5
// quantity comparator "ad") returns an *Error with Status 406 and Code not-supported wrapping
// ErrNoR4Form; the caller may choose other statuses. A nil resource, a resource type this function
// does not know and an opt.DevicePatient that is not a Patient reference are programming errors
// and return plain errors.
func ToR4(r Resource, opt R4Options) (any, error) {
	switch x := r.(type) {
	case nil:
		return nil, errors.New("fhir: ToR4 of a nil resource")
	case *Patient:
		if x == nil {
			return nil, errors.New("fhir: ToR4 of a nil *Patient")
		}
		return patientToR4(x), nil
	case *Observation:
		if x == nil {
			return nil, errors.New("fhir: ToR4 of a nil *Observation")
		}
		return observationToR4(x)
	case *Device:
		if x == nil {
			return nil, errors.New("fhir: ToR4 of a nil *Device")
		}
		return deviceToR4(x, opt)
	case *DeviceAssociation:
		return nil, noR4Type("DeviceAssociation")
	case *Practitioner:
		if x == nil {
			return nil, errors.New("fhir: ToR4 of a nil *Practitioner")
		}
		return x, nil // identifier, active and name are the same in R4
	case *OperationOutcome:
		if x == nil {
			return nil, errors.New("fhir: ToR4 of a nil *OperationOutcome")
		}
		return outcomeToR4(x), nil
	case *Bundle:
		if x == nil {
			return nil, errors.New("fhir: ToR4 of a nil *Bundle")
		}
		return bundleToR4(x)
	case *CapabilityStatement:
		if x == nil {
			return nil, errors.New("fhir: ToR4 of a nil *CapabilityStatement")
		}
		return capabilityToR4(x), nil
	}
	return nil, fmt.Errorf("fhir: ToR4: no R4 conversion for %s: %w", r.Type(), ErrNoR4Form)
}

// noR4Type is the error for a resource (or bundle) type that does not exist in R4.
func noR4Type(what string) *Error {
	return &Error{
		Status:      http.StatusNotFound,
		Code:        CodeNotSupported,
		Diagnostics: what + " does not exist in FHIR R4; request FHIR R5 (fhirVersion=5.0)",
		Err:         ErrNoR4Form,
	}
}

// noR4Element is the error for content that R4 cannot express without changing its meaning.
func noR4Element(path, format string, args ...any) *Error {
	return &Error{
		Status:      http.StatusNotAcceptable,
		Code:        CodeNotSupported,
		Diagnostics: path + ": " + fmt.Sprintf(format, args...) + " cannot be expressed in FHIR R4; request FHIR R5 (fhirVersion=5.0)",
		Expression:  []string{path},
		Err:         ErrNoR4Form,
	}
}

// r4Ref checks that a relative literal reference points to a resource type R4 allows at path.
// Absolute, contained and identifier-only references cannot be checked and are passed through.
func r4Ref(path string, ref *Reference, allowed ...string) error {
	if ref == nil {
		return nil
	}
	t, _, ok := SplitReference(ref.Reference)
	if !ok {
		return nil
	}
	for _, a := range allowed {
		if t == a {
			return nil
		}
	}
	return noR4Element(path, "a reference to %s", t)
}

func r4Refs(path string, refs []Reference, allowed ...string) error {
	for i := range refs {
		if err := r4Ref(path, &refs[i], allowed...); err != nil {
			return err
		}
	}
	return nil
}

// r4Quantity rejects the R5-only comparator "ad" (R4 quantity-comparator is < | <= | >= | >).
// Dropping it would turn "sufficient to achieve this total" into an exact amount, and R4 Quantity
// has no modifierExtension to carry it.
func r4Quantity(path string, q *Quantity) error {
	if q != nil && q.Comparator == "ad" {
		return noR4Element(path+".comparator", `the comparator "ad"`)
	}
	return nil
}

// r4Notes checks Annotation.authorReference: R4 allows Practitioner | Patient | RelatedPerson |
// Organization (R5 adds PractitionerRole).
func r4Notes(path string, notes []Annotation) error {
	for i := range notes {
		if err := r4Ref(path+".authorReference", notes[i].AuthorReference, "Practitioner", "Patient", "RelatedPerson", "Organization"); err != nil {
			return err
		}
	}
	return nil
}

// ---------------------------------------------------------------------------------------------
// Patient

// r4Patient is R4 Patient. It differs from R5 only in Attachment.size (photo).
type r4Patient struct {
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
	Photo                []r4Attachment    `json:"photo,omitempty"`
	Contact              []PatientContact  `json:"contact,omitempty"`
	Communication        []PatientLanguage `json:"communication,omitempty"`
	GeneralPractitioner  []Reference       `json:"generalPractitioner,omitempty"`
	ManagingOrganization *Reference        `json:"managingOrganization,omitempty"`
	Link                 []PatientLink     `json:"link,omitempty"`
}

// r4Attachment is R4 Attachment: size is an unsignedInt (JSON number) where R5 has integer64
// (JSON string).
type r4Attachment struct {
	ContentType string `json:"contentType,omitempty"`
	Language    string `json:"language,omitempty"`
	Data        string `json:"data,omitempty"`
	URL         string `json:"url,omitempty"`
	Size        *int64 `json:"size,omitempty"`
	Hash        string `json:"hash,omitempty"`
	Title       string `json:"title,omitempty"`
	Creation    string `json:"creation,omitempty"`
}

func attachmentToR4(a Attachment) r4Attachment {
	out := r4Attachment{
		ContentType: a.ContentType, Language: a.Language, Data: a.Data, URL: a.URL,
		Hash: a.Hash, Title: a.Title, Creation: a.Creation,
	}
	// R4 unsignedInt is 0..2^31-1. Size is informational only, so an attachment larger than that
	// (or a malformed size) loses its size rather than the whole resource failing.
	if n, err := strconv.ParseInt(a.Size, 10, 32); err == nil && n >= 0 {
		out.Size = &n
	}
	return out
}

func patientToR4(p *Patient) *r4Patient {
	out := &r4Patient{
		Base: p.Base, Identifier: p.Identifier, Active: p.Active, Name: p.Name, Telecom: p.Telecom,
		Gender: p.Gender, BirthDate: p.BirthDate, DeceasedBoolean: p.DeceasedBoolean,
		DeceasedDateTime: p.DeceasedDateTime, Address: p.Address, MaritalStatus: p.MaritalStatus,
		MultipleBirthBoolean: p.MultipleBirthBoolean, MultipleBirthInteger: p.MultipleBirthInteger,
		Contact: p.Contact, Communication: p.Communication, GeneralPractitioner: p.GeneralPractitioner,
		ManagingOrganization: p.ManagingOrganization, Link: p.Link,
	}
	for _, a := range p.Photo {
		out.Photo = append(out.Photo, attachmentToR4(a))
	}
	return out
}

// ---------------------------------------------------------------------------------------------
// Observation

// r4Observation is R4 Observation restricted to the elements our R5 struct has. Every R5 element
// we model exists in R4 (effectiveInstant included); only SampledData changed shape.
type r4Observation struct {
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
	r4Value
	DataAbsentReason *CodeableConcept         `json:"dataAbsentReason,omitempty"`
	Interpretation   []CodeableConcept        `json:"interpretation,omitempty"`
	Note             []Annotation             `json:"note,omitempty"`
	BodySite         *CodeableConcept         `json:"bodySite,omitempty"`
	Method           *CodeableConcept         `json:"method,omitempty"`
	Device           *Reference               `json:"device,omitempty"`
	ReferenceRange   []ObservationRange       `json:"referenceRange,omitempty"`
	HasMember        []Reference              `json:"hasMember,omitempty"`
	DerivedFrom      []Reference              `json:"derivedFrom,omitempty"`
	Component        []r4ObservationComponent `json:"component,omitempty"`
}

// r4Value is the R4 value[x] of Observation and its components.
type r4Value struct {
	ValueQuantity        *Quantity        `json:"valueQuantity,omitempty"`
	ValueCodeableConcept *CodeableConcept `json:"valueCodeableConcept,omitempty"`
	ValueString          *string          `json:"valueString,omitempty"`
	ValueBoolean         *bool            `json:"valueBoolean,omitempty"`
	ValueInteger         *int64           `json:"valueInteger,omitempty"`
	ValueRange           *Range           `json:"valueRange,omitempty"`
	ValueSampledData     *r4SampledData   `json:"valueSampledData,omitempty"`
	ValueTime            *string          `json:"valueTime,omitempty"`
	ValueDateTime        *string          `json:"valueDateTime,omitempty"`
	ValuePeriod          *Period          `json:"valuePeriod,omitempty"`
}

// r4ObservationComponent is R4 Observation.component.
type r4ObservationComponent struct {
	Code CodeableConcept `json:"code"`
	r4Value
	DataAbsentReason *CodeableConcept   `json:"dataAbsentReason,omitempty"`
	Interpretation   []CodeableConcept  `json:"interpretation,omitempty"`
	ReferenceRange   []ObservationRange `json:"referenceRange,omitempty"`
}

// r4SampledData is R4 SampledData: a required period in milliseconds instead of R5's interval +
// intervalUnit, and no codeMap or offsets.
type r4SampledData struct {
	Origin     Quantity `json:"origin"`
	Period     Decimal  `json:"period"`
	Factor     *Decimal `json:"factor,omitempty"`
	LowerLimit *Decimal `json:"lowerLimit,omitempty"`
	UpperLimit *Decimal `json:"upperLimit,omitempty"`
	Dimensions int      `json:"dimensions"`
	Data       string   `json:"data,omitempty"`
}

// DataAbsentReasonSystem is the code system of Observation.dataAbsentReason (same URL in R4 and R5).
const DataAbsentReasonSystem = "http://terminology.hl7.org/CodeSystem/data-absent-reason"

func observationToR4(o *Observation) (*r4Observation, error) {
	// Reference targets that R5 widened: only these Observation references differ from R4.
	if err := r4Ref("Observation.subject", o.Subject, "Patient", "Group", "Device", "Location"); err != nil {
		return nil, err
	}
	if err := r4Refs("Observation.partOf", o.PartOf, "MedicationAdministration", "MedicationDispense", "MedicationStatement", "Procedure", "Immunization", "ImagingStudy"); err != nil {
		return nil, err
	}
	if err := r4Refs("Observation.derivedFrom", o.DerivedFrom, "DocumentReference", "ImagingStudy", "Media", "QuestionnaireResponse", "Observation", "MolecularSequence"); err != nil {
		return nil, err
	}
	if err := r4Notes("Observation.note", o.Note); err != nil {
		return nil, err
	}
	if err := rangesToR4("Observation.referenceRange", o.ReferenceRange); err != nil {
		return nil, err
	}
	out := &r4Observation{
		Base: o.Base, Identifier: o.Identifier, BasedOn: o.BasedOn, PartOf: o.PartOf, Status: o.Status,
		Category: o.Category, Code: o.Code, Subject: o.Subject, Focus: o.Focus, Encounter: o.Encounter,
		EffectiveDateTime: o.EffectiveDateTime, EffectivePeriod: o.EffectivePeriod,
		EffectiveInstant: o.EffectiveInstant, Issued: o.Issued, Performer: o.Performer,
		DataAbsentReason: o.DataAbsentReason, Interpretation: o.Interpretation, Note: o.Note,
		BodySite: o.BodySite, Method: o.Method, Device: o.Device, ReferenceRange: o.ReferenceRange,
		HasMember: o.HasMember, DerivedFrom: o.DerivedFrom,
	}
	v, absent, err := valueToR4("Observation", &o.Value)
	if err != nil {
		return nil, err
	}
	out.r4Value = v
	if absent != nil {
		out.DataAbsentReason = absent
	}
	for i := range o.Component {
		c := &o.Component[i]
		if err := rangesToR4("Observation.component.referenceRange", c.ReferenceRange); err != nil {
			return nil, err
		}
		rc := r4ObservationComponent{
			Code: c.Code, DataAbsentReason: c.DataAbsentReason, Interpretation: c.Interpretation,
			ReferenceRange: c.ReferenceRange,
		}
		v, absent, err := valueToR4("Observation.component", &c.Value)
		if err != nil {
			return nil, err
		}
		rc.r4Value = v
		if absent != nil {
			rc.DataAbsentReason = absent
		}
		out.Component = append(out.Component, rc)
	}
	return out, nil
}

func rangesToR4(path string, rr []ObservationRange) error {
	for i := range rr {
		if err := r4Quantity(path+".low", rr[i].Low); err != nil {
			return err
		}
		if err := r4Quantity(path+".high", rr[i].High); err != nil {
			return err
		}
	}
	return nil
}

// valueToR4 converts value[x]. When valueSampledData has no R4 form it returns no value and a
// dataAbsentReason instead (obs-6 allows that: the value is then absent).
func valueToR4(path string, v *Value) (r4Value, *CodeableConcept, error) {
	if err := r4Quantity(path+".valueQuantity", v.ValueQuantity); err != nil {
		return r4Value{}, nil, err
	}
	if v.ValueRange != nil {
		if err := r4Quantity(path+".valueRange.low", v.ValueRange.Low); err != nil {
			return r4Value{}, nil, err
		}
		if err := r4Quantity(path+".valueRange.high", v.ValueRange.High); err != nil {
			return r4Value{}, nil, err
		}
	}
	out := r4Value{
		ValueQuantity: v.ValueQuantity, ValueCodeableConcept: v.ValueCodeableConcept,
		ValueString: v.ValueString, ValueBoolean: v.ValueBoolean, ValueInteger: v.ValueInteger,
		ValueRange: v.ValueRange, ValueTime: v.ValueTime, ValueDateTime: v.ValueDateTime,
		ValuePeriod: v.ValuePeriod,
	}
	sd := v.ValueSampledData
	if sd == nil {
		return out, nil, nil
	}
	if err := r4Quantity(path+".valueSampledData.origin", &sd.Origin); err != nil {
		return r4Value{}, nil, err
	}
	r4sd, why := sampledDataToR4(sd)
	if why != "" {
		return out, &CodeableConcept{
			Coding: []Coding{{System: DataAbsentReasonSystem, Code: "unsupported", Display: "Unsupported"}},
			Text:   "sampled data cannot be expressed in FHIR R4: " + why,
		}, nil
	}
	out.ValueSampledData = r4sd
	return out, nil, nil
}

// sampledDataToR4 converts R5 SampledData or returns why it cannot.
func sampledDataToR4(sd *SampledData) (*r4SampledData, string) {
	switch {
	case sd.Interval == nil:
		return nil, "no interval (R5 offsets have no R4 equivalent)"
	case sd.Offsets != "":
		return nil, "offsets have no R4 equivalent"
	case sd.CodeMap != "":
		return nil, "codeMap has no R4 equivalent"
	}
	period, ok := intervalToMillis(*sd.Interval, sd.IntervalUnit)
	if !ok {
		return nil, fmt.Sprintf("interval %s %q cannot be converted to milliseconds", truncate(string(*sd.Interval), 40), truncate(sd.IntervalUnit, 20))
	}
	return &r4SampledData{
		Origin: sd.Origin, Period: period, Factor: sd.Factor, LowerLimit: sd.LowerLimit,
		UpperLimit: sd.UpperLimit, Dimensions: sd.Dimensions, Data: sd.Data,
	}, ""
}

// ucumToMillis maps the UCUM time units R5 SampledData.intervalUnit uses to milliseconds.
var ucumToMillis = map[string]*big.Rat{
	"us":  big.NewRat(1, 1000),
	"ms":  big.NewRat(1, 1),
	"s":   big.NewRat(1000, 1),
	"min": big.NewRat(60_000, 1),
	"h":   big.NewRat(3_600_000, 1),
	"d":   big.NewRat(86_400_000, 1),
}

// maxDecimalExponent bounds the exponent of decimals we do arithmetic on: big.Rat would otherwise
// materialise 10^n for a hostile "1e999999999".
const maxDecimalExponent = 100

// intervalToMillis converts interval (in the UCUM unit) to an exact decimal number of
// milliseconds, the R4 SampledData.period. A value already in ms is kept verbatim (with its
// precision, e.g. "2.0"); other units give the shortest exact decimal ("0.5" s → "500").
func intervalToMillis(interval Decimal, unit string) (Decimal, bool) {
	f, ok := ucumToMillis[unit]
	if !ok || !interval.Valid() {
		return "", false
	}
	if unit == "ms" {
		return interval, true
	}
	s := string(interval)
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		exp, err := strconv.Atoi(s[i+1:])
		if err != nil || exp > maxDecimalExponent || exp < -maxDecimalExponent {
			return "", false
		}
	}
	r, ok := new(big.Rat).SetString(s)
	if !ok {
		return "", false
	}
	r.Mul(r, f)
	// r is a decimal times a unit factor, so it has a finite number n of digits after the point:
	// the smallest n with r·10^n an integer. n is bounded by the digits and exponent of the input.
	scaled, ten := new(big.Rat).Set(r), big.NewRat(10, 1)
	for n := 0; n <= len(s)+maxDecimalExponent+3; n++ {
		if scaled.IsInt() {
			d := Decimal(r.FloatString(n))
			return d, d.Valid()
		}
		scaled.Mul(scaled, ten)
	}
	return "", false
}

// ---------------------------------------------------------------------------------------------
// Device

// r4Device is R4 Device (https://hl7.org/fhir/R4/device.html) restricted to what our R5 Device
// carries. Conversion rules (R5 → R4):
//   - name[] {value, type, display} → deviceName[] {name, type}: user-friendly-name and
//     patient-reported-name are unchanged; registered-name becomes manufacturer-name. R5 merged
//     R4's udi-label-name, manufacturer-name, model-name and other into registered-name ("the term
//     assigned to a medical device by the entity who registers or submits information about it to a
//     jurisdiction or its UDI Issuing Agency"); the registrant is the manufacturer (or its agent),
//     so manufacturer-name is the closest R4 code, whereas udi-label-name and model-name assert
//     more than we know and "other" throws the meaning away. display is dropped.
//   - displayName (R5-only) → an extra user-friendly-name, unless a name with the same text exists.
//   - type[] → type (R4 has a single type): the first one.
//   - definition CodeableReference(DeviceDefinition) → definition Reference: the reference part.
//   - version[] → version[] {type, component, value}: installDate dropped.
//   - property[] → property[] {type, valueQuantity[], valueCode[]}: Quantity and CodeableConcept
//     values carry over; a property whose value is a string, boolean or integer has no R4 form
//     and is dropped whole (a type without a value says nothing).
//   - availabilityStatus, category, displayName: no R4 element (R4 Device has no category);
//     dropped.
//   - patient: from R4Options.DevicePatient.
type r4Device struct {
	Base
	Identifier      []Identifier       `json:"identifier,omitempty"`
	Definition      *Reference         `json:"definition,omitempty"`
	Status          string             `json:"status,omitempty"`
	Manufacturer    string             `json:"manufacturer,omitempty"`
	ManufactureDate string             `json:"manufactureDate,omitempty"`
	ExpirationDate  string             `json:"expirationDate,omitempty"`
	LotNumber       string             `json:"lotNumber,omitempty"`
	SerialNumber    string             `json:"serialNumber,omitempty"`
	DeviceName      []r4DeviceName     `json:"deviceName,omitempty"`
	ModelNumber     string             `json:"modelNumber,omitempty"`
	PartNumber      string             `json:"partNumber,omitempty"`
	Type            *CodeableConcept   `json:"type,omitempty"`
	Version         []r4DeviceVersion  `json:"version,omitempty"`
	Property        []r4DeviceProperty `json:"property,omitempty"`
	Patient         *Reference         `json:"patient,omitempty"`
	Owner           *Reference         `json:"owner,omitempty"`
	Contact         []ContactPoint     `json:"contact,omitempty"`
	URL             string             `json:"url,omitempty"`
	Note            []Annotation       `json:"note,omitempty"`
	Parent          *Reference         `json:"parent,omitempty"`
}

// r4DeviceName is R4 Device.deviceName.
type r4DeviceName struct {
	Name string `json:"name"`
	Type string `json:"type"`
}

// r4DeviceVersion is R4 Device.version.
type r4DeviceVersion struct {
	Type      *CodeableConcept `json:"type,omitempty"`
	Component *Identifier      `json:"component,omitempty"`
	Value     string           `json:"value"`
}

// r4DeviceProperty is R4 Device.property.
type r4DeviceProperty struct {
	Type          CodeableConcept   `json:"type"`
	ValueQuantity []Quantity        `json:"valueQuantity,omitempty"`
	ValueCode     []CodeableConcept `json:"valueCode,omitempty"`
}

// deviceNameTypeToR4 maps R5 device-nametype codes to R4 (see r4Device).
var deviceNameTypeToR4 = map[string]string{
	"registered-name":       "manufacturer-name",
	"user-friendly-name":    "user-friendly-name",
	"patient-reported-name": "patient-reported-name",
}

func deviceToR4(d *Device, opt R4Options) (*r4Device, error) {
	if p := opt.DevicePatient; p != nil {
		if t, _, ok := SplitReference(p.Reference); ok && t != "Patient" {
			return nil, fmt.Errorf("fhir: R4Options.DevicePatient: reference to %s, want Patient", t)
		}
	}
	if err := r4Notes("Device.note", d.Note); err != nil {
		return nil, err
	}
	out := &r4Device{
		Base: d.Base, Identifier: d.Identifier, Status: d.Status, Manufacturer: d.Manufacturer,
		ManufactureDate: d.ManufactureDate, ExpirationDate: d.ExpirationDate, LotNumber: d.LotNumber,
		SerialNumber: d.SerialNumber, ModelNumber: d.ModelNumber, PartNumber: d.PartNumber,
		Patient: opt.DevicePatient, Owner: d.Owner, Contact: d.Contact, URL: d.URL, Note: d.Note,
		Parent: d.Parent,
	}
	if d.Definition != nil {
		out.Definition = d.Definition.Reference
	}
	for _, n := range d.Name {
		t, ok := deviceNameTypeToR4[n.Type]
		if !ok {
			t = "other" // unreachable for validated resources: Validate restricts the R5 codes
		}
		out.DeviceName = append(out.DeviceName, r4DeviceName{Name: n.Value, Type: t})
	}
	if d.DisplayName != "" && !deviceHasName(d, d.DisplayName) {
		out.DeviceName = append(out.DeviceName, r4DeviceName{Name: d.DisplayName, Type: "user-friendly-name"})
	}
	if len(d.DeviceType) > 0 {
		out.Type = &d.DeviceType[0]
	}
	for _, v := range d.Version {
		out.Version = append(out.Version, r4DeviceVersion{Type: v.Type, Component: v.Component, Value: v.Value})
	}
	for _, p := range d.Property {
		switch {
		case p.ValueQuantity != nil:
			if err := r4Quantity("Device.property.valueQuantity", p.ValueQuantity); err != nil {
				return nil, err
			}
			out.Property = append(out.Property, r4DeviceProperty{Type: p.Type, ValueQuantity: []Quantity{*p.ValueQuantity}})
		case p.ValueCodeableConcept != nil:
			out.Property = append(out.Property, r4DeviceProperty{Type: p.Type, ValueCode: []CodeableConcept{*p.ValueCodeableConcept}})
		}
	}
	return out, nil
}

func deviceHasName(d *Device, name string) bool {
	for _, n := range d.Name {
		if n.Value == name {
			return true
		}
	}
	return false
}

// ---------------------------------------------------------------------------------------------
// OperationOutcome, Bundle, CapabilityStatement

// outcomeToR4 maps the codes R5 added: severity "success" and issue types "success" and
// "limited-filter" (http://hl7.org/fhir/R5/codesystem-issue-type.html, where limited-filter is a
// child of processing).
func outcomeToR4(o *OperationOutcome) *OperationOutcome {
	out := *o
	out.Issue = make([]OutcomeIssue, len(o.Issue))
	for i, is := range o.Issue {
		if is.Severity == "success" {
			is.Severity = "information"
		}
		switch is.Code {
		case "success":
			is.Code = CodeInformational
		case "limited-filter":
			is.Code = CodeProcessing
		}
		out.Issue[i] = is
	}
	return &out
}

// bundleToR4 returns a copy of b: Bundle has the same shape in R4, and the entries' resources are
// raw JSON already converted by the caller.
func bundleToR4(b *Bundle) (*Bundle, error) {
	if b.BundleType == "subscription-notification" {
		return nil, noR4Type("a subscription-notification Bundle")
	}
	out := *b
	return &out, nil
}

// r5OnlyTypes lists the resource types ohx serves that do not exist in R4.
var r5OnlyTypes = map[string]bool{"DeviceAssociation": true}

// capabilityToR4 returns a copy of c for R4: fhirVersion 4.0.1, R5-only resource types and the
// include/revinclude values naming them removed, and search parameters of the R5-only type
// "resource" removed.
func capabilityToR4(c *CapabilityStatement) *CapabilityStatement {
	out := *c
	out.FHIRVersion = R4Version
	out.Rest = nil
	for _, rest := range c.Rest {
		rr := rest
		rr.Resource = nil
		for _, res := range rest.Resource {
			if r5OnlyTypes[res.Type] {
				continue
			}
			res.SearchInclude = r4Includes(res.SearchInclude)
			res.SearchRevInclude = r4Includes(res.SearchRevInclude)
			res.SearchParam = r4SearchParams(res.SearchParam)
			rr.Resource = append(rr.Resource, res)
		}
		rr.SearchParam = r4SearchParams(rest.SearchParam)
		out.Rest = append(out.Rest, rr)
	}
	return &out
}

// r4Includes drops _include/_revinclude values ("Type:param[:targetType]") naming an R5-only type.
func r4Includes(in []string) []string {
	var out []string
	for _, s := range in {
		parts := strings.Split(s, ":")
		if r5OnlyTypes[parts[0]] || (len(parts) == 3 && r5OnlyTypes[parts[2]]) {
			continue
		}
		out = append(out, s)
	}
	return out
}

// r4SearchParams drops parameters of the search-param-type "resource", added in R5.
func r4SearchParams(in []CapabilitySearchParam) []CapabilitySearchParam {
	var out []CapabilitySearchParam
	for _, p := range in {
		if p.Type == "resource" {
			continue
		}
		out = append(out, p)
	}
	return out
}
