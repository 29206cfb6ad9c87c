package storetest

import (
	"slices"
	"testing"
	"time"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/fhir/search"
	"github.com/openhealthexchange/ohx/store"
)

// fixture is the data set of the Search and Include tests: 6 Patients, 4 Devices, 5
// DeviceAssociations and 13 Observations that are live, plus Device/dev-5 and
// Observation/obs-14, which are created and then deleted.
//
// Observations (the date column gives the target range the date parameter compares):
//
//	id      subject                         code (category)         date target                      device    value
//	obs-01  Patient/pat-1                   weight (vital-signs)    2024-01-15T08:30:00Z (1 s)       dev-2     72.5 kg
//	obs-02  Patient/pat-1                   weight (vital-signs)    2024-02-10T08:00:00Z (1 s)       dev-2     73.0 kg
//	obs-03  Patient/pat-1                   heart rate (vital)      instant …08:00:00.123Z (1 ms)    dev-1     61 /min
//	obs-04  Patient/pat-1                   BP panel + components   2024-03-01T12:00:00+02:00        dev-1     —
//	obs-05  Patient/pat-2                   steps (activity)        period 03-01T00:00–23:59:59Z     dev-3     8000 {steps}
//	obs-06  Patient/pat-2                   sleep (activity)        period from 03-10T22:00Z, open   dev-3     —
//	obs-07  Device/dev-3 (preliminary)      heart rate (vital)      2023-12-31T23:59:59Z             dev-3     75 /min
//	obs-08  —                               text only, no category  2024 (year)                      —         98.6 °F (unit text only)
//	obs-09  Patient/pat-3 (amended)         weight (vital-signs)    2024-02 (month)                  dev-9 ✗   100 kg
//	obs-10  Patient/pat-3                   weight (vital-signs)    2024-02-10 (day)                 dev-9 ✗   100.4 kg
//	obs-11  Patient/pat-2                   weight (vital-signs)    2024-04-20T10:00:00Z             dev-5 ✗   160 [lb_av]
//	obs-12  https://other.example/…/ext-1   heart rate (vital)      2024-04-01T00:00:00Z             —         80 /min
//	obs-13  Group/grp-1                     |custom-1, no category  —                                —         —
//
// ✗ marks references that do not resolve (dev-9 never existed, dev-5 is deleted).
type fixture struct {
	// before is a time before any fixture resource was written, after one after all of them.
	before, after time.Time
	// live holds the index of every live resource, for the search.Matches oracle.
	live []indexed
}

// indexed is a stored resource as search.Matches sees it.
type indexed struct {
	typ, id     string
	lastUpdated int64
	idx         search.Index
}

func fixturePatients() []fhir.Resource {
	p1 := newPatient("pat-1")
	p1.Identifier = []fhir.Identifier{ident(mrnSystem, "1001")}
	p1.Name = []fhir.HumanName{{Family: "Martínez", Given: []string{"José"}}}
	p1.Gender = "male"
	p1.BirthDate = "1980-05-17"

	p2 := newPatient("pat-2")
	p2.Identifier = []fhir.Identifier{ident(mrnSystem, "1002"), ident("http://ssn.example", "123-45-6789")}
	p2.Name = []fhir.HumanName{{Family: "Smith", Given: []string{"Anna", "Maria"}}}
	p2.Gender = "female"
	p2.BirthDate = "1975"

	p3 := newPatient("pat-3")
	p3.Identifier = []fhir.Identifier{ident(mrnSystem, "1003")}
	p3.Name = []fhir.HumanName{{Family: "Smithson", Given: []string{"Joseph"}}, {Use: "nickname", Given: []string{"Joe"}}}
	p3.Gender = "male"
	p3.BirthDate = "1980-11"

	p4 := newPatient("pat-4")
	p4.Identifier = []fhir.Identifier{ident("http://other.example/ids", "1001")}
	p4.Name = []fhir.HumanName{{Text: "Lee Wong", Family: "Wong", Given: []string{"Lee"}}}

	p5 := newPatient("pat-5")
	p5.Identifier = []fhir.Identifier{{Value: "1001"}} // no system
	p5.Gender = "other"
	p5.BirthDate = "2001-02-03"

	// Characters that are syntax in LIKE patterns, regular expressions and composite keys.
	p6 := newPatient("pat-6")
	p6.Identifier = []fhir.Identifier{ident(mrnSystem, "1006"), ident("urn:oid:1.2", "a|b.c*")}
	p6.Name = []fhir.HumanName{{Family: "St. John (O'Neil)", Given: []string{"Mary-Kate"}}}

	return []fhir.Resource{p1, p2, p3, p4, p5, p6}
}

