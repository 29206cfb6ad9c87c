package storetest

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/openhealthexchange/ohx/store"
)

// typed prefixes ids with their resource type: typed("Device", dev(1)) is [Device/dev-1].
func typed(typ string, ids ...[]string) []string {
	var out []string
	for _, l := range ids {
		for _, id := range l {
			out = append(out, typ+"/"+id)
		}
	}
	return sorted(out)
}

func concat(lists ...[]string) []string {
	var out []string
	for _, l := range lists {
		out = append(out, l...)
	}
	return sorted(out)
}

func testInclude(t *testing.T, open opener) {
	s := open(t)
	loadFixture(t, s)
	for _, tc := range []struct {
		typ, query string
		matches    []string
		included   []string
	}{
		{"Observation", "patient=pat-1&_include=Observation:device", obs(1, 2, 3, 4), typed("Device", dev(1, 2))},
		{"Observation", "device=dev-3&_include=Observation:device", obs(5, 6, 7), typed("Device", dev(3))},
		{"Observation", "patient=pat-3&_include=Observation:device", obs(9, 10), nil}, // Device/dev-9 never existed
		{"Observation", "_id=obs-11&_include=Observation:device", obs(11), nil},       // Device/dev-5 is deleted
		{"Observation", "code=" + codeHeartRate + "&_include=Observation:patient", obs(3, 7, 12), typed("Patient", pat(1))},
		{"Observation", "_id=obs-01,obs-05&_include=Observation:patient&_include=Observation:subject", obs(1, 5), typed("Patient", pat(1, 2))},
		{"Observation", "_id=obs-03&_include=*", obs(3), concat(typed("Patient", pat(1)), typed("Device", dev(1)))},
		{"Observation", "patient=pat-1,pat-2&_include=Observation:patient&_include=Observation:device", obs(1, 2, 3, 4, 5, 6, 11),
			concat(typed("Patient", pat(1, 2)), typed("Device", dev(1, 2, 3)))},
		{"DeviceAssociation", "patient=pat-1&_include=DeviceAssociation:device", da(1, 2), typed("Device", dev(1, 2))},
		{"DeviceAssociation", "_id=da-4,da-5&_include=DeviceAssociation:device", da(4, 5), nil},
		{"DeviceAssociation", "status=attached&_include=DeviceAssociation:patient", da(1, 3, 5), typed("Patient", pat(1, 2, 3))},
		{"Device", "_id=dev-1,dev-2&_revinclude=DeviceAssociation:device", dev(1, 2), typed("DeviceAssociation", da(1, 2))},
		{"Device", "_revinclude=DeviceAssociation:device", dev(1, 2, 3, 4), typed("DeviceAssociation", da(1, 2, 3))},
		{"Device", "_id=dev-4&_revinclude=DeviceAssociation:device", dev(4), nil},
		{"Device", "_id=dev-3&_revinclude=Observation:device", dev(3), typed("Observation", obs(5, 6, 7))},
		{"Patient", "_id=pat-1&_revinclude=Observation:patient", pat(1), typed("Observation", obs(1, 2, 3, 4))}, // not the deleted obs-14
		{"Patient", "_id=pat-1&_revinclude=Observation:subject", pat(1), typed("Observation", obs(1, 2, 3, 4))},
		{"Patient", "_id=pat-2&_revinclude=Observation:patient&_revinclude=DeviceAssociation:patient", pat(2),
			concat(typed("Observation", obs(5, 6, 11)), typed("DeviceAssociation", da(3)))},
		{"Patient", "gender=male&_revinclude=DeviceAssociation:subject", pat(1, 3), typed("DeviceAssociation", da(1, 2, 5))},
		{"Patient", "_id=pat-4&_revinclude=Observation:patient", pat(4), nil},
	} {
		t.Run(tc.typ+"?"+tc.query, func(t *testing.T) {
			res := mustSearch(t, s, parse(t, tc.typ, tc.query))
			if diff := cmp.Diff(tc.matches, nonEmpty(sortedIDs(res.Matches))); diff != "" {
				t.Errorf("Matches (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.included, nonEmpty(refs(res.Included))); diff != "" {
				t.Errorf("Included, each once (-want +got):\n%s", diff)
			}
			checkIncluded(t, res.Matches, res.Included)
		})
	}

	t.Run("PerPage", func(t *testing.T) {
		// Each page includes the targets of its own matches.
		const q = "patient=pat-1&_sort=date&_count=2&_include=Observation:device"
		want := []struct{ matches, included []string }{
			{[]string{"obs-01", "obs-02"}, typed("Device", dev(2))},
			{[]string{"obs-03", "obs-04"}, typed("Device", dev(1))},
		}
		pages := walkNext(t, s, "Observation", q)
		if len(pages) != len(want) {
			t.Fatalf("Search Observation?%s: %d pages, want %d", q, len(pages), len(want))
		}
		for i, p := range pages {
			if diff := cmp.Diff(want[i].matches, ids(p.Matches)); diff != "" {
				t.Errorf("page %d Matches (-want +got):\n%s", i+1, diff)
			}
			if diff := cmp.Diff(want[i].included, refs(p.Included)); diff != "" {
				t.Errorf("page %d Included (-want +got):\n%s", i+1, diff)
			}
			checkIncluded(t, p.Matches, p.Included)
		}
	})
}

// checkIncluded checks that included entries are whole resources and never also matches.
func checkIncluded(t testing.TB, matches, included []store.Entry) {
	t.Helper()
	inMatches := map[string]bool{}
	for _, m := range matches {
		inMatches[m.Type+"/"+m.ID] = true
	}
	for _, e := range included {
		k := fmt.Sprintf("%s/%s", e.Type, e.ID)
		if inMatches[k] {
			t.Errorf("%s is in both Matches and Included", k)
		}
		if e.JSON == nil {
			t.Errorf("included %s has no JSON", k)
		} else {
			decode(t, e)
		}
	}
}
