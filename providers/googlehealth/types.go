package googlehealth

import (
	"slices"
	"strings"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/providers"
)

// recordType is how a data type's points are shaped and filtered
// (https://developers.google.com/health/data-types, https://developers.google.com/health/filters).
type recordType int

const (
	recSample recordType = iota // sampleTime {physicalTime, utcOffset, civilTime}
	recDaily                    // date {year, month, day} in the user's zone
	recSleep                    // session; filtered by interval.end_time
	recECG                      // session; filtered by interval.start_time (>= only)
	recRollup                   // read through dailyRollUp, one value per civil day
)

// Scope areas (https://developers.google.com/health/reference/rest/v4/users.dataTypes.dataPoints/list,
// "Authorization scopes"); the scope is scopePrefix + area + ".readonly".
const (
	scopePrefix       = "https://www.googleapis.com/auth/googlehealth."
	areaActivity      = "activity_and_fitness"
	areaHealthMetrics = "health_metrics_and_measurements"
	areaSleep         = "sleep"
	areaECG           = "ecg"
	areaSettings      = "settings"
)

// dataType is one Google Health data type the adapter reads.
type dataType struct {
	name   string // kebab-case, as in paths and subscriber configs ("daily-resting-heart-rate")
	kind   fhir.SampleKind
	rec    recordType
	area   string // the scope area that grants it
	maxDay int    // dailyRollUp: the longest range in days (14 for total-calories, else 90)
	// webhook says the data type is listed as webhook-capable
	// (https://developers.google.com/health/webhooks, "Supported data types").
	webhook bool
}

// filterName is the data type in filters: snake_case ("daily_resting_heart_rate"); a hyphen
// there is a 400 INVALID_DATA_POINT_FILTER (https://developers.google.com/health/filters).
func (d dataType) filterName() string { return strings.ReplaceAll(d.name, "-", "_") }

// dataTypes is the adapter's table, in the order Fetch reads them. The statistic of each value
// is named in the Google Health API reference
// (https://developers.google.com/health/reference/rest/v4/users.dataTypes.dataPoints):
// daily-heart-rate-variability's averageHeartRateVariabilityMilliseconds is an RMSSD;
// daily-sleep-temperature-derivations gives nightly and baseline skin temperature, whose
// difference is the relative variation; there is no BMI data type (nothing is derived).
// The scope area of each type is our reading of the data-types page ⚠ (not every type's scope
// could be confirmed against the reference).
var dataTypes = []dataType{
	{name: "weight", kind: fhir.KindWeight, rec: recSample, area: areaHealthMetrics, webhook: true},
	{name: "body-fat", kind: fhir.KindFatRatio, rec: recSample, area: areaHealthMetrics, webhook: true},
	{name: "heart-rate", kind: fhir.KindHeartRate, rec: recSample, area: areaHealthMetrics, webhook: true},
	{name: "daily-resting-heart-rate", kind: fhir.KindRestingHeartRate, rec: recDaily, area: areaHealthMetrics, webhook: true},
	{name: "daily-heart-rate-variability", kind: fhir.KindHRVRMSSD, rec: recDaily, area: areaHealthMetrics, webhook: true},
	{name: "daily-oxygen-saturation", kind: fhir.KindSpO2, rec: recDaily, area: areaHealthMetrics, webhook: true},
	{name: "daily-respiratory-rate", kind: fhir.KindRespiratoryRate, rec: recDaily, area: areaHealthMetrics, webhook: true},
	{name: "daily-sleep-temperature-derivations", kind: fhir.KindSkinTemperatureVariation, rec: recDaily, area: areaHealthMetrics, webhook: true},
	{name: "steps", kind: fhir.KindSteps, rec: recRollup, area: areaActivity, maxDay: 90, webhook: true},
	{name: "distance", kind: fhir.KindDistance, rec: recRollup, area: areaActivity, maxDay: 90, webhook: true},
	{name: "floors", kind: fhir.KindElevation, rec: recRollup, area: areaActivity, maxDay: 90, webhook: true},
	// total-calories: the day's total energy (basal included), LOINC 41979-6 "Calories burned
	// in 24 hour"; the dailyRollUp range is at most 14 days for it.
	{name: "total-calories", kind: fhir.KindCalories, rec: recRollup, area: areaActivity, maxDay: 14, webhook: true},
	{name: "sleep", kind: fhir.KindSleep, rec: recSleep, area: areaSleep, webhook: true},
	{name: "electrocardiogram", kind: fhir.KindECG, rec: recECG, area: areaECG},
}

// typeByName finds a data type by its kebab-case name.
func typeByName(name string) (dataType, bool) {
	for _, d := range dataTypes {
		if d.name == name {
			return d, true
		}
	}
	return dataType{}, false
}

// parentKind folds component kinds into the kind whose samples carry them.
var parentKind = func() map[fhir.SampleKind]fhir.SampleKind {
	m := map[fhir.SampleKind]fhir.SampleKind{
		fhir.KindSleepLight:        fhir.KindSleep,
		fhir.KindSleepDeep:         fhir.KindSleep,
		fhir.KindSleepREM:          fhir.KindSleep,
		fhir.KindSleepAwake:        fhir.KindSleep,
		fhir.KindSleepLatency:      fhir.KindSleep,
		fhir.KindSleepTimeInBed:    fhir.KindSleep,
		fhir.KindHRVRMSSDDeepSleep: fhir.KindHRVRMSSD,
	}
	for _, d := range dataTypes {
		m[d.kind] = d.kind
	}
	return m
}()

// SupportedKinds lists the top-level kinds the adapter reads, sorted.
func SupportedKinds() []fhir.SampleKind { return providers.TopLevelKinds(parentKind) }

// DataTypes returns the kebab-case Google Health data types that carry kinds (component kinds
// count for their parent; unknown kinds are ignored), in the adapter's order without
// duplicates: what a subscriber's subscriberConfigs.dataTypes needs for exactly those kinds
// (https://developers.google.com/health/reference/rest/v4/projects.subscribers). Empty kinds
// give every data type the adapter reads.
func DataTypes(kinds []fhir.SampleKind) []string {
	want := map[fhir.SampleKind]bool{}
	for _, k := range kinds {
		if p, ok := parentKind[k]; ok {
			want[p] = true
		}
	}
	var out []string
	for _, d := range dataTypes {
		if len(kinds) == 0 || want[d.kind] {
			out = append(out, d.name)
		}
	}
	return out
}

// scopes are the read-only scopes the enabled kinds need, plus settings.readonly (paired
// devices and the user's time zone), sorted.
func (c *Client) scopes() []string {
	areas := map[string]bool{areaSettings: true}
	for _, d := range dataTypes {
		if c.kinds.Enabled(d.kind) {
			areas[d.area] = true
		}
	}
	out := make([]string, 0, len(areas))
	for a := range areas {
		out = append(out, scopePrefix+a+".readonly")
	}
	slices.Sort(out)
	return out
}
