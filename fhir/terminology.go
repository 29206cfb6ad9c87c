package fhir

import (
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strings"
)

// ProjectCanonical is the canonical URL of the definitions ohx itself publishes: its local code
// systems and extensions. They mean the same on every deployment, so they live under the
// project's home rather than under a deployment's Namespace. It replaces the earlier
// "https://ohx.example": RFC 2606 reserves .example for documentation
// (https://www.rfc-editor.org/rfc/rfc2606#section-3), so no one could ever resolve or own it.
const ProjectCanonical = "https://github.com/openhealthexchange/ohx/fhir"

// Code systems and URLs used by the mapping, as FHIR R5 names them
// (https://hl7.org/fhir/R5/terminologies-systems.html).
const (
	LOINCSystem               = "http://loinc.org"
	UCUMSystem                = "http://unitsofmeasure.org"
	SNOMEDSystem              = "http://snomed.info/sct"
	MDCSystem                 = "urn:iso:std:iso:11073:10101"
	ObservationCategorySystem = "http://terminology.hl7.org/CodeSystem/observation-category"
	InterpretationSystem      = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
	// DeviceAssociationStatusReasonSystem is the R5 code system of DeviceAssociation.statusReason.
	DeviceAssociationStatusReasonSystem = "http://hl7.org/fhir/deviceassociation-status-reason"

	// ObservationCodeSystem is the project's code system for measurements without a verified
	// standard code: a local code is better than a guessed LOINC one
	// (https://hl7.org/fhir/R5/terminologies.html).
	ObservationCodeSystem = ProjectCanonical + "/CodeSystem/ohx-observation"
	// ECGRhythmSystem holds the ECG rhythm classifications (the Rhythm… constants).
	ECGRhythmSystem = ProjectCanonical + "/CodeSystem/ecg-rhythm"
	// TagSystem holds the meta.tag codes ohx sets (TagAmbiguousSubject).
	TagSystem = ProjectCanonical + "/CodeSystem/ohx-tag"
	// LastSyncExtension carries a device's last synchronisation time (valueInstant): R5 Device has
	// no element for it and Device.property cannot hold a dateTime
	// (https://hl7.org/fhir/R5/device-definitions.html#Device.property.value_x_).
	LastSyncExtension = ProjectCanonical + "/StructureDefinition/last-sync-time"
)

// TagAmbiguousSubject (in TagSystem) marks a value measured by a shared device that may belong to
// another user of the device (a family scale whose vendor could not attribute the weigh-in).
const TagAmbiguousSubject = "ambiguous-subject"

// ECG rhythm classifications in ECGRhythmSystem. Adapters put one of these in Sample.Code and the
// vendor's own wording in Sample.CodeText. The afib… codes are for devices that only screen for
// atrial fibrillation (negative, positive, inconclusive).
const (
	RhythmSinus              = "sinus-rhythm"
	RhythmAtrialFibrillation = "atrial-fibrillation"
	RhythmAFibNotDetected    = "afib-not-detected"
	RhythmAFibDetected       = "afib-detected"
	RhythmInconclusive       = "inconclusive"
	RhythmInconclusiveHighHR = "inconclusive-high-hr"
	RhythmInconclusiveLowHR  = "inconclusive-low-hr"
	RhythmNoSignal           = "no-signal"
	RhythmNoise              = "noise"
	RhythmUnreadable         = "unreadable"
	RhythmOther              = "other"
)

// Namespace is the base URI of the business identifiers a deployment writes: the identifier
// systems of synced Observations, Devices and DeviceAssociations ({namespace}/sid/…) and their
// meta.source ({namespace}/provider/{provider}). Resource ids are derived from those identifiers
// (ResourceID), so a namespace must stay the same for the life of a store; it is deliberately
// independent of the public base URL, which may change (a new host name, a proxy) without
// re-identifying any resource. The zero value is not valid; use DefaultNamespace or
// ParseNamespace.
type Namespace string

// DefaultNamespace is the namespace ohx uses unless configured otherwise. It is a stable constant,
// never derived from the deployment: vendor record ids are unique per vendor, so two deployments
// that sync the same measurement give it the same identifier, which is what an EHR merging both
// should see.
const DefaultNamespace Namespace = "https://github.com/openhealthexchange/ohx"

