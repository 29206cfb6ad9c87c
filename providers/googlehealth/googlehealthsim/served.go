package googlehealthsim

import (
	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/providers/sim"
)

// Served counts, per sample kind, the samples the adapter produces from everything the simulator
// serves for p (history and live so far): one per data point (a sleep session is one sample
// whose stages are components; a weigh-in is a weight and a fat-ratio sample) and one per
// civil day with an activity total. Kinds the simulator has no data of are absent; a person the
// simulator does not hold gives nil.
func (s *Simulator) Served(p *sim.Person) map[fhir.SampleKind]int {
	if p == nil || s.person(p.Key) != p {
		return nil
	}
	l := s.liveOf(p)
	until := s.activityUntil(l)
	out := map[fhir.SampleKind]int{}
	for _, d := range dataTypes {
		if !d.served {
			continue
		}
		if d.rec == recRollup {
			n := 0
			for day := s.world.Start(p); day.Before(until); day = day.AddDate(0, 0, 1) {
				if _, ok := s.dayTotal(p, d, day, until); ok {
					n++
				}
			}
			out[d.kind] = n
			continue
		}
		out[d.kind] = len(s.points(p, d, l))
	}
	return out
}
