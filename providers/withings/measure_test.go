package withings

import (
	"sort"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/providers"
	"github.com/openhealthexchange/ohx/providers/providertest"
)

var measureKinds = []fhir.SampleKind{
	fhir.KindWeight, fhir.KindHeight, fhir.KindFatFreeMass, fhir.KindFatRatio, fhir.KindFatMass,
	fhir.KindBloodPressure, fhir.KindHeartRate, fhir.KindSpO2, fhir.KindBodyTemperature,
	fhir.KindSkinTemperature, fhir.KindMuscleMass, fhir.KindHydration, fhir.KindBoneMass,
	fhir.KindPulseWaveVelocity, fhir.KindVO2Max,
}

func TestScaled(t *testing.T) {
	tests := []struct {
		value string
		exp   int
		want  fhir.Decimal
	}{
		{"75000", -3, "75.000"},
		{"3680", -2, "36.80"}, // never 36.800000000000004
		{"369", -1, "36.9"},
		{"120", 0, "120"},
		{"0", 0, "0"},
		{"0", -2, "0.00"},
		{"0", 3, "0"},
		{"5", -3, "0.005"},
		{"50", -3, "0.050"},
		{"-5", -1, "-0.5"},
		{"-1250", -2, "-12.50"},
		{"-0", 0, "0"},
		{"007", -1, "0.7"},
		{"12", 2, "1200"},
		{"1780", -1, "178.0"}, // height 1780e-3 m shifted to cm
		{"9223372036854775807", -5, "92233720368547.75807"},
		{"123456789012345678901234567890", -28, "12.3456789012345678901234567890"},
		{"1", -20, "0.00000000000000000001"},
	}
	for _, tt := range tests {
		got, err := scaled(tt.value, tt.exp)
		if err != nil {
			t.Errorf("scaled(%s, %d): %v", tt.value, tt.exp, err)
			continue
		}
		if got != tt.want || !got.Valid() {
			t.Errorf("scaled(%s, %d) = %s, want %s", tt.value, tt.exp, got, tt.want)
		}
	}
	for _, bad := range []string{"", "-", "1.5", "1e3", "abc", "12a"} {
		if got, err := scaled(bad, 0); err == nil {
			t.Errorf("scaled(%q) = %s, want an error", bad, got)
		}
	}
	if _, err := scaled("1", 99); err == nil {
		t.Error("scaled with an absurd unit: want an error")
	}
}