// ParseNamespace validates s as a Namespace: an absolute http(s) URL with a host, or a urn:
// URI; without a trailing "/" (systems are built by appending "/sid/…") and without "|", the
// separator of system|value in search tokens and in the text ResourceID hashes. The error does
// not name a setting; the caller knows which one was set.
func ParseNamespace(s string) (Namespace, error) {
	switch {
	case s == "":
		return "", errors.New("namespace is empty")
	case strings.HasSuffix(s, "/"):
		return "", errors.New("namespace must not end with /")
	case strings.ContainsAny(s, "| \t\r\n"):
		return "", errors.New("namespace must not contain | or white space")
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("namespace: %w", err)
	}
	switch strings.ToLower(u.Scheme) {
	case "http", "https":
		if u.Host == "" || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || u.User != nil {
			return "", errors.New("namespace must be an http(s) URL with a host and without user, query or fragment")
		}
	case "urn":
		// urn:NID:NSS (https://www.rfc-editor.org/rfc/rfc8141#section-2).
		if nid, nss, ok := strings.Cut(u.Opaque, ":"); !ok || nid == "" || nss == "" {
			return "", errors.New("namespace must be a urn:NID:NSS URN")
		}
	default:
		return "", errors.New("namespace must be an absolute http(s) URL or a urn: URI")
	}
	return Namespace(s), nil
}

// IdentifierSystem returns the identifier system for a path under {namespace}/sid/; the path
// starts with the provider's name, e.g. IdentifierSystem("acme/measure"). Identifier systems are
// URIs (https://hl7.org/fhir/R5/datatypes-definitions.html#Identifier.system).
func (n Namespace) IdentifierSystem(path string) string { return string(n) + "/sid/" + path }

// ProviderIdentifierPrefix returns the prefix every identifier system of a provider starts with,
// {namespace}/sid/{provider}/: the systems of its samples, devices and device associations.
// Removing a provider's data selects resources by it; the trailing "/" keeps provider "acme"
// from matching "acme-labs".
func (n Namespace) ProviderIdentifierPrefix(provider string) string {
	return n.IdentifierSystem(provider + "/")
}

// DeviceSystem returns the identifier system of a provider's devices.
func (n Namespace) DeviceSystem(provider string) string {
	return n.ProviderIdentifierPrefix(provider) + "device"
}

// DeviceAssociationSystem returns the identifier system of a provider's device associations.
func (n Namespace) DeviceAssociationSystem(provider string) string {
	return n.ProviderIdentifierPrefix(provider) + "device-association"
}

// DeviceReference returns the reference to the Device MapDevice creates for a vendor device id.
func (n Namespace) DeviceReference(provider, deviceID string) Reference {
	return Reference{Reference: "Device/" + ResourceID(n.DeviceSystem(provider), deviceID)}
}

// ProviderSource returns the meta.source URI of a vendor integration.
func (n Namespace) ProviderSource(provider string) string {
	return string(n) + "/provider/" + provider
}

// IdentifierSystem is DefaultNamespace.IdentifierSystem, for tools that build data sets outside a
// deployment (the benchmark); code that syncs for a deployment uses its configured Namespace.
func IdentifierSystem(path string) string { return DefaultNamespace.IdentifierSystem(path) }

// idEncoding is lowercase RFC 4648 base32 without padding: only [a-z2-7], valid in FHIR ids and
// safe in case-insensitive contexts.
var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// ResourceID returns the deterministic resource id of the resource whose business identifier is
// system|value: the lowercase base32 form of the first 20 bytes of SHA-256("system|value"),
// 32 characters of [a-z2-7]. Writes are upserts keyed on it, so a re-sync updates the resource
// instead of duplicating it. The systems ohx generates never contain "|", so the hashed text is
// unambiguous.
func ResourceID(system, value string) string {
	sum := sha256.Sum256([]byte(system + "|" + value))
	return idEncoding.EncodeToString(sum[:20])
}

// concept is one code of a code system with its display.
type concept struct {
	system, code, display string
}

func (c concept) coding() Coding { return Coding{System: c.system, Code: c.code, Display: c.display} }

func loinc(code, display string) concept { return concept{LOINCSystem, code, display} }
func local(code, display string) concept { return concept{ObservationCodeSystem, code, display} }

