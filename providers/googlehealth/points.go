package googlehealth

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"

	"github.com/openhealthexchange/ohx/fhir"
)

// The data point shapes of https://developers.google.com/health/reference/rest/v4/users.dataTypes.dataPoints
// that the adapter reads. Unknown fields are ignored; a point without the union field of its
// data type, or without its required value or time, is an error (never silently skipped).

type sampleTime struct {
	PhysicalTime string `json:"physicalTime"`
	UTCOffset    string `json:"utcOffset"`
}

type sessionInterval struct {
	StartTime      string `json:"startTime"`
	EndTime        string `json:"endTime"`
	StartUTCOffset string `json:"startUtcOffset"`
	EndUTCOffset   string `json:"endUtcOffset"`
}

type dataSource struct {
	RecordingMethod string `json:"recordingMethod"`
	Platform        string `json:"platform"`
	Device          *struct {
		DisplayName  string `json:"displayName"`
		FormFactor   string `json:"formFactor"`
		Manufacturer string `json:"manufacturer"`
	} `json:"device"`
}

type dataPoint struct {
	Name       string     `json:"name"`
	DataSource dataSource `json:"dataSource"`

	Weight *struct {
		SampleTime  sampleTime `json:"sampleTime"`
		WeightGrams flexNumber `json:"weightGrams"`
	} `json:"weight"`
	BodyFat *struct {
		SampleTime sampleTime `json:"sampleTime"`
		Percentage flexNumber `json:"percentage"`
	} `json:"bodyFat"`
	HeartRate *struct {
		SampleTime     sampleTime `json:"sampleTime"`
		BeatsPerMinute flexNumber `json:"beatsPerMinute"`
	} `json:"heartRate"`
	DailyRestingHeartRate *struct {
		Date           civilDate  `json:"date"`
		BeatsPerMinute flexNumber `json:"beatsPerMinute"`
	} `json:"dailyRestingHeartRate"`
	DailyHeartRateVariability *struct {
		Date civilDate `json:"date"`
		// RMSSD over the main sleep, and during deep sleep.
		Average   flexNumber `json:"averageHeartRateVariabilityMilliseconds"`
		DeepSleep flexNumber `json:"deepSleepRootMeanSquareOfSuccessiveDifferencesMilliseconds"`
	} `json:"dailyHeartRateVariability"`
	DailyOxygenSaturation *struct {
		Date              civilDate  `json:"date"`
		AveragePercentage flexNumber `json:"averagePercentage"`
	} `json:"dailyOxygenSaturation"`
	DailyRespiratoryRate *struct {
		Date             civilDate  `json:"date"`
		BreathsPerMinute flexNumber `json:"breathsPerMinute"`
	} `json:"dailyRespiratoryRate"`
	DailySleepTemperatureDerivations *struct {
		Date     civilDate  `json:"date"`
		Nightly  flexNumber `json:"nightlyTemperatureCelsius"`
		Baseline flexNumber `json:"baselineTemperatureCelsius"`
	} `json:"dailySleepTemperatureDerivations"`
	Sleep *struct {
		Interval sessionInterval `json:"interval"`
		Type     string          `json:"type"` // CLASSIC | STAGES
		Summary  *struct {
			MinutesAsleep        flexNumber `json:"minutesAsleep"`
			MinutesAwake         flexNumber `json:"minutesAwake"`
			MinutesInSleepPeriod flexNumber `json:"minutesInSleepPeriod"`
			MinutesToFallAsleep  flexNumber `json:"minutesToFallAsleep"`
			StagesSummary        []struct {
				Type    string     `json:"type"`
				Minutes flexNumber `json:"minutes"`
			} `json:"stagesSummary"`
		} `json:"summary"`
	} `json:"sleep"`
	Electrocardiogram *struct {
		Interval                sessionInterval `json:"interval"`
		BeatsPerMinuteAvg       flexNumber      `json:"beatsPerMinuteAvg"`
		LeadNumber              int             `json:"leadNumber"`
		MillivoltsScalingFactor flexNumber      `json:"millivoltsScalingFactor"`
		SamplingFrequencyHertz  flexNumber      `json:"samplingFrequencyHertz"`
		ResultClassification    string          `json:"resultClassification"`
		WaveformSamples         []int           `json:"waveformSamples"`
	} `json:"electrocardiogram"`
}

// listAnswer is ListDataPointsResponse.
type listAnswer struct {
	DataPoints    []json.RawMessage `json:"dataPoints"`
	NextPageToken string            `json:"nextPageToken"`
}

