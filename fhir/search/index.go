package search

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"

	"golang.org/x/text/runes"
	"golang.org/x/text/transform"
	"golang.org/x/text/unicode/norm"

	"github.com/openhealthexchange/ohx/fhir"
)

// Entry is one index entry of a resource: a value of one search column, in a typed form every
// store can compare. Which fields are set depends on Type.
type Entry struct {
	Column string
	Type   Type
	// Token: System and Code (an identifier's value is its Code). Quantity: System and Code of the unit.
	System string
	Code   string
	// Reference: a local reference split into RefType/RefID, or an absolute URL in RefURL.
	RefType string
	RefID   string
	RefURL  string
	// Date: the half-open range [Lo, Hi) in Unix microseconds.
	Lo, Hi int64
	// String: Norm is case- and accent-folded for the default and :contains matches; Exact is as written.
	Norm  string
	Exact string
	// Quantity: the value and its unit text.
	Num  float64
	Unit string
}

// Index is everything a store keeps to search one resource.
type Index struct {
	Entries []Entry
	// Patient is the id of the patient whose compartment holds the resource, or "".
	Patient string
	// SortDate is the start of the resource's sort date (see SortDateParam), or fhir.MinTime.
	SortDate int64
}

// Normalize folds a string for FHIR string matching: case-insensitive and accent-insensitive
// (https://hl7.org/fhir/R5/search.html#string).
func Normalize(s string) string {
	t := transform.Chain(norm.NFD, runes.Remove(runes.In(unicode.Mn)), norm.NFC)
	out, _, err := transform.String(t, s)
	if err != nil {
		out = s
	}
	return strings.ToLower(out)
}

type indexer struct {
	idx Index
	err error
}

func (x *indexer) token(col, system, code string) {
	if code == "" {
		return // an absent code (gender, status) is no value: :missing must see it as missing
	}
	x.idx.Entries = append(x.idx.Entries, Entry{Column: col, Type: Token, System: system, Code: code})
}

func (x *indexer) cc(col string, cc *fhir.CodeableConcept) {
	if cc == nil {
		return
	}
	for _, c := range cc.Coding {
		x.token(col, c.System, c.Code)
	}
}

func (x *indexer) identifiers(col string, ids []fhir.Identifier) {
	for _, id := range ids {
		x.token(col, id.System, id.Value)
	}
}

func (x *indexer) ref(col string, r *fhir.Reference) {
	if r == nil || r.Reference == "" {
		return
	}
	e := Entry{Column: col, Type: Reference}
	if t, id, ok := fhir.SplitReference(r.Reference); ok {
		e.RefType, e.RefID = t, id
	} else {
		// An absolute URL keeps its target type when it ends in Type/id, so that views such as
		// patient (subject where it is a Patient) count it.
		e.RefURL = r.Reference
		if i := strings.LastIndexByte(r.Reference, '/'); i > 0 {
			if t, _, ok := fhir.SplitReference(r.Reference[strings.LastIndexByte(r.Reference[:i], '/')+1:]); ok {
				e.RefType = t
			}
		}
	}
	x.idx.Entries = append(x.idx.Entries, e)
}

func (x *indexer) str(col, s string) {
	if s == "" {
		return
	}
	x.idx.Entries = append(x.idx.Entries, Entry{Column: col, Type: String, Norm: Normalize(s), Exact: s})
}

func (x *indexer) date(col, s string) {
	if s == "" {
		return
	}
	lo, hi, err := fhir.TimeRange(s)
	if err != nil {
		x.err = fmt.Errorf("index %s: %w", col, err)
		return
	}
	x.idx.Entries = append(x.idx.Entries, Entry{Column: col, Type: Date, Lo: lo, Hi: hi})
}

func (x *indexer) period(col string, p *fhir.Period) {
	if p == nil {
		return
	}
	lo, hi, err := fhir.PeriodRange(p)
	if err != nil {
		x.err = fmt.Errorf("index %s: %w", col, err)
		return
	}
	x.idx.Entries = append(x.idx.Entries, Entry{Column: col, Type: Date, Lo: lo, Hi: hi})
}

