package withingssim

import (
	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/providers/sim"
)

// measureKinds are the kinds the adapter makes of the measure types the simulator serves
// (blood pressure is the 9 + 10 pair).
var measureKinds = map[int]fhir.SampleKind{
	typeWeight:      fhir.KindWeight,
	typeHeight:      fhir.KindHeight,
	typeFatFreeMass: fhir.KindFatFreeMass,
	typeFatRatio:    fhir.KindFatRatio,
	typeFatMass:     fhir.KindFatMass,
	typePulse:       fhir.KindHeartRate,
	typeSpO2:        fhir.KindSpO2,
}

// Served counts, per sample kind, the samples the Withings adapter makes of everything the
// simulator serves for p (history and live measurements so far); nil for a person it does not
// hold.
func (s *Simulator) Served(p *sim.Person) map[fhir.SampleKind]int {
	if p == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.byKey[p.Key]
	if a == nil {
		return nil
	}
	out := map[fhir.SampleKind]int{}
	for _, g := range a.groups {
		var sys, dia bool
		for _, m := range g.Measures {
			if k, ok := measureKinds[m.Type]; ok {
				out[k]++
			}
			sys = sys || m.Type == typeSystolic
			dia = dia || m.Type == typeDiastolic
		}
		if sys && dia {
			out[fhir.KindBloodPressure]++
		}
	}
	for range a.days {
		// Every day carries steps, distance, elevation and calories.
		for _, k := range []fhir.SampleKind{fhir.KindSteps, fhir.KindDistance, fhir.KindElevation, fhir.KindCalories} {
			out[k]++
		}
	}
	out[fhir.KindSleep] += len(a.nights)
	out[fhir.KindECG] += len(a.ecgs)
	return out
}