// TestPriorArtMeasures runs the Withings vectors W1–W10 of an earlier implementation with their
// corrected expectations.
func TestPriorArtMeasures(t *testing.T) {
	f := newFixture(t, map[string]providertest.Route{
		"POST /measure action=getmeas": file("getmeas_prior_art.json"),
	}, fixtureOpts{kinds: measureKinds})
	since := time.Unix(1704000000, 0)
	got, pages := fetchAll(t, f.c, providers.Query{Since: since})
	if len(pages) != 1 {
		t.Fatalf("%d pages, want 1", len(pages))
	}
	jan1 := time.Unix(1704067200, 0)
	jan2 := time.Unix(1704153600, 0)
	w := func(grp, typ string, kind fhir.SampleKind, v fhir.Decimal, unit, dev string) fhir.Sample {
		return fhir.Sample{Provider: "withings", UserID: testUser, Kind: kind, System: "withings/measure",
			RecordID: testUser + "/" + grp + "/" + typ, Value: v, Unit: unit, Start: jan1, DeviceID: dev}
	}
	bp := func(grp string, sys, dia fhir.Decimal, start time.Time) fhir.Sample {
		return fhir.Sample{Provider: "withings", UserID: testUser, Kind: fhir.KindBloodPressure, System: "withings/measure",
			RecordID: testUser + "/" + grp + "/bp", Start: start, DeviceID: "device-bp",
			Components: []fhir.SampleComponent{
				{Kind: fhir.KindSystolic, Value: sys, Unit: "mm[Hg]"},
				{Kind: fhir.KindDiastolic, Value: dia, Unit: "mm[Hg]"},
			}}
	}
	manual := w("457", "1", fhir.KindWeight, "70.000", "kg", "")
	manual.Manual = true
	want := []fhir.Sample{
		w("123", "1", fhir.KindWeight, "75.000", "kg", "device-123"), // W1
		// W2: grpid 456 is an objective (category 2): no sample.
		manual,                       // W2b: patient-reported, no device, own identifier
		bp("789", "120", "80", jan1), // W3
		bp("791", "120", "80", jan1), // W3b: panel …
		w("791", "11", fhir.KindHeartRate, "65", "/min", "device-bp"), // … and the pulse as its own sample
		bp("790", "135.0", "85.0", jan1),                              // W4
		// W5: grpid 792 has only a systolic value: skipped.
		bp("100", "120", "80", jan1), // W6
		bp("101", "130", "85", jan2),
		w("1", "12", fhir.KindBodyTemperature, "36.80", "Cel", ""),               // W7
		w("3", "71", fhir.KindBodyTemperature, "36.9", "Cel", ""),                // W7b
		w("3", "73", fhir.KindSkinTemperature, "33.1", "Cel", ""),                // W7b: skin, not body
		w("2", "54", fhir.KindSpO2, "97", "%", "sw-1"),                           // W8
		w("9001", "8", fhir.KindFatMass, "15.000", "kg", "device-123"),           // W9
		w("9002", "91", fhir.KindPulseWaveVelocity, "7.50", "m/s", "device-123"), // W10
	}
	sortSamples(want)
	sortSamples(got)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("samples (-want +got):\n%s", diff)
	}
	// W5's group is still the vendor's: the page names it, so that a deletion check keeps its
	// stored panel.
	var held []providers.HeldRecord
	for _, p := range pages {
		held = append(held, p.Held...)
	}
	if diff := cmp.Diff([]providers.HeldRecord{{System: "withings/measure", RecordID: testUser + "/792/bp"}}, held); diff != "" {
		t.Errorf("held records (-want +got):\n%s", diff)
	}
	// Offsets: the group time is in the response's zone (Paris, winter).
	for _, s := range got {
		if _, off := s.Start.Zone(); off != 3600 {
			t.Errorf("%s: Start %s, want the Europe/Paris offset +01:00", s.RecordID, s.Start.Format(time.RFC3339))
		}
	}
	reqs := f.requests("/measure")
	wantForm := map[string]string{
		"action": "getmeas", "category": "1", "lastupdate": "1704000000",
		"meastypes": "1,4,5,6,8,9,10,11,12,54,71,73,76,77,88,91,123",
	}
	for k, v := range wantForm {
		if got := reqs[0].Form.Get(k); got != v {
			t.Errorf("getmeas %s = %q, want %q", k, got, v)
		}
	}
	if reqs[0].Form.Has("startdate") || reqs[0].Form.Has("offset") {
		t.Errorf("incremental getmeas with startdate or offset: %v", reqs[0].Form)
	}
	if h := reqs[0].Header.Get("Authorization"); h != "Bearer a1" {
		t.Errorf("Authorization = %q", h)
	}
	if want := time.Unix(1704240000, 0); !pages[0].SyncedUntil.Equal(want) {
		t.Errorf("SyncedUntil = %v, want updatetime %v", pages[0].SyncedUntil, want)
	}
}

func sortSamples(ss []fhir.Sample) {
	sort.Slice(ss, func(i, j int) bool { return ss[i].RecordID < ss[j].RecordID })
}

