package fhir

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Errors of MapSample, matched with errors.Is.
var (
	// ErrUnsupportedKind means the sample's kind has no Observation mapping: an unknown kind, a
	// kind without a mapping of its own, or a kind that only exists as a component (systolic,
	// sleep stages). The caller skips and counts it.
	ErrUnsupportedKind = errors.New("sample kind has no FHIR mapping")
	// ErrInvalidSample means required data is missing or malformed (value, unit, time, identifier,
	// an incomplete blood-pressure panel, …). No Observation is produced.
	ErrInvalidSample = errors.New("invalid sample")
)

// unitTarget is a UCUM unit an Observation value is written in, and the input units converted
// into it.
type unitTarget struct {
	code, display string
	from          map[string]factor
}

var one = pow10Factor(0)

// UCUM units (https://ucum.org/ucum). Inputs are converted exactly; a value is never labelled
// with a unit it is not in.
var (
	unitKg      = unitTarget{"kg", "kg", map[string]factor{"kg": one, "g": pow10Factor(-3), "[lb_av]": decFactor("0.45359237")}}
	unitCm      = unitTarget{"cm", "cm", map[string]factor{"cm": one, "m": pow10Factor(2), "mm": pow10Factor(-1), "[in_i]": decFactor("2.54")}}
	unitKgM2    = unitTarget{"kg/m2", "kg/m2", map[string]factor{"kg/m2": one}}
	unitPercent = unitTarget{"%", "%", map[string]factor{"%": one, "1": pow10Factor(2)}}
	unitMin     = unitTarget{"min", "min", map[string]factor{"min": one, "s": ratFactor(1, 60, 3), "h": decFactor("60")}}
	unitMs      = unitTarget{"ms", "ms", map[string]factor{"ms": one, "s": pow10Factor(3)}}
	unitBeats   = unitTarget{"/min", "beats/minute", map[string]factor{"/min": one, "{beats}/min": one}}
	unitBreaths = unitTarget{"/min", "breaths/minute", map[string]factor{"/min": one, "{breaths}/min": one}}
	unitCel     = unitTarget{"Cel", "°C", map[string]factor{"Cel": one}}
	unitDegF    = unitTarget{"[degF]", "°F", map[string]factor{"[degF]": one}}
	unitMmHg    = unitTarget{"mm[Hg]", "mmHg", map[string]factor{"mm[Hg]": one}}
	unitMPerS   = unitTarget{"m/s", "m/s", map[string]factor{"m/s": one}}
	unitVO2     = unitTarget{"mL/min/kg", "mL/min/kg", map[string]factor{"mL/min/kg": one, "ml/min/kg": one}}
	// A daily step total is a count per day; "" and {steps} are accepted because the kind says
	// the count covers the day.
	unitStepsDay = unitTarget{"/d", "steps per day", map[string]factor{"/d": one, "{steps}/d": one, "{steps}": one, "": one}}
	unitSteps    = unitTarget{"{steps}", "steps", map[string]factor{"{steps}": one, "": one}}
	unitKcalDay  = unitTarget{"kcal/d", "kcal/d", map[string]factor{"kcal/d": one, "kcal": one}}
	// Daily distance and floors: totals whose effectivePeriod is the local day.
	unitMeter  = unitTarget{"m", "m", map[string]factor{"m": one, "km": pow10Factor(3)}}
	unitFloors = unitTarget{"{floors}", "floors", map[string]factor{"{floors}": one, "": one}}
)

// timing says how a kind's effective[x] is built
// (https://hl7.org/fhir/R5/observation-definitions.html#Observation.effective_x_).
type timing int

const (
	// timingPoint: effectiveDateTime = Start, or effectivePeriod [Start, End] when End is set, or
	// the local day when the sample is Daily or has a Day.
	timingPoint timing = iota
	// timingDaily: always the local day of Start (or the Day), e.g. steps per day.
	timingDaily
	// timingPeriod: effectivePeriod [Start, End], both required (sleep session, step interval).
	timingPeriod
	// timingRecording: effectiveDateTime = recording start (ECG).
	timingRecording
)

