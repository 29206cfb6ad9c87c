package mongo

import (
	"context"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/openhealthexchange/ohx/store/mongo/mongotest"
)

// The shared embedded FerretDB lives in mongotest so that other packages' tests can use it.

func TestMain(m *testing.M) {
	code := m.Run()
	mongotest.Stop()
	os.Exit(code)
}

func ferretURI(t testing.TB) string { return mongotest.URI(t) }

func dbName(t testing.TB) string { return mongotest.DBName(t) }

// openAt opens a store on a fresh database of the deployment at uri and drops the database
// when the test ends.
func openAt(t testing.TB, uri string) *Store {
	t.Helper()
	return openAtWith(t, uri, Options{})
}

// openAtWith is openAt with store options.
func openAtWith(t testing.TB, uri string, opt Options) *Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	name := dbName(t)
	s, err := Open(ctx, uri, name, opt, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})))
	if err != nil {
		t.Fatalf("Open(%s): %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := s.db.Drop(ctx); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// openFerret opens a store on a fresh database of the embedded FerretDB.
func openFerret(t testing.TB) *Store { return openAt(t, ferretURI(t)) }

// realMongoURI returns OHX_TEST_MONGO_URI, the real MongoDB an operator may supply, or skips.
func realMongoURI(t testing.TB) string {
	uri := os.Getenv("OHX_TEST_MONGO_URI")
	if uri == "" {
		t.Skip("OHX_TEST_MONGO_URI is not set: no real MongoDB to test against")
	}
	return uri
}
