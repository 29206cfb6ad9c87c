package fitbitsim

import (
	"strings"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/providers/sim"
)

// seriesKinds are the activity resources and the kinds the adapter maps them to.
var seriesKinds = []struct {
	resource string
	kind     fhir.SampleKind
}{
	{"steps", fhir.KindSteps}, {"distance", fhir.KindDistance}, {"calories", fhir.KindCalories}, {"floors", fhir.KindElevation},
}

// Served counts, per sample kind, the samples the fitbit adapter makes of everything the
// simulator serves for p (history and what Push added so far), by the adapter's rules: a zero in
// an activity series is a sample only on the date of the tracker's last sync (Fitbit writes 0 for
// days without data); a weight log gives a weight and a BMI sample, a fat log a fat-ratio sample;
// a sleep log one sleep sample (its stages are components); each daily summary and ECG reading one
// sample. Kinds without samples are absent. It counts nothing for a person the simulator does not
// hold.
func (s *Simulator) Served(p *sim.Person) map[fhir.SampleKind]int {
	out := map[fhir.SampleKind]int{}
	if p == nil || s.userOf[p.Key] == "" {
		return out
	}
	v := s.view(p)
	last := v.cutoff.In(p.Zone)
	end, _ := v.localDay(last.Format(layoutDate))
	sync := v.syncDate()
	for _, d := range v.days(v.w.Start(p), end) {
		date := d.Format(layoutDate)
		for _, sk := range seriesKinds {
			if val := v.seriesValue(sk.resource, d); !zero(val) || date == sync {
				out[sk.kind]++
			}
		}
		if v.heartDay(d).Value.RestingHeartRate != 0 {
			out[fhir.KindRestingHeartRate]++
		}
		n := len(v.weighIns(d))
		out[fhir.KindWeight] += n
		out[fhir.KindBMI] += n
		out[fhir.KindFatRatio] += n
		if _, ok := v.w.Sleep(p, d); ok {
			out[fhir.KindSleep]++
		}
		if avg, _, _, ok := v.spo2(d); ok && avg != 0 {
			out[fhir.KindSpO2]++
		}
		if _, _, ok := v.hrv(d); ok {
			out[fhir.KindHRVRMSSD]++
		}
		if rate, ok := v.breathing(d); ok && rate != 0 {
			out[fhir.KindRespiratoryRate]++
		}
		if _, ok := v.skinTemp(d); ok {
			out[fhir.KindSkinTemperatureVariation]++
		}
	}
	out[fhir.KindECG] = len(v.w.ECGs(p))
	for k, n := range out {
		if n == 0 {
			delete(out, k)
		}
	}
	return out
}

// zero reports whether a series value is zero ("0", "0.0"), as the adapter reads it.
func zero(val string) bool { return strings.Trim(val, "0.") == "" }