// kindSpec is the coding of one sample kind.
type kindSpec struct {
	codes    []concept // code.coding, in order
	text     string    // code.text
	category concept
	units    []unitTarget // value units; nil for kinds without value[x] (panels, ECG)
	timing   timing
	// components lists the component kinds allowed, in output order; required those that must be
	// present.
	components, required []SampleKind
}

// kindSpecs is the one code table of ohx: LOINC (https://loinc.org) where a code is verified,
// the Vital Signs category only for Vital Signs codes
// (https://hl7.org/fhir/R5/observation-vitalsigns.html), the local ObservationCodeSystem otherwise.
var kindSpecs = map[SampleKind]kindSpec{
	KindWeight:      {codes: []concept{codeBodyWeight}, text: "Body weight", category: categoryVitalSigns, units: []unitTarget{unitKg}},
	KindHeight:      {codes: []concept{codeBodyHeight}, text: "Body height", category: categoryVitalSigns, units: []unitTarget{unitCm}},
	KindBMI:         {codes: []concept{codeBMI}, text: "Body mass index", category: categoryVitalSigns, units: []unitTarget{unitKgM2}},
	KindFatRatio:    {codes: []concept{codeBodyFatPercent}, text: "Body fat percentage", category: categoryExam, units: []unitTarget{unitPercent}},
	KindFatMass:     {codes: []concept{codeFatMass}, text: "Fat mass", category: categoryExam, units: []unitTarget{unitKg}},
	KindFatFreeMass: {codes: []concept{codeFatFreeMass}, text: "Fat-free mass", category: categoryExam, units: []unitTarget{unitKg}},
	KindMuscleMass:  {codes: []concept{codeMuscleMass}, text: "Muscle mass", category: categoryExam, units: []unitTarget{unitKg}},
	KindBoneMass:    {codes: []concept{codeBoneMass}, text: "Bone mass", category: categoryExam, units: []unitTarget{unitKg}},
	KindHydration:   {codes: []concept{codeBodyWaterMass}, text: "Body water mass", category: categoryExam, units: []unitTarget{unitKg}},

	KindHeartRate:        {codes: []concept{codeHeartRate}, text: "Heart rate", category: categoryVitalSigns, units: []unitTarget{unitBeats}},
	KindRestingHeartRate: {codes: []concept{codeHeartRate, codeRestingHR}, text: "Resting heart rate", category: categoryVitalSigns, units: []unitTarget{unitBeats}, timing: timingDaily},
	KindSpO2:             {codes: []concept{codeSpO2Arterial, codeSpO2Pulse}, text: "Oxygen saturation", category: categoryVitalSigns, units: []unitTarget{unitPercent}},
	KindBloodPressure: {codes: []concept{codeBPPanel}, text: "Blood pressure", category: categoryVitalSigns,
		components: []SampleKind{KindSystolic, KindDiastolic}, required: []SampleKind{KindSystolic, KindDiastolic}},
	KindBodyTemperature:          {codes: []concept{codeBodyTemperature}, text: "Body temperature", category: categoryVitalSigns, units: []unitTarget{unitCel, unitDegF}},
	KindSkinTemperature:          {codes: []concept{codeSkinTemperature}, text: "Skin temperature", category: categoryExam, units: []unitTarget{unitCel}},
	KindSkinTemperatureVariation: {codes: []concept{codeSkinTempVariation}, text: "Skin temperature variation", category: categoryExam, units: []unitTarget{unitCel}},
	KindPulseWaveVelocity:        {codes: []concept{codePulseWaveVelocity}, text: "Pulse wave velocity", category: categoryExam, units: []unitTarget{unitMPerS}},
	KindVO2Max:                   {codes: []concept{codeVO2Max}, text: "VO2 max", category: categoryExam, units: []unitTarget{unitVO2}},
	KindRespiratoryRate:          {codes: []concept{codeRespiratoryRate}, text: "Respiratory rate", category: categoryVitalSigns, units: []unitTarget{unitBreaths}},
	// HRV: vital-signs under the extensible binding of the Vital Signs profile's code
	// (https://hl7.org/fhir/R5/observation-vitalsigns.html).
	KindHRVRMSSD: {codes: []concept{codeHRVRMSSD}, text: "Heart rate variability (RMSSD)", category: categoryVitalSigns, units: []unitTarget{unitMs},
		components: []SampleKind{KindHRVRMSSDDeepSleep}},
	KindHRVSDNN: {codes: []concept{codeHRVSDNN}, text: "Heart rate variability (SDNN)", category: categoryVitalSigns, units: []unitTarget{unitMs}},

	KindSteps:         {codes: []concept{codeStepsDay}, text: "Steps per day", category: categoryActivity, units: []unitTarget{unitStepsDay}, timing: timingDaily},
	KindStepsInterval: {codes: []concept{codeStepsInterval}, text: "Steps", category: categoryActivity, units: []unitTarget{unitSteps}, timing: timingPeriod},
	KindCalories:      {codes: []concept{codeCaloriesDay}, text: "Calories burned per day", category: categoryActivity, units: []unitTarget{unitKcalDay}, timing: timingDaily},
	// No verified LOINC for a wearable's daily distance or floors: local codes.
	KindDistance:  {codes: []concept{codeDistanceDay}, text: "Distance per day", category: categoryActivity, units: []unitTarget{unitMeter}, timing: timingDaily},
	KindElevation: {codes: []concept{codeFloorsDay}, text: "Floors climbed per day", category: categoryActivity, units: []unitTarget{unitFloors}, timing: timingDaily},
	KindSleep: {codes: []concept{codeSleepDuration}, text: "Sleep duration", category: categoryActivity, units: []unitTarget{unitMin}, timing: timingPeriod,
		components: []SampleKind{KindSleepDeep, KindSleepLight, KindSleepREM, KindSleepAwake, KindSleepEfficiency,
			KindSleepTimeInBed, KindSleepLatency, KindSleepWakeupCount, KindSleepScore}},

	KindECG: {codes: []concept{codeECG}, text: "Electrocardiogram", category: categoryProcedure, timing: timingRecording,
		components: []SampleKind{KindHeartRate}},
}

