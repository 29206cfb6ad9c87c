package storetest

import (
	"testing"

	"github.com/openhealthexchange/ohx/store"
)

// TestRunMemStore checks the suite against memStore, a store built directly on search.Matches:
// a failure here is a bug in the suite (or in fhir/search), not in a store.
func TestRunMemStore(t *testing.T) {
	Run(t, func(t testing.TB) store.Store {
		s := newMemStore()
		t.Cleanup(func() { s.Close() })
		return s
	})
}
