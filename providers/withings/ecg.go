package withings

import (
	"context"
	"fmt"
	"net/url"
	"strconv"

	"golang.org/x/oauth2"

	"github.com/openhealthexchange/ohx/fhir"
)

// heartListBody is the body of /v2/heart action=list.
type heartListBody struct {
	Series []heartRecord `json:"series"`
	More   flexBool      `json:"more"`
	Offset flexInt       `json:"offset"`
}

type heartRecord struct {
	DeviceID  flexString `json:"deviceid"`
	Model     flexInt    `json:"model"`
	Timestamp flexInt    `json:"timestamp"`
	Modified  flexInt    `json:"modified"`
	HeartRate flexInt    `json:"heart_rate"`
	ECG       *struct {
		SignalID flexString `json:"signalid"`
		Afib     flexInt    `json:"afib"`
	} `json:"ecg"`
}

// heartGetBody is the body of /v2/heart action=get.
type heartGetBody struct {
	Signal            []int      `json:"signal"` // µV for every device, per the API reference
	SamplingFrequency flexInt    `json:"sampling_frequency"`
	WearPosition      flexString `json:"wearposition"`
	HeartRate         flexInt    `json:"heart_rate"`
}

// afibCodes maps the Withings afib classification (Heart v2 - List,
// https://developer.withings.com/api-reference/#tag/heart/operation/heartv2-list) to the ohx ECG
// rhythm codes and the vendor's wording: 0 negative, 1 positive, 2 inconclusive.
var afibCodes = map[int64]struct{ code, text string }{
	0: {fhir.RhythmAFibNotDetected, "Negative"},
	1: {fhir.RhythmAFibDetected, "Positive"},
	2: {fhir.RhythmInconclusive, "Inconclusive"},
}

// wearPositions names, as Observation.bodySite text, the wearposition codes of Heart v2 - Get
// (https://developer.withings.com/api-reference/#tag/heart/operation/heartv2-get) that are body
// sites; the others (10–31: chest auscultation areas, hands, "hold" positions) get no body site.
// The samples are never inverted by wear position: no Withings document describes an inversion.
var wearPositions = map[string]string{
	"0": "Right wrist",
	"1": "Left wrist",
	"2": "Right arm",
	"3": "Left arm",
	"4": "Right foot",
	"5": "Left foot",
	"6": "Between legs",
	"8": "Left part of body",
	"9": "Right part of body",
}

// ecgSample reads one recording's signal (one Heart Get per signal) and builds its sample: the
// samples as delivered in µV (factor 1, never inverted by wear position — no source documents an
// inversion), the interval 1000 / sampling_frequency ms (intervalMS), the heart rate as a component,
// the afib classification in Code, the wear position as the body site. Heart List has no time
// zone, so Start is the UTC instant.
func (c *Client) ecgSample(ctx context.Context, user string, ts oauth2.TokenSource, r heartRecord) (fhir.Sample, error) {
	signal := string(r.ECG.SignalID)
	body, err := c.do(ctx, request{
		user:      user,
		endpoint:  "heart/get",
		path:      "/v2/heart",
		form:      url.Values{"action": {"get"}, "signalid": {signal}},
		ts:        ts,
		cacheable: true,
	})
	if err != nil {
		return fhir.Sample{}, err
	}
	var g heartGetBody
	if err := c.decodeBody(body, &g, "heart get"); err != nil {
		return fhir.Sample{}, err
	}
	s := fhir.Sample{
		Provider: Name,
		UserID:   user,
		Kind:     fhir.KindECG,
		System:   "withings/ecg",
		RecordID: fmt.Sprintf("%s/%s", user, signal),
		Start:    c.instant(r.Timestamp.Int(), ""),
		DeviceID: string(r.DeviceID),
	}
	if a, ok := afibCodes[r.ECG.Afib.Int()]; ok && r.ECG.Afib.set {
		s.Code, s.CodeText = a.code, a.text
	}
	hr := r.HeartRate
	if !hr.set {
		hr = g.HeartRate
	}
	if hr.set {
		s.Components = []fhir.SampleComponent{{Kind: fhir.KindHeartRate, Value: fhir.Decimal(strconv.FormatInt(hr.Int(), 10)), Unit: "/min"}}
	}
	if len(g.Signal) > 0 {
		iv, err := intervalMS(g.SamplingFrequency.Int())
		if err != nil {
			c.log.Warn("ECG signal without a usable sampling frequency; waveform omitted")
		} else {
			s.Waveform = &fhir.Waveform{
				Samples:    g.Signal,
				Factor:     "1",
				Unit:       "uV",
				IntervalMS: iv,
				BodySite:   wearPositions[string(g.WearPosition)],
			}
		}
	}
	return s, nil
}
