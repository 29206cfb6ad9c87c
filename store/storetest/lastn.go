package storetest

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/store"
)

const codeRestingHR = "40443-4"

// lastNObservations is the data set of the LastN test. Patient ln-1 (dates in January 2024):
//
//	id      code (category)                         effective
//	ln-w0   weight (vital-signs)                    —
//	ln-w1   weight (vital-signs)                    01-01
//	ln-w5   weight (vital-signs)                    01-02
//	ln-w2   weight (vital-signs)                    01-03
//	ln-w3   weight (vital-signs)                    01-05T08:00Z
//	ln-w4   weight (vital-signs)                    01-05T08:00Z (tied with ln-w3: by id)
//	ln-w9   weight (vital-signs)                    02-01, deleted
//	ln-h1   heart rate (vital-signs)                01-04, device ln-d1 (identifier urn:ln|d1)
//	ln-h2   heart rate (vital-signs), preliminary   01-06
//	ln-r1   heart rate + resting HR (vital-signs)   01-07 (in both groups)
//	ln-s1   steps (activity)                        01-02
//	ln-s2   steps (activity)                        01-08
//	ln-l1   |local, no system (laboratory)          01-03
//
// and ln-p2, a weight of patient ln-2 newer than all of them.
func lastNObservations() []fhir.Resource {
	weight, hr := loincCode(codeWeight), loincCode(codeHeartRate)
	p1 := withSubject("Patient/ln-1")
	vital := withCategory("vital-signs")
	return []fhir.Resource{
		newObservation("ln-w0", weight, p1, vital),
		newObservation("ln-w1", weight, p1, vital, withDate("2024-01-01")),
		newObservation("ln-w5", weight, p1, vital, withDate("2024-01-02")),
		newObservation("ln-w2", weight, p1, vital, withDate("2024-01-03")),
		newObservation("ln-w3", weight, p1, vital, withDate("2024-01-05T08:00:00Z")),
		newObservation("ln-w4", weight, p1, vital, withDate("2024-01-05T08:00:00Z")),
		newObservation("ln-w9", weight, p1, vital, withDate("2024-02-01")),
		newObservation("ln-h1", hr, p1, vital, withDate("2024-01-04"), withDevice("Device/ln-d1")),
		newObservation("ln-h2", hr, p1, vital, withDate("2024-01-06"), withStatus("preliminary")),
		newObservation("ln-r1", concept(coding(loinc, codeHeartRate), coding(loinc, codeRestingHR)), p1, vital, withDate("2024-01-07")),
		newObservation("ln-s1", loincCode(codeSteps), p1, withCategory("activity"), withPeriod("2024-01-02T00:00:00Z", "2024-01-02T23:59:59Z")),
		newObservation("ln-s2", loincCode(codeSteps), p1, withCategory("activity"), withPeriod("2024-01-08T00:00:00Z", "2024-01-08T23:59:59Z")),
		newObservation("ln-l1", concept(coding("", "local")), p1, withCategory("laboratory"), withDate("2024-01-03")),
		newObservation("ln-p2", weight, withSubject("Patient/ln-2"), vital, withDate("2024-03-01")),
	}
}

