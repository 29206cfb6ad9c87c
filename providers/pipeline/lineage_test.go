package pipeline

import (
	"errors"
	"testing"
	"time"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/providers"
	"github.com/openhealthexchange/ohx/store"
)

// TestLineage: which stored Observations a continued account's records take over.
func TestLineage(t *testing.T) {
	g := newRig(t, nil)
	ctx := t.Context()
	berlin, _ := time.LoadLocation("Europe/Berlin")
	day := time.Date(2024, 1, 15, 0, 0, 0, 0, berlin)
	weighed := time.Date(2024, 1, 15, 7, 15, 30, 0, berlin)
	mapped := func(s fhir.Sample, patient string) *fhir.Observation {
		t.Helper()
		o, err := fhir.MapSample(s, patient)
		if err != nil {
			t.Fatal(err)
		}
		return o
	}
	fitbit := func(k fhir.SampleKind, rec, value, unit string, at time.Time) fhir.Sample {
		return fhir.Sample{Provider: "fitbit", UserID: "ABC123", Kind: k, System: "fitbit/daily", RecordID: "ABC123/" + rec, Value: fhir.Decimal(value), Unit: unit, Start: at}
	}
	google := func(k fhir.SampleKind, rec, value, unit string, at time.Time) fhir.Sample {
		return fhir.Sample{Provider: "googlehealth", UserID: "hu-1", Kind: k, System: "googlehealth/datapoint", RecordID: "users/hu-1/" + rec, Value: fhir.Decimal(value), Unit: unit, Start: at}
	}
	restingL := mapped(fitbit(fhir.KindRestingHeartRate, "2024-01-15/resting-hr", "58", "/min", day), "p1")
	weightL := mapped(fitbit(fhir.KindWeight, "1330991999000", "70.2", "kg", weighed), "p1")
	stepsL := mapped(fitbit(fhir.KindSteps, "2024-01-15/steps", "8500", "/d", day), "p1")
	otherPatient := mapped(fitbit(fhir.KindWeight, "99", "80.0", "kg", weighed), "p2")
	// A copy the new account stored before the predecessor's Observation existed.
	weightCopy := mapped(google(fhir.KindWeight, "weight/w2", "70.2", "kg", weighed.Add(3*time.Hour)), "p1")
	laterWeightL := mapped(fitbit(fhir.KindWeight, "1330991999001", "70.4", "kg", weighed.Add(3*time.Hour)), "p1")
	if _, err := g.st.Upsert(ctx, []fhir.Resource{restingL, weightL, stepsL, otherPatient, weightCopy, laterWeightL}); err != nil {
		t.Fatal(err)
	}
	conn := &providers.Connection{Provider: "googlehealth", PatientID: "p1",
		Predecessor: &providers.Predecessor{Account: providers.Account{Provider: "fitbit", User: "ABC123"}, Until: time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)}}

	tests := []struct {
		name   string
		sample fhir.Sample
		want   string // the id the record gets; "" for its own
	}{
		{"a heart rate at midnight is not the day's resting heart rate", google(fhir.KindHeartRate, "heart-rate/h1", "91", "/min", day), ""},
		{"the day's resting heart rate", fhir.Sample{Provider: "googlehealth", UserID: "hu-1", Kind: fhir.KindRestingHeartRate, System: "googlehealth/daily",
			RecordID: "hu-1/2024-01-15/daily-resting-heart-rate", Value: "58", Unit: "/min", Start: day}, restingL.ID},
		{"the weight at the same second", google(fhir.KindWeight, "weight/w1", "70.2", "kg", weighed), weightL.ID},
		{"a second weight at that second stays its own", google(fhir.KindWeight, "weight/w9", "70.2", "kg", weighed), ""},
		{"a weight a second later", google(fhir.KindWeight, "weight/w3", "70.2", "kg", weighed.Add(time.Second)), ""},
		{"a daily total without a zone matches the local day", fhir.Sample{Provider: "googlehealth", UserID: "hu-1", Kind: fhir.KindSteps, System: "googlehealth/daily",
			RecordID: "hu-1/2024-01-15/steps", Value: "8612", Unit: "/d", Day: "2024-01-15"}, stepsL.ID},
		{"after the move nothing is matched", google(fhir.KindWeight, "weight/w4", "70.2", "kg", time.Date(2026, 11, 3, 8, 0, 0, 0, time.UTC)), ""},
		{"the earlier copy's record takes the predecessor's Observation", google(fhir.KindWeight, "weight/w2", "70.2", "kg", weighed.Add(3*time.Hour)), laterWeightL.ID},
	}
	l := g.r.newLineage(conn)
	for _, tc := range tests {
		o := mapped(tc.sample, "p1")
		own := o.ID
		if err := l.adopt(ctx, "p1", o); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		want := tc.want
		if want == "" {
			want = own
		}
		if o.ID != want {
			t.Errorf("%s: id %s, want %s", tc.name, o.ID, want)
		}
		if tc.want != "" && (len(o.Identifier) != 2 || o.Identifier[0].System != fhir.DefaultNamespace.IdentifierSystem("fitbit/daily")) {
			t.Errorf("%s: identifiers %+v, want the predecessor's first, then its own", tc.name, o.Identifier)
		}
	}
	if _, err := g.st.Read(ctx, "Observation", weightCopy.ID); !errors.Is(err, store.ErrDeleted) {
		t.Errorf("the earlier copy: %v, want deleted", err)
	}
	if _, err := g.st.Read(ctx, "Observation", otherPatient.ID); err != nil {
		t.Errorf("another patient's Observation: %v", err)
	}
	// The next sync: the weight taken over stays the twin of its record, even when another of
	// the predecessor's records at that second turns up, and nothing is deleted.
	w1 := mapped(google(fhir.KindWeight, "weight/w1", "70.2", "kg", weighed), "p1")
	if err := g.r.newLineage(conn).adopt(ctx, "p1", w1); err != nil {
		t.Fatal(err)
	}
	if _, err := g.st.Upsert(ctx, []fhir.Resource{w1, mapped(fitbit(fhir.KindWeight, "1330991999999", "70.2", "kg", weighed), "p1")}); err != nil {
		t.Fatal(err)
	}
	again := mapped(google(fhir.KindWeight, "weight/w1", "70.2", "kg", weighed), "p1")
	if err := g.r.newLineage(conn).adopt(ctx, "p1", again); err != nil {
		t.Fatal(err)
	}
	if again.ID != weightL.ID {
		t.Errorf("next sync: the weight went to %s, want %s", again.ID, weightL.ID)
	}
	if _, err := g.st.Read(ctx, "Observation", weightL.ID); err != nil {
		t.Errorf("the weight taken over: %v, want kept", err)
	}

	// A connection that continues nothing, or itself, has no lineage.
	if g.r.newLineage(&providers.Connection{Provider: "googlehealth"}) != nil ||
		g.r.newLineage(&providers.Connection{Provider: "fitbit", Predecessor: conn.Predecessor}) != nil {
		t.Error("a lineage without a predecessor, or with itself as predecessor")
	}
}
