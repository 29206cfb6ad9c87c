package fhir

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"regexp"
	"strings"
	"time"
)

// Decimal is a FHIR decimal kept as its exact JSON text, so that vendor values such as 53.0 keep
// their precision (FHIR treats 53.0 and 53 as different precisions) and never pass through float
// arithmetic that could change their digits.
type Decimal string

var decimalRE = regexp.MustCompile(`^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$`)

// Valid reports whether d is a well-formed FHIR decimal.
func (d Decimal) Valid() bool { return decimalRE.MatchString(string(d)) }

// MarshalJSON writes the decimal as a bare JSON number.
func (d Decimal) MarshalJSON() ([]byte, error) {
	if !d.Valid() {
		return nil, fmt.Errorf("invalid decimal %q", string(d))
	}
	return []byte(d), nil
}

// UnmarshalJSON accepts only a JSON number (FHIR JSON forbids decimals as strings).
func (d *Decimal) UnmarshalJSON(b []byte) error {
	s := string(bytes.TrimSpace(b))
	if !decimalRE.MatchString(s) {
		// decimalRE is the JSON number grammar, so s is another JSON type. An *UnmarshalTypeError
		// (not a plain error) makes encoding/json add the element path, which Decode reports.
		return &json.UnmarshalTypeError{Value: jsonValueKind(s), Type: reflect.TypeFor[Decimal]()}
	}
	*d = Decimal(s)
	return nil
}