func fixtureDevices() []fhir.Resource {
	d1 := newDevice("dev-1")
	d1.Identifier = []fhir.Identifier{ident(devSystem, "W-1")}
	d1.Manufacturer = "Withings"
	d1.ModelNumber = "BPM Connect"
	d1.Status = "active"
	d1.DeviceType = []fhir.CodeableConcept{{Coding: []fhir.Coding{{System: snomed, Code: "70665002", Display: "Blood pressure cuff"}}}}
	d1.Name = []fhir.DeviceName{{Value: "My BP cuff", Type: "user-friendly-name"}}

	d2 := newDevice("dev-2")
	d2.Identifier = []fhir.Identifier{ident(devSystem, "W-2")}
	d2.Manufacturer = "Withings"
	d2.ModelNumber = "Body+"
	d2.Status = "inactive"
	d2.DeviceType = []fhir.CodeableConcept{{Coding: []fhir.Coding{{System: snomed, Code: "19892000", Display: "Scale"}}}}
	d2.DisplayName = "Bathroom scale"

	d3 := newDevice("dev-3")
	d3.Identifier = []fhir.Identifier{ident("https://fitbit.example/device", "F-1")}
	d3.Manufacturer = "Fitbit"
	d3.ModelNumber = "Charge 6"
	d3.Status = "active"
	d3.DeviceType = []fhir.CodeableConcept{{Coding: []fhir.Coding{{System: snomed, Code: "49062001", Display: "Activity tracker"}}, Text: "Wristband"}}

	d4 := newDevice("dev-4")
	d4.Identifier = []fhir.Identifier{ident("http://other.example/devices", "X-1")}
	d4.DeviceType = []fhir.CodeableConcept{{Text: "Thermometer"}} // no coding: no type token

	return []fhir.Resource{d1, d2, d3, d4}
}

func fixtureAssociations() []fhir.Resource {
	a1 := newDeviceAssociation("da-1", "Device/dev-1", "attached")
	a1.Subject = ref("Patient/pat-1")
	a1.Identifier = []fhir.Identifier{ident("https://ohx.test/da", "1")}

	a2 := newDeviceAssociation("da-2", "Device/dev-2", "explanted")
	a2.Subject = ref("Patient/pat-1")
	a2.Identifier = []fhir.Identifier{ident("https://ohx.test/da", "2")}

	a3 := newDeviceAssociation("da-3", "Device/dev-3", "attached")
	a3.Subject = ref("Patient/pat-2")

	a4 := newDeviceAssociation("da-4", "Device/dev-9", "unknown") // no subject, unresolvable device

	a5 := newDeviceAssociation("da-5", "Device/dev-5", "attached") // dev-5 is deleted
	a5.Subject = ref("Patient/pat-3")

	return []fhir.Resource{a1, a2, a3, a4, a5}
}

