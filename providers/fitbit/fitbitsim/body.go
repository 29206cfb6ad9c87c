package fitbitsim

import (
	"net/http"
	"time"

	"github.com/openhealthexchange/ohx/providers/sim"
)

// scaleSource is the weight log's source of an entry made by a Fitbit Aria scale
// (https://dev.fitbit.com/build/reference/web-api/body/get-weight-log/).
const scaleSource = "Aria"

// weightLog is an entry of the weight log; fat is present because the scale measured it.
type weightLog struct {
	BMI    float64 `json:"bmi"`
	Date   string  `json:"date"`
	Fat    float64 `json:"fat"`
	LogID  int64   `json:"logId"`
	Source string  `json:"source"`
	Time   string  `json:"time"`
	Weight float64 `json:"weight"`
}

// fatLog is an entry of the body-fat log (https://dev.fitbit.com/build/reference/web-api/body/get-bodyfat-log/).
type fatLog struct {
	Date   string  `json:"date"`
	Fat    float64 `json:"fat"`
	LogID  int64   `json:"logId"`
	Source string  `json:"source"`
	Time   string  `json:"time"`
}

// logID is a weigh-in's logId: Fitbit's ids of scale entries are the milliseconds of the
// measurement, which also keeps a weight and its fat entry on one id.
func logID(wt sim.Weight) int64 { return wt.At.UnixMilli() }

// serveWeight is GET /1/user/-/body/log/weight/date/{start}/{end}.json, in kg.
func (s *Simulator) serveWeight(w http.ResponseWriter, _ *http.Request, v *view, days []time.Time) {
	out := []weightLog{}
	for _, d := range days {
		for _, wt := range v.weighIns(d) {
			at := wt.At.In(v.p.Zone)
			out = append(out, weightLog{BMI: v.bmi(wt.Kg), Date: at.Format(layoutDate), Fat: wt.FatPct, LogID: logID(wt),
				Source: scaleSource, Time: at.Format(layoutTime), Weight: wt.Kg})
		}
	}
	writeJSON(w, http.StatusOK, map[string][]weightLog{"weight": out})
}

// serveFat is GET /1/user/-/body/log/fat/date/{start}/{end}.json, in %.
func (s *Simulator) serveFat(w http.ResponseWriter, _ *http.Request, v *view, days []time.Time) {
	out := []fatLog{}
	for _, d := range days {
		for _, wt := range v.weighIns(d) {
			at := wt.At.In(v.p.Zone)
			out = append(out, fatLog{Date: at.Format(layoutDate), Fat: wt.FatPct, LogID: logID(wt), Source: scaleSource, Time: at.Format(layoutTime)})
		}
	}
	writeJSON(w, http.StatusOK, map[string][]fatLog{"fat": out})
}
