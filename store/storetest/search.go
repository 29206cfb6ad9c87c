package storetest

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// searchCase is one search of the fixture: a query string and the ids it must match.
type searchCase struct {
	typ   string
	query string
	want  []string
}

// Id list shorthands: obs(1, 2) is [obs-01 obs-02], pat(1) is [pat-1], and so on.
func obs(n ...int) []string { return idList("obs-%02d", n) }
func pat(n ...int) []string { return idList("pat-%d", n) }
func dev(n ...int) []string { return idList("dev-%d", n) }
func da(n ...int) []string  { return idList("da-%d", n) }

func idList(format string, n []int) []string {
	var out []string
	for _, i := range n {
		out = append(out, fmt.Sprintf(format, i))
	}
	return sorted(out)
}

// allObs is every live Observation of the fixture except those listed.
func allObsExcept(n ...int) []string {
	var out []int
	for i := 1; i <= 13; i++ {
		skip := false
		for _, x := range n {
			skip = skip || x == i
		}
		if !skip {
			out = append(out, i)
		}
	}
	return obs(out...)
}

// searchCases covers every parameter, prefix and modifier of search.DefaultRegistry against the
// fixture (see the table in fixture.go).
func searchCases(f *fixture) []searchCase {
	const ts = "2006-01-02T15:04:05Z"
	before, after := f.before.UTC().Format(ts), f.after.UTC().Format(ts)
	return []searchCase{
		// ---- Observation: reference parameters ----
		{"Observation", "patient=pat-1", obs(1, 2, 3, 4)},
		{"Observation", "patient=Patient/pat-2", obs(5, 6, 11)},
		{"Observation", "patient=" + baseURL + "/Patient/pat-3", obs(9, 10)},
		{"Observation", "patient=pat-1,pat-3", obs(1, 2, 3, 4, 9, 10)},
		{"Observation", "patient=grp-1", nil}, // a Group subject is not a patient
		{"Observation", "patient=nobody", nil},
		{"Observation", "patient=https://other.example/fhir/Patient/ext-1", obs(12)},
		{"Observation", "subject=pat-1", obs(1, 2, 3, 4)},
		{"Observation", "subject=Patient/pat-1", obs(1, 2, 3, 4)},
		{"Observation", "subject=" + baseURL + "/Patient/pat-1", obs(1, 2, 3, 4)},
		{"Observation", "subject=dev-3", obs(7)}, // an id alone matches any target type
		{"Observation", "subject=Device/dev-3", obs(7)},
		{"Observation", "subject:Device=dev-3", obs(7)},
		{"Observation", "subject:Patient=dev-3", nil},
		{"Observation", "subject:Patient=pat-2", obs(5, 6, 11)},
		{"Observation", "subject=grp-1", obs(13)},
		{"Observation", "subject=Group/grp-1", obs(13)},
		{"Observation", "subject=https://other.example/fhir/Patient/ext-1", obs(12)},
		{"Observation", "subject:missing=true", obs(8)},
		{"Observation", "subject:missing=false", allObsExcept(8)},
		{"Observation", "device=dev-2", obs(1, 2)},
		{"Observation", "device=Device/dev-1", obs(3, 4)},
		{"Observation", "device=" + baseURL + "/Device/dev-3", obs(5, 6, 7)},
		{"Observation", "device=dev-5", obs(11)}, // the target is deleted; the reference still matches
		{"Observation", "device=dev-9", obs(9, 10)},
		{"Observation", "device=dev-1,dev-2", obs(1, 2, 3, 4)},
		{"Observation", "device:missing=true", obs(8, 12, 13)},

		// ---- Observation: tokens ----
		{"Observation", "code=" + codeWeight, obs(1, 2, 9, 10, 11)},
		{"Observation", "code=" + loinc + "|" + codeHeartRate, obs(3, 7, 12)},
		{"Observation", "code=" + codeWeight + "," + codeHeartRate, obs(1, 2, 3, 7, 9, 10, 11, 12)},
		{"Observation", "code=|custom-1", obs(13)},
		{"Observation", "code=custom-1", obs(13)},
		{"Observation", "code=" + loinc + "|custom-1", nil},
		{"Observation", "code=|" + codeWeight, nil}, // |code means no system
		{"Observation", "code=" + loinc + "|", allObsExcept(8, 13)},
		{"Observation", "code=" + codeSystolic, nil}, // component codes are not codes
		{"Observation", "code:not=" + codeWeight, obs(3, 4, 5, 6, 7, 8, 12, 13)},
		{"Observation", "code:not=" + codeWeight + "," + codeHeartRate, obs(4, 5, 6, 8, 13)},
		{"Observation", "code:missing=true", obs(8)}, // text-only code: no token
		{"Observation", "code:missing=false", allObsExcept(8)},
		{"Observation", "combo-code=" + codeSystolic, obs(4)},
		{"Observation", "combo-code=" + loinc + "|" + codeDiastolic, obs(4)},
		{"Observation", "combo-code=" + codeBPPanel, obs(4)},
		{"Observation", "combo-code=" + codeHeartRate, obs(3, 7, 12)},
		{"Observation", "combo-code:not=" + codeSystolic, allObsExcept(4)},
		{"Observation", "category=vital-signs", obs(1, 2, 3, 4, 7, 9, 10, 11, 12)},
		{"Observation", "category=" + obsCategory + "|activity", obs(5, 6)},
		{"Observation", "category=vital-signs,activity", allObsExcept(8, 13)},
		{"Observation", "category:not=vital-signs", obs(5, 6, 8, 13)},
		{"Observation", "category:missing=true", obs(8, 13)},
		{"Observation", "status=final", allObsExcept(7, 9)},
		{"Observation", "status=preliminary,amended", obs(7, 9)},
		{"Observation", "status=http://hl7.org/fhir/observation-status|amended", obs(9)},
		{"Observation", "status=http://example.org/other|final", nil},
		{"Observation", "status:not=final", obs(7, 9)},
		{"Observation", "identifier=" + measSystem + "|m-1", obs(1)},
		{"Observation", "identifier=x-9", obs(9)}, // any identifier, not only the first
		{"Observation", "identifier=urn:oid:1.2.3|", obs(9)},
		{"Observation", "identifier:not=m-1", allObsExcept(1)},
		{"Observation", "identifier:missing=true", allObsExcept(1, 9)},

		// ---- Observation: date, every prefix, every precision ----
		{"Observation", "date=2024", obs(1, 2, 3, 4, 5, 8, 9, 10, 11, 12)},
		{"Observation", "date=eq2024", obs(1, 2, 3, 4, 5, 8, 9, 10, 11, 12)},
		{"Observation", "date=2024-02", obs(2, 3, 9, 10)},
		{"Observation", "date=2024-02-10", obs(2, 3, 10)},
		{"Observation", "date=2024-02-10T08:00:00Z", obs(2, 3)},
		{"Observation", "date=2024-02-10T08:00:00.123Z", obs(3)},
		{"Observation", "date=2024-03-01", obs(4, 5)},
		{"Observation", "date=2024-03-01T10:00:00Z", obs(4)},
		{"Observation", "date=2024-03-01T12:00:00%2B02:00", obs(4)},
		{"Observation", "date=2024-01-15T08:30:00", obs(1)}, // no zone: UTC
		{"Observation", "date=ne2024-02", obs(1, 4, 5, 6, 7, 8, 11, 12)},
		{"Observation", "date=gt2024-03-01", obs(6, 8, 11, 12)},
		{"Observation", "date=lt2024-01-15", obs(7, 8)},
		{"Observation", "date=ge2024-04-01", obs(6, 8, 11, 12)},
		{"Observation", "date=le2024-01-15", obs(1, 7, 8)},
		{"Observation", "date=sa2024-03-01", obs(6, 11, 12)},
		{"Observation", "date=eb2024-02-10", obs(1, 7)},
		{"Observation", "date=ap2024-04-01", obs(6, 8, 12)}, // ±7.55 days (10 % of the gap to searchNow)
		{"Observation", "date=ge2024-02-10&date=lt2024-02-11", obs(2, 3, 8, 9, 10)},
		{"Observation", "date=lt2024-02", obs(1, 7, 8)},
		{"Observation", "date=eb2024-02", obs(1, 7)},
		{"Observation", "date=gt2024-02-10T08:00:00Z", obs(4, 5, 6, 8, 9, 10, 11, 12)},
		{"Observation", "date=sa2024-02-10T08:00:00Z", obs(4, 5, 6, 11, 12)},
		{"Observation", "date=le2024-02-10T08:00:00Z", obs(1, 2, 3, 7, 8, 9, 10)},
		{"Observation", "date=ap2024-02-10", obs(2, 3, 8, 9, 10)}, // ±12.65 days
		{"Observation", "date=gt2099", obs(6)},                    // only the open-ended period
		{"Observation", "date=lt1900", nil},
		{"Observation", "date=2023,2024-03", obs(4, 5, 7)},
		{"Observation", "date:missing=true", obs(13)},
		{"Observation", "date:missing=false", allObsExcept(13)},

		// ---- Observation: value-quantity ----
		{"Observation", "value-quantity=100", obs(9, 10)},    // [99.5, 100.5)
		{"Observation", "value-quantity=100.0", obs(9)},      // [99.95, 100.05)
		{"Observation", "value-quantity=1e2", obs(8, 9, 10)}, // [95, 105)
		{"Observation", "value-quantity=73", obs(1, 2)},      // [72.5, 73.5)
		{"Observation", "value-quantity=eq73", obs(1, 2)},
		{"Observation", "value-quantity=ne100", obs(1, 2, 3, 5, 7, 8, 11, 12)},
		{"Observation", "value-quantity=gt100", obs(5, 10, 11)},
		{"Observation", "value-quantity=ge100", obs(5, 9, 10, 11)},
		{"Observation", "value-quantity=lt75", obs(1, 2, 3)},
		{"Observation", "value-quantity=le61", obs(3)},
		{"Observation", "value-quantity=sa160", obs(5)},
		{"Observation", "value-quantity=eb73", obs(1, 3)},
		{"Observation", "value-quantity=ap80", obs(1, 2, 7, 12)}, // [72, 88]
		{"Observation", "value-quantity=72.5|" + ucum + "|kg", obs(1)},
		{"Observation", "value-quantity=100|" + ucum + "|kg", obs(9, 10)},
		{"Observation", "value-quantity=100|" + ucum + "|", obs(9, 10)},
		{"Observation", "value-quantity=160|" + ucum + "|[lb_av]", obs(11)},
		{"Observation", "value-quantity=73|" + ucum + "|[lb_av]", nil},
		{"Observation", "value-quantity=98.6||%C2%B0F", obs(8)}, // unit text
		{"Observation", "value-quantity=61||/min", obs(3)},      // unit code
		{"Observation", "value-quantity=75||beats/minute", obs(7)},
		{"Observation", "value-quantity=gt70||kg", obs(1, 2, 9, 10)},
		{"Observation", "value-quantity=61,8000", obs(3, 5)},
		{"Observation", "value-quantity:missing=true", obs(4, 6, 13)},

		// ---- Observation: common parameters, AND / OR, empty values ----
		{"Observation", "_id=obs-05", obs(5)},
		{"Observation", "_id=obs-01,obs-13", obs(1, 13)},
		{"Observation", "_id=obs-01,obs-02&_id=obs-02,obs-03", obs(2)},
		{"Observation", "_id=obs-14", nil}, // deleted
		{"Observation", "_id=OBS-05", nil}, // case-sensitive
		{"Observation", "_id:not=obs-05", allObsExcept(5)},
		{"Observation", "_lastUpdated=gt" + before, allObsExcept()},
		{"Observation", "_lastUpdated=lt" + before, nil},
		{"Observation", "_lastUpdated=ge" + after, nil},
		{"Observation", "_lastUpdated=lt" + after, allObsExcept()},
		{"Observation", "patient=pat-1&code=" + codeWeight, obs(1, 2)},
		{"Observation", "patient=pat-1&date=2024-02-10", obs(2, 3)},
		{"Observation", "patient=pat-1,pat-2&category=activity&status=final", obs(5, 6)},
		{"Observation", "code=" + codeWeight + "&code=" + loinc + "|", obs(1, 2, 9, 10, 11)},
		{"Observation", "code=" + codeWeight + "&code=" + codeHeartRate, nil},
		{"Observation", "code=&patient=pat-1", obs(1, 2, 3, 4)},
		{"Observation", "code=", allObsExcept()},
		{"Observation", "", allObsExcept()},

		// ---- Patient ----
		{"Patient", "_id=pat-2", pat(2)},
		{"Patient", "_id=pat-1,pat-3", pat(1, 3)},
		{"Patient", "_id:not=pat-1", pat(2, 3, 4, 5, 6)},
		{"Patient", "_lastUpdated=gt" + before, pat(1, 2, 3, 4, 5, 6)},
		{"Patient", "identifier=" + mrnSystem + "|1001", pat(1)},
		{"Patient", "identifier=1001", pat(1, 4, 5)},
		{"Patient", "identifier=|1001", pat(5)},
		{"Patient", "identifier=" + mrnSystem + "|", pat(1, 2, 3, 6)},
		{"Patient", "identifier=http://ssn.example|123-45-6789", pat(2)},
		{"Patient", "identifier:not=" + mrnSystem + "|1001", pat(2, 3, 4, 5, 6)},
		{"Patient", `identifier=urn:oid:1.2|a\|b.c*`, pat(6)}, // escaped | inside a value
		{"Patient", `identifier=a\|b.c*`, pat(6)},
		{"Patient", "identifier=a|b.c*", nil},             // system a, code b.c*
		{"Patient", `identifier=urn:oid:1.2|a\|b.c`, nil}, // tokens match exactly, not by prefix
		{"Patient", "name=jose", pat(1, 3)},               // José, and Joseph by prefix
		{"Patient", "name=Jose", pat(1, 3)},
		{"Patient", "name=JOS%C3%89", pat(1, 3)},
		{"Patient", "name=martinez", pat(1)},
		{"Patient", "name=smith", pat(2, 3)},
		{"Patient", "name=maria", pat(2)},
		{"Patient", "name=joe", pat(3)},
		{"Patient", "name=lee", pat(4)},
		{"Patient", "name=wong", pat(4)},
		{"Patient", "name=ee", nil}, // prefix, not substring
		{"Patient", "name:contains=ee", pat(4)},
		{"Patient", "name:exact=Lee+Wong", pat(4)},
		{"Patient", "name:exact=lee+wong", nil},
		{"Patient", "name=anna,wong", pat(2, 4)},
		{"Patient", "name:missing=true", pat(5)},
		{"Patient", "family=smith", pat(2, 3)},
		{"Patient", "family=mart", pat(1)},
		{"Patient", "family:exact=Smith", pat(2)},
		{"Patient", "family:exact=smith", nil},
		{"Patient", "family:exact=Martinez", nil},
		{"Patient", "family:exact=Mart%C3%ADnez", pat(1)},
		{"Patient", "family:contains=MITH", pat(2, 3)},
		{"Patient", "family:contains=tin", pat(1)},
		{"Patient", "family:contains=son", pat(3)},
		{"Patient", "family:missing=true", pat(5)},
		// Characters that are wildcards or syntax in LIKE patterns and regular expressions.
		{"Patient", "family=st.", pat(6)},
		{"Patient", "family=st", pat(6)},
		{"Patient", "family=s.", nil},
		{"Patient", "family=st%25", nil},
		{"Patient", "family=st_", nil},
		{"Patient", "family:contains=(o'n", pat(6)},
		{"Patient", "family:contains=o_n", nil},
		{"Patient", "family:contains=j.*n", nil},
		{"Patient", "family:contains=%25", nil},
		{"Patient", "family:exact=St.+John+(O'Neil)", pat(6)},
		{"Patient", "family:exact=St.+John+(O'Neil", nil},
		{"Patient", "given=jo", pat(1, 3)},
		{"Patient", "given=anna", pat(2)},
		{"Patient", "given:exact=Jos%C3%A9", pat(1)},
		{"Patient", "given:exact=Jose", nil},
		{"Patient", "given:contains=nn", pat(2)},
		{"Patient", "given=ma", pat(2, 6)}, // Maria, Mary-Kate
		{"Patient", "given:contains=-k", pat(6)},
		{"Patient", "birthdate=1980", pat(1, 3)},
		{"Patient", "birthdate=1980-05", pat(1)},
		{"Patient", "birthdate=1980-05-17", pat(1)},
		{"Patient", "birthdate=1980-11-15", nil}, // a month is not inside a day
		{"Patient", "birthdate=lt1980", pat(2)},
		{"Patient", "birthdate=ge1980-06", pat(3, 5)},
		{"Patient", "birthdate=ne1980", pat(2, 5)}, // ne does not match a missing value
		{"Patient", "birthdate=eb1980-11", pat(1, 2)},
		{"Patient", "birthdate=sa1980", pat(5)},
		{"Patient", "birthdate:missing=true", pat(4, 6)},
		{"Patient", "gender=male", pat(1, 3)},
		{"Patient", "gender=http://hl7.org/fhir/administrative-gender|female", pat(2)},
		{"Patient", "gender=female,other", pat(2, 5)},
		{"Patient", "gender:not=male", pat(2, 4, 5, 6)},
		{"Patient", "gender:missing=true", pat(4, 6)},
		{"Patient", "gender:missing=false", pat(1, 2, 3, 5)},
		{"Patient", "name=jose&gender=male&birthdate=1980-05", pat(1)},

		// ---- Device ----
		{"Device", "_id=dev-3", dev(3)},
		{"Device", "_id=dev-5", nil}, // deleted
		{"Device", "identifier=" + devSystem + "|", dev(1, 2)},
		{"Device", "identifier=F-1", dev(3)},
		{"Device", "identifier:not=F-1", dev(1, 2, 4)},
		{"Device", "type=" + snomed + "|70665002", dev(1)},
		{"Device", "type=19892000", dev(2)},
		{"Device", "type:not=19892000", dev(1, 3, 4)},
		{"Device", "type:missing=true", dev(4)}, // text-only type: no token
		{"Device", "manufacturer=with", dev(1, 2)},
		{"Device", "manufacturer:exact=Withings", dev(1, 2)},
		{"Device", "manufacturer:exact=withings", nil},
		{"Device", "manufacturer:contains=BIT", dev(3)},
		{"Device", "manufacturer:missing=true", dev(4)},
		{"Device", "model=bpm", dev(1)},
		{"Device", "model:exact=Charge+6", dev(3)},
		{"Device", "model:contains=connect", dev(1)},
		{"Device", "model:missing=false", dev(1, 2, 3)},
		{"Device", "status=active", dev(1, 3)},
		{"Device", "status=http://hl7.org/fhir/device-status|inactive", dev(2)},
		{"Device", "status:not=active", dev(2, 4)},
		{"Device", "status:missing=true", dev(4)},
		{"Device", "device-name=my", dev(1)},    // name.value
		{"Device", "device-name=blood", dev(1)}, // type.coding.display
		{"Device", "device-name=bathroom", dev(2)},
		{"Device", "device-name=scale", dev(2)},
		{"Device", "device-name=wrist", dev(3)}, // type.text
		{"Device", "device-name=thermo", dev(4)},
		{"Device", "device-name:contains=cuff", dev(1)},
		{"Device", "device-name:exact=Scale", dev(2)},
		{"Device", "device-name:missing=false", dev(1, 2, 3, 4)},
		{"Device", "manufacturer=withings&status=active", dev(1)},

		// ---- DeviceAssociation ----
		{"DeviceAssociation", "_id=da-2", da(2)},
		{"DeviceAssociation", "patient=pat-1", da(1, 2)},
		{"DeviceAssociation", "patient=Patient/pat-2", da(3)},
		{"DeviceAssociation", "patient:missing=true", da(4)},
		{"DeviceAssociation", "patient:missing=false", da(1, 2, 3, 5)},
		{"DeviceAssociation", "subject=pat-3", da(5)},
		{"DeviceAssociation", "subject:Patient=pat-1", da(1, 2)},
		{"DeviceAssociation", "subject=" + baseURL + "/Patient/pat-2", da(3)},
		{"DeviceAssociation", "subject:missing=true", da(4)},
		{"DeviceAssociation", "device=dev-1", da(1)},
		{"DeviceAssociation", "device=Device/dev-9", da(4)},
		{"DeviceAssociation", "device=dev-1,dev-2", da(1, 2)},
		{"DeviceAssociation", "status=attached", da(1, 3, 5)},
		{"DeviceAssociation", "status=http://hl7.org/fhir/deviceassociation-status|explanted", da(2)},
		{"DeviceAssociation", "status:not=attached", da(2, 4)},
		{"DeviceAssociation", "identifier=https://ohx.test/da|1", da(1)},
		{"DeviceAssociation", "identifier:missing=true", da(3, 4, 5)},
		{"DeviceAssociation", "patient=pat-1&status=attached", da(1)},

		// ---- Chains: a reference parameter followed to the target's identifier ----
		{"Observation", "patient.identifier=" + mrnSystem + "|1001", obs(1, 2, 3, 4)},
		{"Observation", "subject:Patient.identifier=" + mrnSystem + "|1002", obs(5, 6, 11)},
		{"Observation", "patient.identifier=http://ssn.example|123-45-6789", obs(5, 6, 11)}, // any identifier, not only the first
		{"Observation", "patient.identifier=1001", obs(1, 2, 3, 4)},                         // pat-1, pat-4, pat-5: only pat-1 has observations
		{"Observation", "patient.identifier=|1001", nil},                                    // pat-5 (no system) has none
		{"Observation", "patient.identifier=" + mrnSystem + "|", obs(1, 2, 3, 4, 5, 6, 9, 10, 11)},
		{"Observation", "patient.identifier=" + mrnSystem + "|1001," + mrnSystem + "|1003", obs(1, 2, 3, 4, 9, 10)},
		{"Observation", "patient.identifier=" + mrnSystem + "|9999", nil}, // no such patient: nothing, not everything
		{"Observation", "patient.identifier=F-1", nil},                    // dev-3's identifier: a device is no patient
		{"Observation", "subject.identifier=F-1", obs(7)},                 // untyped: Patients and Devices
		{"Observation", "subject.identifier=1002", obs(5, 6, 11)},
		{"Observation", "subject:Device.identifier=F-1", obs(7)},
		{"Observation", "subject:Device.identifier=" + devSystem + "|W-1", nil},
		{"Observation", "device.identifier=" + devSystem + "|W-2", obs(1, 2)},
		{"Observation", "device.identifier=" + devSystem + "|", obs(1, 2, 3, 4)}, // not obs-11: dev-5 is deleted
		{"Observation", "device.identifier=W-5", nil},                            // the deleted dev-5's identifier
		{"Observation", "device.identifier=W-1,F-1", obs(3, 4, 5, 6, 7)},
		{"Observation", "patient.identifier=" + mrnSystem + "|1001&code=" + codeWeight, obs(1, 2)},
		{"Observation", "patient.identifier=" + mrnSystem + "|1001&device.identifier=W-1", obs(3, 4)},
		{"Observation", "patient.identifier=" + mrnSystem + "|1001&patient.identifier=" + mrnSystem + "|1002", nil},
		{"Observation", "patient.identifier=" + mrnSystem + "|1001&patient=pat-1", obs(1, 2, 3, 4)},
		{"Observation", "patient.identifier=" + mrnSystem + "|1001&patient=pat-2", nil},
		{"DeviceAssociation", "patient.identifier=" + mrnSystem + "|1001", da(1, 2)},
		{"DeviceAssociation", "patient.identifier=" + mrnSystem + "|1003", da(5)},
		{"DeviceAssociation", "subject:Patient.identifier=1002", da(3)},
		{"DeviceAssociation", "device.identifier=" + devSystem + "|W-1", da(1)},
		{"DeviceAssociation", "device.identifier=" + devSystem + "|", da(1, 2)}, // not da-5: dev-5 is deleted
		{"DeviceAssociation", "device.identifier=W-5", nil},
		{"DeviceAssociation", "device.identifier=X-1", nil}, // dev-4 has no association
		{"DeviceAssociation", "patient.identifier=" + mrnSystem + "|1001&device.identifier=W-2", da(2)},
		{"DeviceAssociation", "patient.identifier=" + mrnSystem + "|1001&status=attached", da(1)},
	}
}