// rhythms maps Electrocardiogram.resultClassification to the ohx rhythm codes and Google's own
// wording (the enum descriptions of the reference, "Corresponds to result …").
var rhythms = map[string]struct{ code, text string }{
	"NORMAL_SINUS_RHYTHM":          {fhir.RhythmSinus, "Normal Sinus Rhythm"},
	"ATRIAL_FIBRILLATION":          {fhir.RhythmAtrialFibrillation, "Atrial Fibrillation"},
	"INCONCLUSIVE":                 {fhir.RhythmInconclusive, "Inconclusive"},
	"INCONCLUSIVE_HIGH_HEART_RATE": {fhir.RhythmInconclusiveHighHR, "Inconclusive: High heart rate"},
	"INCONCLUSIVE_LOW_HEART_RATE":  {fhir.RhythmInconclusiveLowHR, "Inconclusive: Low heart rate"},
	"UNREADABLE":                   {fhir.RhythmUnreadable, "Unreadable"},
}

// ecgNote is the caveat attached to ECG samples: Google states that this data type is based on
// a Software-as-a-Medical-Device feature
// (https://developers.google.com/health/reference/rest/v4/users.dataTypes.dataPoints#Electrocardiogram);
// the recording is a single-lead wearable trace.
const ecgNote = "Single-lead ECG recorded by a consumer wearable (Google Health API electrocardiogram data type)."

// pointMapper turns the data points of one data type into samples.
type pointMapper struct {
	user string
	dt   dataType
	zone *time.Location // the user's IANA zone (settings), nil when unknown
}

// identify sets the record id: the data point's resource name, or, for a point without one
// (most data types are not identifiable, per DataPoint.name in
// https://developers.google.com/health/reference/rest/v4/users.dataTypes.dataPoints), a key from
// the user, the data type and the normalised time, so that a re-read of the same point yields
// the same id.
func (m pointMapper) identify(s *fhir.Sample, name string, at time.Time, day civilDate) {
	switch {
	case name != "":
		s.System, s.RecordID = Name+"/datapoint", name
	case m.dt.rec == recDaily:
		s.System, s.RecordID = Name+"/daily", m.user+"/"+day.String()+"/"+m.dt.name
	default:
		s.System, s.RecordID = Name+"/datapoint", m.user+"/"+m.dt.name+"/"+at.UTC().Format(time.RFC3339Nano)
	}
}

// day sets a daily sample's time: local midnight in the user's zone when known, else the civil
// day alone (effectiveDateTime with day precision).
func (m pointMapper) day(s *fhir.Sample, d civilDate) error {
	if !d.valid() {
		return errors.New("daily point without a valid date")
	}
	if m.zone != nil {
		s.Start = time.Date(d.Year, time.Month(d.Month), d.Day, 0, 0, 0, 0, m.zone)
	} else {
		s.Day = d.String()
	}
	return nil
}

