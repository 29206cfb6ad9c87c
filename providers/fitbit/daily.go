package fitbit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/openhealthexchange/ohx/fhir"
)

// Identifier systems: daily values are keyed {ownerId}/{date}/{metric}, since Fitbit gives a
// daily value no id of its own (https://dev.fitbit.com/build/reference/web-api/activity-timeseries/);
// logs by their logId, ECGs by their start time.
const (
	systemDaily       = "fitbit/daily"
	systemHRVIntraday = "fitbit/hrv-intraday"
	systemWeight      = "fitbit/weight"
	systemSleep       = "fitbit/sleep"
	systemECG         = "fitbit/ecg"
)

// dailySample is a daily value: Start is local midnight of date in the user's zone (MapSample makes
// the local-day period of it, 23 or 25 hours on DST days).
func dailySample(fc *fetchCtx, kind fhir.SampleKind, metric, date string, v fhir.Decimal, unit string) (fhir.Sample, error) {
	start, err := localDay(date, fc.loc)
	if err != nil {
		return fhir.Sample{}, err
	}
	return fhir.Sample{
		Provider: Name, UserID: fc.user, Kind: kind,
		System: systemDaily, RecordID: fc.user + "/" + date + "/" + metric,
		Value: v, Unit: unit, Start: start,
	}, nil
}

// dayValue is {"dateTime": "yyyy-MM-dd", "value": …}, the element of every daily series.
type dayValue struct {
	DateTime string          `json:"dateTime"`
	Value    json.RawMessage `json:"value"`
}

// list decodes body[key] as an array of dayValue; a missing key is an unexpected shape.
func list(body []byte, key string) ([]dayValue, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, fmt.Errorf("unexpected %s answer: %w", key, err)
	}
	raw, ok := m[key]
	if !ok {
		return nil, fmt.Errorf("unexpected answer: no %q", key)
	}
	var out []dayValue
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, fmt.Errorf("unexpected %s answer: %w", key, err)
	}
	for _, d := range out {
		if !validDate(d.DateTime) {
			return nil, fmt.Errorf("unexpected %s answer: a dateTime is not yyyy-MM-dd", key)
		}
	}
	return out, nil
}

// decodeValue decodes a dayValue's value with numbers kept as written. Its errors name the
// field and JSON type, never the value (shapeError).
func decodeValue(raw json.RawMessage, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	return shapeError(dec.Decode(v))
}

// shapeError rewrites a JSON decoding error without the input's text: some of encoding/json's
// errors quote the offending literal, which may be a health value.
func shapeError(err error) error {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &te):
		return fmt.Errorf("field %q cannot hold a JSON %s", te.Field, te.Value)
	case errors.As(err, &se):
		return fmt.Errorf("malformed JSON at offset %d", se.Offset)
	}
	return errors.New("a value of an unexpected type")
}

// decodeSeries decodes an activity time series ({"activities-steps":[{dateTime, value:"8500"}]}).
//
// The series has an entry for every date of the range
// (https://dev.fitbit.com/build/reference/web-api/activity-timeseries/get-activity-timeseries-by-date-range/),
// and Fitbit writes 0 on dates it has no data for: days the tracker was not worn or did not
// sync, and dates still to come. A zero is therefore no data, unless the tracker is known to have
// synced that day. The one day we know that of is the local date of the tracker's last sync
// (devices.json lastSyncTime, https://dev.fitbit.com/build/reference/web-api/devices/get-devices/):
// a zero on that date is a real zero, a zero on any other date (or when no tracker has ever
// synced) yields no sample. Non-zero values are always kept.
func decodeSeries(a answer, fc *fetchCtx, key string, kind fhir.SampleKind, metric, unit string) ([]fhir.Sample, error) {
	days, err := list(a.body, key)
	if err != nil {
		return nil, err
	}
	lastSync := fc.devs.lastTrackerSync()
	lastDate := ""
	if !lastSync.IsZero() {
		lastDate = lastSync.In(fc.loc).Format(layoutDate)
	}
	tracker := fc.devs.tracker()
	var out []fhir.Sample
	for _, d := range days {
		if !fc.inRange(d.DateTime) {
			continue
		}
		var n json.Number
		if err := decodeValue(d.Value, &n); err != nil {
			// The value is a string holding the number ("8500").
			var s string
			if err := json.Unmarshal(d.Value, &s); err != nil {
				return nil, fmt.Errorf("%s value is neither number nor string", key)
			}
			n = json.Number(s)
		}
		v, ok, err := number(n)
		if err != nil {
			return nil, fmt.Errorf("%s value: %w", key, err)
		}
		if !ok || (isZero(v) && d.DateTime != lastDate) {
			continue
		}
		s, err := dailySample(fc, kind, metric, d.DateTime, v, unit)
		if err != nil {
			return nil, err
		}
		s.DeviceID = tracker
		out = append(out, s)
	}
	return out, nil
}

