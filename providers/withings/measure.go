package withings

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/providers"
)

// measureType is how one Withings meastype becomes a sample.
type measureType struct {
	Kind fhir.SampleKind
	Unit string // UCUM code (https://ucum.org/ucum)
	// Shift is added to the Withings unit exponent to convert into Unit (height: m → cm, +2).
	Shift int
}

// measureTypes maps the meastypes ohx reads (Measure - Getmeas,
// https://developer.withings.com/api-reference/#tag/measure/operation/measure-getmeas) to kinds and UCUM units. Types 9
// and 10 are read only as the components of a blood-pressure panel.
var measureTypes = map[int]measureType{
	1:   {fhir.KindWeight, "kg", 0},
	4:   {fhir.KindHeight, "cm", 2}, // Withings sends metres; the vital-signs profile wants cm
	5:   {fhir.KindFatFreeMass, "kg", 0},
	6:   {fhir.KindFatRatio, "%", 0},
	8:   {fhir.KindFatMass, "kg", 0},
	9:   {fhir.KindDiastolic, "mm[Hg]", 0},
	10:  {fhir.KindSystolic, "mm[Hg]", 0},
	11:  {fhir.KindHeartRate, "/min", 0},
	12:  {fhir.KindBodyTemperature, "Cel", 0}, // "temperature"
	54:  {fhir.KindSpO2, "%", 0},
	71:  {fhir.KindBodyTemperature, "Cel", 0},
	73:  {fhir.KindSkinTemperature, "Cel", 0}, // skin, never body temperature
	76:  {fhir.KindMuscleMass, "kg", 0},
	77:  {fhir.KindHydration, "kg", 0},
	88:  {fhir.KindBoneMass, "kg", 0},
	91:  {fhir.KindPulseWaveVelocity, "m/s", 0},
	123: {fhir.KindVO2Max, "mL/min/kg", 0},
}

// Blood-pressure meastypes.
const (
	typeDiastolic = 9
	typeSystolic  = 10
)

// meastypes lists the meastypes to request for the wanted kinds, sorted.
func meastypes(wanted map[fhir.SampleKind]bool) []int {
	var ts []int
	for t, mt := range measureTypes {
		k := mt.Kind
		if k == fhir.KindSystolic || k == fhir.KindDiastolic {
			k = fhir.KindBloodPressure
		}
		if wanted[k] {
			ts = append(ts, t)
		}
	}
	slices.Sort(ts)
	return ts
}

func joinInts(ts []int) string {
	s := make([]string, len(ts))
	for i, t := range ts {
		s[i] = strconv.Itoa(t)
	}
	return strings.Join(s, ",")
}

// getmeasBody is the body of /measure action=getmeas.
type getmeasBody struct {
	UpdateTime  flexInt      `json:"updatetime"`
	Timezone    string       `json:"timezone"`
	MeasureGrps []measureGrp `json:"measuregrps"`
	More        flexBool     `json:"more"`
	Offset      flexInt      `json:"offset"`
}

type measureGrp struct {
	GrpID        flexString `json:"grpid"`
	Attrib       flexInt    `json:"attrib"`
	Date         flexInt    `json:"date"`
	Category     flexInt    `json:"category"`
	DeviceID     flexString `json:"deviceid"`
	HashDeviceID flexString `json:"hash_deviceid"`
	Measures     []measure  `json:"measures"`
}

type measure struct {
	Value json.Number `json:"value"`
	Type  flexInt     `json:"type"`
	Unit  flexInt     `json:"unit"`
}

// Categories (Measure - Getmeas, https://developer.withings.com/api-reference/#tag/measure/operation/measure-getmeas):
// 1 real measurements, 2 user objectives (goals).
const categoryMeasure = 1

// measureSamples maps measure groups to samples. Category-2 groups (objectives) are never
// samples. A blood-pressure panel needs both 9 and 10 in the same group; an incomplete group is
// skipped and counted. The pulse (11) of a BP group is its own heart-rate sample. held lists the
// wanted records of the answer that became no sample (an incomplete BP group, a value out of
// range): the vendor still holds them, so the deletion check must not withdraw them.
func (c *Client) measureSamples(user string, b *getmeasBody, wanted map[fhir.SampleKind]bool) (out []fhir.Sample, held []providers.HeldRecord, err error) {
	var goals, incompleteBP, bad int
	for _, g := range b.MeasureGrps {
		if g.Category.Int() != categoryMeasure {
			goals++
			continue
		}
		base := fhir.Sample{
			Provider: Name,
			UserID:   user,
			System:   "withings/measure",
			Start:    c.instant(g.Date.Int(), b.Timezone),
		}
		// attrib (Measure - Getmeas): 2 and 4 are entered by the user; 1 is a device value that may
		// belong to another user of the device; 0, 5, 7, 8, 15 are device measurements.
		switch g.Attrib.Int() {
		case 2, 4:
			base.Manual = true
		case 1:
			base.Ambiguous = true
		}
		if !base.Manual {
			// A hand-typed value was not measured by any device, whatever the group says.
			base.DeviceID = string(g.DeviceID)
			if base.DeviceID == "" {
				base.DeviceID = string(g.HashDeviceID)
			}
		}
		bpID := fmt.Sprintf("%s/%s/bp", user, g.GrpID)
		var sys, dia *fhir.Decimal
		badBP := false
		for _, m := range g.Measures {
			t := int(m.Type.Int())
			mt, ok := measureTypes[t]
			if !ok {
				continue
			}
			v, err := scaled(m.Value.String(), int(m.Unit.Int())+mt.Shift)
			if err != nil {
				bad++
				switch {
				case t == typeSystolic || t == typeDiastolic:
					badBP = true
				case wanted[mt.Kind]:
					held = append(held, providers.HeldRecord{System: base.System, RecordID: fmt.Sprintf("%s/%s/%d", user, g.GrpID, t)})
				}
				continue
			}
			switch t {
			case typeSystolic:
				sys = &v
				continue
			case typeDiastolic:
				dia = &v
				continue
			}
			if !wanted[mt.Kind] {
				continue
			}
			s := base
			s.Kind = mt.Kind
			s.RecordID = fmt.Sprintf("%s/%s/%d", user, g.GrpID, t)
			s.Value = v
			s.Unit = mt.Unit
			out = append(out, s)
		}
		if (sys != nil || dia != nil || badBP) && wanted[fhir.KindBloodPressure] {
			if sys == nil || dia == nil {
				incompleteBP++
				held = append(held, providers.HeldRecord{System: base.System, RecordID: bpID})
				continue
			}
			s := base
			s.Kind = fhir.KindBloodPressure
			s.RecordID = bpID
			s.Components = []fhir.SampleComponent{
				{Kind: fhir.KindSystolic, Value: *sys, Unit: "mm[Hg]"},
				{Kind: fhir.KindDiastolic, Value: *dia, Unit: "mm[Hg]"},
			}
			out = append(out, s)
		}
	}
	if goals+incompleteBP+bad > 0 {
		c.log.Info("measure groups skipped", "objectives", goals, "incomplete_bp", incompleteBP, "bad_values", bad)
	}
	return out, held, nil
}
