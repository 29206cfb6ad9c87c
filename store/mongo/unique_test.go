package mongo

import (
	"context"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/openhealthexchange/ohx/store"
	"github.com/openhealthexchange/ohx/store/storetest"
)

// openShared opens two stores, with their own clients, on one fresh database at uri: two ohx
// instances on one MongoDB.
func openShared(t testing.TB, uri string) (store.Store, store.Store) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	name := dbName(t)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	var handles [2]*Store
	for i := range handles {
		s, err := Open(ctx, uri, name, Options{}, log)
		if err != nil {
			t.Fatalf("Open(%s): %v", name, err)
		}
		handles[i] = s
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := handles[0].db.Drop(ctx); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
		for _, s := range handles {
			if err := s.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		}
	})
	return handles[0], handles[1]
}

// TestShared races two handles on one FerretDB database.
func TestShared(t *testing.T) {
	storetest.RunShared(t, func(t testing.TB) (store.Store, store.Store) { return openShared(t, ferretURI(t)) })
}

// TestSharedMongoDB races two handles on one database of a real MongoDB when
// OHX_TEST_MONGO_URI is set.
func TestSharedMongoDB(t *testing.T) {
	uri := realMongoURI(t)
	storetest.RunShared(t, func(t testing.TB) (store.Store, store.Store) { return openShared(t, uri) })
}

// TestNoTransactions: without multi-document transactions the store must not claim to be a
// store.Transactor, or the API would offer FHIR transactions it cannot make atomic.
func TestNoTransactions(t *testing.T) {
	if _, ok := any(&Store{}).(store.Transactor); ok {
		t.Errorf("*mongo.Store implements store.Transactor")
	}
}

// TestSlotIDs checks that derived ids are valid FHIR ids, differ per slot, identifier, type and
// key, and are stable.
func TestSlotIDs(t *testing.T) {
	k1, k2 := []byte("key one"), []byte("key two")
	seen := map[string]bool{}
	for _, id := range []string{
		slotID(k1, "Patient", "identifier|urn:mrn|42", 0),
		slotID(k1, "Patient", "identifier|urn:mrn|42", 1),
		slotID(k1, "Patient", "identifier|urn:mrn|43", 0),
		slotID(k1, "Device", "identifier|urn:mrn|42", 0),
		slotID(k2, "Patient", "identifier|urn:mrn|42", 0),
	} {
		if len(id) != 32 || seen[id] {
			t.Errorf("slot id %q: want 32 hex digits, unique", id)
		}
		seen[id] = true
	}
	if slotID(k1, "Patient", "x", 3) != slotID(k1, "Patient", "x", 3) {
		t.Errorf("slotID is not deterministic")
	}
}
