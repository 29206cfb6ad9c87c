package fitbit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"strings"

	"golang.org/x/oauth2"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/providers"
)

// ecgNote is the caveat attached to every Fitbit ECG: the Get ECG Log List reference states the
// ECG API is for research or investigational use only, not for clinical or diagnostic purposes
// (https://dev.fitbit.com/build/reference/web-api/electrocardiogram/get-ecg-log-list/).
const ecgNote = "Fitbit states that ECG data from its Web API is for research and investigational use only, not for diagnosis."

const (
	ecgPath = "/1/user/-/ecg/list.json"
	// ecgLimit is the documented maximum page size (limit ≤ 10; offset only 0, paging by
	// pagination.next).
	ecgLimit = 10
)

// ecgReading is one element of ecgReadings.
type ecgReading struct {
	StartTime            string      `json:"startTime"`
	AverageHeartRate     json.Number `json:"averageHeartRate"`
	ResultClassification string      `json:"resultClassification"`
	WaveformSamples      []int       `json:"waveformSamples"`
	// samplingFrequencyHz is a string in the documentation's example, a number elsewhere: both.
	SamplingFrequencyHz flexString  `json:"samplingFrequencyHz"`
	ScalingFactor       json.Number `json:"scalingFactor"`
	DeviceName          string      `json:"deviceName"`
}

type ecgList struct {
	Readings   *[]ecgReading `json:"ecgReadings"`
	Pagination struct {
		Next string `json:"next"`
	} `json:"pagination"`
}

// rhythms maps resultClassification to the ohx rhythm codes; the vendor text stays CodeText.
var rhythms = map[string]string{
	"normal sinus rhythm":           fhir.RhythmSinus,
	"atrial fibrillation":           fhir.RhythmAtrialFibrillation,
	"inconclusive":                  fhir.RhythmInconclusive,
	"inconclusive: high heart rate": fhir.RhythmInconclusiveHighHR,
	"inconclusive: low heart rate":  fhir.RhythmInconclusiveLowHR,
	"unreadable":                    fhir.RhythmUnreadable,
}

// ecgNext validates a pagination.next URL and returns its query. Only the query is taken: the
// request goes to the configured API host and the ECG listing path, so a next link can never send
// the user's token elsewhere.
func ecgNext(next string) (url.Values, error) {
	u, err := url.Parse(next)
	if err != nil || u.Path != ecgPath {
		return nil, errors.New("ecg pagination.next is not an ECG listing URL")
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return nil, errors.New("ecg pagination.next has a malformed query")
	}
	return q, nil
}

// fetchECG reads one page of the ECG listing (sort=asc from the query's first local date) and
// returns its readings within the query's dates and the next page ("" at the end: an empty
// pagination.next, or readings past the query's last date).
func (c *Client) fetchECG(ctx context.Context, ts oauth2.TokenSource, fc *fetchCtx, next string, fresh bool) ([]fhir.Sample, string, error) {
	q := url.Values{"afterDate": {fc.from}, "sort": {"asc"}, "limit": {itoa(ecgLimit)}, "offset": {"0"}}
	if next != "" {
		var err error
		if q, err = ecgNext(next); err != nil {
			return nil, "", upstream(providers.KindPermanent, 0, err)
		}
	}
	a, err := c.do(ctx, request{user: fc.user, endpoint: "ecg/list", path: ecgPath, query: q, ts: ts, cacheable: !fresh})
	if err != nil {
		return nil, "", err
	}
	var l ecgList
	if err := decode(a.body, &l, "ecg list"); err != nil {
		return nil, "", err
	}
	if l.Readings == nil {
		return nil, "", upstream(providers.KindPermanent, 200, errors.New(`unexpected ecg list answer: no "ecgReadings"`))
	}
	var out []fhir.Sample
	past := false
	for i, r := range *l.Readings {
		s, date, err := c.ecgSample(fc, i, r)
		if err != nil {
			return nil, "", upstream(providers.KindPermanent, 200, err)
		}
		if date > fc.to {
			past = true
			continue
		}
		if fc.inRange(date) {
			out = append(out, s)
		}
	}
	n := strings.TrimSpace(l.Pagination.Next)
	if n == "" || past || len(*l.Readings) == 0 {
		return out, "", nil
	}
	if _, err := ecgNext(n); err != nil {
		return nil, "", upstream(providers.KindPermanent, 200, err)
	}
	if n == next {
		return nil, "", upstream(providers.KindPermanent, 200, errors.New("ecg pagination did not advance"))
	}
	return out, n, nil
}

// ecgSample maps the reading at position i of the listing
// (https://dev.fitbit.com/build/reference/web-api/electrocardiogram/get-ecg-log-list/): samples as delivered; factor 1000 /
// scalingFactor µV (scalingFactor converts samples to mV: mV = sample / scalingFactor); interval
// 1000 / samplingFrequencyHz ms; averageHeartRate as a component; the classification as an ohx
// rhythm code with the vendor's text; the research-use note. It returns the reading's local date.
// Errors name the reading by its position, never its time or values.
func (c *Client) ecgSample(fc *fetchCtx, i int, r ecgReading) (fhir.Sample, string, error) {
	start, err := localTime(r.StartTime, fc.loc)
	if err != nil {
		return fhir.Sample{}, "", fmt.Errorf("ecg reading %d: startTime is not a local date-time", i)
	}
	scale, ok := new(big.Rat).SetString(r.ScalingFactor.String())
	if !ok || scale.Sign() <= 0 {
		return fhir.Sample{}, "", fmt.Errorf("ecg reading %d: scalingFactor missing, not a number or not positive", i)
	}
	hz, ok := new(big.Rat).SetString(string(r.SamplingFrequencyHz))
	if !ok || hz.Sign() <= 0 {
		return fhir.Sample{}, "", fmt.Errorf("ecg reading %d: samplingFrequencyHz missing, not a number or not positive", i)
	}
	if len(r.WaveformSamples) == 0 {
		return fhir.Sample{}, "", fmt.Errorf("ecg reading %d without waveformSamples", i)
	}
	thousand := big.NewRat(1000, 1)
	s := fhir.Sample{
		Provider: Name, UserID: fc.user, Kind: fhir.KindECG, System: systemECG,
		RecordID: fc.user + "/" + r.StartTime, Start: start, DeviceID: fc.devs.named(r.DeviceName),
		Waveform: &fhir.Waveform{
			Samples:    r.WaveformSamples,
			Factor:     quotient(new(big.Rat).Quo(thousand, scale)),
			Unit:       "uV",
			IntervalMS: quotient(new(big.Rat).Quo(thousand, hz)),
		},
		Note: ecgNote,
	}
	if hr, ok, err := number(r.AverageHeartRate); err == nil && ok && !isZero(hr) {
		s.Components = []fhir.SampleComponent{{Kind: fhir.KindHeartRate, Value: hr, Unit: "/min"}}
	}
	if text := strings.TrimSpace(r.ResultClassification); text != "" {
		code, ok := rhythms[strings.ToLower(text)]
		if !ok {
			code = fhir.RhythmOther
		}
		s.Code, s.CodeText = code, text
	}
	return s, start.Format(layoutDate), nil
}
