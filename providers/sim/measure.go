package sim

import (
	"math"
	"time"
)

// Weight is a weigh-in on a body-composition scale.
type Weight struct {
	At     time.Time
	Kg     float64 // 0.01 kg resolution, as scales report
	FatPct float64 // body fat, % (0.1 resolution)
}

// FatMassKg is the fat mass the scale derives from the weight and the fat ratio.
func (w Weight) FatMassKg() float64 { return round(w.Kg*w.FatPct/100, 2) }

// BloodPressure is one cuff reading.
type BloodPressure struct {
	At                  time.Time
	Systolic, Diastolic int // mmHg
	Pulse               int // /min
}

// Activity is a day's activity totals, up to the cut-off it was computed at.
type Activity struct {
	Day        time.Time // local midnight
	Steps      int
	DistanceM  float64 // metres
	ActiveKcal float64
	TotalKcal  float64 // active energy plus the basal metabolic rate's share of the day
	Floors     int
}

// Stage kinds of a sleep session.
const (
	StageAwake = "awake"
	StageLight = "light"
	StageDeep  = "deep"
	StageREM   = "rem"
)

// Stage is one segment of a sleep session.
type Stage struct {
	Start, End time.Time
	Kind       string // StageAwake, StageLight, StageDeep or StageREM
}

// Sleep is one night's session; its stages cover [Start, End) without gaps.
type Sleep struct {
	Start, End time.Time
	Stages     []Stage
}

// Minutes is the total time of a stage kind.
func (s Sleep) Minutes(kind string) int {
	var d time.Duration
	for _, st := range s.Stages {
		if st.Kind == kind {
			d += st.End.Sub(st.Start)
		}
	}
	return int(d / time.Minute)
}

// HeartRate is a spot heart-rate sample.
type HeartRate struct {
	At  time.Time
	BPM int
}

// ECG rhythm classifications.
const (
	RhythmNormal       = "normal-sinus-rhythm"
	RhythmAFib         = "atrial-fibrillation"
	RhythmInconclusive = "inconclusive"
)

// ECG is a single-lead 30-second recording.
type ECG struct {
	At        time.Time
	Rhythm    string // RhythmNormal, RhythmAFib or RhythmInconclusive
	HeartRate int    // average /min
	Seconds   int
	// id keys the waveform.
	id uint64
}

// weightOn is the person's trend weight at an instant (kg), before the day's noise: a slow
// swing around their mean weight over a two-year cycle (kilograms lost or gained over months),
// keyed by the calendar, not by the Epoch, so that one seed weighs the same on the same day in
// every run.
func (p *Person) weightOn(t time.Time) float64 {
	days := float64(t.Unix()) / 86400
	return p.weight0 + p.weightSwing*math.Sin(2*math.Pi*days/730+p.weightPhase)
}

// Weight is the day's weigh-in: most mornings between 06:30 and 08:30 local, never at or after
// the Epoch.
func (w *World) Weight(p *Person, day time.Time) (Weight, bool) {
	r := w.stream("weight", p.Index, dayNumber(day))
	if r.float() < 0.18 { // skipped a day
		return Weight{}, false
	}
	t := at(day, r.between(6.5, 8.5), p.Zone)
	if !w.InHistory(p, t) {
		return Weight{}, false
	}
	return p.weighIn(w, t, r), true
}

func (p *Person) weighIn(w *World, t time.Time, r *rng) Weight {
	kg := p.weightOn(t) + 0.35*r.normal()
	fat := p.fat0 + 0.6*r.normal() + 0.3*(p.weightOn(t)-p.weight0) // fat follows the swing
	return Weight{At: t, Kg: round(kg, 2), FatPct: round(fat, 1)}
}

// LiveWeight is a weigh-in at an instant after the Epoch, as a push of the demo records it:
// the person's trend at that time with a deterministic jitter keyed by the minute.
func (w *World) LiveWeight(p *Person, t time.Time) Weight {
	t = t.Truncate(time.Second)
	return p.weighIn(w, t, w.stream("live-weight", p.Index, int(t.Unix()/60)))
}

// BloodPressure is the day's cuff reading: about every other evening between 19:00 and 22:00.
func (w *World) BloodPressure(p *Person, day time.Time) (BloodPressure, bool) {
	r := w.stream("bp", p.Index, dayNumber(day))
	if r.float() < 0.5 {
		return BloodPressure{}, false
	}
	t := at(day, r.between(19, 22), p.Zone)
	if !w.InHistory(p, t) {
		return BloodPressure{}, false
	}
	return p.cuff(t, r), true
}

func (p *Person) cuff(t time.Time, r *rng) BloodPressure {
	return BloodPressure{At: t,
		Systolic:  int(math.Round(p.sys0 + 6*r.normal())),
		Diastolic: int(math.Round(p.dia0 + 4*r.normal())),
		Pulse:     int(math.Round(p.rhr0 + 8 + 5*r.normal())),
	}
}

