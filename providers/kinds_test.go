package providers_test

import (
	"slices"
	"testing"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/providers"
)

func TestEnableKinds(t *testing.T) {
	const unmapped fhir.SampleKind = "made-up" // read by the adapter, coded by no mapping
	parent := map[fhir.SampleKind]fhir.SampleKind{
		fhir.KindWeight: fhir.KindWeight, fhir.KindSleep: fhir.KindSleep, unmapped: unmapped,
		fhir.KindSleepDeep: fhir.KindSleep,
	}
	if got := providers.TopLevelKinds(parent); !slices.Equal(got, []fhir.SampleKind{unmapped, fhir.KindSleep, fhir.KindWeight}) {
		t.Errorf("TopLevelKinds %v, want the kinds mapped to themselves, sorted", got)
	}
	all, err := providers.EnableKinds(nil, parent)
	if err != nil {
		t.Fatal(err)
	}
	if got := all.Sorted(); !slices.Equal(got, []fhir.SampleKind{fhir.KindSleep, fhir.KindWeight}) {
		t.Errorf("default kinds %v, want every mapped top-level kind (sleep, weight)", got)
	}
	if lean, err := providers.EnableKinds(nil, parent, fhir.KindSleep); err != nil || !slices.Equal(lean.Sorted(), []fhir.SampleKind{fhir.KindWeight}) {
		t.Errorf("default kinds with sleep opt-in: %v %v, want weight only", lean.Sorted(), err)
	}
	some, err := providers.EnableKinds([]fhir.SampleKind{fhir.KindSleepDeep, unmapped}, parent)
	if err != nil {
		t.Fatal(err)
	}
	if got := some.Sorted(); !slices.Equal(got, []fhir.SampleKind{unmapped, fhir.KindSleep}) {
		t.Errorf("configured kinds %v, want the component's parent and the unmapped kind asked for", got)
	}
	if some.Enabled(fhir.KindWeight) || !some.Enabled(fhir.KindSleep) {
		t.Errorf("Enabled: weight %v, sleep %v", some.Enabled(fhir.KindWeight), some.Enabled(fhir.KindSleep))
	}
	if w := some.Wanted([]fhir.SampleKind{fhir.KindSleepDeep, fhir.KindWeight, "unknown"}); len(w) != 1 || !w[fhir.KindSleep] {
		t.Errorf("Wanted %v, want only sleep (weight is not enabled, unknown is unknown)", w)
	}
	if w := some.Wanted(nil); len(w) != 2 {
		t.Errorf("Wanted(nil) %v, want every enabled kind", w)
	}
	if _, err := providers.EnableKinds([]fhir.SampleKind{fhir.KindECG}, parent); err == nil {
		t.Error("a kind the adapter does not read was accepted")
	}
}

func TestAbsoluteURL(t *testing.T) {
	u, err := providers.AbsoluteURL("API", "https://api.example/v1/")
	if err != nil || u.String() != "https://api.example/v1" {
		t.Errorf("AbsoluteURL: %v %v, want the URL without its trailing slash", u, err)
	}
	for _, raw := range []string{"", "api.example", "/v1", "https://"} {
		if _, err := providers.AbsoluteURL("API", raw); err == nil {
			t.Errorf("AbsoluteURL(%q) accepted", raw)
		}
	}
}