// Observation codes. LOINC codes and displays are from https://loinc.org (each passes the LOINC
// mod-10 check digit, tested); a measurement without a corroborated LOINC code gets a local code
// instead. MDC codes are ISO/IEEE 11073-10101, system urn:iso:std:iso:11073:10101
// (https://hl7.org/fhir/R5/terminologies-systems.html).
var (
	codeBodyWeight      = loinc("29463-7", "Body weight")
	codeBodyHeight      = loinc("8302-2", "Body height")
	codeBMI             = loinc("39156-5", "Body mass index (BMI) [Ratio]")
	codeBodyFatPercent  = loinc("41982-0", "Percentage of body fat Measured")
	codeBPPanel         = loinc("85354-9", "Blood pressure panel with all children optional")
	codeSystolic        = loinc("8480-6", "Systolic blood pressure")
	codeDiastolic       = loinc("8462-4", "Diastolic blood pressure")
	codeHeartRate       = loinc("8867-4", "Heart rate")
	codeRestingHR       = loinc("40443-4", "Heart rate --resting")
	codeBodyTemperature = loinc("8310-5", "Body temperature")
	codeSpO2Arterial    = loinc("2708-6", "Oxygen saturation in Arterial blood")
	codeSpO2Pulse       = loinc("59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry")
	codeRespiratoryRate = loinc("9279-1", "Respiratory rate")
	codeStepsDay        = loinc("41950-7", "Number of steps in 24 hour Measured")
	codeStepsInterval   = loinc("55423-8", "Number of steps in unspecified time Pedometer")
	codeCaloriesDay     = loinc("41979-6", "Calories burned in 24 hour Calculated")
	codeSleepDuration   = loinc("93832-4", "Sleep duration")
	codeSleepDeep       = loinc("93831-6", "Deep sleep duration")
	codeSleepLight      = loinc("93830-8", "Light sleep duration")
	codeSleepREM        = loinc("93829-0", "REM sleep duration")
	codeHRVSDNN         = loinc("80404-7", "R-R interval.standard deviation (Heart rate variability)")
	codeEKGImpression   = loinc("8601-7", "EKG impression")

	codeECG      = concept{MDCSystem, "131328", "MDC_ECG_ELEC_POTL"}
	codeECGLeadI = concept{MDCSystem, "131329", "MDC_ECG_ELEC_POTL_I"}

	codeFatFreeMass          = local("fat-free-mass", "Fat-free mass (bio-impedance)")
	codeFatMass              = local("fat-mass", "Fat mass (bio-impedance)")
	codeMuscleMass           = local("muscle-mass", "Muscle mass (bio-impedance)")
	codeBodyWaterMass        = local("body-water-mass", "Body water mass (bio-impedance)")
	codeBoneMass             = local("bone-mass", "Bone mass (bio-impedance)")
	codePulseWaveVelocity    = local("pulse-wave-velocity", "Pulse wave velocity")
	codeVO2Max               = local("vo2max", "Maximal oxygen uptake (VO2 max)")
	codeSkinTemperature      = local("skin-temperature", "Skin temperature")
	codeSkinTempVariation    = local("skin-temperature-variation", "Skin temperature variation from the personal baseline")
	codeHRVRMSSD             = local("hrv-rmssd", "Heart rate variability, RMSSD")
	codeHRVRMSSDDeepSleep    = local("hrv-rmssd-deep-sleep", "Heart rate variability, RMSSD during deep sleep")
	codeSleepAwakeDuration   = local("sleep-awake-duration", "Awake duration during the sleep session")
	codeSleepEfficiency      = local("sleep-efficiency", "Sleep efficiency")
	codeSleepLatency         = local("sleep-latency", "Sleep latency")
	codeSleepWakeupCount     = local("sleep-wakeup-count", "Number of wake-ups during the sleep session")
	codeSleepScore           = local("sleep-score", "Sleep score (vendor scale)")
	codeSleepTimeInBed       = local("sleep-time-in-bed", "Time in bed")
	codeDistanceDay          = local("distance-day", "Distance walked or run in a day (wearable)")
	codeFloorsDay            = local("floors-climbed-day", "Floors climbed in a day (wearable)")
	categoryVitalSigns       = concept{ObservationCategorySystem, "vital-signs", ""}
	categoryActivity         = concept{ObservationCategorySystem, "activity", ""}
	categoryExam             = concept{ObservationCategorySystem, "exam", ""}
	categoryProcedure        = concept{ObservationCategorySystem, "procedure", ""}
	interpretationNormal     = concept{InterpretationSystem, "N", "Normal"}
	interpretationAbnormal   = concept{InterpretationSystem, "A", "Abnormal"}
	interpretationIndetermin = concept{InterpretationSystem, "IND", "Indeterminate"}
)

// rhythm is an ECG classification and the interpretation it implies (none when unclassifiable).
type rhythm struct {
	display        string
	interpretation *concept
}

var rhythms = map[string]rhythm{
	RhythmSinus:              {"Sinus rhythm", &interpretationNormal},
	RhythmAFibNotDetected:    {"Atrial fibrillation not detected", &interpretationNormal},
	RhythmAtrialFibrillation: {"Atrial fibrillation", &interpretationAbnormal},
	RhythmAFibDetected:       {"Atrial fibrillation detected", &interpretationAbnormal},
	RhythmInconclusive:       {"Inconclusive", &interpretationIndetermin},
	RhythmInconclusiveHighHR: {"Inconclusive: high heart rate", &interpretationIndetermin},
	RhythmInconclusiveLowHR:  {"Inconclusive: low heart rate", &interpretationIndetermin},
	RhythmNoSignal:           {"No signal", nil},
	RhythmNoise:              {"Too much noise to classify", nil},
	RhythmUnreadable:         {"Unreadable recording", nil},
	RhythmOther:              {"Other rhythm, not classified", nil},
}

