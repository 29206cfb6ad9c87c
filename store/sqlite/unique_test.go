package sqlite

import (
	"testing"

	"github.com/openhealthexchange/ohx/store"
	"github.com/openhealthexchange/ohx/store/storetest"
)

// TestShared opens the same database file twice, as two ohx processes would: conditional
// creates and transactions stay atomic across the two handles.
func TestShared(t *testing.T) {
	storetest.RunShared(t, openShared)
}

// openShared opens one new database file twice, as two ohx processes on one file would.
func openShared(t testing.TB) (store.Store, store.Store) {
	dir := t.TempDir()
	open := func() store.Store {
		s, err := Open(t.Context(), dir, Options{}, nil)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	return open(), open()
}
