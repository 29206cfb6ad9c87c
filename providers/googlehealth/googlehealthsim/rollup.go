package googlehealthsim

import (
	"encoding/json"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/openhealthexchange/ohx/providers/sim"
)

// rollupRequest is DailyRollUpDataPointsRequest
// (https://developers.google.com/health/reference/rest/v4/users.dataTypes.dataPoints/dailyRollUp).
type rollupRequest struct {
	Range struct {
		Start civilDateTime `json:"start"`
		End   civilDateTime `json:"end"`
	} `json:"range"`
	WindowSizeDays int    `json:"windowSizeDays"`
	PageSize       int    `json:"pageSize"`
	PageToken      string `json:"pageToken"`
}

type countSum struct {
	CountSum string `json:"countSum"`
}

type millimetersSum struct {
	MillimetersSum string `json:"millimetersSum"`
}

type kcalSum struct {
	KcalSum float64 `json:"kcalSum"`
}

// rollupPoint is DailyRollupDataPoint; a window without the data type's value has only its
// civil bounds (testdata/googlehealth/rollup_steps.json).
type rollupPoint struct {
	CivilStartTime civilDateTime   `json:"civilStartTime"`
	CivilEndTime   civilDateTime   `json:"civilEndTime"`
	Steps          *countSum       `json:"steps,omitempty"`
	Distance       *millimetersSum `json:"distance,omitempty"`
	Floors         *countSum       `json:"floors,omitempty"`
	TotalCalories  *kcalSum        `json:"totalCalories,omitempty"`
}

type rollupAnswer struct {
	RollupDataPoints []rollupPoint `json:"rollupDataPoints,omitempty"`
	NextPageToken    string        `json:"nextPageToken,omitempty"`
}

// dayTotal is one data type's total of a civil day: ok=false when the day has no value (before
// the history, not begun by the instant activity is revealed to, or a zero that proto3 JSON
// would omit).
func (s *Simulator) dayTotal(p *sim.Person, d dataType, day time.Time, until time.Time) (float64, bool) {
	if day.Before(s.world.Start(p)) || !day.Before(until) {
		return 0, false
	}
	a := s.world.ActivityUntil(p, day, until)
	var v float64
	switch d.name {
	case "steps":
		v = float64(a.Steps)
	case "distance":
		v = math.Round(a.DistanceM * 1000) // millimetres
	case "floors":
		v = float64(a.Floors)
	case "total-calories":
		v = a.TotalKcal
	}
	return v, v > 0
}

// rollup is dataPoints:dailyRollUp over a civil range in the user's zone, windowSizeDays days per
// window, honouring the data type's longest range, pageSize and pageToken.
func (s *Simulator) rollup(w http.ResponseWriter, r *http.Request, c caller, d dataType) {
	if r.PathValue("method") != "dataPoints:dailyRollUp" {
		googleError(w, http.StatusNotFound, "NOT_FOUND", "Requested entity was not found.", "")
		return
	}
	if d.rec != recRollup {
		invalidArgument(w, "Data type "+d.name+" does not support daily roll-up.", "")
		return
	}
	var req rollupRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16)).Decode(&req); err != nil {
		invalidArgument(w, "Invalid JSON payload received.", "")
		return
	}
	p := c.p
	from, okFrom := localDate(req.Range.Start.Date, p.Zone)
	to, okTo := localDate(req.Range.End.Date, p.Zone)
	if !okFrom || !okTo || !from.Before(to) {
		invalidArgument(w, "range.start must be a valid date before range.end.", "")
		return
	}
	days := daysBetween(from, to)
	if days > d.maxDays {
		invalidArgument(w, "The range of a "+d.name+" daily roll-up is at most "+strconv.Itoa(d.maxDays)+" days.", "")
		return
	}
	size := req.WindowSizeDays
	if size == 0 {
		size = 1
	}
	if size < 0 || size > days {
		invalidArgument(w, "windowSizeDays must be between 1 and the range's length.", "")
		return
	}
	query := []string{"rollup", p.Key, d.name, dateKey(from), dateKey(to), strconv.Itoa(size)}
	offset, ok := s.decodeToken(req.PageToken, query...)
	if !ok {
		invalidArgument(w, "Invalid page token.", "")
		return
	}
	until := s.activityUntil(s.liveOf(p))
	var windows []rollupPoint
	for start := from; start.Before(to); start = start.AddDate(0, 0, size) {
		end := start.AddDate(0, 0, size)
		rp := rollupPoint{CivilStartTime: civilDateTime{Date: dateOf(start)}, CivilEndTime: civilDateTime{Date: dateOf(end)}}
		var sum float64
		var any bool
		for day := start; day.Before(end) && day.Before(to); day = day.AddDate(0, 0, 1) {
			if v, ok := s.dayTotal(p, d, day, until); ok {
				sum, any = sum+v, true
			}
		}
		if any {
			n := strconv.FormatFloat(sum, 'f', -1, 64)
			switch d.name {
			case "steps":
				rp.Steps = &countSum{CountSum: n}
			case "distance":
				rp.Distance = &millimetersSum{MillimetersSum: n}
			case "floors":
				rp.Floors = &countSum{CountSum: n}
			case "total-calories":
				rp.TotalCalories = &kcalSum{KcalSum: sum}
			}
		}
		windows = append(windows, rp)
	}
	pageSize := req.PageSize
	if pageSize <= 0 {
		pageSize = len(windows)
	}
	var a rollupAnswer
	for i := offset; i < len(windows) && i < offset+pageSize; i++ {
		a.RollupDataPoints = append(a.RollupDataPoints, windows[i])
	}
	if offset+pageSize < len(windows) {
		a.NextPageToken = s.encodeToken(offset+pageSize, query...)
	}
	writeJSON(w, http.StatusOK, a)
}

// localDate is the local midnight of a civil date in zone; ok=false for an invalid date.
func localDate(d jsonDate, zone *time.Location) (time.Time, bool) {
	t := time.Date(d.Year, time.Month(d.Month), d.Day, 0, 0, 0, 0, zone)
	if d.Year < 1 || t.Day() != d.Day || int(t.Month()) != d.Month {
		return time.Time{}, false
	}
	return t, true
}

func daysBetween(a, b time.Time) int {
	ua := time.Date(a.Year(), a.Month(), a.Day(), 12, 0, 0, 0, time.UTC)
	ub := time.Date(b.Year(), b.Month(), b.Day(), 12, 0, 0, 0, time.UTC)
	return int(ub.Sub(ua).Hours() / 24)
}

func dateKey(t time.Time) string { return t.Format(time.DateOnly) }
