package sqlite

import (
	"testing"

	"github.com/openhealthexchange/ohx/store"
	"github.com/openhealthexchange/ohx/store/storetest"
)

// TestBudgets runs the shared rate-limit budget checks on a fresh file, and across two handles
// on one file (two ohx processes).
func TestBudgets(t *testing.T) {
	storetest.RunBudgets(t, func(t testing.TB) store.Budgets {
		s, err := Open(t.Context(), t.TempDir(), Options{}, nil)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
	storetest.RunBudgetsShared(t, func(t testing.TB) (store.Budgets, store.Budgets) {
		a, b := openShared(t)
		return a, b
	})
}