// componentSpec is the coding of one component kind.
type componentSpec struct {
	code  concept
	units []unitTarget
	// integer components (counts, scores) are valueInteger, their Unit "", "1" or an annotation.
	integer bool
}

var componentSpecs = map[SampleKind]componentSpec{
	KindSystolic:          {code: codeSystolic, units: []unitTarget{unitMmHg}},
	KindDiastolic:         {code: codeDiastolic, units: []unitTarget{unitMmHg}},
	KindHeartRate:         {code: codeHeartRate, units: []unitTarget{unitBeats}},
	KindSleepDeep:         {code: codeSleepDeep, units: []unitTarget{unitMin}},
	KindSleepLight:        {code: codeSleepLight, units: []unitTarget{unitMin}},
	KindSleepREM:          {code: codeSleepREM, units: []unitTarget{unitMin}},
	KindSleepAwake:        {code: codeSleepAwakeDuration, units: []unitTarget{unitMin}},
	KindSleepEfficiency:   {code: codeSleepEfficiency, units: []unitTarget{unitPercent}},
	KindSleepTimeInBed:    {code: codeSleepTimeInBed, units: []unitTarget{unitMin}},
	KindSleepLatency:      {code: codeSleepLatency, units: []unitTarget{unitMin}},
	KindSleepWakeupCount:  {code: codeSleepWakeupCount, integer: true},
	KindSleepScore:        {code: codeSleepScore, integer: true},
	KindHRVRMSSDDeepSleep: {code: codeHRVRMSSDDeepSleep, units: []unitTarget{unitMs}},
}