// LiveBloodPressure is a cuff reading at an instant after the Epoch.
func (w *World) LiveBloodPressure(p *Person, t time.Time) BloodPressure {
	t = t.Truncate(time.Second)
	return p.cuff(t, w.stream("live-bp", p.Index, int(t.Unix()/60)))
}

// Activity is the day's totals up to the Epoch (the whole day for a past day, a part of it for
// the Epoch's own day, zeros after it).
func (w *World) Activity(p *Person, day time.Time) Activity {
	return w.ActivityUntil(p, day, w.Epoch)
}

// ActivityUntil is the day's totals accumulated until an instant: a step count grows through the
// day (most of it between 07:00 and 22:00), so a live push later in the day reports a larger total
// for the same day.
func (w *World) ActivityUntil(p *Person, day time.Time, until time.Time) Activity {
	day = midnight(day.In(p.Zone))
	r := w.stream("activity", p.Index, dayNumber(day))
	mean := p.steps0
	switch day.Weekday() {
	case time.Saturday:
		mean *= 1.25 // a long walk
	case time.Sunday:
		mean *= 0.7
	}
	total := math.Max(300, mean*(1+0.22*r.normal()))
	stride := p.HeightM * 0.415 // https://www.ncbi.nlm.nih.gov/pmc/articles/PMC3087429/ (step length ≈ 0.41–0.42 × height)
	floors := math.Max(0, 6+4*r.normal())
	frac := dayFraction(day, until)
	steps := int(total * frac)
	kg := p.weightOn(day)
	active := float64(steps) * 0.0005 * kg                                                                                      // ≈ 0.5 kcal per kg per 1000 steps
	bmr := 10*kg + 6.25*p.HeightM*100 - 5*float64(ageAt(p, day)) + map[bool]float64{true: -161, false: 5}[p.Gender == "female"] // Mifflin–St Jeor
	end := day.AddDate(0, 0, 1)
	part := 1.0
	if until.Before(end) {
		part = math.Max(0, float64(until.Sub(day))/float64(end.Sub(day)))
	}
	return Activity{Day: day, Steps: steps,
		DistanceM:  round(float64(steps)*stride, 1),
		ActiveKcal: round(active, 0),
		TotalKcal:  round(active+bmr*part, 0),
		Floors:     int(floors * frac),
	}
}

// dayFraction is the share of a day's activity done by an instant: none before 07:00, all by
// 22:00, a smooth ramp between.
func dayFraction(day, until time.Time) float64 {
	end := day.AddDate(0, 0, 1)
	switch {
	case !until.After(day):
		return 0
	case !until.Before(end):
		return 1
	}
	h := until.Sub(day).Hours()
	x := math.Min(1, math.Max(0, (h-7)/15))
	return x * x * (3 - 2*x)
}

func ageAt(p *Person, day time.Time) int {
	b, err := time.Parse(time.DateOnly, p.BirthDate)
	if err != nil {
		return 50
	}
	age := day.Year() - b.Year()
	if day.YearDay() < b.YearDay() {
		age--
	}
	return age
}

// RestingHeartRate is the day's resting heart rate, known once the day is over (vendors compute
// it from the whole day).
func (w *World) RestingHeartRate(p *Person, day time.Time) (int, bool) {
	day = midnight(day.In(p.Zone))
	if w.elapsed(p, day) < 1 || day.Before(w.Start(p)) {
		return 0, false
	}
	r := w.stream("rhr", p.Index, dayNumber(day))
	return int(math.Round(p.rhr0 + 2.5*r.normal())), true
}

// HeartRates are spot samples through the waking hours of a day, one every two hours.
func (w *World) HeartRates(p *Person, day time.Time) []HeartRate {
	day = midnight(day.In(p.Zone))
	r := w.stream("hr", p.Index, dayNumber(day))
	var out []HeartRate
	for h := 8; h <= 22; h += 2 {
		t := at(day, float64(h)+r.between(0, 0.5), p.Zone)
		bpm := int(math.Round(p.rhr0 + 12 + 10*r.normal()))
		if w.InHistory(p, t) {
			out = append(out, HeartRate{At: t, BPM: max(45, bpm)})
		}
	}
	return out
}

