package fitbit

import (
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/openhealthexchange/ohx/fhir"
)

// sleepLog is one entry of GET /1.2/user/-/sleep/date/{start}/{end}.json
// (https://dev.fitbit.com/build/reference/web-api/sleep/get-sleep-log-by-date-range/).
type sleepLog struct {
	LogID               json.Number `json:"logId"`
	DateOfSleep         string      `json:"dateOfSleep"`
	StartTime           string      `json:"startTime"`
	EndTime             string      `json:"endTime"`
	MinutesAsleep       json.Number `json:"minutesAsleep"`
	MinutesToFallAsleep json.Number `json:"minutesToFallAsleep"`
	Efficiency          json.Number `json:"efficiency"`
	TimeInBed           json.Number `json:"timeInBed"`
	Type                string      `json:"type"`    // "stages" or "classic"
	LogType             string      `json:"logType"` // "auto_detected" or "manual"
	Levels              *struct {
		Summary map[string]struct {
			Minutes json.Number `json:"minutes"`
		} `json:"summary"`
	} `json:"levels"`
}

// stageKinds maps the stages summary of a "stages" log to component kinds, in output order.
var stageKinds = []struct {
	level string
	kind  fhir.SampleKind
}{
	{"deep", fhir.KindSleepDeep},
	{"light", fhir.KindSleepLight},
	{"rem", fhir.KindSleepREM},
	{"wake", fhir.KindSleepAwake},
}

// decodeSleep decodes sleep logs: the session [startTime, endTime] in the user's zone with
// minutesAsleep as its value; a "stages" log adds the stage durations, efficiency, time in bed and
// latency (https://dev.fitbit.com/build/reference/web-api/sleep/get-sleep-log-by-date-range/); a "classic" log (asleep/restless/awake, no stages) only the total.
// A manual log is patient-reported; an auto-detected one is attributed to the single tracker.
func decodeSleep(a answer, fc *fetchCtx) ([]fhir.Sample, error) {
	var body struct {
		Sleep *[]sleepLog `json:"sleep"`
	}
	if err := decodeValue(a.body, &body); err != nil {
		return nil, fmt.Errorf("unexpected sleep answer: %w", err)
	}
	if body.Sleep == nil {
		return nil, fmt.Errorf(`unexpected sleep answer: no "sleep"`)
	}
	var out []fhir.Sample
	for _, l := range *body.Sleep {
		if l.LogID.String() == "" || !validDate(l.DateOfSleep) {
			return nil, fmt.Errorf("unexpected sleep answer: log without logId or dateOfSleep")
		}
		if !fc.inRange(l.DateOfSleep) {
			continue
		}
		start, err := localTime(l.StartTime, fc.loc)
		if err != nil {
			return nil, fmt.Errorf("sleep log %s: %w", l.LogID, err)
		}
		end, err := localTime(l.EndTime, fc.loc)
		if err != nil {
			return nil, fmt.Errorf("sleep log %s: %w", l.LogID, err)
		}
		asleep, ok, err := number(l.MinutesAsleep)
		if err != nil || !ok {
			return nil, fmt.Errorf("sleep log %s without minutesAsleep", l.LogID)
		}
		s := fhir.Sample{
			Provider: Name, UserID: fc.user, Kind: fhir.KindSleep, System: systemSleep,
			RecordID: fc.user + "/" + l.LogID.String(), Value: asleep, Unit: "min", Start: start, End: end,
		}
		if l.LogType == "manual" {
			s.Manual = true
		} else {
			s.DeviceID = fc.devs.tracker()
		}
		if l.Type == "stages" && l.Levels != nil {
			for _, st := range stageKinds {
				if v, ok := l.Levels.Summary[st.level]; ok {
					if d, ok, err := number(v.Minutes); err == nil && ok {
						s.Components = append(s.Components, fhir.SampleComponent{Kind: st.kind, Value: d, Unit: "min"})
					}
				}
			}
			for _, x := range []struct {
				n    json.Number
				kind fhir.SampleKind
				unit string
			}{
				{l.Efficiency, fhir.KindSleepEfficiency, "%"},
				{l.TimeInBed, fhir.KindSleepTimeInBed, "min"},
				{l.MinutesToFallAsleep, fhir.KindSleepLatency, "min"},
			} {
				if d, ok, err := number(x.n); err == nil && ok {
					s.Components = append(s.Components, fhir.SampleComponent{Kind: x.kind, Value: d, Unit: x.unit})
				}
			}
		}
		out = append(out, s)
	}
	return out, nil
}

// itoa formats an int for identifiers and parameters.
func itoa(n int) string { return strconv.Itoa(n) }
