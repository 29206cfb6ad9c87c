package storetest

import (
	"encoding/json"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/fhir/search"
	"github.com/openhealthexchange/ohx/store"
)

// Code systems and identifier systems of the test data.
const (
	baseURL     = "https://ohx.test/fhir"
	loinc       = "http://loinc.org"
	ucum        = "http://unitsofmeasure.org"
	snomed      = "http://snomed.info/sct"
	obsCategory = "http://terminology.hl7.org/CodeSystem/observation-category"
	mrnSystem   = "https://hospital.example/mrn"
	measSystem  = "https://withings.example/measure"
	devSystem   = "https://withings.example/device"
	testSystem  = "https://ohx.test/code"
)

// LOINC codes used by the fixtures.
const (
	codeWeight    = "29463-7"
	codeHeartRate = "8867-4"
	codeBPPanel   = "85354-9"
	codeSystolic  = "8480-6"
	codeDiastolic = "8462-4"
	codeSteps     = "55423-8"
	codeSleep     = "93832-4"
)

// searchNow is the fixed reference time of every parsed query (it only matters for the ap prefix).
var searchNow = time.Date(2024, 6, 15, 12, 0, 0, 0, time.UTC)

// ---- FHIR datatype builders ----

func coding(system, code string) fhir.Coding { return fhir.Coding{System: system, Code: code} }

func concept(cs ...fhir.Coding) fhir.CodeableConcept { return fhir.CodeableConcept{Coding: cs} }

func ref(reference string) *fhir.Reference { return &fhir.Reference{Reference: reference} }

func ident(system, value string) fhir.Identifier {
	return fhir.Identifier{System: system, Value: value}
}

// qty returns a Quantity; value is kept as written (fhir.Decimal is string-backed).
func qty(value, unit, system, code string) *fhir.Quantity {
	d := fhir.Decimal(value)
	return &fhir.Quantity{Value: &d, Unit: unit, System: system, Code: code}
}

func ucumQty(value, code string) *fhir.Quantity { return qty(value, code, ucum, code) }

// ---- resource builders ----

func newPatient(id string) *fhir.Patient {
	return &fhir.Patient{Base: fhir.Base{ResourceType: "Patient", ID: id}}
}

func newDevice(id string) *fhir.Device {
	return &fhir.Device{Base: fhir.Base{ResourceType: "Device", ID: id}}
}

// newDeviceAssociation returns an association of device (a reference such as "Device/d1") with the
// given status code from the R5 deviceassociation-status code system.
func newDeviceAssociation(id, device, status string) *fhir.DeviceAssociation {
	return &fhir.DeviceAssociation{
		Base:   fhir.Base{ResourceType: "DeviceAssociation", ID: id},
		Device: fhir.Reference{Reference: device},
		Status: concept(coding(fhir.DeviceAssociationStatusSystem, status)),
	}
}

// obsOpt sets one element of an Observation built by newObservation.
type obsOpt func(*fhir.Observation)

// newObservation returns a final Observation with the given code, changed by opts.
func newObservation(id string, code fhir.CodeableConcept, opts ...obsOpt) *fhir.Observation {
	o := &fhir.Observation{
		Base:   fhir.Base{ResourceType: "Observation", ID: id},
		Status: "final",
		Code:   code,
	}
	for _, opt := range opts {
		opt(o)
	}
	return o
}

func loincCode(code string) fhir.CodeableConcept { return concept(coding(loinc, code)) }

func withSubject(reference string) obsOpt {
	return func(o *fhir.Observation) { o.Subject = ref(reference) }
}

func withDevice(reference string) obsOpt {
	return func(o *fhir.Observation) { o.Device = ref(reference) }
}

func withStatus(s string) obsOpt { return func(o *fhir.Observation) { o.Status = s } }

// withDate sets effectiveDateTime.
func withDate(dt string) obsOpt { return func(o *fhir.Observation) { o.EffectiveDateTime = dt } }