func (x *indexer) quantity(col string, q *fhir.Quantity) {
	if q == nil || q.Value == nil {
		return
	}
	f, err := strconv.ParseFloat(string(*q.Value), 64)
	if err != nil {
		x.err = fmt.Errorf("index %s: %w", col, err)
		return
	}
	x.idx.Entries = append(x.idx.Entries, Entry{Column: col, Type: Quantity, Num: f, System: q.System, Code: q.Code, Unit: q.Unit})
}

// IndexVersion identifies what Extract makes of a resource. Change it with any change that can
// alter the entries of a stored resource (a parameter added, removed or extracted differently,
// a normalisation changed): a store that derives the index rows to delete from the stored JSON
// rebuilds its index when the version it recorded differs.
const IndexVersion = 1

// Extract computes the index of a resource. It must be called after the store has set meta.
func Extract(res fhir.Resource) (Index, error) {
	x := &indexer{idx: Index{SortDate: fhir.MinTime, Patient: PatientOf(res)}}
	switch r := res.(type) {
	case *fhir.Observation:
		x.ref("subject", r.Subject)
		x.cc("code", &r.Code)
		for i := range r.Category {
			x.cc("category", &r.Category[i])
		}
		switch {
		case r.EffectiveDateTime != "":
			x.date("date", r.EffectiveDateTime)
		case r.EffectiveInstant != "":
			x.date("date", r.EffectiveInstant)
		case r.EffectivePeriod != nil:
			x.period("date", r.EffectivePeriod)
		}
		x.ref("device", r.Device)
		x.identifiers("identifier", r.Identifier)
		x.token("status", ObservationStatusSystem, r.Status)
		x.quantity("value-quantity", r.ValueQuantity)
		for i := range r.Component {
			x.cc("component-code", &r.Component[i].Code)
		}
	case *fhir.Patient:
		x.identifiers("identifier", r.Identifier)
		for _, n := range r.Name {
			for _, s := range append(append([]string{n.Text, n.Family}, n.Given...), append(n.Prefix, n.Suffix...)...) {
				x.str("name", s)
			}
			x.str("family", n.Family)
			for _, g := range n.Given {
				x.str("given", g)
			}
		}
		x.date("birthdate", r.BirthDate)
		x.token("gender", GenderSystem, r.Gender)
	case *fhir.Device:
		x.identifiers("identifier", r.Identifier)
		for i := range r.DeviceType {
			x.cc("type", &r.DeviceType[i])
			for _, c := range r.DeviceType[i].Coding {
				x.str("device-name", c.Display)
			}
			x.str("device-name", r.DeviceType[i].Text)
		}
		x.str("manufacturer", r.Manufacturer)
		x.str("model", r.ModelNumber)
		x.token("status", DeviceStatusSystem, r.Status)
		for _, n := range r.Name {
			x.str("device-name", n.Value)
		}
		x.str("device-name", r.DisplayName)
	case *fhir.DeviceAssociation:
		x.ref("subject", r.Subject)
		x.ref("device", &r.Device)
		x.cc("status", &r.Status)
		x.identifiers("identifier", r.Identifier)
	default:
		return Index{}, fmt.Errorf("index: unsupported resource type %s", res.Type())
	}
	if x.err != nil {
		return Index{}, x.err
	}
	x.idx.Entries = dedupe(x.idx.Entries)
	if sp := SortDateParam(res.Type()); sp != "" {
		for _, e := range x.idx.Entries {
			if e.Column == sp && e.Type == Date {
				x.idx.SortDate = e.Lo
				break
			}
		}
	}
	return x.idx, nil
}

// dedupe drops repeated entries (a name part given twice, the same coding twice) so that stores
// with unique keys on entries accept them.
func dedupe(in []Entry) []Entry {
	seen := make(map[Entry]struct{}, len(in))
	out := in[:0]
	for _, e := range in {
		if _, ok := seen[e]; ok {
			continue
		}
		seen[e] = struct{}{}
		out = append(out, e)
	}
	return out
}