func TestMeasureTypes(t *testing.T) {
	f := newFixture(t, map[string]providertest.Route{
		"POST /measure action=getmeas": file("getmeas_types.json"),
	}, fixtureOpts{kinds: measureKinds})
	got, _ := fetchAll(t, f.c, providers.Query{Since: time.Unix(1700000000, 0)})
	type row struct {
		Kind      fhir.SampleKind
		Value     fhir.Decimal
		Unit      string
		Device    string
		Manual    bool
		Ambiguous bool
		Start     string
	}
	m := map[string]row{}
	for _, s := range got {
		m[s.RecordID] = row{s.Kind, s.Value, s.Unit, s.DeviceID, s.Manual, s.Ambiguous, s.Start.Format(time.RFC3339)}
	}
	const scale, watch, thermo = "7c1f0e2a9b4d", "e9d3b2a1c0f4", "0a0b0c0d0e0f"
	want := map[string]row{
		"12345/5405187261/1":  {fhir.KindWeight, "81.350", "kg", scale, false, false, "2024-07-05T06:58:40-04:00"},
		"12345/5405187261/5":  {fhir.KindFatFreeMass, "61.35", "kg", scale, false, false, "2024-07-05T06:58:40-04:00"},
		"12345/5405187261/6":  {fhir.KindFatRatio, "24.583", "%", scale, false, false, "2024-07-05T06:58:40-04:00"},
		"12345/5405187261/8":  {fhir.KindFatMass, "19.998", "kg", scale, false, false, "2024-07-05T06:58:40-04:00"},
		"12345/5405187261/76": {fhir.KindMuscleMass, "58.32", "kg", scale, false, false, "2024-07-05T06:58:40-04:00"},
		"12345/5405187261/77": {fhir.KindHydration, "42.90", "kg", scale, false, false, "2024-07-05T06:58:40-04:00"},
		"12345/5405187261/88": {fhir.KindBoneMass, "3.08", "kg", scale, false, false, "2024-07-05T06:58:40-04:00"},
		"12345/5405187261/91": {fhir.KindPulseWaveVelocity, "7.12", "m/s", scale, false, false, "2024-07-05T06:58:40-04:00"},
		"12345/5405187261/11": {fhir.KindHeartRate, "58", "/min", scale, false, false, "2024-07-05T06:58:40-04:00"},
		// attrib 1: a device value that may be another user's.
		"12345/5405187262/1": {fhir.KindWeight, "64.120", "kg", scale, false, true, "2024-07-05T07:01:12-04:00"},
		// attrib 4: entered at account creation, metres → centimetres; winter offset.
		"12345/5390000001/4":   {fhir.KindHeight, "178.0", "cm", "", true, false, "2024-01-20T08:02:11-05:00"},
		"12345/5405190000/123": {fhir.KindVO2Max, "42.10", "mL/min/kg", watch, false, false, "2024-07-04T21:40:05-04:00"},
		"12345/5405190000/54":  {fhir.KindSpO2, "97", "%", watch, false, false, "2024-07-04T21:40:05-04:00"},
		"12345/5405190000/73":  {fhir.KindSkinTemperature, "33.41", "Cel", watch, false, false, "2024-07-04T21:40:05-04:00"},
		"12345/5405200000/12":  {fhir.KindBodyTemperature, "37.12", "Cel", thermo, false, false, "2024-07-05T22:10:00-04:00"},
		"12345/5405200000/71":  {fhir.KindBodyTemperature, "37.05", "Cel", thermo, false, false, "2024-07-05T22:10:00-04:00"},
		// attrib 2: typed in by the user; the group's deviceid is not the measuring device.
		"12345/5405210000/bp": {fhir.KindBloodPressure, "", "", "", true, false, "2024-07-05T22:10:00-04:00"},
		"12345/5405210000/11": {fhir.KindHeartRate, "71", "/min", "", true, false, "2024-07-05T22:10:00-04:00"},
		// attrib 5: BPM auto mode is a device measurement; type 130 (AFib) is not read here.
		"12345/5405220000/bp": {fhir.KindBloodPressure, "", "", "5b5b5b5b5b5b", false, false, "2024-07-05T22:10:00-04:00"},
		"12345/5405220000/11": {fhir.KindHeartRate, "70", "/min", "5b5b5b5b5b5b", false, false, "2024-07-05T22:10:00-04:00"},
		// grpid 5405230000 is an objective: absent.
	}
	if diff := cmp.Diff(want, m); diff != "" {
		t.Errorf("samples (-want +got):\n%s", diff)
	}
	bpAuto := byRecord(got)["12345/5405220000/bp"]
	wantComps := []fhir.SampleComponent{{Kind: fhir.KindSystolic, Value: "134.00", Unit: "mm[Hg]"}, {Kind: fhir.KindDiastolic, Value: "81.50", Unit: "mm[Hg]"}}
	if diff := cmp.Diff(wantComps, bpAuto.Components); diff != "" {
		t.Errorf("BP components (-want +got):\n%s", diff)
	}
}

func TestMeasureTimezones(t *testing.T) {
	f := newFixture(t, map[string]providertest.Route{
		"POST /measure action=getmeas": file("getmeas_tz_paris.json"),
	}, fixtureOpts{kinds: []fhir.SampleKind{fhir.KindWeight}})
	got, _ := fetchAll(t, f.c, providers.Query{Since: time.Unix(1700000000, 0)})
	want := map[string]string{
		"12345/6001/1": "2024-01-15T07:15:30+01:00", // winter
		"12345/6002/1": "2024-07-15T07:15:30+02:00", // summer
	}
	for id, w := range want {
		s, ok := byRecord(got)[id]
		if !ok {
			t.Errorf("%s missing", id)
			continue
		}
		if g := s.Start.Format(time.RFC3339); g != w {
			t.Errorf("%s: Start %s, want %s", id, g, w)
		}
		if s.Start.Location().String() != "Europe/Paris" {
			t.Errorf("%s: location %s, want Europe/Paris", id, s.Start.Location())
		}
	}
	if reqs := f.requests("/measure"); reqs[0].Form.Get("meastypes") != "1" {
		t.Errorf("meastypes = %q, want only the wanted type", reqs[0].Form.Get("meastypes"))
	}
}

