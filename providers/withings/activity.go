package withings

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/openhealthexchange/ohx/fhir"
)

// activityField is one getactivity data field read as a daily total.
type activityField struct {
	Field string // Withings data_fields name, also the last part of the record id
	Kind  fhir.SampleKind
	Unit  string // UCUM
}

// activityFields in request order. steps per day are "/d" (LOINC 41950-7, Physical Activity IG);
// distance is metres; elevation is floors climbed ("{floors}": no UCUM unit for a floor);
// calories are the day's active energy in kcal per day (LOINC 41979-6, https://loinc.org/41979-6).
var activityFields = []activityField{
	{"steps", fhir.KindSteps, "/d"},
	{"distance", fhir.KindDistance, "m"},
	{"elevation", fhir.KindElevation, "{floors}"},
	{"calories", fhir.KindCalories, "kcal/d"},
}

// getactivityBody is the body of /v2/measure action=getactivity.
type getactivityBody struct {
	Activities []activity `json:"activities"`
	More       flexBool   `json:"more"`
	Offset     flexInt    `json:"offset"`
}

type activity struct {
	Date         string     `json:"date"`
	Timezone     string     `json:"timezone"`
	DeviceID     flexString `json:"deviceid"`
	HashDeviceID flexString `json:"hash_deviceid"`
	// The fields, kept as the JSON numbers Withings sent (distance and calories have decimals).
	Fields map[string]json.Number `json:"-"`
}

func (a *activity) UnmarshalJSON(b []byte) error {
	type plain activity
	if err := json.Unmarshal(b, (*plain)(a)); err != nil {
		return err
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	a.Fields = map[string]json.Number{}
	for _, f := range activityFields {
		r, ok := raw[f.Field]
		if !ok || string(r) == "null" {
			continue
		}
		var n json.Number
		if err := json.Unmarshal(r, &n); err != nil {
			return fmt.Errorf("activity %s: %w", f.Field, err)
		}
		a.Fields[f.Field] = n
	}
	return nil
}

// activityDataFields is the data_fields parameter for the wanted kinds.
func activityDataFields(wanted map[fhir.SampleKind]bool) string {
	var fs []string
	for _, f := range activityFields {
		if wanted[f.Kind] {
			fs = append(fs, f.Field)
		}
	}
	return strings.Join(fs, ",")
}

// activitySamples maps daily activity to samples whose period is the local calendar day in the
// activity's own time zone: Start local midnight, End the last second before the next local
// midnight (23 h or 25 h on DST days). Without a known zone the sample carries Day only.
func (c *Client) activitySamples(user string, b *getactivityBody, wanted map[fhir.SampleKind]bool) ([]fhir.Sample, error) {
	var out []fhir.Sample
	for _, a := range b.Activities {
		day, err := time.Parse(time.DateOnly, a.Date)
		if err != nil {
			return nil, fmt.Errorf("activity date %q: %w", a.Date, err)
		}
		base := fhir.Sample{Provider: Name, UserID: user, System: "withings/activity"}
		if loc := c.location(a.Timezone); loc != nil {
			base.Start, base.End = localDay(day, loc)
		} else {
			base.Day = a.Date
		}
		base.DeviceID = string(a.DeviceID)
		if base.DeviceID == "" {
			base.DeviceID = string(a.HashDeviceID)
		}
		for _, f := range activityFields {
			if !wanted[f.Kind] {
				continue
			}
			n, ok := a.Fields[f.Field]
			if !ok {
				continue
			}
			v, ok := number(n)
			if !ok {
				continue
			}
			s := base
			s.Kind = f.Kind
			s.RecordID = fmt.Sprintf("%s/%s/%s", user, a.Date, f.Field)
			s.Value = v
			s.Unit = f.Unit
			out = append(out, s)
		}
	}
	return out, nil
}

// localDay is the calendar day d in loc as an inclusive period: [00:00:00, next midnight − 1 s].
// The end comes from the next local midnight, so DST days are 23 h or 25 h long.
func localDay(d time.Time, loc *time.Location) (start, end time.Time) {
	y, m, dd := d.Date()
	start = time.Date(y, m, dd, 0, 0, 0, 0, loc)
	end = time.Date(y, m, dd+1, 0, 0, 0, 0, loc).Add(-time.Second)
	return start, end
}
