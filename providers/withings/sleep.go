package withings

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/openhealthexchange/ohx/fhir"
)

// getsummaryBody is the body of /v2/sleep action=getsummary.
type getsummaryBody struct {
	Series []sleepSummary `json:"series"`
	More   flexBool       `json:"more"`
	Offset flexInt        `json:"offset"`
}

type sleepSummary struct {
	ID           flexString `json:"id"`
	Timezone     string     `json:"timezone"`
	StartDate    flexInt    `json:"startdate"`
	EndDate      flexInt    `json:"enddate"`
	DeviceID     flexString `json:"deviceid"`
	HashDeviceID flexString `json:"hash_deviceid"`
	Data         sleepData  `json:"data"`
}

// sleepData holds the summary fields ohx reads; durations are seconds, rates per minute.
type sleepData struct {
	TotalTimeInBed json.Number `json:"total_timeinbed"`
	TotalSleepTime json.Number `json:"total_sleep_time"` // light + deep + REM
	AsleepDuration json.Number `json:"asleepduration"`   // external sources (no stages)
	Light          json.Number `json:"lightsleepduration"`
	Deep           json.Number `json:"deepsleepduration"`
	REM            json.Number `json:"remsleepduration"`
	Awake          json.Number `json:"wakeupduration"`
	Latency        json.Number `json:"sleep_latency"`
	Efficiency     json.Number `json:"sleep_efficiency"` // a ratio 0–1
	WakeupCount    json.Number `json:"wakeupcount"`
	Score          json.Number `json:"sleep_score"`
	RRAverage      json.Number `json:"rr_average"` // respiration rate, breaths/min — not R-R intervals
	HRAverage      json.Number `json:"hr_average"`
}

// sleepDataFields is the data_fields parameter of getsummary for the wanted kinds.
func sleepDataFields(wanted map[fhir.SampleKind]bool) string {
	var fs []string
	if wanted[fhir.KindSleep] {
		fs = append(fs, "total_timeinbed", "total_sleep_time", "asleepduration", "lightsleepduration",
			"deepsleepduration", "remsleepduration", "wakeupduration", "sleep_latency", "sleep_efficiency",
			"wakeupcount", "sleep_score")
	}
	if wanted[fhir.KindRespiratoryRate] {
		fs = append(fs, "rr_average")
	}
	if wanted[fhir.KindHeartRate] {
		fs = append(fs, "hr_average")
	}
	return strings.Join(fs, ",")
}

// sleepSamples maps sleep summaries. The session sample has the total sleep time in minutes
// (UCUM "min", LOINC 93832-4's unit; exact, see minutes) as its value — total_sleep_time, or
// asleepduration for external sources without stages — and as components the stage durations
// (light, deep, REM, awake; min), time in bed and latency (min), efficiency (the vendor's 0–1 ratio,
// unit "1", which the mapper writes as %), wake-up count and score (whole numbers, no unit); its
// period is [startdate, enddate] in the summary's zone.
// rr_average becomes a respiratory-rate sample (/min) and, when heart rate is wanted, hr_average a
// heart-rate sample, both over the same period. Record ids: "{userid}/{id}/{metric}" with metric
// duration, rr-average, hr-average (the session start when a summary has no id).
func (c *Client) sleepSamples(user string, b *getsummaryBody, wanted map[fhir.SampleKind]bool) []fhir.Sample {
	var out []fhir.Sample
	for _, s := range b.Series {
		key := string(s.ID)
		if key == "" {
			key = fmt.Sprint(s.StartDate.Int())
		}
		base := fhir.Sample{
			Provider: Name,
			UserID:   user,
			System:   "withings/sleep",
			Start:    c.instant(s.StartDate.Int(), s.Timezone),
			End:      c.instant(s.EndDate.Int(), s.Timezone),
			DeviceID: string(s.DeviceID),
		}
		if base.DeviceID == "" {
			base.DeviceID = string(s.HashDeviceID)
		}
		d := s.Data
		if wanted[fhir.KindSleep] {
			var comps []fhir.SampleComponent
			for _, st := range []struct {
				kind fhir.SampleKind
				secs json.Number
			}{
				{fhir.KindSleepLight, d.Light},
				{fhir.KindSleepDeep, d.Deep},
				{fhir.KindSleepREM, d.REM},
				{fhir.KindSleepAwake, d.Awake},
				{fhir.KindSleepTimeInBed, d.TotalTimeInBed},
				{fhir.KindSleepLatency, d.Latency},
			} {
				if v, ok := minutes(st.secs); ok {
					comps = append(comps, fhir.SampleComponent{Kind: st.kind, Value: v, Unit: "min"})
				}
			}
			if v, ok := number(d.Efficiency); ok {
				comps = append(comps, fhir.SampleComponent{Kind: fhir.KindSleepEfficiency, Value: v, Unit: "1"})
			}
			for _, st := range []struct {
				kind fhir.SampleKind
				n    json.Number
			}{
				{fhir.KindSleepWakeupCount, d.WakeupCount},
				{fhir.KindSleepScore, d.Score},
			} {
				if v, ok := number(st.n); ok {
					comps = append(comps, fhir.SampleComponent{Kind: st.kind, Value: v})
				}
			}
			total, ok := minutes(d.TotalSleepTime)
			if !ok {
				total, ok = minutes(d.AsleepDuration)
			}
			if ok {
				ss := base
				ss.Kind = fhir.KindSleep
				ss.RecordID = fmt.Sprintf("%s/%s/duration", user, key)
				ss.Value = total
				ss.Unit = "min"
				ss.Components = comps
				out = append(out, ss)
			}
		}
		if v, ok := number(d.RRAverage); ok && wanted[fhir.KindRespiratoryRate] {
			ss := base
			ss.Kind = fhir.KindRespiratoryRate
			ss.RecordID = fmt.Sprintf("%s/%s/rr-average", user, key)
			ss.Value = v
			ss.Unit = "/min"
			out = append(out, ss)
		}
		if v, ok := number(d.HRAverage); ok && wanted[fhir.KindHeartRate] {
			ss := base
			ss.Kind = fhir.KindHeartRate
			ss.RecordID = fmt.Sprintf("%s/%s/hr-average", user, key)
			ss.Value = v
			ss.Unit = "/min"
			out = append(out, ss)
		}
	}
	return out
}
