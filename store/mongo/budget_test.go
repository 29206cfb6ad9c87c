package mongo

import (
	"testing"

	"github.com/openhealthexchange/ohx/store"
	"github.com/openhealthexchange/ohx/store/storetest"
)

// TestBudgets runs the shared rate-limit budget checks on FerretDB, and across two handles with
// their own clients on one database (two ohx instances).
func TestBudgets(t *testing.T) {
	storetest.RunBudgets(t, func(t testing.TB) store.Budgets { return openFerret(t) })
	storetest.RunBudgetsShared(t, func(t testing.TB) (store.Budgets, store.Budgets) {
		a, b := openShared(t, ferretURI(t))
		return a, b
	})
}

// TestBudgetsMongoDB runs them on a real MongoDB when OHX_TEST_MONGO_URI is set.
func TestBudgetsMongoDB(t *testing.T) {
	uri := realMongoURI(t)
	storetest.RunBudgets(t, func(t testing.TB) store.Budgets { return openAt(t, uri) })
	storetest.RunBudgetsShared(t, func(t testing.TB) (store.Budgets, store.Budgets) {
		a, b := openShared(t, uri)
		return a, b
	})
}
