package fitbit

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/providers"
	"github.com/openhealthexchange/ohx/providers/providertest"
)

func day(y int, m time.Month, d int, loc *time.Location) providers.Query {
	start := time.Date(y, m, d, 0, 0, 0, 0, loc)
	return providers.Query{Start: start, End: start.AddDate(0, 0, 1)}
}

func comp(k fhir.SampleKind, v fhir.Decimal, unit string) fhir.SampleComponent {
	return fhir.SampleComponent{Kind: k, Value: v, Unit: unit}
}

// The Samples the prior-art vectors F1–F10 must give: the same values as the goldens of
// fhir/mapping_test.go, in the profile's zone Europe/Berlin.
var (
	vF1  = fhir.Sample{Provider: "fitbit", UserID: "ABC123", Kind: fhir.KindRestingHeartRate, System: "fitbit/daily", RecordID: "ABC123/2025-02-25/resting-hr", Value: "68", Unit: "/min", Start: time.Date(2025, 2, 25, 0, 0, 0, 0, berlin), DeviceID: "tracker-123"}
	vF3  = fhir.Sample{Provider: "fitbit", UserID: "ABC123", Kind: fhir.KindHRVRMSSD, System: "fitbit/daily", RecordID: "ABC123/2023-10-01/hrv-rmssd", Value: "45.5", Unit: "ms", Daily: true, Start: time.Date(2023, 10, 1, 0, 0, 0, 0, berlin), DeviceID: "tracker-123", Components: []fhir.SampleComponent{comp(fhir.KindHRVRMSSDDeepSleep, "48.0", "ms")}}
	vF4  = fhir.Sample{Provider: "fitbit", UserID: "ABC123", Kind: fhir.KindHRVRMSSD, System: "fitbit/hrv-intraday", RecordID: "ABC123/2023-10-01T08:00:00.000", Value: "45.5", Unit: "ms", Start: time.Date(2023, 10, 1, 8, 0, 0, 0, berlin), DeviceID: "tracker-123"}
	vF7  = fhir.Sample{Provider: "fitbit", UserID: "ABC123", Kind: fhir.KindSteps, System: "fitbit/daily", RecordID: "ABC123/2024-01-15/steps", Value: "8500", Start: time.Date(2024, 1, 15, 0, 0, 0, 0, berlin), DeviceID: "tracker-123"}
	vF8  = fhir.Sample{Provider: "fitbit", UserID: "ABC123", Kind: fhir.KindWeight, System: "fitbit/weight", RecordID: "ABC123/1330991999000", Value: "70.2", Unit: "kg", Start: time.Date(2024, 1, 15, 7, 15, 30, 0, berlin), DeviceID: "scale-789"}
	vF8B = fhir.Sample{Provider: "fitbit", UserID: "ABC123", Kind: fhir.KindBMI, System: "fitbit/weight", RecordID: "ABC123/1330991999000/bmi", Value: "22.5", Unit: "kg/m2", Start: time.Date(2024, 1, 15, 7, 15, 30, 0, berlin), DeviceID: "scale-789", DerivedFrom: "ABC123/1330991999000"}
	vF9  = fhir.Sample{Provider: "fitbit", UserID: "ABC123", Kind: fhir.KindSleep, System: "fitbit/sleep", RecordID: "ABC123/789012", Value: "420", Unit: "min",
		Start: time.Date(2024, 1, 15, 23, 0, 0, 0, berlin), End: time.Date(2024, 1, 16, 6, 0, 0, 0, berlin), DeviceID: "tracker-123",
		Components: []fhir.SampleComponent{comp(fhir.KindSleepDeep, "80", "min"), comp(fhir.KindSleepLight, "220", "min"), comp(fhir.KindSleepREM, "120", "min"), comp(fhir.KindSleepAwake, "30", "min"),
			comp(fhir.KindSleepEfficiency, "90", "%"), comp(fhir.KindSleepTimeInBed, "450", "min"), comp(fhir.KindSleepLatency, "5", "min")}}
	vF10 = fhir.Sample{Provider: "fitbit", UserID: "ABC123", Kind: fhir.KindECG, System: "fitbit/ecg", RecordID: "ABC123/2024-01-15T10:00:00.000", Start: time.Date(2024, 1, 15, 10, 0, 0, 0, berlin), DeviceID: "tracker-123",
		Components: []fhir.SampleComponent{comp(fhir.KindHeartRate, "72", "/min")}, Code: fhir.RhythmSinus, CodeText: "Normal Sinus Rhythm",
		Waveform: &fhir.Waveform{Samples: []int{130, 176, 252, 365, 451}, Factor: "0.0915583226515290239883", Unit: "uV", IntervalMS: "4"},
		Note:     "Fitbit states that ECG data from its Web API is for research and investigational use only, not for diagnosis."}
	vSpO2     = fhir.Sample{Provider: "fitbit", UserID: "ABC123", Kind: fhir.KindSpO2, System: "fitbit/daily", RecordID: "ABC123/2024-01-15/spo2", Value: "96.5", Unit: "%", Daily: true, Start: time.Date(2024, 1, 15, 0, 0, 0, 0, berlin), DeviceID: "tracker-123"}
	vSkinTemp = fhir.Sample{Provider: "fitbit", UserID: "ABC123", Kind: fhir.KindSkinTemperatureVariation, System: "fitbit/daily", RecordID: "ABC123/2024-01-15/skin-temperature-variation", Value: "-0.4", Unit: "Cel", Daily: true, Start: time.Date(2024, 1, 15, 0, 0, 0, 0, berlin)}
)

