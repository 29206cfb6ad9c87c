package storetest

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/store"
)

// writeGap separates writes whose lastUpdated order a test relies on: wider than the millisecond
// resolution of a BSON date.
const writeGap = 3 * time.Millisecond

// sortObservations are created in this order (s-e first), which is neither id nor date order.
// s-a, s-c and s-e share a date, so _id breaks their tie: explicitly, or implicitly in the
// direction of the last _sort key (search.Registry.Parse). s-f has no date, which sorts as
// fhir.MinTime (search.Index.SortDate), that is first ascending and last descending.
func sortObservations() []fhir.Resource {
	code := concept(coding(testSystem, "S"))
	return []fhir.Resource{
		newObservation("s-e", code, withDate("2024-05-02T10:00:00Z")),
		newObservation("s-b", code, withDate("2024-05-01")),
		newObservation("s-a", code, withDate("2024-05-02T10:00:00Z")),
		newObservation("s-d", code, withPeriod("2024-04-30T00:00:00Z", "")),
		newObservation("s-c", code, withDate("2024-05-02T10:00:00Z")),
		newObservation("s-f", code),
	}
}

func sortPatients() []fhir.Resource {
	var out []fhir.Resource
	for _, p := range []struct{ id, birth string }{
		{"sp-1", "1990"}, {"sp-2", "1985-06-15"}, {"sp-3", "1985-06"}, {"sp-4", "1985-06-15"}, {"sp-5", ""},
	} {
		r := newPatient(p.id)
		r.BirthDate = p.birth
		out = append(out, r)
	}
	return out
}

type sortCase struct {
	typ, query string
	want       []string
}

func checkOrder(t *testing.T, s store.Store, cases []sortCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.typ+"?"+tc.query, func(t *testing.T) {
			res := mustSearch(t, s, parse(t, tc.typ, tc.query))
			if diff := cmp.Diff(tc.want, ids(res.Matches)); diff != "" {
				t.Errorf("Search %s?%s order (-want +got):\n%s", tc.typ, tc.query, diff)
			}
		})
	}
}

func testSort(t *testing.T, open opener) {
	s := open(t)
	for _, r := range sortObservations() {
		mustCreate(t, s, r)
		time.Sleep(writeGap)
	}
	mustCreate(t, s, newObservation("other", loincCode(codeWeight), withDate("2024-05-01")))
	for _, r := range sortPatients() {
		mustCreate(t, s, r)
	}

	checkOrder(t, s, []sortCase{
		{"Observation", "code=S", []string{"s-a", "s-b", "s-c", "s-d", "s-e", "s-f"}}, // default: _id
		{"Observation", "code=S&_sort=_id", []string{"s-a", "s-b", "s-c", "s-d", "s-e", "s-f"}},
		{"Observation", "code=S&_sort=-_id", []string{"s-f", "s-e", "s-d", "s-c", "s-b", "s-a"}},
		{"Observation", "code=S&_sort=date", []string{"s-f", "s-d", "s-b", "s-a", "s-c", "s-e"}},
		{"Observation", "code=S&_sort=-date", []string{"s-e", "s-c", "s-a", "s-b", "s-d", "s-f"}}, // implicit _id follows the last key
		{"Observation", "code=S&_sort=-date,_id", []string{"s-a", "s-c", "s-e", "s-b", "s-d", "s-f"}},
		{"Observation", "code=S&_sort=-date,-_id", []string{"s-e", "s-c", "s-a", "s-b", "s-d", "s-f"}},
		{"Observation", "code=S&_sort=_lastUpdated", []string{"s-e", "s-b", "s-a", "s-d", "s-c", "s-f"}},
		{"Observation", "code=S&_sort=-_lastUpdated", []string{"s-f", "s-c", "s-d", "s-a", "s-b", "s-e"}},
		{"Observation", "code=S&_sort=-date&_count=1", []string{"s-e"}},                                     // the "latest value" idiom
		{"Observation", "code=S&date=ge2024-05-01&_sort=date", []string{"s-d", "s-b", "s-a", "s-c", "s-e"}}, // s-d: open end
		{"Patient", "_sort=birthdate", []string{"sp-5", "sp-3", "sp-2", "sp-4", "sp-1"}},
		{"Patient", "_sort=-birthdate", []string{"sp-1", "sp-4", "sp-2", "sp-3", "sp-5"}},
		{"Patient", "_sort=-birthdate,_id", []string{"sp-1", "sp-2", "sp-4", "sp-3", "sp-5"}},
	})

	// Writes move resources: an update is the latest change, a new date moves it, and a delete
	// removes it.
	time.Sleep(writeGap)
	mustPut(t, s, newObservation("s-b", concept(coding(testSystem, "S")), withDate("2024-05-01"), withStatus("amended")), store.WriteOptions{})
	time.Sleep(writeGap)
	mustPut(t, s, newObservation("s-d", concept(coding(testSystem, "S")), withDate("2024-06-01T00:00:00Z")), store.WriteOptions{})
	mustDelete(t, s, "Observation", "s-a")
	t.Run("AfterWrites", func(t *testing.T) {
		checkOrder(t, s, []sortCase{
			{"Observation", "code=S&_sort=_lastUpdated", []string{"s-e", "s-c", "s-f", "s-b", "s-d"}},
			{"Observation", "code=S&_sort=-date", []string{"s-d", "s-e", "s-c", "s-b", "s-f"}},
		})
	})
}
