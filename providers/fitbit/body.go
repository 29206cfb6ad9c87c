package fitbit

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/openhealthexchange/ohx/fhir"
)

// bodyLog is one entry of the weight log ({"weight":[…]},
// https://dev.fitbit.com/build/reference/web-api/body/get-weight-log/) or the body-fat log
// ({"fat":[…]}, https://dev.fitbit.com/build/reference/web-api/body/get-bodyfat-log/): date and time
// are local wall time, source says who logged it ("API" for an entry made through the API, "Aria" or
// "AriaAir" for a Fitbit scale, other apps by name).
type bodyLog struct {
	LogID  json.Number `json:"logId"`
	Date   string      `json:"date"`
	Time   string      `json:"time"`
	Source string      `json:"source"`
	Weight json.Number `json:"weight"`
	BMI    json.Number `json:"bmi"`
	Fat    json.Number `json:"fat"`
}

// at is the log's instant in the user's zone.
func (l bodyLog) at(loc *time.Location) (time.Time, error) {
	t, err := time.ParseInLocation("2006-01-02 15:04:05", l.Date+" "+l.Time, loc)
	if err != nil {
		return time.Time{}, errors.New("body log date and time are not yyyy-MM-dd HH:mm:ss")
	}
	return t, nil
}

// provenance attributes a body log: a Fitbit Aria scale's entry to the user's single scale, an
// entry made through the API as patient-reported (manual), anything else to no device.
func provenance(source string, devs *deviceSet) (device string, manual bool) {
	s := strings.ToLower(strings.ReplaceAll(source, " ", ""))
	switch {
	case strings.HasPrefix(s, "aria"):
		return devs.scale(), false
	case s == "api":
		return "", true
	}
	return "", false
}

func bodyLogs(body []byte, key string) ([]bodyLog, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, fmt.Errorf("unexpected %s log answer: %w", key, err)
	}
	raw, ok := m[key]
	if !ok {
		return nil, fmt.Errorf("unexpected %s log answer: no %q", key, key)
	}
	var logs []bodyLog
	if err := decodeValue(raw, &logs); err != nil {
		return nil, fmt.Errorf("unexpected %s log answer: %w", key, err)
	}
	for _, l := range logs {
		if l.LogID.String() == "" || !validDate(l.Date) {
			return nil, fmt.Errorf("unexpected %s log answer: entry without logId or date", key)
		}
	}
	return logs, nil
}

// decodeWeight decodes weight logs into weight samples and, when the log has a BMI, BMI samples
// derived from them. The weight is in kg: answers are metric (do refuses any other unit system,
// https://dev.fitbit.com/build/reference/web-api/body/get-weight-log/ writes the weight in the
// request's unit system).
func decodeWeight(a answer, fc *fetchCtx) ([]fhir.Sample, error) {
	logs, err := bodyLogs(a.body, "weight")
	if err != nil {
		return nil, err
	}
	const unit = "kg"
	var out []fhir.Sample
	for _, l := range logs {
		if !fc.inRange(l.Date) {
			continue
		}
		t, err := l.at(fc.loc)
		if err != nil {
			return nil, err
		}
		device, manual := provenance(l.Source, fc.devs)
		id := fc.user + "/" + l.LogID.String()
		w, ok, err := number(l.Weight)
		if err != nil {
			return nil, fmt.Errorf("weight log %s: %w", l.LogID, err)
		}
		if !ok {
			return nil, fmt.Errorf("weight log %s without weight", l.LogID)
		}
		base := fhir.Sample{Provider: Name, UserID: fc.user, System: systemWeight, Start: t, DeviceID: device, Manual: manual}
		ws := base
		ws.Kind, ws.RecordID, ws.Value, ws.Unit = fhir.KindWeight, id, w, unit
		out = append(out, ws)
		if bmi, ok, err := number(l.BMI); err == nil && ok && !isZero(bmi) {
			bs := base
			bs.Kind, bs.RecordID, bs.Value, bs.Unit, bs.DerivedFrom = fhir.KindBMI, id+"/bmi", bmi, "kg/m2", id
			out = append(out, bs)
		}
	}
	return out, nil
}

// decodeFat decodes body-fat logs (percent). They get the weight system with a /fat suffix: the
// same body log family, never colliding with a weight or BMI record.
func decodeFat(a answer, fc *fetchCtx) ([]fhir.Sample, error) {
	logs, err := bodyLogs(a.body, "fat")
	if err != nil {
		return nil, err
	}
	var out []fhir.Sample
	for _, l := range logs {
		if !fc.inRange(l.Date) {
			continue
		}
		t, err := l.at(fc.loc)
		if err != nil {
			return nil, err
		}
		v, ok, err := number(l.Fat)
		if err != nil || !ok {
			return nil, fmt.Errorf("fat log %s without a fat value", l.LogID)
		}
		device, manual := provenance(l.Source, fc.devs)
		out = append(out, fhir.Sample{
			Provider: Name, UserID: fc.user, Kind: fhir.KindFatRatio, System: systemWeight,
			RecordID: fc.user + "/" + l.LogID.String() + "/fat", Value: v, Unit: "%", Start: t,
			DeviceID: device, Manual: manual,
		})
	}
	return out, nil
}