// SupportedKinds returns the sample kinds MapSample maps to an Observation, sorted. Adapter
// configuration is validated against it at start-up.
func SupportedKinds() []SampleKind {
	out := make([]SampleKind, 0, len(kindSpecs))
	for k := range kindSpecs {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

var (
	providerRE = regexp.MustCompile(`^[a-z0-9]+(-[a-z0-9]+)*$`)
	systemRE   = regexp.MustCompile(`^[a-z0-9]+(-[a-z0-9]+)*(/[a-z0-9]+(-[a-z0-9]+)*)+$`)
)

// MapSample is the one mapping from provider-neutral samples to FHIR R5 Observations
// (https://hl7.org/fhir/R5/observation.html), with identifiers in namespace n. The result has:
//   - id ResourceID(identifier), identifier {n}/sid/{s.System} | s.RecordID, subject
//     Patient/{patientID}, meta.source {n}/provider/{s.Provider};
//   - code, category and UCUM unit from the kind's row of the code table; vital-signs only for
//     Vital Signs codes (and HRV under the extensible binding);
//   - value converted exactly into the kind's unit: s.Unit is the UCUM code the value is in and
//     must be one the kind accepts (e.g. kg, g or [lb_av] for weight; m for height becomes cm;
//     a ratio "1" becomes %; seconds become minutes). Decimals are never passed through floats;
//   - effective[x]: effectiveDateTime = s.Start with its real offset ("Z" only for time.UTC,
//     fractional seconds only when present); effectivePeriod [Start, End] when End is set; for
//     daily values (steps, calories, resting heart rate, or s.Daily) the local calendar day of
//     Start — start local 00:00, end the last second before the next local midnight, so 23- and
//     25-hour days are right; End is ignored — or, when s.Day is set (zone unknown),
//     effectiveDateTime with day precision (Day wins over Start). A Start in time.UTC is taken as
//     a real UTC zone: adapters that do not know the user's zone set Day for daily values;
//   - status final, or entered-in-error when s.Deleted (the store, which knows whether a final
//     version was stored, sets amended when an upsert changes one: store.SetAmended);
//   - performer Patient for s.Manual; device Device/{ResourceID(DeviceSystem(provider), DeviceID)};
//     derivedFrom Observation/{ResourceID(same system, s.DerivedFrom)}; a meta.tag
//     TagSystem|ambiguous-subject for s.Ambiguous; note[0].text = s.Note when set.
//
// Blood pressure is a panel without value[x] whose systolic and diastolic components are both
// required; sleep is a session with stage components; ECG has no value[x] but components for the
// lead-I waveform (valueSampledData), the heart rate and the rhythm classification
// (s.Code in ECGRhythmSystem, s.CodeText the vendor's wording) plus interpretation, and bodySite
// text from s.Waveform.BodySite.
//
// Errors wrap ErrUnsupportedKind or ErrInvalidSample; no Observation is returned with an error.
// Every Observation returned passes Validate.
func (n Namespace) MapSample(s Sample, patientID string) (*Observation, error) {
	spec, ok := kindSpecs[s.Kind]
	if !ok {
		if _, comp := componentSpecs[s.Kind]; comp {
			return nil, fmt.Errorf("fhir: map sample: kind %q is only mapped as a component: %w", s.Kind, ErrUnsupportedKind)
		}
		return nil, fmt.Errorf("fhir: map sample: kind %q: %w", truncate(string(s.Kind), 40), ErrUnsupportedKind)
	}
	o, err := n.mapSample(s, spec, patientID)
	if err != nil {
		return nil, fmt.Errorf("fhir: map %s sample (%s): %w", s.Kind, truncate(s.System, 60), err)
	}
	return o, nil
}

// invalid returns an ErrInvalidSample error. Messages name elements, kinds and units, never
// measurement values, times or identifiers: the caller logs them.
func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidSample, fmt.Sprintf(format, args...))
}

// MapSample is DefaultNamespace.MapSample, for tools and tests that map outside a deployment
// (the adapter conformance suite checks what samples map to); the sync pipeline maps with the
// deployment's configured Namespace.
func MapSample(s Sample, patientID string) (*Observation, error) {
	return DefaultNamespace.MapSample(s, patientID)
}

