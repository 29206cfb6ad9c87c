package googlehealthsim

import (
	"strings"

	"github.com/openhealthexchange/ohx/fhir"
)

// record is how a data type's points are shaped and filtered
// (https://developers.google.com/health/data-types, https://developers.google.com/health/filters).
type record int

const (
	recSample  record = iota // sampleTime; filter on sample_time.physical_time
	recDaily                 // date; filter on date
	recSession               // interval; filter on interval.start_time / interval.end_time
	recECG                   // interval; only a lower bound on interval.start_time
	recRollup                // read through dailyRollUp
)

// dataType is one Google Health data type the simulator knows.
type dataType struct {
	name string // kebab-case, as in paths
	kind fhir.SampleKind
	rec  record
	area string
	// maxDays is the longest dailyRollUp range (14 days for total-calories, else 90,
	// https://developers.google.com/health/reference/rest/v4/users.dataTypes.dataPoints/dailyRollUp).
	maxDays int
	// maxPage is the largest pageSize of dataPoints.list (25 for sleep, 10000 for the others,
	// https://developers.google.com/health/reference/rest/v4/users.dataTypes.dataPoints/list).
	maxPage int
	// served says the simulator has data of this type (the others answer empty lists).
	served bool
}

// filterName is the data type in filters: snake_case (a hyphen there is invalid).
func (d dataType) filterName() string { return strings.ReplaceAll(d.name, "-", "_") }

// dataTypes are the data types the adapter reads, in its order.
var dataTypes = []dataType{
	{name: "weight", kind: fhir.KindWeight, rec: recSample, area: areaHealthMetrics, maxPage: 10000, served: true},
	{name: "body-fat", kind: fhir.KindFatRatio, rec: recSample, area: areaHealthMetrics, maxPage: 10000, served: true},
	{name: "heart-rate", kind: fhir.KindHeartRate, rec: recSample, area: areaHealthMetrics, maxPage: 10000, served: true},
	{name: "daily-resting-heart-rate", kind: fhir.KindRestingHeartRate, rec: recDaily, area: areaHealthMetrics, maxPage: 10000, served: true},
	{name: "daily-heart-rate-variability", kind: fhir.KindHRVRMSSD, rec: recDaily, area: areaHealthMetrics, maxPage: 10000},
	{name: "daily-oxygen-saturation", kind: fhir.KindSpO2, rec: recDaily, area: areaHealthMetrics, maxPage: 10000, served: true},
	{name: "daily-respiratory-rate", kind: fhir.KindRespiratoryRate, rec: recDaily, area: areaHealthMetrics, maxPage: 10000},
	{name: "daily-sleep-temperature-derivations", kind: fhir.KindSkinTemperatureVariation, rec: recDaily, area: areaHealthMetrics, maxPage: 10000},
	{name: "steps", kind: fhir.KindSteps, rec: recRollup, area: areaActivity, maxDays: 90, maxPage: 10000, served: true},
	{name: "distance", kind: fhir.KindDistance, rec: recRollup, area: areaActivity, maxDays: 90, maxPage: 10000, served: true},
	{name: "floors", kind: fhir.KindElevation, rec: recRollup, area: areaActivity, maxDays: 90, maxPage: 10000, served: true},
	{name: "total-calories", kind: fhir.KindCalories, rec: recRollup, area: areaActivity, maxDays: 14, maxPage: 10000, served: true},
	{name: "sleep", kind: fhir.KindSleep, rec: recSession, area: areaSleep, maxPage: 25, served: true},
	{name: "electrocardiogram", kind: fhir.KindECG, rec: recECG, area: areaECG, maxPage: 10000, served: true},
}

func typeByName(name string) (dataType, bool) {
	for _, d := range dataTypes {
		if d.name == name {
			return d, true
		}
	}
	return dataType{}, false
}

// servedKindList is OHX_GOOGLEHEALTH_KINDS for what the simulator serves, comma-separated.
func servedKindList() string {
	var ks []string
	for _, d := range dataTypes {
		if d.served {
			ks = append(ks, string(d.kind))
		}
	}
	return strings.Join(ks, ",")
}
