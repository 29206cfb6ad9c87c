package fhir

import "time"

// SampleKind is a provider-neutral kind of measurement. Adapters produce samples of these kinds;
// the mapping in this package (MapSample) is the only place that knows their FHIR coding.
type SampleKind string

// Sample kinds ohx maps. Their codes are in the code table of MapSample.
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

	// Daily statistics, HRV, relative skin temperature and the sleep-summary components that
	// wearables report besides spot measurements.
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
	// Provider is the adapter's name: neutral data that names the identifier systems and
	// meta.source, never a switch for vendor rules. UserID is the vendor user id.
	Provider string
	UserID   string
	Kind     SampleKind
	// System and RecordID make the business identifier (https://hl7.org/fhir/R5/datatypes.html#Identifier):
	// System is the identifier system path under the canonical URL, starting with Provider
	// ("{provider}/measure"), RecordID its value, stable across re-syncs ("{userid}/{grpid}/{type}").
	// Values are never part of it, so an updated value updates the same resource.
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
	// Manual marks values entered by the user (patient-reported); Ambiguous a device value that
	// may belong to another user of a shared device (a scale used by the whole family).
	Manual, Ambiguous bool
	// Deleted marks a value the vendor withdrew: the Observation becomes entered-in-error.
	Deleted bool
	// Waveform holds an ECG trace.
	Waveform *Waveform
	// Note is a caveat the vendor attaches to this kind of data (for example that it is for
	// research use only, not for diagnosis), written as Observation.note; "" for none.
	Note string
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
	// BodySite is where the trace was recorded, as text ("Right arm"): the adapter resolves its
	// vendor's position code, "" when unknown or not a body site. It becomes Observation.bodySite.
	BodySite string
}

// DeviceKind is a provider-neutral kind of device: the adapter translates its vendor's device
// types into one, and MapDevice codes it as Device.type.
type DeviceKind string

// Device kinds MapDevice codes; any other (or "") gets no Device.type.
const (
	DeviceKindScale                DeviceKind = "scale"
	DeviceKindBloodPressureMonitor DeviceKind = "blood-pressure-monitor"
	DeviceKindPulseOximeter        DeviceKind = "pulse-oximeter"
	DeviceKindActivityTracker      DeviceKind = "activity-tracker" // wristbands and watches
	DeviceKindSleepMonitor         DeviceKind = "sleep-monitor"
	DeviceKindThermometer          DeviceKind = "thermometer"
)

// DeviceInfo is a vendor device as an adapter read it.
type DeviceInfo struct {
	// Provider and UserID are as in Sample: the adapter's name and the vendor user id.
	Provider string
	UserID   string
	// ID is the vendor's device id.
	ID string
	// Type is the vendor's own device type ("Blood Pressure Monitor"), the displayName when there
	// is no Model; Kind is what the adapter understood it as, "" when it has no neutral kind.
	Type    string
	Kind    DeviceKind
	Model   string
	ModelID string
	// Manufacturer is the device's maker as Device.manufacturer; the adapter always sets it (it
	// knows whose devices it lists), MapDevice never guesses one.
	Manufacturer string
	Firmware     string
	// Battery is the vendor's battery level ("high", "medium", "low") or a percentage, "" if unknown.
	Battery  string
	LastSync time.Time
	Timezone string
	// ECG marks a device that records ECGs (second Device.type). The adapter decides it from its
	// own list of ECG-capable models; MapDevice knows no models.
	ECG bool
}