// decodeHeart decodes the heart-rate series: only days with value.restingHeartRate give a resting
// heart rate (zones are not mapped); Fitbit omits the field on days it could not compute one
// (https://dev.fitbit.com/build/reference/web-api/heartrate-timeseries/get-heartrate-timeseries-by-date-range/).
// A restingHeartRate that is not a number is an unexpected shape (a permanent error), like every
// other unexpected shape.
func decodeHeart(a answer, fc *fetchCtx) ([]fhir.Sample, error) {
	days, err := list(a.body, "activities-heart")
	if err != nil {
		return nil, err
	}
	var out []fhir.Sample
	for _, d := range days {
		var v struct {
			RestingHeartRate json.Number `json:"restingHeartRate"`
		}
		if err := decodeValue(d.Value, &v); err != nil {
			return nil, fmt.Errorf("activities-heart value: %w", err)
		}
		dec, ok, err := number(v.RestingHeartRate)
		if err != nil {
			return nil, fmt.Errorf("activities-heart value: restingHeartRate: %w", err)
		}
		if !ok || isZero(dec) || !fc.inRange(d.DateTime) {
			continue
		}
		s, err := dailySample(fc, fhir.KindRestingHeartRate, "resting-hr", d.DateTime, dec, "/min")
		if err != nil {
			return nil, err
		}
		s.DeviceID = fc.devs.tracker()
		out = append(out, s)
	}
	return out, nil
}

// decodeSpO2 decodes the SpO2 summary (daily avg/min/max of the main sleep, written on the morning's
// date): the average becomes the day's value. The interval form is an array of
// {dateTime, value{avg,min,max}}, the single-date form one such object; both are accepted.
func decodeSpO2(a answer, fc *fetchCtx) ([]fhir.Sample, error) {
	var days []dayValue
	trimmed := bytes.TrimSpace(a.body)
	switch {
	case len(trimmed) > 0 && trimmed[0] == '[':
		if err := json.Unmarshal(trimmed, &days); err != nil {
			return nil, fmt.Errorf("unexpected spo2 answer: %w", err)
		}
	default:
		var one dayValue
		if err := json.Unmarshal(trimmed, &one); err != nil {
			return nil, fmt.Errorf("unexpected spo2 answer: %w", err)
		}
		if one.DateTime != "" {
			days = []dayValue{one}
		} else if string(trimmed) != "{}" {
			return nil, errors.New("unexpected spo2 answer: neither a list nor a day")
		}
	}
	var out []fhir.Sample
	for _, d := range days {
		if !validDate(d.DateTime) {
			return nil, errors.New("unexpected spo2 answer: a dateTime is not yyyy-MM-dd")
		}
		var v struct {
			Avg json.Number `json:"avg"`
		}
		if len(d.Value) > 0 {
			if err := decodeValue(d.Value, &v); err != nil {
				return nil, fmt.Errorf("spo2 value: %w", err)
			}
		}
		dec, ok, err := number(v.Avg)
		if err != nil {
			return nil, fmt.Errorf("spo2 value: %w", err)
		}
		if !ok || isZero(dec) || !fc.inRange(d.DateTime) {
			continue
		}
		s, err := dailySample(fc, fhir.KindSpO2, "spo2", d.DateTime, dec, "%")
		if err != nil {
			return nil, err
		}
		s.Daily, s.DeviceID = true, fc.devs.tracker()
		out = append(out, s)
	}
	return out, nil
}

// decodeHRV decodes the daily HRV summary: dailyRmssd is the day's value, deepRmssd (deep sleep) a
// component, both in ms as delivered.
func decodeHRV(a answer, fc *fetchCtx) ([]fhir.Sample, error) {
	days, err := list(a.body, "hrv")
	if err != nil {
		return nil, err
	}
	var out []fhir.Sample
	for _, d := range days {
		var v struct {
			DailyRmssd json.Number `json:"dailyRmssd"`
			DeepRmssd  json.Number `json:"deepRmssd"`
		}
		if len(d.Value) == 0 {
			return nil, errors.New("unexpected hrv answer: a day without value")
		}
		if err := decodeValue(d.Value, &v); err != nil {
			return nil, fmt.Errorf("hrv value: %w", err)
		}
		daily, ok, err := number(v.DailyRmssd)
		if err != nil {
			return nil, fmt.Errorf("hrv value: %w", err)
		}
		if !ok || !fc.inRange(d.DateTime) {
			continue
		}
		s, err := dailySample(fc, fhir.KindHRVRMSSD, "hrv-rmssd", d.DateTime, daily, "ms")
		if err != nil {
			return nil, err
		}
		if deep, ok, err := number(v.DeepRmssd); err == nil && ok {
			s.Components = []fhir.SampleComponent{{Kind: fhir.KindHRVRMSSDDeepSleep, Value: deep, Unit: "ms"}}
		}
		s.Daily, s.DeviceID = true, fc.devs.tracker()
		out = append(out, s)
	}
	return out, nil
}