func withInstant(in string) obsOpt { return func(o *fhir.Observation) { o.EffectiveInstant = in } }

// withPeriod sets effectivePeriod; an empty start or end is left open.
func withPeriod(start, end string) obsOpt {
	return func(o *fhir.Observation) { o.EffectivePeriod = &fhir.Period{Start: start, End: end} }
}

func withValue(q *fhir.Quantity) obsOpt { return func(o *fhir.Observation) { o.ValueQuantity = q } }

func withInteger(n int64) obsOpt { return func(o *fhir.Observation) { o.ValueInteger = &n } }

// withCategory adds a category from the observation-category code system.
func withCategory(code string) obsOpt {
	return func(o *fhir.Observation) { o.Category = append(o.Category, concept(coding(obsCategory, code))) }
}

func withIdentifier(ids ...fhir.Identifier) obsOpt {
	return func(o *fhir.Observation) { o.Identifier = append(o.Identifier, ids...) }
}

// withComponent adds a component with a LOINC code and a UCUM quantity.
func withComponent(code, value, unit string) obsOpt {
	return func(o *fhir.Observation) {
		o.Component = append(o.Component, fhir.ObservationComponent{
			Code:  loincCode(code),
			Value: fhir.Value{ValueQuantity: ucumQty(value, unit)},
		})
	}
}

// ---- store helpers ----

func mustCreate(t testing.TB, s store.Store, r fhir.Resource) store.Entry {
	t.Helper()
	e, err := s.Create(t.Context(), r)
	if err != nil {
		t.Fatalf("Create %s/%s: %v", r.Type(), r.Common().ID, err)
	}
	return e
}

func mustPut(t testing.TB, s store.Store, r fhir.Resource, opt store.WriteOptions) (store.Entry, bool) {
	t.Helper()
	e, created, err := s.Put(t.Context(), r, opt)
	if err != nil {
		t.Fatalf("Put %s/%s: %v", r.Type(), r.Common().ID, err)
	}
	return e, created
}

func mustRead(t testing.TB, s store.Store, typ, id string) store.Entry {
	t.Helper()
	e, err := s.Read(t.Context(), typ, id)
	if err != nil {
		t.Fatalf("Read %s/%s: %v", typ, id, err)
	}
	return e
}

func mustDelete(t testing.TB, s store.Store, typ, id string) {
	t.Helper()
	if err := s.Delete(t.Context(), typ, id); err != nil {
		t.Fatalf("Delete %s/%s: %v", typ, id, err)
	}
}

// decode strictly decodes a stored entry's JSON into its resource struct.
func decode(t testing.TB, e store.Entry) fhir.Resource {
	t.Helper()
	if e.JSON == nil {
		t.Fatalf("%s/%s: entry has no JSON", e.Type, e.ID)
	}
	r, err := fhir.Decode(e.JSON, e.Type)
	if err != nil {
		t.Fatalf("%s/%s: stored JSON does not decode: %v\n%s", e.Type, e.ID, err, e.JSON)
	}
	return r
}

