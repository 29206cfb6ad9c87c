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

func TestRunTotalBoundMemStore(t *testing.T) {
	RunTotalBound(t, 5, func(t testing.TB) store.Store {
		s := newMemStore()
		s.totalBound = 5
		t.Cleanup(func() { s.Close() })
		return s
	})
}

// TestRunSharedMemStore runs the shared-database checks with one memStore behind both handles.
func TestRunSharedMemStore(t *testing.T) {
	RunShared(t, func(t testing.TB) (store.Store, store.Store) {
		s := newMemStore()
		t.Cleanup(func() { s.Close() })
		return s, s
	})
}

func TestRunHistoryRetentionMemStore(t *testing.T) {
	RunHistoryRetention(t, func(t testing.TB, keep int) store.Store {
		s := newMemStore()
		s.keep = keep
		t.Cleanup(func() { s.Close() })
		return s
	})
}