// knownIssues are search cases whose expectation follows the FHIR specification where
// fhir/search does not yet. While search.Matches disagrees with such a case, the case is skipped
// (no store can pass it: stores follow the parsed values and extracted index); once fhir/search
// is fixed, the oracle agrees and the case runs.
var knownIssues = map[string]string{
	// parseNumber gives 1e2 the range [50, 150) (half of 10^2); the specification's table
	// (https://hl7.org/fhir/R5/search.html#number) says [95, 105).
	"Observation?value-quantity=1e2": "parse.go: 1e2 must cover [95, 105)",
	// Extract indexes token(col, fixedSystem, "") for an absent code (gender, Device.status), so
	// an absent value looks present.
	"Patient?gender:missing=true":  "index.go: absent Patient.gender is indexed as a token with an empty code",
	"Patient?gender:missing=false": "index.go: absent Patient.gender is indexed as a token with an empty code",
	"Device?status:missing=true":   "index.go: absent Device.status is indexed as a token with an empty code",
}

func testSearch(t *testing.T, open opener) {
	s := open(t)
	f := loadFixture(t, s)
	for _, tc := range searchCases(f) {
		t.Run(tc.typ+"?"+tc.query, func(t *testing.T) {
			q := parse(t, tc.typ, tc.query)
			// Oracle: the suite's expectation must agree with the normative matcher.
			if diff := cmp.Diff(tc.want, nonEmpty(f.oracle(q))); diff != "" {
				if issue, ok := knownIssues[tc.typ+"?"+tc.query]; ok {
					t.Skipf("known fhir/search issue, skipped until fixed: %s\n(-want +Matches):\n%s", issue, diff)
				}
				t.Errorf("suite expectation disagrees with search.Matches (-want +Matches):\n%s", diff)
			}
			res := mustSearch(t, s, q)
			if diff := cmp.Diff(tc.want, nonEmpty(sortedIDs(res.Matches))); diff != "" {
				t.Errorf("Search %s?%s (-want +got):\n%s", tc.typ, tc.query, diff)
			}
			if len(res.Included) != 0 {
				t.Errorf("Search %s?%s: %d included resources, want none", tc.typ, tc.query, len(res.Included))
			}
			if res.Next != nil {
				t.Errorf("Search %s?%s: Next = %+v, want nil (all matches fit the default page)", tc.typ, tc.query, res.Next)
			}
		})
	}
}