// samples maps one raw data point; nil samples (and no error) for a point the adapter
// deliberately drops (a classic-only sleep has its total, a point without a value is an error).
func (m pointMapper) samples(raw json.RawMessage) ([]fhir.Sample, error) {
	var p dataPoint
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil, fmt.Errorf("%s data point: %w", m.dt.name, err)
	}
	s := fhir.Sample{Provider: Name, UserID: m.user, Kind: m.dt.kind}
	s.Manual = p.DataSource.RecordingMethod == "MANUAL"
	need := func(ok bool, what string) error {
		if !ok {
			return fmt.Errorf("%s data point without %s", m.dt.name, what)
		}
		return nil
	}
	var err error
	switch m.dt.name {
	case "weight":
		if err = need(p.Weight != nil, "weight"); err != nil {
			return nil, err
		}
		if s.Start, err = instant(p.Weight.SampleTime.PhysicalTime, p.Weight.SampleTime.UTCOffset); err != nil {
			return nil, err
		}
		var ok bool
		s.Value, ok = p.Weight.WeightGrams.shifted(-3) // grams → kg, exact
		s.Unit = "kg"
		err = need(ok, "weightGrams")
	case "body-fat":
		if err = need(p.BodyFat != nil, "bodyFat"); err != nil {
			return nil, err
		}
		if s.Start, err = instant(p.BodyFat.SampleTime.PhysicalTime, p.BodyFat.SampleTime.UTCOffset); err != nil {
			return nil, err
		}
		var ok bool
		s.Value, ok = p.BodyFat.Percentage.decimal()
		s.Unit = "%"
		err = need(ok, "percentage")
	case "heart-rate":
		if err = need(p.HeartRate != nil, "heartRate"); err != nil {
			return nil, err
		}
		if s.Start, err = instant(p.HeartRate.SampleTime.PhysicalTime, p.HeartRate.SampleTime.UTCOffset); err != nil {
			return nil, err
		}
		var ok bool
		s.Value, ok = p.HeartRate.BeatsPerMinute.decimal()
		s.Unit = "/min"
		err = need(ok, "beatsPerMinute")
	case "daily-resting-heart-rate":
		d := p.DailyRestingHeartRate
		if err = need(d != nil, "dailyRestingHeartRate"); err != nil {
			return nil, err
		}
		var ok bool
		s.Value, ok = d.BeatsPerMinute.decimal()
		s.Unit = "/min"
		if err = need(ok, "beatsPerMinute"); err == nil {
			err = m.dailyAt(&s, p.Name, d.Date)
		}
		return one(s, err)
	case "daily-heart-rate-variability":
		d := p.DailyHeartRateVariability
		if err = need(d != nil, "dailyHeartRateVariability"); err != nil {
			return nil, err
		}
		var ok bool
		if s.Value, ok = d.Average.decimal(); !ok {
			return nil, nil // only entropy or non-REM heart rate that day: no RMSSD to report
		}
		s.Unit, s.Daily = "ms", true
		if v, ok := d.DeepSleep.decimal(); ok {
			s.Components = []fhir.SampleComponent{{Kind: fhir.KindHRVRMSSDDeepSleep, Value: v, Unit: "ms"}}
		}
		return one(s, m.dailyAt(&s, p.Name, d.Date))
	case "daily-oxygen-saturation":
		d := p.DailyOxygenSaturation
		if err = need(d != nil, "dailyOxygenSaturation"); err != nil {
			return nil, err
		}
		var ok bool
		s.Value, ok = d.AveragePercentage.decimal()
		s.Unit, s.Daily = "%", true
		if err = need(ok, "averagePercentage"); err == nil {
			err = m.dailyAt(&s, p.Name, d.Date)
		}
		return one(s, err)
	case "daily-respiratory-rate":
		d := p.DailyRespiratoryRate
		if err = need(d != nil, "dailyRespiratoryRate"); err != nil {
			return nil, err
		}
		var ok bool
		s.Value, ok = d.BreathsPerMinute.decimal()
		s.Unit, s.Daily = "/min", true
		if err = need(ok, "breathsPerMinute"); err == nil {
			err = m.dailyAt(&s, p.Name, d.Date)
		}
		return one(s, err)
	case "daily-sleep-temperature-derivations":
		d := p.DailySleepTemperatureDerivations
		if err = need(d != nil, "dailySleepTemperatureDerivations"); err != nil {
			return nil, err
		}
		nightly, ok1 := d.Nightly.decimal()
		baseline, ok2 := d.Baseline.decimal()
		if !ok1 || !ok2 {
			return nil, nil // no baseline yet (the first nights): no relative variation
		}
		s.Value, s.Unit, s.Daily = difference(nightly, baseline), "Cel", true
		return one(s, m.dailyAt(&s, p.Name, d.Date))
	case "sleep":
		return m.sleep(s, p)
	case "electrocardiogram":
		return m.ecg(s, p)
	default:
		return nil, fmt.Errorf("data type %s is not read from data points", m.dt.name)
	}
	if err != nil {
		return nil, err
	}
	m.identify(&s, p.Name, s.Start, civilDate{})
	return []fhir.Sample{s}, nil
}

// dailyAt sets a daily sample's day and identifier.
func (m pointMapper) dailyAt(s *fhir.Sample, name string, d civilDate) error {
	if err := m.day(s, d); err != nil {
		return fmt.Errorf("%s: %w", m.dt.name, err)
	}
	m.identify(s, name, time.Time{}, d)
	return nil
}

func one(s fhir.Sample, err error) ([]fhir.Sample, error) {
	if err != nil {
		return nil, err
	}
	return []fhir.Sample{s}, nil
}

// difference is a − b, exact (the skin temperature relative to the personal baseline).
func difference(a, b fhir.Decimal) fhir.Decimal {
	ra, _ := new(big.Rat).SetString(string(a))
	rb, _ := new(big.Rat).SetString(string(b))
	frac := max(fracDigits(a), fracDigits(b))
	return fhir.Decimal(new(big.Rat).Sub(ra, rb).FloatString(frac))
}

func fracDigits(d fhir.Decimal) int {
	_, f, ok := strings.Cut(string(d), ".")
	if !ok {
		return 0
	}
	return len(f)
}

