package withings

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/providers"
	"github.com/openhealthexchange/ohx/providers/providertest"
)

func ecgRoutes() map[string]providertest.Route {
	return map[string]providertest.Route{
		"POST /v2/heart action=list":               file("heart_list.json"),
		"POST /v2/heart action=get signalid=12345": file("heart_get_500hz.json"),
		"POST /v2/heart action=get signalid=67890": file("heart_get_300hz.json"),
	}
}

// TestECG is W15 plus a 300 Hz ScanWatch recording and a BPM Core record without ECG.
func TestECG(t *testing.T) {
	f := newFixture(t, ecgRoutes(), fixtureOpts{kinds: []fhir.SampleKind{fhir.KindECG}})
	got, _ := fetchAll(t, f.c, providers.Query{Start: at("2024-01-01T00:00:00Z"), End: at("2024-07-06T00:00:00Z")})
	want := []fhir.Sample{
		{
			Provider: "withings", UserID: testUser, Kind: fhir.KindECG, System: "withings/ecg", RecordID: "12345/12345",
			Start: time.Unix(1704067200, 0), DeviceID: "device-123",
			Code: fhir.RhythmAFibNotDetected, CodeText: "Negative",
			Components: []fhir.SampleComponent{{Kind: fhir.KindHeartRate, Value: "72", Unit: "/min"}},
			// Samples as delivered (never negated for wear position 2, the right arm), µV, 2 ms.
			Waveform: &fhir.Waveform{Samples: []int{-57, -62, -66, -71, 34}, Factor: "1", Unit: "uV", IntervalMS: "2", BodySite: "Right arm"},
		},
		{
			Provider: "withings", UserID: testUser, Kind: fhir.KindECG, System: "withings/ecg", RecordID: "12345/67890",
			Start: time.Unix(1720143605, 0), DeviceID: "e9d3b2a1c0f4",
			Code: fhir.RhythmInconclusive, CodeText: "Inconclusive",
			Components: []fhir.SampleComponent{{Kind: fhir.KindHeartRate, Value: "81", Unit: "/min"}},
			Waveform: &fhir.Waveform{Samples: []int{12, 15, 19, 24, 31, 38, 30, 4, -88, -120, -42, 7, 11}, Factor: "1",
				Unit: "uV", IntervalMS: "3.333333333", BodySite: "Left wrist"},
		},
	}
	sortSamples(got)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("samples (-want +got):\n%s", diff)
	}
	if got[0].Start.Location() != time.UTC {
		t.Errorf("ECG Start %v: Heart List has no zone, want UTC", got[0].Start)
	}
	if n := f.srv.Hits("POST /v2/heart action=list"); n != 1 {
		t.Errorf("%d list requests, want 1", n)
	}
	for _, k := range []string{"POST /v2/heart action=get signalid=12345", "POST /v2/heart action=get signalid=67890"} {
		if n := f.srv.Hits(k); n != 1 {
			t.Errorf("%s: %d requests, want 1 (one get per signal)", k, n)
		}
	}
	r := f.requests("/v2/heart")[0].Form
	if r.Get("startdate") != "1704067200" || r.Get("enddate") != "1720224000" {
		t.Errorf("list form %v", r)
	}
}

// TestECGMapped: the adapter's ECG sample carries the Withings rules the mapper no longer knows:
// wear position 2 becomes the body site "Right arm", and no note is attached.
func TestECGMapped(t *testing.T) {
	f := newFixture(t, ecgRoutes(), fixtureOpts{kinds: []fhir.SampleKind{fhir.KindECG}})
	got, _ := fetchAll(t, f.c, providers.Query{Start: at("2024-01-01T00:00:00Z"), End: at("2024-07-06T00:00:00Z")})
	sortSamples(got)
	if len(got) == 0 {
		t.Fatal("no ECG samples")
	}
	o, err := fhir.MapSample(got[0], "p1")
	if err != nil {
		t.Fatalf("MapSample: %v", err)
	}
	if o.BodySite == nil || o.BodySite.Text != "Right arm" {
		t.Errorf("bodySite: got %+v, want the text Right arm", o.BodySite)
	}
	if len(o.Note) != 0 {
		t.Errorf("note: got %v, want none", o.Note)
	}
}

// TestWearPositions: the body-site codes of Heart v2 - Get, and none for the other positions.
func TestWearPositions(t *testing.T) {
	for code, want := range map[string]string{
		"0": "Right wrist", "1": "Left wrist", "2": "Right arm", "3": "Left arm", "4": "Right foot", "5": "Left foot",
		"6": "Between legs", "8": "Left part of body", "9": "Right part of body",
		"7": "", "10": "", "31": "", "": "", "right arm": "",
	} {
		if got := wearPositions[code]; got != want {
			t.Errorf("wear position %q: got %q, want %q", code, got, want)
		}
	}
}

func TestECGIncremental(t *testing.T) {
	f := newFixture(t, ecgRoutes(), fixtureOpts{kinds: []fhir.SampleKind{fhir.KindECG}})
	since := time.Unix(1720000000, 0)
	got, _ := fetchAll(t, f.c, providers.Query{Since: since})
	// Only the recording modified since Since; the listing reaches a week further back.
	if diff := cmp.Diff([]string{"12345/67890"}, recordIDs(got)); diff != "" {
		t.Errorf("records (-want +got):\n%s", diff)
	}
	r := f.requests("/v2/heart")[0].Form
	if r.Get("startdate") != "1719395200" || r.Get("enddate") != "1720270800" {
		t.Errorf("list form %v, want startdate Since−7d and enddate the next full hour", r)
	}
	if n := f.srv.Hits("POST /v2/heart action=get signalid=12345"); n != 0 {
		t.Errorf("unmodified recording fetched %d times", n)
	}
}

func TestIntervalMS(t *testing.T) {
	for hz, want := range map[int64]fhir.Decimal{
		500: "2", 300: "3.333333333", 250: "4", 256: "3.90625", 1000: "1", 128: "7.8125", 3: "333.333333333", 2000: "0.5",
	} {
		got, err := intervalMS(hz)
		if err != nil || got != want {
			t.Errorf("intervalMS(%d) = %s, %v; want %s", hz, got, err, want)
		}
	}
	if _, err := intervalMS(0); err == nil {
		t.Error("intervalMS(0): want an error")
	}
}
