package googlehealthsim

// The JSON shapes of https://developers.google.com/health/reference/rest/v4/users.dataTypes.dataPoints
// as the recorded payloads in testdata/googlehealth show them. proto3 JSON writes int64 fields
// as strings ("beatsPerMinute": "58") and doubles as numbers (https://protobuf.dev/programming-guides/json/).

type jsonDate struct {
	Year  int `json:"year"`
	Month int `json:"month"`
	Day   int `json:"day"`
}

type timeOfDay struct {
	Hours   int `json:"hours,omitempty"`
	Minutes int `json:"minutes,omitempty"`
	Seconds int `json:"seconds,omitempty"`
}

type civilDateTime struct {
	Date jsonDate   `json:"date"`
	Time *timeOfDay `json:"time,omitempty"`
}

type sampleTime struct {
	PhysicalTime string        `json:"physicalTime"`
	UTCOffset    string        `json:"utcOffset"`
	CivilTime    civilDateTime `json:"civilTime"`
}

type interval struct {
	StartTime      string         `json:"startTime"`
	StartUTCOffset string         `json:"startUtcOffset,omitempty"`
	EndTime        string         `json:"endTime"`
	EndUTCOffset   string         `json:"endUtcOffset,omitempty"`
	CivilStartTime *civilDateTime `json:"civilStartTime,omitempty"`
	CivilEndTime   *civilDateTime `json:"civilEndTime,omitempty"`
}

type sourceDevice struct {
	DisplayName  string `json:"displayName"`
	FormFactor   string `json:"formFactor"`
	Manufacturer string `json:"manufacturer"`
}

type dataSource struct {
	RecordingMethod string        `json:"recordingMethod"`
	Device          *sourceDevice `json:"device,omitempty"`
	Platform        string        `json:"platform"`
}

type weightValue struct {
	SampleTime  sampleTime `json:"sampleTime"`
	WeightGrams int64      `json:"weightGrams"`
}

type bodyFatValue struct {
	SampleTime sampleTime `json:"sampleTime"`
	Percentage float64    `json:"percentage"`
}

type heartRateValue struct {
	SampleTime     sampleTime `json:"sampleTime"`
	BeatsPerMinute string     `json:"beatsPerMinute"`
}

type restingHeartRateValue struct {
	Date           jsonDate `json:"date"`
	BeatsPerMinute string   `json:"beatsPerMinute"`
	Metadata       struct {
		CalculationMethod string `json:"calculationMethod"`
	} `json:"dailyRestingHeartRateMetadata"`
}

type oxygenSaturationValue struct {
	Date              jsonDate `json:"date"`
	AveragePercentage float64  `json:"averagePercentage"`
}

type sleepStage struct {
	StartTime      string `json:"startTime"`
	StartUTCOffset string `json:"startUtcOffset"`
	EndTime        string `json:"endTime"`
	EndUTCOffset   string `json:"endUtcOffset"`
	Type           string `json:"type"`
}

type stageSummary struct {
	Type    string `json:"type"`
	Minutes string `json:"minutes"`
	Count   string `json:"count"`
}

type sleepSummary struct {
	MinutesAsleep        string         `json:"minutesAsleep"`
	MinutesAwake         string         `json:"minutesAwake"`
	MinutesInSleepPeriod string         `json:"minutesInSleepPeriod"`
	MinutesToFallAsleep  string         `json:"minutesToFallAsleep"`
	MinutesAfterWakeUp   string         `json:"minutesAfterWakeUp"`
	StagesSummary        []stageSummary `json:"stagesSummary"`
}

type sleepMetadata struct {
	Nap          bool   `json:"nap"`
	Processed    bool   `json:"processed"`
	StagesStatus string `json:"stagesStatus"`
}

type sleepValue struct {
	Interval   interval      `json:"interval"`
	Type       string        `json:"type"`
	Metadata   sleepMetadata `json:"metadata"`
	Stages     []sleepStage  `json:"stages"`
	Summary    sleepSummary  `json:"summary"`
	CreateTime string        `json:"createTime"`
	UpdateTime string        `json:"updateTime"`
}

type medicalDeviceInfo struct {
	DeviceModel string `json:"deviceModel"`
}

type ecgValue struct {
	Interval                interval          `json:"interval"`
	BeatsPerMinuteAvg       string            `json:"beatsPerMinuteAvg"`
	LeadNumber              int               `json:"leadNumber"`
	MillivoltsScalingFactor int               `json:"millivoltsScalingFactor"`
	SamplingFrequencyHertz  int               `json:"samplingFrequencyHertz"`
	ResultClassification    string            `json:"resultClassification"`
	WaveformSamples         []int             `json:"waveformSamples"`
	MedicalDeviceInfo       medicalDeviceInfo `json:"medicalDeviceInfo"`
}

// dataPoint is DataPoint: a name (for identifiable types), the source and the value union.
type dataPoint struct {
	Name                  string                 `json:"name,omitempty"`
	DataSource            dataSource             `json:"dataSource"`
	Weight                *weightValue           `json:"weight,omitempty"`
	BodyFat               *bodyFatValue          `json:"bodyFat,omitempty"`
	HeartRate             *heartRateValue        `json:"heartRate,omitempty"`
	DailyRestingHeartRate *restingHeartRateValue `json:"dailyRestingHeartRate,omitempty"`
	DailyOxygenSaturation *oxygenSaturationValue `json:"dailyOxygenSaturation,omitempty"`
	Sleep                 *sleepValue            `json:"sleep,omitempty"`
	Electrocardiogram     *ecgValue              `json:"electrocardiogram,omitempty"`
}

// listAnswer is ListDataPointsResponse; an empty page is {} (proto3 JSON omits empty fields).
type listAnswer struct {
	DataPoints    []dataPoint `json:"dataPoints,omitempty"`
	NextPageToken string      `json:"nextPageToken,omitempty"`
}