func fixtureObservations() []fhir.Resource {
	vital := withCategory("vital-signs")
	weight := loincCode(codeWeight)
	hr := loincCode(codeHeartRate)
	bpm := func(v string) *fhir.Quantity { return qty(v, "beats/minute", ucum, "/min") }
	return []fhir.Resource{
		newObservation("obs-01", weight, withSubject("Patient/pat-1"), vital, withDate("2024-01-15T08:30:00Z"), withDevice("Device/dev-2"),
			withIdentifier(ident(measSystem, "m-1")), withValue(ucumQty("72.5", "kg"))),
		newObservation("obs-02", weight, withSubject("Patient/pat-1"), vital, withDate("2024-02-10T08:00:00Z"), withDevice("Device/dev-2"),
			withValue(ucumQty("73.0", "kg"))),
		newObservation("obs-03", hr, withSubject("Patient/pat-1"), vital, withInstant("2024-02-10T08:00:00.123Z"), withDevice("Device/dev-1"),
			withValue(bpm("61"))),
		newObservation("obs-04", loincCode(codeBPPanel), withSubject("Patient/pat-1"), vital, withDate("2024-03-01T12:00:00+02:00"), withDevice("Device/dev-1"),
			withComponent(codeSystolic, "120", "mm[Hg]"), withComponent(codeDiastolic, "80", "mm[Hg]")),
		newObservation("obs-05", loincCode(codeSteps), withSubject("Patient/pat-2"), withCategory("activity"),
			withPeriod("2024-03-01T00:00:00Z", "2024-03-01T23:59:59Z"), withDevice("Device/dev-3"), withValue(qty("8000", "steps", ucum, "{steps}"))),
		newObservation("obs-06", loincCode(codeSleep), withSubject("Patient/pat-2"), withCategory("activity"),
			withPeriod("2024-03-10T22:00:00Z", ""), withDevice("Device/dev-3")),
		newObservation("obs-07", hr, withSubject("Device/dev-3"), vital, withStatus("preliminary"), withDate("2023-12-31T23:59:59Z"),
			withDevice("Device/dev-3"), withValue(bpm("75"))),
		newObservation("obs-08", fhir.CodeableConcept{Text: "Body temperature (self-reported)"}, withDate("2024"),
			withValue(&fhir.Quantity{Value: ptr(fhir.Decimal("98.6")), Unit: "°F"})),
		newObservation("obs-09", weight, withSubject("Patient/pat-3"), vital, withStatus("amended"), withDate("2024-02"), withDevice("Device/dev-9"),
			withIdentifier(ident("https://fitbit.example/measure", "f-9"), ident("urn:oid:1.2.3", "x-9")), withValue(ucumQty("100", "kg"))),
		newObservation("obs-10", weight, withSubject("Patient/pat-3"), vital, withDate("2024-02-10"), withDevice("Device/dev-9"),
			withValue(ucumQty("100.4", "kg"))),
		newObservation("obs-11", weight, withSubject("Patient/pat-2"), vital, withDate("2024-04-20T10:00:00Z"), withDevice("Device/dev-5"),
			withValue(qty("160", "lb", ucum, "[lb_av]"))),
		newObservation("obs-12", hr, withSubject("https://other.example/fhir/Patient/ext-1"), vital, withDate("2024-04-01T00:00:00Z"),
			withValue(bpm("80"))),
		newObservation("obs-13", concept(fhir.Coding{Code: "custom-1"}), withSubject("Group/grp-1")),
	}
}

func ptr[T any](v T) *T { return &v }

// loadFixture writes the fixture into s.
func loadFixture(t testing.TB, s store.Store) *fixture {
	t.Helper()
	f := &fixture{before: time.Now().Add(-clockSkew)}
	var all []fhir.Resource
	all = append(all, fixturePatients()...)
	all = append(all, fixtureDevices()...)
	all = append(all, fixtureAssociations()...)
	all = append(all, fixtureObservations()...)
	for _, r := range all {
		f.add(t, mustCreate(t, s, r))
	}

	// Resources that exist only as deleted: they must never be found or included.
	dev5 := newDevice("dev-5")
	dev5.Identifier = []fhir.Identifier{ident(devSystem, "W-5")}
	dev5.Manufacturer = "Withings"
	dev5.Status = "active"
	mustCreate(t, s, dev5)
	mustDelete(t, s, "Device", "dev-5")
	mustCreate(t, s, newObservation("obs-14", loincCode(codeWeight), withSubject("Patient/pat-1"), withCategory("vital-signs"),
		withDate("2024-01-20T00:00:00Z"), withDevice("Device/dev-2"), withValue(ucumQty("70", "kg"))))
	mustDelete(t, s, "Observation", "obs-14")

	f.after = time.Now().Add(clockSkew)
	return f
}

// resolve is the search.Resolver of the live fixture resources.
func (f *fixture) resolve(typ, id string) (search.Index, bool) {
	for _, r := range f.live {
		if r.typ == typ && r.id == id {
			return r.idx, true
		}
	}
	return search.Index{}, false
}

// add indexes a stored entry the way search.Matches expects.
func (f *fixture) add(t testing.TB, e store.Entry) {
	t.Helper()
	idx, err := search.Extract(decode(t, e))
	if err != nil {
		t.Fatalf("Extract %s/%s: %v", e.Type, e.ID, err)
	}
	f.live = append(f.live, indexed{typ: e.Type, id: e.ID, lastUpdated: e.LastUpdated.UnixMicro(), idx: idx})
}

// oracle returns the sorted ids of the live fixture resources that search.Matches accepts for q
// (search.MatchesWith, chains resolved among the live fixture resources).
func (f *fixture) oracle(q *search.Query) []string {
	var out []string
	for _, r := range f.live {
		if r.typ == q.Type && search.MatchesWith(q, r.id, r.lastUpdated, r.idx, f.resolve) {
			out = append(out, r.id)
		}
	}
	slices.Sort(out)
	return out
}