// Sleep is the night that ends on the morning of day: to bed between 22:15 and 00:30, up after
// 6 to 8.5 hours, light, deep and REM cycles of about 90 minutes with short awakenings. A night
// that has not ended by the Epoch is not reported.
func (w *World) Sleep(p *Person, day time.Time) (Sleep, bool) {
	day = midnight(day.In(p.Zone))
	r := w.stream("sleep", p.Index, dayNumber(day))
	prev := day.AddDate(0, 0, -1)
	start := at(prev, r.between(22.25, 24.5), p.Zone)
	end := start.Add(time.Duration(r.between(6, 8.5) * float64(time.Hour))).Truncate(time.Minute)
	start = start.Truncate(time.Minute)
	if start.Before(w.Start(p)) || !end.Before(w.Epoch) {
		return Sleep{}, false
	}
	s := Sleep{Start: start, End: end}
	t := start
	add := func(kind string, minutes float64) {
		e := t.Add(time.Duration(math.Max(1, math.Round(minutes))) * time.Minute)
		if e.After(end) {
			e = end
		}
		if e.After(t) {
			s.Stages = append(s.Stages, Stage{Start: t, End: e, Kind: kind})
			t = e
		}
	}
	add(StageAwake, r.between(5, 20)) // falling asleep
	for cycle := 0; t.Before(end); cycle++ {
		deep := math.Max(5, 35-8*float64(cycle)+5*r.normal()) // deep sleep early in the night
		rem := 10 + 7*float64(cycle) + 4*r.normal()           // REM longer towards morning
		add(StageLight, 45+8*r.normal())
		add(StageDeep, deep)
		add(StageLight, 10+3*r.normal())
		add(StageREM, math.Max(5, rem))
		if r.float() < 0.35 {
			add(StageAwake, r.between(2, 9))
		}
	}
	return s, true
}

// SpO2 is the night's average oxygen saturation (%), reported with the night's sleep.
func (w *World) SpO2(p *Person, day time.Time) (float64, bool) {
	if _, ok := w.Sleep(p, day); !ok {
		return 0, false
	}
	r := w.stream("spo2", p.Index, dayNumber(midnight(day.In(p.Zone))))
	return round(math.Min(100, p.spo20+0.6*r.normal()), 1), true
}

// ECGs are the person's recordings in their history, oldest first: about one every twelve
// days, at a daytime hour. A person prone to atrial fibrillation shows it in some.
func (w *World) ECGs(p *Person) []ECG {
	var out []ECG
	for _, day := range w.DaysOf(p) {
		r := w.stream("ecg", p.Index, dayNumber(day))
		if r.float() > 1.0/12 {
			continue
		}
		t := at(day, r.between(9, 21), p.Zone)
		if !w.InHistory(p, t) {
			continue
		}
		e := ECG{At: t, Rhythm: RhythmNormal, HeartRate: int(math.Round(p.rhr0 + 10 + 6*r.normal())), Seconds: 30, id: r.next()}
		switch x := r.float(); {
		case p.afib && x < 0.4:
			e.Rhythm, e.HeartRate = RhythmAFib, e.HeartRate+18
		case x > 0.93:
			e.Rhythm = RhythmInconclusive
		}
		out = append(out, e)
	}
	return out
}

// Signal is the recording's waveform in microvolts at hz samples per second: P, QRS and T waves
// as Gaussian bumps on a slowly wandering baseline; in atrial fibrillation the beats come at
// irregular intervals without P waves.
func (e ECG) Signal(hz int) []int {
	r := &rng{s: e.id}
	n := e.Seconds * hz
	out := make([]int, n)
	rr := 60 / float64(max(30, e.HeartRate))
	var beats []float64
	for t := 0.2; t < float64(e.Seconds); {
		beats = append(beats, t)
		if e.Rhythm == RhythmAFib {
			t += rr * r.between(0.6, 1.4)
		} else {
			t += rr * (1 + 0.03*r.normal())
		}
	}
	bump := func(t, center, width, height float64) float64 {
		d := (t - center) / width
		return height * math.Exp(-0.5*d*d)
	}
	for i := range out {
		t := float64(i) / float64(hz)
		v := 40 * math.Sin(2*math.Pi*0.25*t) // baseline wander
		for _, b := range beats {
			if math.Abs(t-b) > 0.6 {
				continue
			}
			if e.Rhythm != RhythmAFib {
				v += bump(t, b-0.16, 0.025, 120) // P
			}
			v += bump(t, b-0.02, 0.008, -120) // Q
			v += bump(t, b, 0.012, 1100)      // R
			v += bump(t, b+0.03, 0.01, -250)  // S
			v += bump(t, b+0.25, 0.05, 280)   // T
		}
		out[i] = int(math.Round(v))
	}
	return out
}

// Battery is a device's charge (%) at an instant: a wearable drains over about five days and is
// charged overnight, a scale or cuff drains over months.
func (w *World) Battery(p *Person, device string, t time.Time) int {
	r := w.stream("battery/"+device, p.Index, 0)
	period := 5 * 24 * time.Hour
	if device != "tracker" && device != "watch" {
		period = 180 * 24 * time.Hour
	}
	phase := time.Duration(r.between(0, 1) * float64(period))
	frac := float64((t.Sub(time.Unix(0, 0))+phase)%period) / float64(period)
	return int(math.Round(100 - 92*frac))
}
