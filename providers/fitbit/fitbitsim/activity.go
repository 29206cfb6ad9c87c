package fitbitsim

import (
	"math"
	"net/http"
	"strconv"
	"time"
)

// dayValue is an element of an activity time series: Fitbit writes the value as a string
// (https://dev.fitbit.com/build/reference/web-api/activity-timeseries/get-activity-timeseries-by-date-range/).
type dayValue struct {
	DateTime string `json:"dateTime"`
	Value    string `json:"value"`
}

// seriesValue renders a day's total of an activity resource, "" for a resource not served.
// Distance is in kilometres and calories the day's total energy, BMR included, as Fitbit writes
// them in metric answers.
func (v *view) seriesValue(resource string, day time.Time) string {
	a, _ := v.activity(day) // zeros outside the tracked span, as Fitbit writes them
	switch resource {
	case "steps":
		return strconv.Itoa(a.Steps)
	case "distance":
		return formatFloat(round(a.DistanceM/1000, 4))
	case "calories":
		return formatFloat(a.TotalKcal)
	case "floors":
		return strconv.Itoa(a.Floors)
	}
	return ""
}

// serveSeries is GET /1/user/-/activities/{resource}/date/{start}/{end}.json: an entry for every
// date of the range, 0 where there is no data.
func (s *Simulator) serveSeries(w http.ResponseWriter, r *http.Request, v *view, days []time.Time) {
	resource := r.PathValue("resource")
	if v.seriesValue(resource, days[0]) == "" {
		validation(w, "resource", "Invalid time series resource path: "+resource+".")
		return
	}
	out := make([]dayValue, 0, len(days))
	for _, d := range days {
		out = append(out, dayValue{DateTime: d.Format(layoutDate), Value: v.seriesValue(resource, d)})
	}
	writeJSON(w, http.StatusOK, map[string][]dayValue{"activities-" + resource: out})
}

type heartZone struct {
	CaloriesOut float64 `json:"caloriesOut"`
	Max         int     `json:"max"`
	Min         int     `json:"min"`
	Minutes     int     `json:"minutes"`
	Name        string  `json:"name"`
}

type heartValue struct {
	CustomHeartRateZones []heartZone `json:"customHeartRateZones"`
	HeartRateZones       []heartZone `json:"heartRateZones"`
	RestingHeartRate     int         `json:"restingHeartRate,omitempty"`
}

type heartDay struct {
	DateTime string     `json:"dateTime"`
	Value    heartValue `json:"value"`
}

// heartDay is a date of the heart-rate series
// (https://dev.fitbit.com/build/reference/web-api/heartrate-timeseries/get-heartrate-timeseries-by-date-range/):
// the default zones (below 50 %, 50–69 %, 70–84 % and from 85 % of the maximum heart rate
// 220 − age) with minutes derived from the day's steps, and restingHeartRate once Fitbit could
// compute it (omitted otherwise). A date without data has no zones.
func (v *view) heartDay(day time.Time) heartDay {
	hd := heartDay{DateTime: day.Format(layoutDate), Value: heartValue{CustomHeartRateZones: []heartZone{}, HeartRateZones: []heartZone{}}}
	if rhr, ok := v.rhr(day); ok {
		hd.Value.RestingHeartRate = rhr
	}
	a, ok := v.activity(day)
	if !ok {
		return hd
	}
	maxHR := 220 - age(v.p.BirthDate, day)
	b1, b2, b3 := int(math.Round(0.5*float64(maxHR))), int(math.Round(0.7*float64(maxHR))), int(math.Round(0.85*float64(maxHR)))
	worn := int(math.Min(24*60, v.cutoff.Sub(day).Minutes()))
	fat, cardio, peak := a.Steps/200, a.Steps/1200, a.Steps/5000
	out := max(0, worn-fat-cardio-peak)
	weights := []float64{1, 3, 5, 7} // energy per minute relative to rest
	total := float64(out)*weights[0] + float64(fat)*weights[1] + float64(cardio)*weights[2] + float64(peak)*weights[3]
	share := func(minutes int, weight float64) float64 {
		if total == 0 {
			return 0
		}
		return round(a.TotalKcal*float64(minutes)*weight/total, 2)
	}
	hd.Value.HeartRateZones = []heartZone{
		{Name: "Out of Range", Min: 30, Max: b1, Minutes: out, CaloriesOut: share(out, weights[0])},
		{Name: "Fat Burn", Min: b1, Max: b2, Minutes: fat, CaloriesOut: share(fat, weights[1])},
		{Name: "Cardio", Min: b2, Max: b3, Minutes: cardio, CaloriesOut: share(cardio, weights[2])},
		{Name: "Peak", Min: b3, Max: maxHR, Minutes: peak, CaloriesOut: share(peak, weights[3])},
	}
	return hd
}

// serveHeart is GET /1/user/-/activities/heart/date/{start}/{end}.json.
func (s *Simulator) serveHeart(w http.ResponseWriter, _ *http.Request, v *view, days []time.Time) {
	out := make([]heartDay, 0, len(days))
	for _, d := range days {
		out = append(out, v.heartDay(d))
	}
	writeJSON(w, http.StatusOK, map[string][]heartDay{"activities-heart": out})
}

// age is the age in whole years on a day of someone born on birth (yyyy-MM-dd; 40 if unreadable).
func age(birth string, day time.Time) int {
	b, err := time.Parse(layoutDate, birth)
	if err != nil {
		return 40
	}
	n := day.Year() - b.Year()
	if day.Month() < b.Month() || (day.Month() == b.Month() && day.Day() < b.Day()) {
		n--
	}
	return n
}
