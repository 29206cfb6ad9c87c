package googlehealthsim

import (
	"math"
	"strconv"
	"time"

	"github.com/openhealthexchange/ohx/providers/sim"
)

// point is one data point with the values its filters compare.
type point struct {
	start, end time.Time // sample time (start = end), or the session's interval
	date       string    // YYYY-MM-DD of a daily point
	body       dataPoint
}

// ecgHz is the sampling rate of the simulated ECG traces; the waveform is in µV, so the
// millivolts scaling factor (mV = sample / factor) is 1000.
const (
	ecgHz    = 250
	ecgScale = 1000
)

// tracker is the person's wrist device: a Pixel Watch 3 for every other person, a Charge 6 for
// the others (both have the ECG app).
func tracker(p *sim.Person) (battery string, src sourceDevice) {
	if p.Index%2 == 0 {
		return "watch", sourceDevice{DisplayName: "Pixel Watch 3", FormFactor: "WATCH", Manufacturer: "Google"}
	}
	return "tracker", sourceDevice{DisplayName: "Charge 6", FormFactor: "TRACKER", Manufacturer: "Fitbit"}
}

var scale = sourceDevice{DisplayName: "Aria Air", FormFactor: "SCALE", Manufacturer: "Fitbit"}

// physical is an instant as Google writes physicalTime (RFC 3339, UTC).
func physical(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// offset is the zone's UTC offset at t as a google.protobuf.Duration ("-28800s").
func offset(t time.Time, zone *time.Location) string {
	_, secs := t.In(zone).Zone()
	return strconv.Itoa(secs) + "s"
}

func dateOf(t time.Time) jsonDate {
	y, m, d := t.Date()
	return jsonDate{Year: y, Month: int(m), Day: d}
}

func civil(t time.Time, zone *time.Location) *civilDateTime {
	l := t.In(zone)
	c := &civilDateTime{Date: dateOf(l)}
	if h, m, s := l.Clock(); h != 0 || m != 0 || s != 0 {
		c.Time = &timeOfDay{Hours: h, Minutes: m, Seconds: s}
	}
	return c
}

func sampled(t time.Time, zone *time.Location) sampleTime {
	return sampleTime{PhysicalTime: physical(t), UTCOffset: offset(t, zone), CivilTime: *civil(t, zone)}
}

// points are a person's data points of a served data type, history and live, oldest first.
func (s *Simulator) points(p *sim.Person, d dataType, l liveData) []point {
	w := s.world
	_, wrist := tracker(p)
	passive := dataSource{RecordingMethod: "PASSIVELY_MEASURED", Device: &wrist, Platform: "FITBIT"}
	derived := dataSource{RecordingMethod: "DERIVED", Platform: "FITBIT"}
	var out []point
	switch d.name {
	case "weight", "body-fat":
		for _, wi := range s.weighIns(p, l) {
			out = append(out, s.weighInPoint(p, d.name, wi.Weight, wi.live))
		}
	case "heart-rate":
		for _, day := range w.DaysOf(p) {
			for _, hr := range w.HeartRates(p, day) {
				out = append(out, point{start: hr.At, end: hr.At, body: dataPoint{DataSource: passive,
					HeartRate: &heartRateValue{SampleTime: sampled(hr.At, p.Zone), BeatsPerMinute: strconv.Itoa(hr.BPM)}}})
			}
		}
	case "daily-resting-heart-rate":
		for _, day := range w.DaysOf(p) {
			if bpm, ok := w.RestingHeartRate(p, day); ok {
				v := &restingHeartRateValue{Date: dateOf(day), BeatsPerMinute: strconv.Itoa(bpm)}
				v.Metadata.CalculationMethod = "WITH_SLEEP"
				out = append(out, point{start: day, end: day, date: day.Format(time.DateOnly),
					body: dataPoint{DataSource: derived, DailyRestingHeartRate: v}})
			}
		}
	case "daily-oxygen-saturation":
		for _, day := range w.DaysOf(p) {
			if pct, ok := w.SpO2(p, day); ok {
				out = append(out, point{start: day, end: day, date: day.Format(time.DateOnly),
					body: dataPoint{DataSource: derived, DailyOxygenSaturation: &oxygenSaturationValue{Date: dateOf(day), AveragePercentage: pct}}})
			}
		}
	case "sleep":
		for _, day := range w.DaysOf(p) {
			if sl, ok := w.Sleep(p, day); ok {
				out = append(out, point{start: sl.Start, end: sl.End, body: dataPoint{
					Name: s.pointName(p, d.name, strconv.FormatInt(sl.Start.Unix(), 10)), DataSource: passive,
					Sleep: sleepOf(sl, p.Zone)}})
			}
		}
	case "electrocardiogram":
		src := dataSource{RecordingMethod: "ACTIVELY_MEASURED", Device: &wrist, Platform: "FITBIT"}
		for _, e := range w.ECGs(p) {
			end := e.At.Add(time.Duration(e.Seconds) * time.Second)
			out = append(out, point{start: e.At, end: end, body: dataPoint{
				Name: s.pointName(p, d.name, strconv.FormatInt(e.At.Unix(), 10)), DataSource: src,
				Electrocardiogram: &ecgValue{
					// Historical ECGs carry no UTC offsets (the reference's Electrocardiogram.interval).
					Interval:          interval{StartTime: physical(e.At), EndTime: physical(end)},
					BeatsPerMinuteAvg: strconv.Itoa(e.HeartRate), LeadNumber: 1,
					MillivoltsScalingFactor: ecgScale, SamplingFrequencyHertz: ecgHz,
					ResultClassification: classification[e.Rhythm], WaveformSamples: e.Signal(ecgHz),
					MedicalDeviceInfo: medicalDeviceInfo{DeviceModel: wrist.DisplayName},
				}}})
		}
	}
	return out
}

// classification is Electrocardiogram.resultClassification for the world's rhythms.
var classification = map[string]string{
	sim.RhythmNormal:       "NORMAL_SINUS_RHYTHM",
	sim.RhythmAFib:         "ATRIAL_FIBRILLATION",
	sim.RhythmInconclusive: "INCONCLUSIVE",
}

// weighIn is a scale reading and whether Push added it.
type weighIn struct {
	sim.Weight
	live bool
}

// weighIns are the person's history weigh-ins and the live ones, oldest first.
func (s *Simulator) weighIns(p *sim.Person, l liveData) []weighIn {
	var out []weighIn
	for _, day := range s.world.DaysOf(p) {
		if wt, ok := s.world.Weight(p, day); ok {
			out = append(out, weighIn{Weight: wt})
		}
	}
	for _, wt := range l.weights {
		out = append(out, weighIn{Weight: wt, live: true})
	}
	return out
}

// weighInPoint is the weight or body-fat point of a scale reading: the Aria measures both at
// once, and Google stores them as two data types.
func (s *Simulator) weighInPoint(p *sim.Person, dataType string, wt sim.Weight, live bool) point {
	key := strconv.FormatInt(wt.At.Unix(), 10)
	if live {
		key = "live-" + key
	}
	dp := dataPoint{Name: s.pointName(p, dataType, key),
		DataSource: dataSource{RecordingMethod: "ACTIVELY_MEASURED", Device: &scale, Platform: "FITBIT"}}
	st := sampled(wt.At, p.Zone)
	if dataType == "weight" {
		dp.Weight = &weightValue{SampleTime: st, WeightGrams: int64(math.Round(wt.Kg * 1000))}
	} else {
		dp.BodyFat = &bodyFatValue{SampleTime: st, Percentage: wt.FatPct}
	}
	return point{start: wt.At, end: wt.At, body: dp}
}

// stageTypes maps the world's stages to Google's SleepStage types.
var stageTypes = map[string]string{sim.StageAwake: "AWAKE", sim.StageLight: "LIGHT", sim.StageDeep: "DEEP", sim.StageREM: "REM"}

// sleepOf renders a night as a STAGES sleep session with its summary: minutes asleep (light,
// deep and REM), awake, in the sleep period, to fall asleep (a first awake stage) and after
// wake-up (a last awake stage).
func sleepOf(sl sim.Sleep, zone *time.Location) *sleepValue {
	v := &sleepValue{
		Interval: interval{StartTime: physical(sl.Start), StartUTCOffset: offset(sl.Start, zone),
			EndTime: physical(sl.End), EndUTCOffset: offset(sl.End, zone),
			CivilStartTime: civil(sl.Start, zone), CivilEndTime: civil(sl.End, zone)},
		Type:       "STAGES",
		Metadata:   sleepMetadata{Processed: true, StagesStatus: "SUCCEEDED"},
		CreateTime: physical(sl.End), UpdateTime: physical(sl.End),
	}
	counts := map[string]int{}
	for _, st := range sl.Stages {
		v.Stages = append(v.Stages, sleepStage{StartTime: physical(st.Start), StartUTCOffset: offset(st.Start, zone),
			EndTime: physical(st.End), EndUTCOffset: offset(st.End, zone), Type: stageTypes[st.Kind]})
		counts[st.Kind]++
	}
	mins := func(i int) int {
		if i < 0 || i >= len(sl.Stages) || sl.Stages[i].Kind != sim.StageAwake {
			return 0
		}
		return int(sl.Stages[i].End.Sub(sl.Stages[i].Start) / time.Minute)
	}
	after := 0
	if len(sl.Stages) > 1 {
		after = mins(len(sl.Stages) - 1)
	}
	asleep := sl.Minutes(sim.StageLight) + sl.Minutes(sim.StageDeep) + sl.Minutes(sim.StageREM)
	v.Summary = sleepSummary{
		MinutesAsleep:        strconv.Itoa(asleep),
		MinutesAwake:         strconv.Itoa(sl.Minutes(sim.StageAwake)),
		MinutesInSleepPeriod: strconv.Itoa(int(sl.End.Sub(sl.Start) / time.Minute)),
		MinutesToFallAsleep:  strconv.Itoa(mins(0)),
		MinutesAfterWakeUp:   strconv.Itoa(after),
	}
	for _, k := range []string{sim.StageAwake, sim.StageLight, sim.StageDeep, sim.StageREM} {
		v.Summary.StagesSummary = append(v.Summary.StagesSummary, stageSummary{Type: stageTypes[k],
			Minutes: strconv.Itoa(sl.Minutes(k)), Count: strconv.Itoa(counts[k])})
	}
	return v
}
