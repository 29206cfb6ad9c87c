package withingssim

import (
	"net/http"
	"net/url"
	"strings"
	"time"
)

// dayFilter is the window of a daily service: lastupdate (modified at or after, which wins) or
// startdateymd/enddateymd, both inclusive local dates.
type dayFilter struct {
	last       int64
	hasLast    bool
	start, end string
}

func readDayFilter(f url.Values) (dayFilter, *apiError) {
	var df dayFilter
	var aerr *apiError
	if df.last, df.hasLast, aerr = intParam(f, "lastupdate"); aerr != nil {
		return df, aerr
	}
	if df.hasLast {
		return df, nil
	}
	df.start, df.end = f.Get("startdateymd"), f.Get("enddateymd")
	for _, d := range []string{df.start, df.end} {
		if _, err := time.Parse(time.DateOnly, d); err != nil {
			return df, invalidParams("startdateymd/enddateymd or lastupdate required")
		}
	}
	return df, nil
}

func (df dayFilter) keep(date string, modified int64) bool {
	if df.hasLast {
		return modified >= df.last
	}
	return date >= df.start && date <= df.end
}

// dataFields is the data_fields set; nil means every field.
func dataFields(f url.Values) map[string]bool {
	if f.Get("data_fields") == "" {
		return nil
	}
	set := map[string]bool{}
	for _, x := range strings.Split(f.Get("data_fields"), ",") {
		set[strings.TrimSpace(x)] = true
	}
	return set
}

func field[T any](fields map[string]bool, name string, v T) *T {
	if fields != nil && !fields[name] {
		return nil
	}
	return &v
}

type activityJSON struct {
	Date         string   `json:"date"`
	Timezone     string   `json:"timezone"`
	DeviceID     string   `json:"deviceid"`
	HashDeviceID string   `json:"hash_deviceid"`
	Brand        int      `json:"brand"`
	IsTracker    bool     `json:"is_tracker"`
	Steps        *int     `json:"steps,omitempty"`
	Distance     *float64 `json:"distance,omitempty"`
	Elevation    *int     `json:"elevation,omitempty"`
	Calories     *float64 `json:"calories,omitempty"`
	TotalKcalies *float64 `json:"totalcalories,omitempty"`
	Modified     int64    `json:"modified"`
	Model        string   `json:"model"`
	ModelID      int      `json:"model_id"`
}

// getactivity is /v2/measure action=getactivity: daily totals from the ScanWatch, oldest first,
// with the requested data_fields (distance m, elevation floors, calories the active kcal), and
// more (a boolean in the v2 services) and offset.
func (s *Simulator) getactivity(r *http.Request, a *account) (any, *apiError) {
	df, aerr := readDayFilter(r.Form)
	if aerr != nil {
		return nil, aerr
	}
	offset, _, aerr := intParam(r.Form, "offset")
	if aerr != nil {
		return nil, aerr
	}
	fields := dataFields(r.Form)
	watch, m := a.devices[devWatch], deviceModels[devWatch]
	sel := []activityJSON{}
	for _, d := range a.days {
		if !df.keep(d.Date, d.Modified) {
			continue
		}
		sel = append(sel, activityJSON{
			Date: d.Date, Timezone: a.zone, DeviceID: watch, HashDeviceID: watch, Brand: 1, IsTracker: true,
			Steps:        field(fields, "steps", d.Steps),
			Distance:     field(fields, "distance", d.Distance),
			Elevation:    field(fields, "elevation", d.Floors),
			Calories:     field(fields, "calories", d.Calories),
			TotalKcalies: field(fields, "totalcalories", d.TotalKcal),
			Modified:     d.Modified, Model: m.Model, ModelID: m.ModelID,
		})
	}
	lo, hi, more, next := page(len(sel), offset)
	return struct {
		Activities []activityJSON `json:"activities"`
		More       bool           `json:"more"`
		Offset     int64          `json:"offset"`
	}{sel[lo:hi], more, next}, nil
}

type sleepDataJSON struct {
	TotalTimeInBed *int64   `json:"total_timeinbed,omitempty"`
	TotalSleepTime *int64   `json:"total_sleep_time,omitempty"`
	Light          *int64   `json:"lightsleepduration,omitempty"`
	Deep           *int64   `json:"deepsleepduration,omitempty"`
	REM            *int64   `json:"remsleepduration,omitempty"`
	Awake          *int64   `json:"wakeupduration,omitempty"`
	WakeupCount    *int64   `json:"wakeupcount,omitempty"`
	Latency        *int64   `json:"sleep_latency,omitempty"`
	Efficiency     *float64 `json:"sleep_efficiency,omitempty"`
}

type sleepJSON struct {
	ID           int64         `json:"id"`
	Timezone     string        `json:"timezone"`
	Model        int           `json:"model"`
	ModelID      int           `json:"model_id"`
	HashDeviceID string        `json:"hash_deviceid"`
	StartDate    int64         `json:"startdate"`
	EndDate      int64         `json:"enddate"`
	Date         string        `json:"date"`
	Created      int64         `json:"created"`
	Modified     int64         `json:"modified"`
	Completed    bool          `json:"completed"`
	Data         sleepDataJSON `json:"data"`
}

// sleepModelWatch is the getsummary "model" of a watch (16: activity tracker, as recorded).
const sleepModelWatch = 16

// getsummary is /v2/sleep action=getsummary: one summary per night from the ScanWatch, keyed by
// the local date of the morning, oldest first, with the requested data_fields (durations in
// seconds, efficiency a 0–1 ratio).
func (s *Simulator) getsummary(r *http.Request, a *account) (any, *apiError) {
	df, aerr := readDayFilter(r.Form)
	if aerr != nil {
		return nil, aerr
	}
	offset, _, aerr := intParam(r.Form, "offset")
	if aerr != nil {
		return nil, aerr
	}
	fs := dataFields(r.Form)
	watch := a.devices[devWatch]
	sel := []sleepJSON{}
	for _, n := range a.nights {
		if !df.keep(n.Date, n.Modified) {
			continue
		}
		sel = append(sel, sleepJSON{
			ID: n.ID, Timezone: a.zone, Model: sleepModelWatch, ModelID: deviceModels[devWatch].ModelID, HashDeviceID: watch,
			StartDate: n.Start, EndDate: n.End, Date: n.Date, Created: n.Modified, Modified: n.Modified, Completed: true,
			Data: sleepDataJSON{
				TotalTimeInBed: field(fs, "total_timeinbed", n.InBed),
				TotalSleepTime: field(fs, "total_sleep_time", n.Light+n.Deep+n.REM),
				Light:          field(fs, "lightsleepduration", n.Light),
				Deep:           field(fs, "deepsleepduration", n.Deep),
				REM:            field(fs, "remsleepduration", n.REM),
				Awake:          field(fs, "wakeupduration", n.Awake),
				WakeupCount:    field(fs, "wakeupcount", n.WakeupCount),
				Latency:        field(fs, "sleep_latency", n.Latency),
				Efficiency:     field(fs, "sleep_efficiency", n.Efficiency),
			},
		})
	}
	lo, hi, more, next := page(len(sel), offset)
	return struct {
		Series []sleepJSON `json:"series"`
		More   bool        `json:"more"`
		Offset int64       `json:"offset"`
	}{sel[lo:hi], more, next}, nil
}
