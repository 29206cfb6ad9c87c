package fitbitsim

import (
	"math"
	"net/http"
	"slices"
	"time"

	"github.com/openhealthexchange/ohx/providers/sim"
)

// Sleep stage levels as Fitbit names them in a "stages" log.
var levelOf = map[string]string{sim.StageAwake: "wake", sim.StageLight: "light", sim.StageDeep: "deep", sim.StageREM: "rem"}

type levelData struct {
	DateTime string `json:"dateTime"`
	Level    string `json:"level"`
	Seconds  int    `json:"seconds"`
}

type levelSummary struct {
	Count               int `json:"count"`
	Minutes             int `json:"minutes"`
	ThirtyDayAvgMinutes int `json:"thirtyDayAvgMinutes"`
}

type sleepLevels struct {
	Data      []levelData             `json:"data"`
	ShortData []levelData             `json:"shortData"`
	Summary   map[string]levelSummary `json:"summary"`
}

// sleepLog is one log of GET /1.2/user/-/sleep/date/{start}/{end}.json
// (https://dev.fitbit.com/build/reference/web-api/sleep/get-sleep-log-by-date-range/).
type sleepLog struct {
	DateOfSleep         string      `json:"dateOfSleep"`
	Duration            int64       `json:"duration"`
	Efficiency          int         `json:"efficiency"`
	EndTime             string      `json:"endTime"`
	InfoCode            int         `json:"infoCode"`
	IsMainSleep         bool        `json:"isMainSleep"`
	Levels              sleepLevels `json:"levels"`
	LogID               int64       `json:"logId"`
	LogType             string      `json:"logType"`
	MinutesAfterWakeup  int         `json:"minutesAfterWakeup"`
	MinutesAsleep       int         `json:"minutesAsleep"`
	MinutesAwake        int         `json:"minutesAwake"`
	MinutesToFallAsleep int         `json:"minutesToFallAsleep"`
	StartTime           string      `json:"startTime"`
	TimeInBed           int         `json:"timeInBed"`
	Type                string      `json:"type"`
}

// sleepLog renders the night that ends on the morning of day: an auto-detected "stages" log
// whose levels.data are the session's stages, dated dateOfSleep = the morning's date. The first
// awake stage is the time it took to fall asleep; minutes asleep are light, deep and REM.
func (v *view) sleepLog(day time.Time, sl sim.Sleep) sleepLog {
	z := v.p.Zone
	asleep := sl.Minutes(sim.StageLight) + sl.Minutes(sim.StageDeep) + sl.Minutes(sim.StageREM)
	inBed := int(sl.End.Sub(sl.Start) / time.Minute)
	l := sleepLog{
		DateOfSleep: day.Format(layoutDate), Duration: sl.End.Sub(sl.Start).Milliseconds(),
		EndTime: sl.End.In(z).Format(layoutDateTime), IsMainSleep: true, LogID: sl.Start.Unix(), LogType: "auto_detected",
		MinutesAsleep: asleep, MinutesAwake: sl.Minutes(sim.StageAwake), StartTime: sl.Start.In(z).Format(layoutDateTime),
		TimeInBed: inBed, Type: "stages",
		Levels: sleepLevels{Data: []levelData{}, ShortData: []levelData{}, Summary: map[string]levelSummary{}},
	}
	if inBed > 0 {
		l.Efficiency = int(math.Round(100 * float64(asleep) / float64(inBed)))
	}
	if len(sl.Stages) > 0 && sl.Stages[0].Kind == sim.StageAwake {
		l.MinutesToFallAsleep = int(sl.Stages[0].End.Sub(sl.Stages[0].Start) / time.Minute)
	}
	counts := map[string]int{}
	for _, st := range sl.Stages {
		l.Levels.Data = append(l.Levels.Data, levelData{DateTime: st.Start.In(z).Format(layoutDateTime), Level: levelOf[st.Kind],
			Seconds: int(st.End.Sub(st.Start) / time.Second)})
		counts[st.Kind]++
	}
	for kind, level := range levelOf {
		l.Levels.Summary[level] = levelSummary{Count: counts[kind], Minutes: sl.Minutes(kind), ThirtyDayAvgMinutes: v.thirtyDayAvg(day, kind)}
	}
	return l
}

// thirtyDayAvg is the mean minutes of a stage over the up to 30 recorded nights before day's.
func (v *view) thirtyDayAvg(day time.Time, kind string) int {
	sum, n := 0, 0
	for i := 1; i <= 30; i++ {
		if sl, ok := v.w.Sleep(v.p, day.AddDate(0, 0, -i)); ok {
			sum, n = sum+sl.Minutes(kind), n+1
		}
	}
	if n == 0 {
		return 0
	}
	return int(math.Round(float64(sum) / float64(n)))
}

