package withingssim

import (
	"net/http"
	"strconv"
)

// ECG recording parameters of the ScanWatch: 300 Hz, worn on the left wrist (Heart v2 - Get
// wearposition 1, https://developer.withings.com/api-reference/#tag/heart/operation/heartv2-get).
const (
	ecgHz           = 300
	wearLeftWrist   = 1
	heartModelWatch = 93
)

type heartJSON struct {
	DeviceID  string `json:"deviceid"`
	Model     int    `json:"model"`
	Timestamp int64  `json:"timestamp"`
	Modified  int64  `json:"modified"`
	HeartRate int    `json:"heart_rate"`
	Timezone  string `json:"timezone"`
	ECG       struct {
		SignalID int64 `json:"signalid"`
		Afib     int   `json:"afib"`
	} `json:"ecg"`
}

// heartList is /v2/heart action=list: the ECG recordings taken in [startdate, enddate]
// (inclusive; by recording time, Heart List has no lastupdate), oldest first, with more and
// offset.
func (s *Simulator) heartList(r *http.Request, a *account) (any, *apiError) {
	tf, aerr := readTimeFilter(r.Form)
	if aerr != nil {
		return nil, aerr
	}
	tf.hasLast = false
	offset, _, aerr := intParam(r.Form, "offset")
	if aerr != nil {
		return nil, aerr
	}
	sel := []heartJSON{}
	for _, e := range a.ecgs {
		t := e.rec.At.Unix()
		if !tf.keep(t, t) {
			continue
		}
		h := heartJSON{DeviceID: a.devices[devWatch], Model: heartModelWatch, Timestamp: t, Modified: t,
			HeartRate: e.rec.HeartRate, Timezone: a.zone}
		h.ECG.SignalID, h.ECG.Afib = e.SignalID, e.Afib
		sel = append(sel, h)
	}
	lo, hi, more, next := page(len(sel), offset)
	return struct {
		Series []heartJSON `json:"series"`
		More   bool        `json:"more"`
		Offset int64       `json:"offset"`
	}{sel[lo:hi], more, next}, nil
}

// heartGet is /v2/heart action=get: one recording's signal in µV. A signal of another user is
// an invalid parameter.
func (s *Simulator) heartGet(r *http.Request, a *account) (any, *apiError) {
	id, err := strconv.ParseInt(r.Form.Get("signalid"), 10, 64)
	if err != nil {
		return nil, invalidParams("signalid")
	}
	for _, e := range a.ecgs {
		if e.SignalID != id {
			continue
		}
		return struct {
			Signal            []int `json:"signal"`
			SamplingFrequency int   `json:"sampling_frequency"`
			WearPosition      int   `json:"wearposition"`
			HeartRate         int   `json:"heart_rate"`
			Model             int   `json:"model"`
		}{e.rec.Signal(ecgHz), ecgHz, wearLeftWrist, e.rec.HeartRate, heartModelWatch}, nil
	}
	return nil, invalidParams("signalid")
}