// testLastN checks Store.LastN: groups per coding in coding order, newest first with ties by id
// descending, n per group, filters, named codings, an Observation in two groups, deletions.
func testLastN(t *testing.T, open opener) {
	s := open(t)
	d := newDevice("ln-d1")
	d.Identifier = []fhir.Identifier{ident("urn:ln", "d1")}
	mustCreate(t, s, d)
	for _, r := range lastNObservations() {
		mustCreate(t, s, r)
	}
	mustDelete(t, s, "Observation", "ln-w9")
	lc := func(code string) string { return loinc + "|" + code }
	for _, tc := range []struct {
		name, query string
		n           int
		want        []string // "system|code: id id …" per group
	}{
		{"every coding, max 1", "patient=ln-1", 1, []string{
			"|local: ln-l1",
			lc(codeWeight) + ": ln-w4",
			lc(codeRestingHR) + ": ln-r1",
			lc(codeSteps) + ": ln-s2",
			lc(codeHeartRate) + ": ln-r1",
		}},
		{"every coding, max 3", "patient=ln-1", 3, []string{
			"|local: ln-l1",
			lc(codeWeight) + ": ln-w4 ln-w3 ln-w2",
			lc(codeRestingHR) + ": ln-r1",
			lc(codeSteps) + ": ln-s2 ln-s1",
			lc(codeHeartRate) + ": ln-r1 ln-h2 ln-h1",
		}},
		{"undated last", "patient=ln-1&code=" + lc(codeWeight), 10, []string{
			lc(codeWeight) + ": ln-w4 ln-w3 ln-w2 ln-w5 ln-w1 ln-w0",
		}},
		{"category", "patient=ln-1&category=" + obsCategory + "|vital-signs", 1, []string{
			lc(codeWeight) + ": ln-w4",
			lc(codeRestingHR) + ": ln-r1",
			lc(codeHeartRate) + ": ln-r1",
		}},
		{"category excluded", "patient=ln-1&category:not=" + obsCategory + "|vital-signs", 1, []string{
			"|local: ln-l1",
			lc(codeSteps) + ": ln-s2",
		}},
		{"category missing", "patient=ln-1&category:missing=true", 1, nil},
		{"named codings", "patient=ln-1&code=" + lc(codeHeartRate) + "," + lc(codeWeight) + "," + lc("0000-0"), 2, []string{
			lc(codeWeight) + ": ln-w4 ln-w3",
			lc(codeHeartRate) + ": ln-r1 ln-h2",
		}},
		{"code without system groups every coding of the matches", "patient=ln-1&code=" + codeHeartRate, 1, []string{
			lc(codeRestingHR) + ": ln-r1",
			lc(codeHeartRate) + ": ln-r1",
		}},
		{"date", "patient=ln-1&date=lt2024-01-05", 2, []string{
			"|local: ln-l1",
			lc(codeWeight) + ": ln-w2 ln-w5",
			lc(codeSteps) + ": ln-s1",
			lc(codeHeartRate) + ": ln-h1",
		}},
		{"date and category", "patient=ln-1&date=ge2024-01-05&category=" + obsCategory + "|vital-signs", 2, []string{
			lc(codeWeight) + ": ln-w4 ln-w3",
			lc(codeRestingHR) + ": ln-r1",
			lc(codeHeartRate) + ": ln-r1 ln-h2",
		}},
		{"status", "patient=ln-1&status=final&code=" + lc(codeHeartRate), 2, []string{
			lc(codeHeartRate) + ": ln-r1 ln-h1",
		}},
		{"chained filter", "patient=ln-1&device.identifier=urn:ln|d1", 3, []string{
			lc(codeHeartRate) + ": ln-h1",
		}},
		{"a second patient clause filters", "patient=ln-1&subject=Patient/ln-2", 1, nil},
		{"another patient", "patient=ln-2", 3, []string{lc(codeWeight) + ": ln-p2"}},
		{"unknown patient", "patient=nobody", 1, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := parse(t, "Observation", tc.query)
			groups, err := s.LastN(t.Context(), q, tc.n)
			if err != nil {
				t.Fatalf("LastN(%s, %d): %v", tc.query, tc.n, err)
			}
			var got []string
			for _, g := range groups {
				line := g.System + "|" + g.Code + ":"
				for _, e := range g.Entries {
					line += " " + e.ID
					if e.Type != "Observation" || e.JSON == nil || e.VersionID == 0 {
						t.Errorf("entry %s/%s: incomplete (version %d, %d bytes of JSON)", e.Type, e.ID, e.VersionID, len(e.JSON))
					}
				}
				got = append(got, line)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("LastN(%s, %d) (-want +got):\n%s", tc.query, tc.n, diff)
			}
		})
	}
	t.Run("needs a patient", func(t *testing.T) {
		for _, query := range []string{"code=" + lc(codeWeight), "patient=ln-1,ln-2", "patient:missing=false"} {
			if _, err := s.LastN(t.Context(), parse(t, "Observation", query), 1); !errors.Is(err, store.ErrLastNQuery) {
				t.Errorf("LastN(%s): got %v, want ErrLastNQuery", query, err)
			}
		}
		if _, err := s.LastN(t.Context(), parse(t, "Patient", "_id=ln-1"), 1); !errors.Is(err, store.ErrLastNQuery) {
			t.Errorf("LastN on Patient: got %v, want ErrLastNQuery", err)
		}
	})
}
