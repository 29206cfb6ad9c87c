package fitbit

import (
	"github.com/openhealthexchange/ohx/fhir"
)

// endpoint is one Fitbit date-range endpoint (or the ECG listing) and the kinds it serves.
type endpoint struct {
	name    string // metrics and cache name
	kinds   []fhir.SampleKind
	maxDays int // the documented maximum range of one request
	path    func(start, end string) string
	decode  func(a answer, fc *fetchCtx) ([]fhir.Sample, error)
	ecg     bool // the ECG listing: paged by pagination.next, not by dates
	// intraday marks endpoints that need Fitbit's intraday approval (Config.IntradayHRV).
	intraday bool
}

// series is a daily activity time series
// (https://dev.fitbit.com/build/reference/web-api/activity-timeseries/get-activity-timeseries-by-date-range/:
// steps, distance, floors and calories, at most 1095 days per request).
func series(resource string, kind fhir.SampleKind, metric, unit string) *endpoint {
	return &endpoint{
		name:    "activities/" + resource,
		kinds:   []fhir.SampleKind{kind},
		maxDays: 1095,
		path: func(s, e string) string {
			return "/1/user/-/activities/" + resource + "/date/" + s + "/" + e + ".json"
		},
		decode: func(a answer, fc *fetchCtx) ([]fhir.Sample, error) {
			return decodeSeries(a, fc, "activities-"+resource, kind, metric, unit)
		},
	}
}

func dateRange(prefix string) func(s, e string) string {
	return func(s, e string) string { return prefix + s + "/" + e + ".json" }
}

// endpoints in the order Fetch reads them.
var endpoints = []*endpoint{
	// Unit "": the count per day is implied by the kind (fhir.MapSample codes steps as a count).
	series("steps", fhir.KindSteps, "steps", ""),
	// Metric distance is in kilometres (https://dev.fitbit.com/build/reference/web-api/developer-guide/application-design/#Unit-Systems).
	series("distance", fhir.KindDistance, "distance", "km"),
	// calories: the day's total energy burned, BMR included (activityCalories would leave the BMR
	// out), as KindCalories (LOINC 41979-6 "Calories burned in 24 hour") means and as the Google
	// Health API's total-calories gives it
	// (https://dev.fitbit.com/build/reference/web-api/activity-timeseries/).
	series("calories", fhir.KindCalories, "calories", "kcal"),
	series("floors", fhir.KindElevation, "floors", "{floors}"),
	{
		// https://dev.fitbit.com/build/reference/web-api/heartrate-timeseries/get-heartrate-timeseries-by-date-range/ (1 year)
		name: "activities/heart", kinds: []fhir.SampleKind{fhir.KindRestingHeartRate}, maxDays: 365,
		path: dateRange("/1/user/-/activities/heart/date/"), decode: decodeHeart,
	},
	{
		// https://dev.fitbit.com/build/reference/web-api/body/get-weight-log/ (31 days)
		name: "body/weight", kinds: []fhir.SampleKind{fhir.KindWeight, fhir.KindBMI}, maxDays: 31,
		path: dateRange("/1/user/-/body/log/weight/date/"), decode: decodeWeight,
	},
	{
		// https://dev.fitbit.com/build/reference/web-api/body/get-bodyfat-log/ (31 days)
		name: "body/fat", kinds: []fhir.SampleKind{fhir.KindFatRatio}, maxDays: 31,
		path: dateRange("/1/user/-/body/log/fat/date/"), decode: decodeFat,
	},
	{
		// https://dev.fitbit.com/build/reference/web-api/sleep/get-sleep-log-by-date-range/ (100 days)
		name: "sleep", kinds: []fhir.SampleKind{fhir.KindSleep}, maxDays: 100,
		path: dateRange("/1.2/user/-/sleep/date/"), decode: decodeSleep,
	},
	{
		// https://dev.fitbit.com/build/reference/web-api/spo2/get-spo2-summary-by-interval/
		// ⚠ the page states no maximum range here; 30 days, like the other sleep-derived summaries.
		name: "spo2", kinds: []fhir.SampleKind{fhir.KindSpO2}, maxDays: 30,
		path: dateRange("/1/user/-/spo2/date/"), decode: decodeSpO2,
	},
	{
		// https://dev.fitbit.com/build/reference/web-api/heartrate-variability/get-hrv-summary-by-interval/ (30 days)
		name: "hrv", kinds: []fhir.SampleKind{fhir.KindHRVRMSSD}, maxDays: 30,
		path: dateRange("/1/user/-/hrv/date/"), decode: decodeHRV,
	},
	{
		// https://dev.fitbit.com/build/reference/web-api/intraday/get-hrv-intraday-by-interval/ (30 days)
		name: "hrv/intraday", kinds: []fhir.SampleKind{fhir.KindHRVRMSSD}, maxDays: 30, intraday: true,
		path: func(s, e string) string { return "/1/user/-/hrv/date/" + s + "/" + e + "/all.json" }, decode: decodeHRVIntraday,
	},
	{
		// https://dev.fitbit.com/build/reference/web-api/breathing-rate/get-br-summary-by-interval/ (30 days)
		name: "br", kinds: []fhir.SampleKind{fhir.KindRespiratoryRate}, maxDays: 30,
		path: dateRange("/1/user/-/br/date/"), decode: decodeBreathing,
	},
	{
		// https://dev.fitbit.com/build/reference/web-api/temperature/get-temperature-skin-summary-by-interval/ (30 days)
		name: "temp/skin", kinds: []fhir.SampleKind{fhir.KindSkinTemperatureVariation}, maxDays: 30,
		path: dateRange("/1/user/-/temp/skin/date/"), decode: decodeSkinTemp,
	},
	{
		// https://dev.fitbit.com/build/reference/web-api/electrocardiogram/get-ecg-log-list/
		name: "ecg/list", kinds: []fhir.SampleKind{fhir.KindECG}, ecg: true,
	},
}

// plan lists the endpoints the wanted kinds need, in reading order.
func (c *Client) plan(wanted map[fhir.SampleKind]bool) []*endpoint {
	var out []*endpoint
	for _, ep := range endpoints {
		if ep.intraday && !c.cfg.IntradayHRV {
			continue
		}
		for _, k := range ep.kinds {
			if wanted[k] {
				out = append(out, ep)
				break
			}
		}
	}
	return out
}