// TestVectors feeds the prior-art payloads through the adapter and compares the samples with the
// expected ones, and their Observations with the existing goldens.
func TestVectors(t *testing.T) {
	win := testWindowQ
	tests := []struct {
		name     string
		routes   map[string]providertest.Route
		q        providers.Query
		kind     fhir.SampleKind
		intraday bool
		want     []fhir.Sample
		goldens  []string // one per wanted sample, "" for none
	}{
		{"F1 resting heart rate", map[string]providertest.Route{"GET /1/user/-/activities/heart/date/2025-02-25/2025-02-25.json": file("f1_activities_heart.json")},
			day(2025, 2, 25, berlin), fhir.KindRestingHeartRate, false, []fhir.Sample{vF1}, []string{"fitbit-f1-resting-heart-rate"}},
		{"F2 days without resting heart rate", map[string]providertest.Route{"GET /1/user/-/activities/heart/date/2025-02-26/2025-02-27.json": file("f2_activities_heart.json")},
			providers.Query{Start: time.Date(2025, 2, 26, 0, 0, 0, 0, berlin), End: time.Date(2025, 2, 28, 0, 0, 0, 0, berlin)}, fhir.KindRestingHeartRate, false,
			[]fhir.Sample{{Provider: "fitbit", UserID: "ABC123", Kind: fhir.KindRestingHeartRate, System: "fitbit/daily", RecordID: "ABC123/2025-02-26/resting-hr", Value: "72", Unit: "/min", Start: time.Date(2025, 2, 26, 0, 0, 0, 0, berlin), DeviceID: "tracker-123"}}, []string{""}},
		{"F3 daily HRV", map[string]providertest.Route{"GET /1/user/-/hrv/date/2023-10-01/2023-10-01.json": file("f3_hrv.json")},
			day(2023, 10, 1, berlin), fhir.KindHRVRMSSD, false, []fhir.Sample{vF3}, []string{"fitbit-f3-hrv-daily"}},
		{"F4 intraday HRV", map[string]providertest.Route{
			"GET /1/user/-/hrv/date/2023-10-01/2023-10-01.json":     file("f3_hrv.json"),
			"GET /1/user/-/hrv/date/2023-10-01/2023-10-01/all.json": file("f4_hrv_intraday.json"),
		}, day(2023, 10, 1, berlin), fhir.KindHRVRMSSD, true, []fhir.Sample{vF3, vF4}, []string{"fitbit-f3-hrv-daily", "fitbit-f4-hrv-intraday"}},
		{"F7 daily steps, the unsynced zero dropped", map[string]providertest.Route{"GET /1/user/-/activities/steps/date/2024-01-15/2024-01-16.json": file("activities_steps.json")},
			win, fhir.KindSteps, false, []fhir.Sample{vF7}, []string{"fitbit-f7-steps"}},
		{"F8 weight and BMI", map[string]providertest.Route{"GET /1/user/-/body/log/weight/date/2024-01-15/2024-01-16.json": file("body_weight.json")},
			win, fhir.KindWeight, false, []fhir.Sample{vF8}, []string{"fitbit-f8-weight"}},
		{"F8 BMI", map[string]providertest.Route{"GET /1/user/-/body/log/weight/date/2024-01-15/2024-01-16.json": file("body_weight.json")},
			win, fhir.KindBMI, false, []fhir.Sample{vF8B}, []string{"fitbit-f8-bmi"}},
		{"F9 sleep", map[string]providertest.Route{"GET /1.2/user/-/sleep/date/2024-01-15/2024-01-16.json": file("sleep.json")},
			win, fhir.KindSleep, false, []fhir.Sample{vF9}, []string{"fitbit-f9-sleep"}},
		{"F10 ECG", map[string]providertest.Route{"GET /1/user/-/ecg/list.json afterDate=2024-01-15 sort=asc limit=10 offset=0": file("f10_ecg.json")},
			win, fhir.KindECG, false, []fhir.Sample{vF10}, []string{"fitbit-f10-ecg"}},
		{"SpO2 daily", map[string]providertest.Route{"GET /1/user/-/spo2/date/2024-01-15/2024-01-16.json": file("spo2.json")},
			win, fhir.KindSpO2, false, []fhir.Sample{vSpO2}, []string{"fitbit-spo2-daily"}},
		{"skin temperature variation", map[string]providertest.Route{"GET /1/user/-/temp/skin/date/2024-01-15/2024-01-16.json": file("temp_skin.json")},
			win, fhir.KindSkinTemperatureVariation, false, []fhir.Sample{vSkinTemp}, []string{"fitbit-skin-temperature-variation"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, base(tc.routes), opts{intraday: tc.intraday})
			q := tc.q
			q.Kinds = []fhir.SampleKind{tc.kind}
			got, _ := fetchAll(t, f.c, q)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Fatalf("samples (-want +got):\n%s", diff)
			}
			for i, s := range got {
				o, err := fhir.MapSample(s, testPatient)
				if err != nil {
					t.Fatalf("MapSample: %v", err)
				}
				b := checkResource(t, o, "Observation", fhir.R4Options{})
				if tc.goldens[i] != "" {
					compareGolden(t, filepath.Join("observation", tc.goldens[i]+".json"), b)
				}
			}
		})
	}
}

// TestHRVIntradayFlatShapeIsAnError: the flat shape the prior art parsed is an unexpected shape
// (permanent error), never "no data" (vector F4).
func TestHRVIntradayFlatShapeIsAnError(t *testing.T) {
	f := newFixture(t, base(map[string]providertest.Route{
		"GET /1/user/-/hrv/date/2023-10-01/2023-10-01.json":     file("f3_hrv.json"),
		"GET /1/user/-/hrv/date/2023-10-01/2023-10-01/all.json": file("f4_hrv_flat.json"),
	}), opts{intraday: true, kinds: []fhir.SampleKind{fhir.KindHRVRMSSD}})
	q := day(2023, 10, 1, berlin)
	p, err := f.c.Fetch(t.Context(), testUser, bearer("a1"), q) // the daily summary comes first
	if err != nil || p.Next == "" {
		t.Fatalf("daily page: %v, %+v", err, p)
	}
	q.Cursor = p.Next
	_, err = f.c.Fetch(t.Context(), testUser, bearer("a1"), q)
	if ue := upstreamErr(t, err); ue.Kind != providers.KindPermanent {
		t.Errorf("flat intraday shape: kind %q, want permanent", ue.Kind)
	}
}
