package fitbitsim

import (
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/openhealthexchange/ohx/providers/sim"
)

// ECG recording parameters: Fitbit's ECG app records 30 s of lead I at 250 Hz; a sample is
// mV × scalingFactor (https://dev.fitbit.com/build/reference/web-api/electrocardiogram/get-ecg-log-list/).
const (
	ecgHz         = 250
	ecgScaling    = 10922
	ecgMaxLimit   = 10
	ecgFeature    = "1.2.3-2.11-2.14"
	trackerModel  = "Charge 6"
	trackerFirmwr = "194.132"
)

// classification is the resultClassification of a sim rhythm.
var classification = map[string]string{
	sim.RhythmNormal:       "Normal Sinus Rhythm",
	sim.RhythmAFib:         "Atrial Fibrillation",
	sim.RhythmInconclusive: "Inconclusive",
}

type ecgReading struct {
	StartTime               string `json:"startTime"`
	AverageHeartRate        int    `json:"averageHeartRate"`
	ResultClassification    string `json:"resultClassification"`
	WaveformSamples         []int  `json:"waveformSamples"`
	SamplingFrequencyHz     string `json:"samplingFrequencyHz"`
	ScalingFactor           int    `json:"scalingFactor"`
	NumberOfWaveformSamples int    `json:"numberOfWaveformSamples"`
	LeadNumber              int    `json:"leadNumber"`
	FeatureVersion          string `json:"featureVersion"`
	DeviceName              string `json:"deviceName"`
	FirmwareVersion         string `json:"firmwareVersion"`
}

type ecgPagination struct {
	AfterDate  string `json:"afterDate,omitempty"`
	BeforeDate string `json:"beforeDate,omitempty"`
	Limit      int    `json:"limit"`
	Next       string `json:"next"`
	Offset     int    `json:"offset"`
	Previous   string `json:"previous"`
	Sort       string `json:"sort"`
}

type ecgList struct {
	ECGReadings []ecgReading  `json:"ecgReadings"`
	Pagination  ecgPagination `json:"pagination"`
}

// ecgReading renders a recording: the waveform in counts of 1/scalingFactor mV.
func (v *view) ecgReading(e sim.ECG) ecgReading {
	uv := e.Signal(ecgHz)
	samples := make([]int, len(uv))
	for i, x := range uv {
		samples[i] = int(math.Round(float64(x) * ecgScaling / 1000))
	}
	return ecgReading{
		StartTime: e.At.In(v.p.Zone).Format(layoutDateTime), AverageHeartRate: e.HeartRate,
		ResultClassification: classification[e.Rhythm], WaveformSamples: samples,
		SamplingFrequencyHz: strconv.Itoa(ecgHz), ScalingFactor: ecgScaling, NumberOfWaveformSamples: len(samples),
		LeadNumber: 1, FeatureVersion: ecgFeature, DeviceName: trackerModel, FirmwareVersion: trackerFirmwr,
	}
}

// serveECG is GET /1/user/-/ecg/list.json: afterDate with sort=asc or beforeDate with sort=desc
// (yyyy-MM-dd or yyyy-MM-ddTHH:mm:ss, local), limit ≤ 10, paged by offset through
// pagination.next (a full URL; "" on the last page).
func (s *Simulator) serveECG(w http.ResponseWriter, r *http.Request, c call) {
	q := r.URL.Query()
	after, before, sort := q.Get("afterDate"), q.Get("beforeDate"), q.Get("sort")
	switch {
	case (after == "") == (before == ""):
		validation(w, "afterDate", "Either beforeDate or afterDate must be specified.")
		return
	case after != "" && sort != "asc", before != "" && sort != "desc":
		validation(w, "sort", "The sort must be asc with afterDate and desc with beforeDate.")
		return
	}
	limit, err := strconv.Atoi(q.Get("limit"))
	if err != nil || limit < 1 || limit > ecgMaxLimit {
		validation(w, "limit", "The limit must be between 1 and 10.")
		return
	}
	offset, err := strconv.Atoi(q.Get("offset"))
	if err != nil || offset < 0 {
		validation(w, "offset", "The offset must be a non-negative number.")
		return
	}
	bound, inclusive, ok := ecgBound(after + before)
	if !ok {
		validation(w, "afterDate", "Invalid date. Use yyyy-MM-dd or yyyy-MM-ddTHH:mm:ss.")
		return
	}
	v := s.view(c.p)
	var sel []sim.ECG
	for _, e := range v.w.ECGs(v.p) {
		local := e.At.In(v.p.Zone).Format("2006-01-02T15:04:05")
		if (after != "" && (local > bound || inclusive && local == bound)) || (before != "" && local < bound) {
			sel = append(sel, e)
		}
	}
	if sort == "desc" {
		slices.Reverse(sel)
	}
	page := ecgList{ECGReadings: []ecgReading{}, Pagination: ecgPagination{AfterDate: after, BeforeDate: before, Limit: limit, Offset: offset, Sort: sort}}
	for i := offset; i < len(sel) && i < offset+limit; i++ {
		page.ECGReadings = append(page.ECGReadings, v.ecgReading(sel[i]))
	}
	link := func(off int) string {
		u := url.URL{Scheme: "http", Host: r.Host, Path: "/1/user/-/ecg/list.json"}
		if r.TLS != nil {
			u.Scheme = "https"
		}
		lq := url.Values{"limit": {itoa(limit)}, "offset": {itoa(off)}, "sort": {sort}}
		if after != "" {
			lq.Set("afterDate", after)
		} else {
			lq.Set("beforeDate", before)
		}
		u.RawQuery = lq.Encode()
		return u.String()
	}
	if offset+limit < len(sel) {
		page.Pagination.Next = link(offset + limit)
	}
	if offset > 0 {
		page.Pagination.Previous = link(max(0, offset-limit))
	}
	writeJSON(w, http.StatusOK, page)
}

// ecgBound reads afterDate or beforeDate as a local wall time; a date alone is its midnight,
// included in an afterDate listing.
func ecgBound(s string) (bound string, inclusive, ok bool) {
	if t, err := time.Parse(layoutDate, s); err == nil {
		return t.Format("2006-01-02T15:04:05"), true, true
	}
	if t, err := time.Parse("2006-01-02T15:04:05", s); err == nil {
		return t.Format("2006-01-02T15:04:05"), false, true
	}
	return "", false, false
}