// sleep maps a sleep session: the minutes asleep over [start, end] in the offsets Google gives,
// with the stage durations (DEEP, LIGHT, REM, AWAKE), the minutes in the sleep period (time in
// bed) and the minutes to fall asleep. A classic sleep (ASLEEP/RESTLESS segments, no stages,
// https://developers.google.com/health/reference/rest/v4/users.dataTypes.dataPoints#Sleep)
// keeps only its total: its segments are movement-based and do not say which stage it was.
func (m pointMapper) sleep(s fhir.Sample, p dataPoint) ([]fhir.Sample, error) {
	sl := p.Sleep
	if sl == nil || sl.Summary == nil {
		return nil, errors.New("sleep data point without sleep summary")
	}
	var err error
	if s.Start, err = instant(sl.Interval.StartTime, sl.Interval.StartUTCOffset); err != nil {
		return nil, fmt.Errorf("sleep start: %w", err)
	}
	if s.End, err = instant(sl.Interval.EndTime, sl.Interval.EndUTCOffset); err != nil {
		return nil, fmt.Errorf("sleep end: %w", err)
	}
	var ok bool
	if s.Value, ok = sl.Summary.MinutesAsleep.decimal(); !ok {
		return nil, errors.New("sleep data point without minutesAsleep")
	}
	s.Unit = "min"
	if sl.Type != "CLASSIC" {
		stage := map[string]fhir.SampleKind{"DEEP": fhir.KindSleepDeep, "LIGHT": fhir.KindSleepLight, "REM": fhir.KindSleepREM, "AWAKE": fhir.KindSleepAwake}
		for _, st := range sl.Summary.StagesSummary {
			k, ok := stage[st.Type]
			v, vok := st.Minutes.decimal()
			if ok && vok {
				s.Components = append(s.Components, fhir.SampleComponent{Kind: k, Value: v, Unit: "min"})
			}
		}
		if v, ok := sl.Summary.MinutesInSleepPeriod.decimal(); ok {
			s.Components = append(s.Components, fhir.SampleComponent{Kind: fhir.KindSleepTimeInBed, Value: v, Unit: "min"})
		}
		if v, ok := sl.Summary.MinutesToFallAsleep.decimal(); ok {
			s.Components = append(s.Components, fhir.SampleComponent{Kind: fhir.KindSleepLatency, Value: v, Unit: "min"})
		}
	}
	m.identify(&s, p.Name, s.Start, civilDate{})
	return []fhir.Sample{s}, nil
}

// ecg maps an electrocardiogram: the trace in µV (Factor = 1000 / millivoltsScalingFactor µV per
// count, since millivolts = sample / millivoltsScalingFactor), the sampling interval 1000 /
// samplingFrequencyHertz ms, the classification and the average heart rate as a component.
// Historical ECGs have no UTC offsets (the reference's Electrocardiogram.interval note), so the
// time is the physical start; an offset is used only when Google gives a non-zero one.
func (m pointMapper) ecg(s fhir.Sample, p dataPoint) ([]fhir.Sample, error) {
	e := p.Electrocardiogram
	if e == nil {
		return nil, errors.New("electrocardiogram data point without electrocardiogram")
	}
	off := e.Interval.StartUTCOffset
	if l, ok := parseOffset(off); ok {
		if _, secs := time.Now().In(l).Zone(); secs == 0 {
			off = ""
		}
	}
	var err error
	if s.Start, err = instant(e.Interval.StartTime, off); err != nil {
		return nil, fmt.Errorf("electrocardiogram: %w", err)
	}
	// Both are read as exact decimals ("250", "250.0", 1092.2): the reference types them as
	// numbers, not integers.
	scale, ok1 := e.MillivoltsScalingFactor.rat()
	hz, ok2 := e.SamplingFrequencyHertz.rat()
	if !ok1 || !ok2 || scale.Sign() <= 0 || hz.Sign() <= 0 || len(e.WaveformSamples) == 0 {
		return nil, errors.New("electrocardiogram without waveform, scaling factor or sampling frequency")
	}
	thousand := big.NewRat(1000, 1)
	s.Waveform = &fhir.Waveform{
		Samples:    append([]int(nil), e.WaveformSamples...),
		Factor:     ratio(new(big.Rat).Quo(thousand, scale), 22),
		Unit:       "uV",
		IntervalMS: ratio(new(big.Rat).Quo(thousand, hz), 9),
	}
	switch r, ok := rhythms[e.ResultClassification]; {
	case ok:
		s.Code, s.CodeText = r.code, r.text
	case strings.TrimSpace(e.ResultClassification) != "":
		// A classification the adapter does not know (a new enum value): "other", with
		// Google's value as the text, never dropped.
		s.Code, s.CodeText = fhir.RhythmOther, strings.TrimSpace(e.ResultClassification)
	}
	if v, ok := e.BeatsPerMinuteAvg.decimal(); ok {
		s.Components = []fhir.SampleComponent{{Kind: fhir.KindHeartRate, Value: v, Unit: "/min"}}
	}
	s.Note = ecgNote
	m.identify(&s, p.Name, s.Start, civilDate{})
	return []fhir.Sample{s}, nil
}
