package mongo

import (
	"testing"

	"github.com/openhealthexchange/ohx/store"
	"github.com/openhealthexchange/ohx/store/storetest"
)

// TestJobsShared races job claims, enqueues and coverage updates from two handles on one
// FerretDB database.
func TestJobsShared(t *testing.T) {
	storetest.RunJobsShared(t, func(t testing.TB) (store.Store, store.Store) { return openShared(t, ferretURI(t)) })
}

// TestJobsSharedMongoDB races them on one database of a real MongoDB when OHX_TEST_MONGO_URI
// is set: there the claims' atomicity is MongoDB's own, with no lock in the process.
func TestJobsSharedMongoDB(t *testing.T) {
	uri := realMongoURI(t)
	storetest.RunJobsShared(t, func(t testing.TB) (store.Store, store.Store) { return openShared(t, uri) })
}
