package googlehealth

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/openhealthexchange/ohx/fhir"
)

// rollupRequest is DailyRollUpDataPointsRequest
// (https://developers.google.com/health/reference/rest/v4/users.dataTypes.dataPoints/dailyRollUp):
// a closed-open civil range aligned to whole days, one-day windows.
type rollupRequest struct {
	Range struct {
		Start civilDateTime `json:"start"`
		End   civilDateTime `json:"end"`
	} `json:"range"`
	WindowSizeDays int    `json:"windowSizeDays"`
	PageSize       int    `json:"pageSize,omitempty"`
	PageToken      string `json:"pageToken,omitempty"`
}

// rollupAnswer is DailyRollUpDataPointsResponse. nextPageToken is not in the response schema of
// every reference revision while the request has pageToken: it is honoured when present.
type rollupAnswer struct {
	RollupDataPoints []rollupPoint `json:"rollupDataPoints"`
	NextPageToken    string        `json:"nextPageToken"`
}

// rollupPoint is DailyRollupDataPoint: the civil window and the value union of the data type.
type rollupPoint struct {
	CivilStartTime civilDateTime `json:"civilStartTime"`
	CivilEndTime   civilDateTime `json:"civilEndTime"`
	Steps          *struct {
		CountSum flexNumber `json:"countSum"`
	} `json:"steps"`
	Distance *struct {
		MillimetersSum flexNumber `json:"millimetersSum"`
	} `json:"distance"`
	Floors *struct {
		CountSum flexNumber `json:"countSum"`
	} `json:"floors"`
	TotalCalories *struct {
		KcalSum flexNumber `json:"kcalSum"`
	} `json:"totalCalories"`
}

func newRollupRequest(from, to civilDate, pageToken string) rollupRequest {
	var r rollupRequest
	r.Range.Start.Date, r.Range.End.Date = from, to
	r.WindowSizeDays = 1
	r.PageToken = pageToken
	return r
}

// rollupSamples maps the daily values of one rollup answer. System googlehealth/daily, record id
// {healthUserId}/{date}/{data type}: the day's value is updated in place while the day fills up.
// A window without the data type's value (no data that day) gives no sample; one more than a
// day long, or with a malformed date, is an error.
func (m pointMapper) rollupSamples(body []byte) ([]fhir.Sample, string, error) {
	var a rollupAnswer
	if err := json.Unmarshal(body, &a); err != nil {
		return nil, "", fmt.Errorf("dailyRollUp answer: %w", err)
	}
	var out []fhir.Sample
	for _, p := range a.RollupDataPoints {
		d := p.CivilStartTime.Date
		if !d.valid() {
			return nil, "", fmt.Errorf("%s rollup without a valid civil start date", m.dt.name)
		}
		if e := p.CivilEndTime.Date; e.valid() {
			next := time.Date(d.Year, time.Month(d.Month), d.Day+1, 12, 0, 0, 0, time.UTC)
			if dateOf(next) != e {
				return nil, "", fmt.Errorf("%s rollup window is not one civil day", m.dt.name)
			}
		}
		s := fhir.Sample{Provider: Name, UserID: m.user, Kind: m.dt.kind,
			System: Name + "/daily", RecordID: m.user + "/" + d.String() + "/" + m.dt.name}
		var ok bool
		switch m.dt.name {
		case "steps":
			if p.Steps != nil {
				s.Value, ok = p.Steps.CountSum.decimal()
				s.Unit = "/d"
			}
		case "distance":
			if p.Distance != nil {
				s.Value, ok = p.Distance.MillimetersSum.shifted(-3) // mm → m, exact
				s.Unit = "m"
			}
		case "floors":
			if p.Floors != nil {
				s.Value, ok = p.Floors.CountSum.decimal()
				s.Unit = "{floors}"
			}
		case "total-calories":
			if p.TotalCalories != nil {
				s.Value, ok = p.TotalCalories.KcalSum.decimal()
				s.Unit = "kcal"
			}
		default:
			return nil, "", fmt.Errorf("data type %s is not rolled up", m.dt.name)
		}
		if !ok {
			continue
		}
		if err := m.day(&s, d); err != nil {
			return nil, "", err
		}
		out = append(out, s)
	}
	return out, a.NextPageToken, nil
}