// decodeHRVIntraday decodes the documented intraday shape
// {"hrv":[{"dateTime":…,"minutes":[{"minute":"…T08:00:00.000","value":{"rmssd":…}}]}]}
// (https://dev.fitbit.com/build/reference/web-api/intraday/get-hrv-intraday-by-interval/): one
// sample per 5-minute value at its local time. A day without "minutes" (a flat daily shape) is an
// unexpected shape, never "no data".
func decodeHRVIntraday(a answer, fc *fetchCtx) ([]fhir.Sample, error) {
	var body struct {
		HRV *[]struct {
			DateTime string `json:"dateTime"`
			Minutes  *[]struct {
				Minute string `json:"minute"`
				Value  struct {
					RMSSD json.Number `json:"rmssd"`
				} `json:"value"`
			} `json:"minutes"`
		} `json:"hrv"`
	}
	dec := json.NewDecoder(bytes.NewReader(a.body))
	dec.UseNumber()
	if err := dec.Decode(&body); err != nil {
		return nil, fmt.Errorf("unexpected hrv intraday answer: %w", err)
	}
	if body.HRV == nil {
		return nil, errors.New(`unexpected hrv intraday answer: no "hrv"`)
	}
	tracker := fc.devs.tracker()
	var out []fhir.Sample
	for _, day := range *body.HRV {
		if !validDate(day.DateTime) || day.Minutes == nil {
			return nil, errors.New(`unexpected hrv intraday answer: a day without dateTime and "minutes"`)
		}
		if !fc.inRange(day.DateTime) {
			continue
		}
		for _, m := range *day.Minutes {
			t, err := localTime(m.Minute, fc.loc)
			if err != nil {
				return nil, fmt.Errorf("hrv intraday: %w", err)
			}
			v, ok, err := number(m.Value.RMSSD)
			if err != nil {
				return nil, fmt.Errorf("hrv intraday rmssd: %w", err)
			}
			if !ok {
				continue
			}
			out = append(out, fhir.Sample{
				Provider: Name, UserID: fc.user, Kind: fhir.KindHRVRMSSD,
				System: systemHRVIntraday, RecordID: fc.user + "/" + m.Minute,
				Value: v, Unit: "ms", Start: t, DeviceID: tracker,
			})
		}
	}
	return out, nil
}

// decodeBreathing decodes the breathing-rate summary {"br":[{dateTime, value{breathingRate}}]}:
// breaths per minute during the main sleep, as the day's value.
func decodeBreathing(a answer, fc *fetchCtx) ([]fhir.Sample, error) {
	days, err := list(a.body, "br")
	if err != nil {
		return nil, err
	}
	var out []fhir.Sample
	for _, d := range days {
		var v struct {
			BreathingRate json.Number `json:"breathingRate"`
		}
		if err := decodeValue(d.Value, &v); err != nil {
			return nil, fmt.Errorf("br value: %w", err)
		}
		dec, ok, err := number(v.BreathingRate)
		if err != nil {
			return nil, fmt.Errorf("br value: %w", err)
		}
		if !ok || isZero(dec) || !fc.inRange(d.DateTime) {
			continue
		}
		s, err := dailySample(fc, fhir.KindRespiratoryRate, "respiratory-rate", d.DateTime, dec, "/min")
		if err != nil {
			return nil, err
		}
		s.Daily, s.DeviceID = true, fc.devs.tracker()
		out = append(out, s)
	}
	return out, nil
}

// decodeSkinTemp decodes the skin temperature summary {"tempSkin":[{dateTime, value{nightlyRelative},
// logType}]}: the night's variation from the user's baseline, a difference in °C (metric), never an
// absolute temperature (https://dev.fitbit.com/build/reference/web-api/temperature/get-temperature-skin-summary-by-interval/:
// "nightlyRelative", the change from the user's personal baseline). It carries no device: the
// value is relative to a baseline of many nights, not a reading of one device. Answers are
// metric (do refuses any other unit system), so the variation is in °C.
func decodeSkinTemp(a answer, fc *fetchCtx) ([]fhir.Sample, error) {
	days, err := list(a.body, "tempSkin")
	if err != nil {
		return nil, err
	}
	var out []fhir.Sample
	for _, d := range days {
		var v struct {
			NightlyRelative json.Number `json:"nightlyRelative"`
		}
		if err := decodeValue(d.Value, &v); err != nil {
			return nil, fmt.Errorf("tempSkin value: %w", err)
		}
		dec, ok, err := number(v.NightlyRelative)
		if err != nil {
			return nil, fmt.Errorf("tempSkin value: %w", err)
		}
		if !ok || !fc.inRange(d.DateTime) {
			continue
		}
		s, err := dailySample(fc, fhir.KindSkinTemperatureVariation, "skin-temperature-variation", d.DateTime, dec, "Cel")
		if err != nil {
			return nil, err
		}
		s.Daily = true
		out = append(out, s)
	}
	return out, nil
}
