package fitbitsim

import (
	"math"
	"slices"
	"time"

	"github.com/openhealthexchange/ohx/providers/sim"
)

// Fitbit's local wall-time layouts: dates, log times and the datetimes of sleep, ECG and devices.
const (
	layoutDate     = "2006-01-02"
	layoutTime     = "15:04:05"
	layoutDateTime = "2006-01-02T15:04:05.000"
)

// liveState is what Push added for a person.
type liveState struct {
	synced  time.Time    // the tracker's last live sync: today's steps count up to it (zero: none yet)
	weights []sim.Weight // live weigh-ins, oldest first
	pushes  int
}

// view is one person's data as the simulator serves it at one moment: the world's history plus
// what Push added. Handlers and Served read through the same view, so what Served counts is
// exactly what the API answers.
type view struct {
	w      *sim.World
	p      *sim.Person
	cutoff time.Time    // activity counts up to here: the Epoch, or the last live sync after it
	sync   time.Time    // the tracker's lastSyncTime
	live   []sim.Weight // live weigh-ins
}

func (s *Simulator) view(p *sim.Person) *view {
	s.mu.Lock()
	l := s.live[p.Key]
	v := &view{w: s.w, p: p, cutoff: s.w.Epoch, sync: s.w.Epoch.Add(-time.Minute).Truncate(time.Minute),
		live: slices.Clone(l.weights)}
	if l.synced.After(s.w.Epoch) {
		v.cutoff, v.sync = l.synced, l.synced
	}
	s.mu.Unlock()
	return v
}

// localDay is local midnight of a yyyy-MM-dd date in the person's zone.
func (v *view) localDay(date string) (time.Time, error) {
	return time.ParseInLocation(layoutDate, date, v.p.Zone)
}

// days lists the local midnights of the dates [from, to] (both yyyy-MM-dd, valid).
func (v *view) days(from, to time.Time) []time.Time {
	var out []time.Time
	for d := from; !d.After(to); d = d.AddDate(0, 0, 1) {
		out = append(out, d)
	}
	return out
}

// activity is a day's totals up to the cutoff; ok is false for a day outside the tracked span
// (before the history, or after the cutoff's day), which Fitbit writes as zeros.
func (v *view) activity(day time.Time) (sim.Activity, bool) {
	if day.Before(v.w.Start(v.p)) || !day.Before(v.cutoff) {
		return sim.Activity{Day: day}, false
	}
	return v.w.ActivityUntil(v.p, day, v.cutoff), true
}

// syncDate is the local date of the tracker's last sync: the one date on which the adapter takes
// a zero in a series for a real zero.
func (v *view) syncDate() string { return v.sync.In(v.p.Zone).Format(layoutDate) }

// weighIns are the day's weigh-ins: the history's and the live ones, by time.
func (v *view) weighIns(day time.Time) []sim.Weight {
	var out []sim.Weight
	if wt, ok := v.w.Weight(v.p, day); ok {
		out = append(out, wt)
	}
	date := day.Format(layoutDate)
	for _, wt := range v.live {
		if wt.At.In(v.p.Zone).Format(layoutDate) == date {
			out = append(out, wt)
		}
	}
	return out
}

// lastWeighIn is the latest weigh-in (live or history), false when there is none.
func (v *view) lastWeighIn() (sim.Weight, bool) {
	if n := len(v.live); n > 0 {
		return v.live[n-1], true
	}
	days := v.w.DaysOf(v.p)
	for i := len(days) - 1; i >= 0; i-- {
		if wt, ok := v.w.Weight(v.p, days[i]); ok {
			return wt, true
		}
	}
	return sim.Weight{}, false
}

// bmi is weight / height², at Fitbit's two decimals.
func (v *view) bmi(kg float64) float64 { return round(kg/(v.p.HeightM*v.p.HeightM), 2) }

// rhr is the day's resting heart rate (known once the day is over).
func (v *view) rhr(day time.Time) (int, bool) { return v.w.RestingHeartRate(v.p, day) }

// The sleep-derived summaries are written on the morning's date, like the sleep log's
// dateOfSleep. sim has SpO2 but no HRV, breathing rate or skin temperature: those are derived,
// deterministically and only from values sim gives, from the resting heart rate of the day
// before the night (a lower resting rate goes with a higher HRV and a slower breathing rate) and
// the night's stages; the skin temperature variation follows the change of the resting rate
// between the two days before the night (a rising resting rate and skin temperature go together
// in fever).

// spo2 is the night's average, minimum and maximum oxygen saturation (%).
func (v *view) spo2(day time.Time) (avg, lo, hi float64, ok bool) {
	avg, ok = v.w.SpO2(v.p, day)
	if !ok {
		return 0, 0, 0, false
	}
	sl, _ := v.w.Sleep(v.p, day)
	lo = round(avg-1.5-float64(sl.Minutes(sim.StageAwake)%20)/10, 1)
	hi = round(math.Min(100, avg+1.8), 1)
	return avg, lo, hi, true
}

// hrv is the night's RMSSD (ms), overall and in deep sleep.
func (v *view) hrv(day time.Time) (daily, deep float64, ok bool) {
	sl, ok1 := v.w.Sleep(v.p, day)
	rhr, ok2 := v.rhr(day.AddDate(0, 0, -1))
	if !ok1 || !ok2 {
		return 0, 0, false
	}
	daily = round(math.Max(10, 2300/float64(rhr)+0.08*float64(sl.Minutes(sim.StageDeep)-60)), 1)
	return daily, round(daily*1.08, 1), true
}

// breathing is the night's breathing rate (/min).
func (v *view) breathing(day time.Time) (float64, bool) {
	sl, ok1 := v.w.Sleep(v.p, day)
	rhr, ok2 := v.rhr(day.AddDate(0, 0, -1))
	if !ok1 || !ok2 {
		return 0, false
	}
	return round(10.5+0.09*float64(rhr)+0.02*float64(sl.Minutes(sim.StageREM)-90), 1), true
}

// skinTemp is the night's skin temperature variation from the personal baseline (°C).
func (v *view) skinTemp(day time.Time) (float64, bool) {
	if _, ok := v.w.Sleep(v.p, day); !ok {
		return 0, false
	}
	r1, ok1 := v.rhr(day.AddDate(0, 0, -1))
	r2, ok2 := v.rhr(day.AddDate(0, 0, -2))
	if !ok1 || !ok2 {
		return 0, false
	}
	return round(0.12*float64(r1-r2), 1), true
}

// round rounds to places decimals, never giving −0 (which JSON would write "-0").
func round(x float64, places int) float64 {
	p := math.Pow(10, float64(places))
	r := math.Round(x*p) / p
	if r == 0 {
		return 0
	}
	return r
}