func (n Namespace) mapSample(s Sample, spec kindSpec, patientID string) (*Observation, error) {
	if !ValidID(patientID) {
		return nil, invalid("invalid patient id")
	}
	if !providerRE.MatchString(s.Provider) {
		return nil, invalid("invalid provider %q", truncate(s.Provider, 40))
	}
	if !systemRE.MatchString(s.System) || !strings.HasPrefix(s.System, s.Provider+"/") {
		return nil, invalid("identifier system %q is not a path under the provider %q", truncate(s.System, 60), s.Provider)
	}
	if s.RecordID == "" || strings.ContainsAny(s.RecordID, "|") || strings.TrimSpace(s.RecordID) != s.RecordID {
		return nil, invalid("missing or malformed record id")
	}
	if s.Kind != KindECG && (s.Waveform != nil || s.Code != "" || s.CodeText != "") {
		return nil, invalid("waveform and classification are only mapped for ECG samples")
	}
	if !cleanText(s.Note) {
		return nil, invalid("malformed note")
	}

	system := n.IdentifierSystem(s.System)
	o := &Observation{
		Base: Base{
			ResourceType: "Observation",
			ID:           ResourceID(system, s.RecordID),
			Meta:         &Meta{Source: n.ProviderSource(s.Provider)},
		},
		Identifier: []Identifier{{System: system, Value: s.RecordID}},
		Status:     "final",
		Category:   []CodeableConcept{{Coding: []Coding{spec.category.coding()}}},
		Code:       CodeableConcept{Text: spec.text},
		Subject:    &Reference{Reference: "Patient/" + patientID},
	}
	for _, c := range spec.codes {
		o.Code.Coding = append(o.Code.Coding, c.coding())
	}
	if s.Deleted {
		o.Status = "entered-in-error"
	}
	if s.Ambiguous {
		o.Meta.Tag = []Coding{tagAmbiguous.coding()}
	}
	if s.Manual {
		o.Performer = []Reference{{Reference: "Patient/" + patientID}}
	}
	if s.DeviceID != "" {
		ref := n.DeviceReference(s.Provider, s.DeviceID)
		o.Device = &ref
	}
	if s.DerivedFrom != "" {
		o.DerivedFrom = []Reference{{Reference: "Observation/" + ResourceID(system, s.DerivedFrom)}}
	}
	if s.Note != "" {
		o.Note = []Annotation{{Text: s.Note}}
	}

	var err error
	if o.EffectiveDateTime, o.EffectivePeriod, err = effective(s, spec.timing); err != nil {
		return nil, err
	}

	switch {
	case spec.units != nil:
		q, err := quantity(spec.units, s.Value, s.Unit)
		if err != nil {
			return nil, err
		}
		o.ValueQuantity = q
	case s.Value != "" || s.Unit != "":
		return nil, invalid("a %s sample has no value of its own (use components)", s.Kind)
	}

	comps, err := components(s, spec)
	if err != nil {
		return nil, err
	}
	if s.Kind == KindECG {
		if err := ecg(o, s, comps); err != nil {
			return nil, err
		}
	} else {
		o.Component = comps
	}

	if err := o.Validate(); err != nil {
		// Unreachable for well-formed tables; kept so no invalid resource ever leaves the mapper.
		return nil, invalid("%v", err)
	}
	return o, nil
}

// quantity converts value (in the UCUM unit) into the first accepted target unit.
func quantity(targets []unitTarget, value Decimal, unit string) (*Quantity, error) {
	if value == "" {
		return nil, invalid("missing value")
	}
	if !value.Valid() {
		return nil, invalid("invalid decimal value")
	}
	var accepted []string
	for _, t := range targets {
		f, ok := t.from[unit]
		if !ok {
			for u := range t.from {
				accepted = append(accepted, strconv.Quote(u))
			}
			continue
		}
		v, err := f.convert(value)
		if err != nil {
			return nil, invalid("%v", err)
		}
		return &Quantity{Value: &v, Unit: t.display, System: UCUMSystem, Code: t.code}, nil
	}
	sort.Strings(accepted)
	return nil, invalid("unit %q is not accepted (want one of %s)", truncate(unit, 20), strings.Join(accepted, ", "))
}

