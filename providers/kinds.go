package providers

import (
	"fmt"
	"slices"

	"github.com/openhealthexchange/ohx/fhir"
)

// KindSet is the set of data kinds an adapter reads in this deployment. Kinds that are only
// parts of another kind's samples (sleep stages of a sleep session, the systolic value of a blood
// pressure) count as that parent kind. Its zero value enables nothing.
type KindSet struct {
	parent  map[fhir.SampleKind]fhir.SampleKind
	enabled map[fhir.SampleKind]bool
}

// EnableKinds resolves an adapter's configured kinds. parent maps every kind the adapter reads
// to itself and every component kind to the kind whose samples carry it. A configured component
// kind enables its parent; a kind parent does not know is an error. Nothing configured enables
// every kind the adapter reads that fhir.MapSample codes, except the optIn kinds: a kind without a
// verified code, or one as costly as intraday series, is read only when an operator asks for it.
func EnableKinds(configured []fhir.SampleKind, parent map[fhir.SampleKind]fhir.SampleKind, optIn ...fhir.SampleKind) (KindSet, error) {
	s := KindSet{parent: parent, enabled: map[fhir.SampleKind]bool{}}
	if len(configured) == 0 {
		mappable := fhir.SupportedKinds()
		for k, p := range parent {
			if k == p && slices.Contains(mappable, k) && !slices.Contains(optIn, k) {
				s.enabled[k] = true
			}
		}
		return s, nil
	}
	for _, k := range configured {
		p, ok := parent[k]
		if !ok {
			return KindSet{}, fmt.Errorf("data kind %q is not supported", k)
		}
		s.enabled[p] = true
	}
	return s, nil
}

// Enabled reports whether the top-level kind k is read.
func (s KindSet) Enabled(k fhir.SampleKind) bool { return s.enabled[k] }

// Sorted returns the enabled kinds, sorted (what Provider.Kinds returns).
func (s KindSet) Sorted() []fhir.SampleKind {
	ks := make([]fhir.SampleKind, 0, len(s.enabled))
	for k := range s.enabled {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// Wanted resolves a query's kinds against the enabled ones: empty means every enabled kind; a
// component kind asks for its parent; kinds not enabled (or unknown) are ignored.
func (s KindSet) Wanted(kinds []fhir.SampleKind) map[fhir.SampleKind]bool {
	w := map[fhir.SampleKind]bool{}
	if len(kinds) == 0 {
		for k := range s.enabled {
			w[k] = true
		}
		return w
	}
	for _, k := range kinds {
		if p, ok := s.parent[k]; ok && s.enabled[p] {
			w[p] = true
		}
	}
	return w
}

// TopLevelKinds returns, sorted, the kinds a parent table (see EnableKinds) maps to themselves:
// the kinds an adapter reads, which its SupportedKinds lists.
func TopLevelKinds(parent map[fhir.SampleKind]fhir.SampleKind) []fhir.SampleKind {
	var ks []fhir.SampleKind
	for k, p := range parent {
		if k == p {
			ks = append(ks, k)
		}
	}
	slices.Sort(ks)
	return ks
}
