package storetest_test

import (
	"testing"

	"github.com/openhealthexchange/ohx/store"
	"github.com/openhealthexchange/ohx/store/sqlite"
	"github.com/openhealthexchange/ohx/store/storetest"
)

func TestTmpSQLite(t *testing.T) {
	storetest.Run(t, func(t testing.TB) store.Store {
		s, err := sqlite.Open(t.Context(), t.TempDir(), sqlite.Options{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}