// components maps s.Components in the kind's order, checking that each is allowed, appears once
// and that the required ones are present.
func components(s Sample, spec kindSpec) ([]ObservationComponent, error) {
	byKind := map[SampleKind]SampleComponent{}
	for _, c := range s.Components {
		if !slices.Contains(spec.components, c.Kind) {
			return nil, invalid("component %q is not allowed in a %s sample", truncate(string(c.Kind), 40), s.Kind)
		}
		if _, dup := byKind[c.Kind]; dup {
			return nil, invalid("component %q given twice", c.Kind)
		}
		byKind[c.Kind] = c
	}
	for _, k := range spec.required {
		if _, ok := byKind[k]; !ok {
			return nil, invalid("incomplete %s sample: missing %s", s.Kind, k)
		}
	}
	var out []ObservationComponent
	for _, k := range spec.components {
		c, ok := byKind[k]
		if !ok {
			continue
		}
		cs := componentSpecs[k]
		oc := ObservationComponent{Code: CodeableConcept{Coding: []Coding{cs.code.coding()}}}
		if cs.integer {
			switch c.Unit {
			case "", "1", "{count}", "{score}":
			default:
				return nil, invalid("component %s: unit %q is not accepted for a count", k, truncate(c.Unit, 20))
			}
			n, ok := decimalInt(c.Value)
			if !ok {
				return nil, invalid("component %s: not a whole number", k)
			}
			oc.ValueInteger = &n
		} else {
			q, err := quantity(cs.units, c.Value, c.Unit)
			if err != nil {
				return nil, fmt.Errorf("component %s: %w", k, err)
			}
			oc.ValueQuantity = q
		}
		out = append(out, oc)
	}
	return out, nil
}

// effective builds effective[x] (see MapSample).
func effective(s Sample, t timing) (string, *Period, error) {
	daily := t == timingDaily || s.Daily || s.Day != ""
	switch t {
	case timingPeriod, timingRecording:
		if s.Daily || s.Day != "" {
			return "", nil, invalid("a %s sample cannot be a daily value", s.Kind)
		}
	}
	if daily && s.Day != "" {
		if len(s.Day) != len("2006-01-02") || !ValidDate(s.Day) {
			return "", nil, invalid("invalid day (want YYYY-MM-DD)")
		}
		return s.Day, nil, nil
	}
	if s.Start.IsZero() {
		return "", nil, invalid("missing time")
	}
	for _, ts := range []time.Time{s.Start, s.End} {
		if y := ts.Year(); !ts.IsZero() && (y < 1 || y > 9999) {
			return "", nil, invalid("time outside the years 1–9999")
		}
	}
	switch {
	case daily:
		start, end := LocalDay(s.Start)
		return "", &Period{Start: FormatDateTime(start), End: FormatDateTime(end)}, nil
	case t == timingRecording:
		return FormatDateTime(s.Start), nil, nil
	case t == timingPeriod && s.End.IsZero():
		return "", nil, invalid("a %s sample needs an end time", s.Kind)
	case s.End.IsZero():
		return FormatDateTime(s.Start), nil, nil
	case s.End.Before(s.Start):
		return "", nil, invalid("end time before start time")
	}
	return "", &Period{Start: FormatDateTime(s.Start), End: FormatDateTime(s.End)}, nil
}

// LocalDay returns the first instant and the last second of t's calendar day in t's location:
// local midnight, and one second before the next local midnight (Period bounds are inclusive).
// Both are computed from the calendar, so a 23-hour or 25-hour daylight-saving day is right, and
// a midnight skipped by a clock change starts the day at the first existing instant.
func LocalDay(t time.Time) (start, end time.Time) {
	y, m, d := t.Date()
	ny, nm, nd := time.Date(y, m, d+1, 12, 0, 0, 0, time.UTC).Date() // the next calendar day
	return dayStart(y, m, d, t.Location()), dayStart(ny, nm, nd, t.Location()).Add(-time.Second)
}

// dayStart returns the first instant of the calendar day y-m-d in loc. Where a clock change
// skips midnight (America/Santiago, 2024-09-08 00:00 → 01:00), time.Date may normalise 00:00
// into the previous day; the day then starts when the new offset takes effect.
func dayStart(y int, m time.Month, d int, loc *time.Location) time.Time {
	t := time.Date(y, m, d, 0, 0, 0, 0, loc)
	if ty, tm, td := t.Date(); ty != y || tm != m || td != d {
		if _, zoneEnd := t.ZoneBounds(); !zoneEnd.IsZero() {
			return zoneEnd.In(loc)
		}
	}
	return t
}