// jsonValueKind names the JSON type of a raw value the way encoding/json does in its errors.
func jsonValueKind(s string) string {
	if s == "" {
		return "value"
	}
	switch s[0] {
	case '"':
		return "string"
	case 't', 'f':
		return "bool"
	case 'n':
		return "null"
	case '{':
		return "object"
	case '[':
		return "array"
	}
	return "value"
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// Extension is a FHIR extension with the value[x] types used by the EHRs and profiles we meet.
type Extension struct {
	ID                   string           `json:"id,omitempty"`
	URL                  string           `json:"url"`
	Extension            []Extension      `json:"extension,omitempty"`
	ValueString          *string          `json:"valueString,omitempty"`
	ValueCode            *string          `json:"valueCode,omitempty"`
	ValueURI             *string          `json:"valueUri,omitempty"`
	ValueURL             *string          `json:"valueUrl,omitempty"`
	ValueCanonical       *string          `json:"valueCanonical,omitempty"`
	ValueBoolean         *bool            `json:"valueBoolean,omitempty"`
	ValueInteger         *int64           `json:"valueInteger,omitempty"`
	ValueDecimal         *Decimal         `json:"valueDecimal,omitempty"`
	ValueDateTime        *string          `json:"valueDateTime,omitempty"`
	ValueDate            *string          `json:"valueDate,omitempty"`
	ValueInstant         *string          `json:"valueInstant,omitempty"`
	ValueCoding          *Coding          `json:"valueCoding,omitempty"`
	ValueCodeableConcept *CodeableConcept `json:"valueCodeableConcept,omitempty"`
	ValueQuantity        *Quantity        `json:"valueQuantity,omitempty"`
	ValueReference       *Reference       `json:"valueReference,omitempty"`
	ValuePeriod          *Period          `json:"valuePeriod,omitempty"`
	ValueIdentifier      *Identifier      `json:"valueIdentifier,omitempty"`
	ValueAddress         *Address         `json:"valueAddress,omitempty"`
}

// Meta is the resource metadata; versionId and lastUpdated are always set by the store.
type Meta struct {
	VersionID   string   `json:"versionId,omitempty"`
	LastUpdated string   `json:"lastUpdated,omitempty"`
	Source      string   `json:"source,omitempty"`
	Profile     []string `json:"profile,omitempty"`
	Security    []Coding `json:"security,omitempty"`
	Tag         []Coding `json:"tag,omitempty"`
}

// Narrative is the human-readable summary of a resource.
type Narrative struct {
	Status string `json:"status"`
	Div    string `json:"div"`
}

// Coding is a reference to a code defined by a terminology system.
type Coding struct {
	ID           string      `json:"id,omitempty"`
	Extension    []Extension `json:"extension,omitempty"`
	System       string      `json:"system,omitempty"`
	Version      string      `json:"version,omitempty"`
	Code         string      `json:"code,omitempty"`
	Display      string      `json:"display,omitempty"`
	UserSelected *bool       `json:"userSelected,omitempty"`
}

// CodeableConcept is a concept given by codings and/or text.
type CodeableConcept struct {
	ID        string      `json:"id,omitempty"`
	Extension []Extension `json:"extension,omitempty"`
	Coding    []Coding    `json:"coding,omitempty"`
	Text      string      `json:"text,omitempty"`
}

// HasCoding reports whether cc contains the given system and code.
func (cc *CodeableConcept) HasCoding(system, code string) bool {
	if cc == nil {
		return false
	}
	for _, c := range cc.Coding {
		if c.System == system && c.Code == code {
			return true
		}
	}
	return false
}

// Identifier is a business identifier.
type Identifier struct {
	ID        string           `json:"id,omitempty"`
	Extension []Extension      `json:"extension,omitempty"`
	Use       string           `json:"use,omitempty"`
	Type      *CodeableConcept `json:"type,omitempty"`
	System    string           `json:"system,omitempty"`
	Value     string           `json:"value,omitempty"`
	Period    *Period          `json:"period,omitempty"`
	Assigner  *Reference       `json:"assigner,omitempty"`
}

// Reference is a reference from one resource to another.
type Reference struct {
	ID         string      `json:"id,omitempty"`
	Extension  []Extension `json:"extension,omitempty"`
	Reference  string      `json:"reference,omitempty"`
	Type       string      `json:"type,omitempty"`
	Identifier *Identifier `json:"identifier,omitempty"`
	Display    string      `json:"display,omitempty"`
}

// Period is a time range; a missing start or end is unbounded.
type Period struct {
	ID        string      `json:"id,omitempty"`
	Extension []Extension `json:"extension,omitempty"`
	Start     string      `json:"start,omitempty"`
	End       string      `json:"end,omitempty"`
}

// Quantity is a measured amount with a UCUM (or other) unit.
type Quantity struct {
	ID         string      `json:"id,omitempty"`
	Extension  []Extension `json:"extension,omitempty"`
	Value      *Decimal    `json:"value,omitempty"`
	Comparator string      `json:"comparator,omitempty"`
	Unit       string      `json:"unit,omitempty"`
	System     string      `json:"system,omitempty"`
	Code       string      `json:"code,omitempty"`
}

// Range is a set of ordered quantities.
type Range struct {
	Low  *Quantity `json:"low,omitempty"`
	High *Quantity `json:"high,omitempty"`
}

// SampledData is a series of measurements taken by a device (R5 shape: interval + intervalUnit).
type SampledData struct {
	Origin       Quantity `json:"origin"`
	Interval     *Decimal `json:"interval,omitempty"`
	IntervalUnit string   `json:"intervalUnit"`
	Factor       *Decimal `json:"factor,omitempty"`
	LowerLimit   *Decimal `json:"lowerLimit,omitempty"`
	UpperLimit   *Decimal `json:"upperLimit,omitempty"`
	Dimensions   int      `json:"dimensions"`
	CodeMap      string   `json:"codeMap,omitempty"`
	Offsets      string   `json:"offsets,omitempty"`
	Data         string   `json:"data,omitempty"`
}

// HumanName is a person's name.
type HumanName struct {
	ID        string      `json:"id,omitempty"`
	Extension []Extension `json:"extension,omitempty"`
	Use       string      `json:"use,omitempty"`
	Text      string      `json:"text,omitempty"`
	Family    string      `json:"family,omitempty"`
	Given     []string    `json:"given,omitempty"`
	Prefix    []string    `json:"prefix,omitempty"`
	Suffix    []string    `json:"suffix,omitempty"`
	Period    *Period     `json:"period,omitempty"`
}

// ContactPoint is a phone number, e-mail address or similar.
type ContactPoint struct {
	ID        string      `json:"id,omitempty"`
	Extension []Extension `json:"extension,omitempty"`
	System    string      `json:"system,omitempty"`
	Value     string      `json:"value,omitempty"`
	Use       string      `json:"use,omitempty"`
	Rank      *int        `json:"rank,omitempty"`
	Period    *Period     `json:"period,omitempty"`
}

// Address is a postal address.
type Address struct {
	ID         string      `json:"id,omitempty"`
	Extension  []Extension `json:"extension,omitempty"`
	Use        string      `json:"use,omitempty"`
	Type       string      `json:"type,omitempty"`
	Text       string      `json:"text,omitempty"`
	Line       []string    `json:"line,omitempty"`
	City       string      `json:"city,omitempty"`
	District   string      `json:"district,omitempty"`
	State      string      `json:"state,omitempty"`
	PostalCode string      `json:"postalCode,omitempty"`
	Country    string      `json:"country,omitempty"`
	Period     *Period     `json:"period,omitempty"`
}

// Attachment is content in another format (used for Patient.photo).
type Attachment struct {
	ContentType string `json:"contentType,omitempty"`
	Language    string `json:"language,omitempty"`
	Data        string `json:"data,omitempty"`
	URL         string `json:"url,omitempty"`
	Size        string `json:"size,omitempty"`
	Hash        string `json:"hash,omitempty"`
	Title       string `json:"title,omitempty"`
	Creation    string `json:"creation,omitempty"`
}

// Annotation is a text note with an author.
type Annotation struct {
	AuthorReference *Reference `json:"authorReference,omitempty"`
	AuthorString    string     `json:"authorString,omitempty"`
	Time            string     `json:"time,omitempty"`
	Text            string     `json:"text"`
}

// Primitive format checks from https://hl7.org/fhir/R5/datatypes.html.
var (
	idRE       = regexp.MustCompile(`^[A-Za-z0-9\-.]{1,64}$`)
	dateRE     = regexp.MustCompile(`^([0-9]{4})(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1]))?)?$`)
	dateTimeRE = regexp.MustCompile(`^([0-9]{4})(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1])(T([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]{1,9})?(Z|[+-]((0[0-9]|1[0-3]):[0-5][0-9]|14:00)))?)?)?$`)
	instantRE  = regexp.MustCompile(`^([0-9]{4})-(0[1-9]|1[0-2])-(0[1-9]|[1-2][0-9]|3[0-1])T([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]{1,9})?(Z|[+-]((0[0-9]|1[0-3]):[0-5][0-9]|14:00))$`)
	codeRE     = regexp.MustCompile(`^[^\s]+( [^\s]+)*$`)
)

// ValidID reports whether s is a valid FHIR resource id.
func ValidID(s string) bool { return idRE.MatchString(s) }

// ValidDate reports whether s is a valid FHIR date (YYYY, YYYY-MM or YYYY-MM-DD).
func ValidDate(s string) bool { return dateRE.MatchString(s) && calendarDay(s) }

// ValidDateTime reports whether s is a valid FHIR dateTime (a time requires a zone).
func ValidDateTime(s string) bool { return dateTimeRE.MatchString(s) && calendarDay(s) }

// ValidInstant reports whether s is a valid FHIR instant.
func ValidInstant(s string) bool { return instantRE.MatchString(s) && calendarDay(s) }

// calendarDay reports whether the day of a regex-checked date is in its month: the FHIR regexes
// accept 2024-02-30, but "dates SHALL be valid dates", and TimeRange (search indexing) rejects it.
func calendarDay(s string) bool {
	if len(s) < 10 {
		return true
	}
	_, err := time.Parse("2006-01-02", s[:10])
	return err == nil
}

// validator accumulates the first structural problem found, with its element path.
type validator struct{ err *Error }

func (v *validator) fail(path, format string, args ...any) {
	v.failCode(CodeValue, path, format, args...)
}

func (v *validator) failCode(code, path, format string, args ...any) {
	if v.err == nil {
		v.err = Invalid(code, "%s: %s", path, fmt.Sprintf(format, args...))
	}
}

func (v *validator) required(path string, ok bool) {
	if !ok {
		v.failCode(CodeRequired, path, "missing required element")
	}
}

func (v *validator) code(path, s string, allowed ...string) {
	if s == "" {
		return
	}
	if !codeRE.MatchString(s) {
		v.fail(path, "invalid code %q", truncate(s, 40))
		return
	}
	if len(allowed) == 0 {
		return
	}
	for _, a := range allowed {
		if s == a {
			return
		}
	}
	v.fail(path, "code %q is not one of %s", truncate(s, 40), strings.Join(allowed, ", "))
}

func (v *validator) date(path, s string) {
	if s != "" && !ValidDate(s) {
		v.fail(path, "invalid date %q", truncate(s, 40))
	}
}

func (v *validator) dateTime(path, s string) {
	if s != "" && !ValidDateTime(s) {
		v.fail(path, "invalid dateTime %q", truncate(s, 40))
	}
}

func (v *validator) instant(path, s string) {
	if s != "" && !ValidInstant(s) {
		v.fail(path, "invalid instant %q", truncate(s, 40))
	}
}

func (v *validator) period(path string, p *Period) {
	if p == nil {
		return
	}
	v.dateTime(path+".start", p.Start)
	v.dateTime(path+".end", p.End)
}

func (v *validator) coding(path string, c []Coding) {
	for i, cd := range c {
		v.code(fmt.Sprintf("%s.coding[%d].code", path, i), cd.Code)
	}
}

func (v *validator) cc(path string, c *CodeableConcept) {
	if c != nil {
		v.coding(path, c.Coding)
	}
}

func (v *validator) quantity(path string, q *Quantity) {
	if q == nil {
		return
	}
	v.code(path+".comparator", q.Comparator, "<", "<=", ">=", ">", "ad")
	if q.Code != "" && q.System == "" {
		v.fail(path+".system", "a coded quantity needs a system")
	}
}

func (v *validator) reference(path string, r *Reference, types ...string) {
	if r == nil || r.Reference == "" {
		return
	}
	if len(types) == 0 {
		return
	}
	t, _, ok := SplitReference(r.Reference)
	if !ok {
		// Absolute URLs and other forms are allowed; only relative local references are typed here.
		return
	}
	for _, a := range types {
		if a == t {
			return
		}
	}
	v.fail(path, "reference to %s is not allowed here (want %s)", t, strings.Join(types, " | "))
}

// SplitReference splits a relative literal reference "Type/id" (or "Type/id/_history/v").
func SplitReference(ref string) (typ, id string, ok bool) {
	parts := strings.Split(ref, "/")
	if len(parts) != 2 && !(len(parts) == 4 && parts[2] == "_history") {
		return "", "", false
	}
	if parts[0] == "" || parts[0][0] < 'A' || parts[0][0] > 'Z' || !ValidID(parts[1]) {
		return "", "", false
	}
	return parts[0], parts[1], true
}