// serveSleep is GET /1.2/user/-/sleep/date/{start}/{end}.json: the logs whose dateOfSleep lies in
// the range, newest first (⚠ the order of real answers as seen in third-party clients; the
// reference does not state it).
func (s *Simulator) serveSleep(w http.ResponseWriter, _ *http.Request, v *view, days []time.Time) {
	out := []sleepLog{}
	for _, d := range slices.Backward(days) {
		if sl, ok := v.w.Sleep(v.p, d); ok {
			out = append(out, v.sleepLog(d, sl))
		}
	}
	writeJSON(w, http.StatusOK, map[string][]sleepLog{"sleep": out})
}

type spo2Value struct {
	Avg float64 `json:"avg"`
	Min float64 `json:"min"`
	Max float64 `json:"max"`
}

type spo2Day struct {
	DateTime string    `json:"dateTime"`
	Value    spo2Value `json:"value"`
}

// serveSpO2 is GET /1/user/-/spo2/date/{start}/{end}.json: an array of the nights' summaries
// (https://dev.fitbit.com/build/reference/web-api/spo2/get-spo2-summary-by-interval/).
func (s *Simulator) serveSpO2(w http.ResponseWriter, _ *http.Request, v *view, days []time.Time) {
	out := []spo2Day{}
	for _, d := range days {
		if avg, lo, hi, ok := v.spo2(d); ok {
			out = append(out, spo2Day{DateTime: d.Format(layoutDate), Value: spo2Value{Avg: avg, Min: lo, Max: hi}})
		}
	}
	writeJSON(w, http.StatusOK, out)
}

type hrvValue struct {
	DailyRmssd float64 `json:"dailyRmssd"`
	DeepRmssd  float64 `json:"deepRmssd"`
}

type hrvDay struct {
	Value    hrvValue `json:"value"`
	DateTime string   `json:"dateTime"`
}

// serveHRV is GET /1/user/-/hrv/date/{start}/{end}.json
// (https://dev.fitbit.com/build/reference/web-api/heartrate-variability/get-hrv-summary-by-interval/).
func (s *Simulator) serveHRV(w http.ResponseWriter, _ *http.Request, v *view, days []time.Time) {
	out := []hrvDay{}
	for _, d := range days {
		if daily, deep, ok := v.hrv(d); ok {
			out = append(out, hrvDay{Value: hrvValue{DailyRmssd: daily, DeepRmssd: deep}, DateTime: d.Format(layoutDate)})
		}
	}
	writeJSON(w, http.StatusOK, map[string][]hrvDay{"hrv": out})
}

type brDay struct {
	Value struct {
		BreathingRate float64 `json:"breathingRate"`
	} `json:"value"`
	DateTime string `json:"dateTime"`
}

// serveBreathing is GET /1/user/-/br/date/{start}/{end}.json
// (https://dev.fitbit.com/build/reference/web-api/breathing-rate/get-br-summary-by-interval/).
func (s *Simulator) serveBreathing(w http.ResponseWriter, _ *http.Request, v *view, days []time.Time) {
	out := []brDay{}
	for _, d := range days {
		if rate, ok := v.breathing(d); ok {
			b := brDay{DateTime: d.Format(layoutDate)}
			b.Value.BreathingRate = rate
			out = append(out, b)
		}
	}
	writeJSON(w, http.StatusOK, map[string][]brDay{"br": out})
}

type tempDay struct {
	DateTime string `json:"dateTime"`
	Value    struct {
		NightlyRelative float64 `json:"nightlyRelative"`
	} `json:"value"`
	LogType string `json:"logType"`
}

// serveSkinTemp is GET /1/user/-/temp/skin/date/{start}/{end}.json: the night's variation from
// the personal baseline, measured by the tracker's skin sensor ("dermal",
// https://dev.fitbit.com/build/reference/web-api/temperature/get-temperature-skin-summary-by-interval/).
func (s *Simulator) serveSkinTemp(w http.ResponseWriter, _ *http.Request, v *view, days []time.Time) {
	out := []tempDay{}
	for _, d := range days {
		if rel, ok := v.skinTemp(d); ok {
			t := tempDay{DateTime: d.Format(layoutDate), LogType: "dermal"}
			t.Value.NightlyRelative = rel
			out = append(out, t)
		}
	}
	writeJSON(w, http.StatusOK, map[string][]tempDay{"tempSkin": out})
}