// checkMeta checks that an entry's JSON carries its id, versionId and lastUpdated, and that the
// JSON agrees with the entry's fields; it returns the decoded resource.
func checkMeta(t testing.TB, e store.Entry) fhir.Resource {
	t.Helper()
	r := decode(t, e)
	b := r.Common()
	if b.ID != e.ID {
		t.Errorf("%s/%s: JSON id = %q, want %q", e.Type, e.ID, b.ID, e.ID)
	}
	if b.Meta == nil {
		t.Errorf("%s/%s: JSON has no meta", e.Type, e.ID)
		return r
	}
	if want := itoa(e.VersionID); b.Meta.VersionID != want {
		t.Errorf("%s/%s: meta.versionId = %q, want %q (Entry.VersionID)", e.Type, e.ID, b.Meta.VersionID, want)
	}
	if !fhir.ValidInstant(b.Meta.LastUpdated) {
		t.Errorf("%s/%s: meta.lastUpdated = %q, not a FHIR instant", e.Type, e.ID, b.Meta.LastUpdated)
	} else if lu, err := time.Parse(time.RFC3339Nano, b.Meta.LastUpdated); err != nil {
		t.Errorf("%s/%s: meta.lastUpdated = %q: %v", e.Type, e.ID, b.Meta.LastUpdated, err)
	} else if !lu.Equal(e.LastUpdated) {
		t.Errorf("%s/%s: meta.lastUpdated = %s, Entry.LastUpdated = %s; want the same instant", e.Type, e.ID, b.Meta.LastUpdated, e.LastUpdated.Format(time.RFC3339Nano))
	}
	return r
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// withoutMeta returns r's JSON form decoded again with meta removed, for comparing content.
func withoutMeta(t testing.TB, r fhir.Resource) fhir.Resource {
	t.Helper()
	c, err := fhir.Decode(mustJSON(r), r.Type())
	if err != nil {
		t.Fatalf("re-decode %s/%s: %v", r.Type(), r.Common().ID, err)
	}
	c.Common().Meta = nil
	return c
}

// ---- search helpers ----

// parse turns a query string into a Query exactly as the API does.
func parse(t testing.TB, typ, rawQuery string) *search.Query {
	t.Helper()
	q, err := parseQuery(typ, rawQuery)
	if err != nil {
		t.Fatalf("parse %s?%s: %v", typ, rawQuery, err)
	}
	return q
}

// parseQuery is parse without testing.TB, for goroutines (which must not call t.Fatal).
func parseQuery(typ, rawQuery string) (*search.Query, error) {
	pairs, err := search.ParseRawQuery(rawQuery)
	if err != nil {
		return nil, err
	}
	q, _, err := search.DefaultRegistry().Parse(typ, pairs, search.Options{BaseURL: baseURL, Now: searchNow})
	return q, err
}

func mustSearch(t testing.TB, s store.Store, q *search.Query) *store.Result {
	t.Helper()
	res, err := s.Search(t.Context(), q)
	if err != nil {
		t.Fatalf("Search %s: %v", describe(q), err)
	}
	if res == nil {
		t.Fatalf("Search %s: nil result", describe(q))
	}
	for _, e := range res.Matches {
		if e.Type != q.Type {
			t.Errorf("Search %s: match %s/%s has the wrong type", describe(q), e.Type, e.ID)
		}
		if e.JSON == nil {
			t.Errorf("Search %s: match %s/%s has no JSON", describe(q), e.Type, e.ID)
		}
	}
	return res
}

// describe renders a query for messages.
func describe(q *search.Query) string {
	s := q.Type + "?"
	for i, nv := range q.Applied {
		if i > 0 {
			s += "&"
		}
		s += nv.Name + "=" + nv.Value
	}
	return s
}

// roundTrip passes a cursor through JSON, as the API does when it puts it in a _page token.
func roundTrip(t testing.TB, c *search.Cursor) *search.Cursor {
	t.Helper()
	if c == nil {
		return nil
	}
	var out search.Cursor
	if err := json.Unmarshal(mustJSON(c), &out); err != nil {
		t.Fatalf("cursor JSON: %v", err)
	}
	return &out
}

// ids returns the ids of entries in order.
func ids(es []store.Entry) []string {
	out := make([]string, 0, len(es))
	for _, e := range es {
		out = append(out, e.ID)
	}
	return out
}

// sortedIDs returns the ids of entries, sorted.
func sortedIDs(es []store.Entry) []string {
	out := ids(es)
	slices.Sort(out)
	return out
}

// refs returns "Type/id" of entries, sorted.
func refs(es []store.Entry) []string {
	out := make([]string, 0, len(es))
	for _, e := range es {
		out = append(out, e.Type+"/"+e.ID)
	}
	slices.Sort(out)
	return out
}

// sorted returns a sorted copy (nil for an empty list, so that cmp treats both the same).
func sorted(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}

// nonEmpty returns s, or nil if it is empty.
func nonEmpty(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return s
}