// FormatDateTime formats t as a FHIR dateTime / instant to the second, in t's own location:
// "Z" for time.UTC, a numeric offset otherwise ("+00:00" for a zone that is at UTC, such as
// Europe/London in winter), fractional seconds only when t has them.
func FormatDateTime(t time.Time) string {
	if t.Location() == time.UTC {
		return t.Format("2006-01-02T15:04:05.999999999Z07:00")
	}
	return t.Format("2006-01-02T15:04:05.999999999-07:00")
}

// ecg completes an ECG Observation after the pattern of the HL7 PoCD ECG sample-array example
// (https://build.fhir.org/ig/HL7/uv-pocd/en/Observation-ECGSampleArrayObservation.html): the
// waveform component first, then the heart rate from comps, then the rhythm classification;
// interpretation and bodySite.
func ecg(o *Observation, s Sample, comps []ObservationComponent) error {
	w := s.Waveform
	if w == nil || len(w.Samples) == 0 {
		return invalid("ECG sample without waveform samples")
	}
	var originUnit string
	switch w.Unit {
	case "uV":
		originUnit = "µV"
	case "mV":
		originUnit = "mV"
	default:
		return invalid("ECG waveform unit %q is not uV or mV", truncate(w.Unit, 20))
	}
	if !w.Factor.Valid() || decimalSign(w.Factor) == 0 {
		return invalid("ECG waveform without a valid factor")
	}
	if !w.IntervalMS.Valid() || decimalSign(w.IntervalMS) <= 0 {
		return invalid("ECG waveform without a valid sampling interval")
	}
	var data strings.Builder
	data.Grow(len(w.Samples) * 5)
	for i, v := range w.Samples {
		if i > 0 {
			data.WriteByte(' ')
		}
		data.WriteString(strconv.Itoa(v))
	}
	zero, interval, f := Decimal("0"), w.IntervalMS, w.Factor
	wave := ObservationComponent{
		Code: CodeableConcept{Coding: []Coding{codeECGLeadI.coding()}, Text: "ECG lead I"},
		Value: Value{ValueSampledData: &SampledData{
			Origin:       Quantity{Value: &zero, Unit: originUnit, System: UCUMSystem, Code: w.Unit},
			Interval:     &interval,
			IntervalUnit: "ms",
			Factor:       &f,
			Dimensions:   1,
			Data:         data.String(),
		}},
	}
	o.Component = append([]ObservationComponent{wave}, comps...)

	switch {
	case s.Code != "":
		r, ok := rhythms[s.Code]
		if !ok {
			return invalid("unknown ECG rhythm code %q", truncate(s.Code, 40))
		}
		text := s.CodeText
		if text == "" {
			text = r.display
		}
		o.Component = append(o.Component, ObservationComponent{
			Code: CodeableConcept{Coding: []Coding{codeEKGImpression.coding()}},
			Value: Value{ValueCodeableConcept: &CodeableConcept{
				Coding: []Coding{{System: ECGRhythmSystem, Code: s.Code, Display: r.display}},
				Text:   text,
			}},
		})
		if r.interpretation != nil {
			o.Interpretation = []CodeableConcept{{Coding: []Coding{r.interpretation.coding()}}}
		}
	case s.CodeText != "":
		// A vendor classification we have no code for: kept as text, no interpretation.
		o.Component = append(o.Component, ObservationComponent{
			Code:  CodeableConcept{Coding: []Coding{codeEKGImpression.coding()}},
			Value: Value{ValueCodeableConcept: &CodeableConcept{Text: s.CodeText}},
		})
	}

	if !cleanText(w.BodySite) {
		return invalid("malformed ECG body site")
	}
	if w.BodySite != "" {
		o.BodySite = &CodeableConcept{Text: w.BodySite}
	}
	return nil
}

// cleanText reports whether an adapter's free text can be written as a FHIR string: valid UTF-8
// (encoding/json would silently replace invalid bytes) without leading or trailing whitespace
// (https://hl7.org/fhir/R5/datatypes.html#string). "" is clean: nothing is written.
func cleanText(s string) bool {
	return utf8.ValidString(s) && strings.TrimSpace(s) == s
}