func TestMeasureUnknownZoneIsUTC(t *testing.T) {
	f := newFixture(t, map[string]providertest.Route{
		"POST /measure action=getmeas": body(`{"status":0,"body":{"updatetime":1704240000,"timezone":"Mars/Olympus_Mons","more":0,"offset":0,
 "measuregrps":[{"grpid":7,"attrib":0,"date":1704067200,"category":1,"measures":[{"value":75000,"unit":-3,"type":1}]}]}}`),
	}, fixtureOpts{kinds: []fhir.SampleKind{fhir.KindWeight}})
	got, _ := fetchAll(t, f.c, providers.Query{Since: time.Unix(1700000000, 0)})
	if len(got) != 1 || got[0].Start.Location() != time.UTC || !got[0].Start.Equal(time.Unix(1704067200, 0)) {
		t.Errorf("got %+v, want the UTC instant", got)
	}
}

// TestGetmeasPagination is W19: two POSTs, the second with offset=100.
func TestGetmeasPagination(t *testing.T) {
	f := newFixture(t, map[string]providertest.Route{
		"POST /measure action=getmeas":            file("getmeas_page1.json"),
		"POST /measure action=getmeas offset=100": file("getmeas_page2.json"),
	}, fixtureOpts{kinds: []fhir.SampleKind{fhir.KindWeight}})
	got, pages := fetchAll(t, f.c, providers.Query{Since: time.Unix(1704000000, 0)})
	if len(pages) != 2 {
		t.Fatalf("%d pages, want 2", len(pages))
	}
	if diff := cmp.Diff([]string{"12345/1/1", "12345/2/1"}, recordIDs(got)); diff != "" {
		t.Errorf("records (-want +got):\n%s", diff)
	}
	if v := byRecord(got)["12345/2/1"].Value; v != "74.800" {
		t.Errorf("page 2 weight = %s, want 74.800", v)
	}
	reqs := f.requests("/measure")
	if len(reqs) != 2 || reqs[0].Form.Has("offset") || reqs[1].Form.Get("offset") != "100" {
		t.Errorf("requests %v, want a first page without offset and a second with offset=100", reqs)
	}
	if reqs[1].Form.Get("lastupdate") != "1704000000" {
		t.Errorf("second page lastupdate = %q, want the same query", reqs[1].Form.Get("lastupdate"))
	}
	// One horizon for the whole query: the first page's updatetime.
	for i, p := range pages {
		if !p.SyncedUntil.Equal(time.Unix(1704240000, 0)) {
			t.Errorf("page %d SyncedUntil = %v", i, p.SyncedUntil)
		}
	}
}

func TestGetmeasWindow(t *testing.T) {
	f := newFixture(t, map[string]providertest.Route{
		"POST /measure action=getmeas": file("getmeas_page1.json"),
	}, fixtureOpts{kinds: []fhir.SampleKind{fhir.KindWeight}})
	p, err := f.c.Fetch(t.Context(), testUser, bearer("a1"), providers.Query{
		Start: time.Unix(1704067200, 0), End: time.Unix(1704153600, 0),
	})
	if err != nil {
		t.Fatal(err)
	}
	r := f.requests("/measure")[0].Form
	if r.Get("startdate") != "1704067200" || r.Get("enddate") != "1704153600" || r.Has("lastupdate") {
		t.Errorf("window form %v", r)
	}
	if len(p.Samples) != 1 {
		t.Errorf("%d samples, want 1", len(p.Samples))
	}
	// A group at exactly End belongs to the next window.
	p2, err := f.c.Fetch(t.Context(), testUser, bearer("a1"), providers.Query{
		Start: time.Unix(1704000000, 0), End: time.Unix(1704067200, 0),
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(p2.Samples) != 0 {
		t.Errorf("group at End included: %+v", p2.Samples)
	}
}
