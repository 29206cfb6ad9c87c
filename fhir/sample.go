package fhir

import "time"

// SampleKind is a provider-neutral kind of measurement. Adapters produce samples of these kinds;
// the mapping in this package (MapSample) is the only place that knows their FHIR coding.
type SampleKind string

// Sample kinds ohx maps (clinical-mapping.md §4).
const (
	KindWeight            SampleKind = "weight"
	KindHeight            SampleKind = "height"
	KindFatMass           SampleKind = "fat-mass"
	KindFatRatio          SampleKind = "fat-ratio"
	KindFatFreeMass       SampleKind = "fat-free-mass"
	KindMuscleMass        SampleKind = "muscle-mass"
	KindBoneMass          SampleKind = "bone-mass"
	KindHydration         SampleKind = "hydration"
	KindHeartRate         SampleKind = "heart-rate"
	KindSpO2              SampleKind = "spo2"
	KindBloodPressure     SampleKind = "blood-pressure" // panel; components systolic/diastolic
	KindSystolic          SampleKind = "systolic"
	KindDiastolic         SampleKind = "diastolic"
	KindBodyTemperature   SampleKind = "body-temperature"
	KindSkinTemperature   SampleKind = "skin-temperature"
	KindPulseWaveVelocity SampleKind = "pulse-wave-velocity"
	KindVO2Max            SampleKind = "vo2max"
	KindSteps             SampleKind = "steps"     // daily total
	KindDistance          SampleKind = "distance"  // daily total
	KindCalories          SampleKind = "calories"  // daily total (active energy)
	KindElevation         SampleKind = "elevation" // daily floors climbed
	KindSleep             SampleKind = "sleep"     // session; components are stage durations
	KindSleepLight        SampleKind = "sleep-light"
	KindSleepDeep         SampleKind = "sleep-deep"
	KindSleepREM          SampleKind = "sleep-rem"
	KindSleepAwake        SampleKind = "sleep-awake"
	KindRespiratoryRate   SampleKind = "respiratory-rate"
	KindECG               SampleKind = "ecg" // waveform; components heart rate, classification in Code

	// Kinds added for the Fitbit / Google Health vectors and the sleep summary
	// (clinical-mapping.md §4.2, §4.3, §10).
	KindRestingHeartRate         SampleKind = "resting-heart-rate" // daily statistic
	KindBMI                      SampleKind = "bmi"
	KindStepsInterval            SampleKind = "steps-interval" // steps over an interval other than a day
	KindHRVRMSSD                 SampleKind = "hrv-rmssd"      // components hrv-rmssd-deep-sleep
	KindHRVRMSSDDeepSleep        SampleKind = "hrv-rmssd-deep-sleep"
	KindHRVSDNN                  SampleKind = "hrv-sdnn"
	KindSkinTemperatureVariation SampleKind = "skin-temperature-variation" // relative to a baseline
	KindSleepEfficiency          SampleKind = "sleep-efficiency"           // sleep component, % or ratio
	KindSleepLatency             SampleKind = "sleep-latency"              // sleep component
	KindSleepWakeupCount         SampleKind = "sleep-wakeup-count"         // sleep component, a count
	KindSleepScore               SampleKind = "sleep-score"                // sleep component, vendor scale
	KindSleepTimeInBed           SampleKind = "sleep-time-in-bed"          // sleep component
)

// Sample is one measurement as an adapter read it, before any FHIR coding.
type Sample struct {
	// Provider is the adapter name ("withings"); UserID the vendor user id.
	Provider string
	UserID   string
	Kind     SampleKind
	// System and RecordID make the business identifier (clinical-mapping.md §11): System is the
	// identifier system path under the canonical URL ("withings/measure"), RecordID its value
	// ("{userid}/{grpid}/{meastype}"). Values are never part of it.
	System   string
	RecordID string
	// Value and Unit (UCUM code) carry single-valued kinds; Components multi-part ones.
	Value      Decimal
	Unit       string
	Components []SampleComponent
	// Code carries a classification result (ECG rhythm) as a code of the ohx ECG system
	// (ECGRhythmSystem, the Rhythm… constants); CodeText the vendor's own wording ("Negative",
	// "Normal Sinus Rhythm"), kept as the classification's text.
	Code     string
	CodeText string
	// Start is the instant measured, or the start of the period; End is the period's end (zero
	// for instants). Both keep the user's location, so the offset is real, not UTC by default.
	Start, End time.Time
	// Day is set for daily values whose time zone is unknown: effectiveDateTime with day precision.
	Day string
	// Daily marks a daily statistic (daily HRV, daily SpO2) of a kind that is not always daily:
	// its effective[x] is the local calendar day of Start. Steps, calories and resting heart rate
	// are daily by kind.
	Daily bool
	// DeviceID is the vendor's device id, "" when unknown.
	DeviceID string
	// Manual marks values entered by the user (patient-reported); Ambiguous device values that may
	// belong to another user of the device (Withings attrib 1).
	Manual, Ambiguous bool
	// Deleted marks a value the vendor withdrew: the Observation becomes entered-in-error.
	Deleted bool
	// Waveform holds an ECG trace.
	Waveform *Waveform
	// DerivedFrom is the RecordID (in the same System) of the record this value was derived from
	// (BMI from a weight log, heart rate from an ECG): Observation.derivedFrom references it.
	DerivedFrom string
}

// SampleComponent is one part of a multi-part sample (BP systolic, a sleep stage duration).
type SampleComponent struct {
	Kind  SampleKind
	Value Decimal
	Unit  string
}

// Waveform is a uniformly sampled trace (ECG).
type Waveform struct {
	// Samples are the raw integers as delivered; Factor scales them into Unit (UCUM, e.g. "uV").
	Samples []int
	Factor  Decimal
	Unit    string
	// IntervalMS is the time between samples in milliseconds (1000 / sampling frequency).
	IntervalMS Decimal
	// Position is the vendor wear position code, kept as delivered.
	Position string
}

// DeviceInfo is a vendor device as an adapter read it.
type DeviceInfo struct {
	Provider string
	UserID   string
	// ID is the vendor's device id (Withings deviceid).
	ID           string
	Type         string // vendor type ("Scale", "Blood Pressure Monitor", "Activity Tracker", "Sleep Monitor"…)
	Model        string
	ModelID      string
	Manufacturer string
	Firmware     string
	// Battery is the vendor's battery level ("high", "medium", "low") or a percentage, "" if unknown.
	Battery  string
	LastSync time.Time
	Timezone string
	// ECG marks a device that records ECGs (second Device.type); MapDevice also knows the models
	// clinical-mapping.md §7 names.
	ECG bool
}