// LocalConcepts returns the codes ohx defines in one of its local code systems
// (ObservationCodeSystem, ECGRhythmSystem or TagSystem), sorted by code, for publishing the
// CodeSystem resources; nil for any other system.
func LocalConcepts(system string) []Coding {
	var out []Coding
	switch system {
	case ObservationCodeSystem:
		seen := map[string]bool{}
		add := func(c concept) {
			if c.system == ObservationCodeSystem && !seen[c.code] {
				seen[c.code] = true
				out = append(out, c.coding())
			}
		}
		for _, spec := range kindSpecs {
			for _, c := range spec.codes {
				add(c)
			}
		}
		for _, c := range componentSpecs {
			add(c.code)
		}
	case ECGRhythmSystem:
		for code, r := range rhythms {
			out = append(out, Coding{System: ECGRhythmSystem, Code: code, Display: r.display})
		}
	case TagSystem:
		out = append(out, tagAmbiguous.coding())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Code < out[j].Code })
	return out
}

var tagAmbiguous = concept{TagSystem, TagAmbiguousSubject, "Measured by a shared device; may belong to another user of the device"}

// Device types (https://hl7.org/fhir/R5/device-definitions.html#Device.type). Only SNOMED CT
// codes verified in the HL7 Vital Signs with Qualifying Elements IG device value sets
// (http://hl7.org/fhir/us/vitals/ValueSet/weightMeasurementDeviceVS,
// http://hl7.org/fhir/us/vitals/ValueSet/bpMeasDeviceVS,
// http://hl7.org/fhir/us/vitals/ValueSet/heartRateMeasDeviceVS) are used as specific types; device
// kinds without a verified code get the generic SCT#49062001 "Device" with a text.
var (
	sctFloorScale   = concept{SNOMEDSystem, "469204003", "Floor scale, electronic"}
	sctBPMonitor    = concept{SNOMEDSystem, "466086009", "Automatic-inflation electronic sphygmomanometer, portable, arm/wrist"}
	sctECGRecorder  = concept{SNOMEDSystem, "86184003", "Electrocardiographic monitor and recorder"}
	sctPulseOxim    = concept{SNOMEDSystem, "448703006", "Pulse oximeter"}
	sctDevice       = concept{SNOMEDSystem, "49062001", "Device"}
	mdcBatteryLevel = concept{MDCSystem, "67996", "MDC_ATTR_VAL_BATT_CHARGE"}
)

// deviceTypes maps the provider-neutral device kind to Device.type.
var deviceTypes = map[DeviceKind]CodeableConcept{
	DeviceKindScale:                {Coding: []Coding{sctFloorScale.coding()}, Text: "Scale"},
	DeviceKindBloodPressureMonitor: {Coding: []Coding{sctBPMonitor.coding()}, Text: "Blood pressure monitor"},
	DeviceKindPulseOximeter:        {Coding: []Coding{sctPulseOxim.coding()}, Text: "Pulse oximeter"},
	DeviceKindActivityTracker:      {Coding: []Coding{sctDevice.coding()}, Text: "Activity tracker"},
	DeviceKindSleepMonitor:         {Coding: []Coding{sctDevice.coding()}, Text: "Sleep monitor"},
	DeviceKindThermometer:          {Coding: []Coding{sctDevice.coding()}, Text: "Thermometer"},
}

// loincCheckDigitOK reports whether a LOINC code "nnnnn-c" has a correct mod-10 check digit
// (https://loinc.org/kb/users-guide/calculating-mod-10-check-digits/).
func loincCheckDigitOK(code string) bool {
	num, check, ok := strings.Cut(code, "-")
	if !ok || len(check) != 1 || num == "" || check[0] < '0' || check[0] > '9' {
		return false
	}
	var odd, even strings.Builder // digit positions counted from the right, 1-based
	for i := len(num) - 1; i >= 0; i-- {
		c := num[i]
		if c < '0' || c > '9' {
			return false
		}
		if (len(num)-i)%2 == 1 {
			odd.WriteByte(c)
		} else {
			even.WriteByte(c)
		}
	}
	// The odd-position digits, in that right-to-left order, form a number that is doubled; the
	// even-position digits are written in front of the result and all its digits are summed.
	sum := 0
	for _, c := range even.String() + doubleDigits(odd.String()) {
		sum += int(c - '0')
	}
	return (10-sum%10)%10 == int(check[0]-'0')
}

// doubleDigits returns the decimal digits of 2 × the number written in s.
func doubleDigits(s string) string {
	out := make([]byte, len(s)+1)
	carry := 0
	for i := len(s) - 1; i >= 0; i-- {
		d := int(s[i]-'0')*2 + carry
		out[i+1] = byte('0' + d%10)
		carry = d / 10
	}
	out[0] = byte('0' + carry)
	return strings.TrimLeft(string(out), "0")
}
