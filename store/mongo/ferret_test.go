package mongo

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/FerretDB/FerretDB/ferretdb"
)

// FerretDB v1 embedded in the test binary is the MongoDB stand-in of CI (toolchain.md §3): no
// mongod can be installed on the project's machines. It runs on its SQLite backend in a
// temporary directory (never ?mode=memory: the second upsert on an update path hangs there) with
// an ERROR-level logger (at WARN it dumps every error reply). One instance serves the whole test
// binary; every test gets its own database.

var ferret struct {
	once   sync.Once
	uri    string
	err    error
	dir    string
	cancel context.CancelFunc
	done   chan struct{}
}

// ferretURI starts the shared FerretDB on first use and returns its MongoDB URI.
func ferretURI(t testing.TB) string {
	t.Helper()
	ferret.once.Do(func() {
		ferret.dir, ferret.err = os.MkdirTemp("", "ohx-ferretdb-")
		if ferret.err != nil {
			return
		}
		var f *ferretdb.FerretDB
		f, ferret.err = ferretdb.New(&ferretdb.Config{
			Listener:  ferretdb.ListenerConfig{TCP: "127.0.0.1:0"},
			Handler:   "sqlite",
			SQLiteURL: "file:" + ferret.dir + "/",
			Logger:    slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})),
		})
		if ferret.err != nil {
			return
		}
		var ctx context.Context
		ctx, ferret.cancel = context.WithCancel(context.Background())
		ferret.done = make(chan struct{})
		go func() {
			defer close(ferret.done)
			_ = f.Run(ctx)
		}()
		ferret.uri = f.MongoDBURI() // blocks until the listener is up
	})
	if ferret.err != nil {
		t.Fatalf("start FerretDB: %v", ferret.err)
	}
	return ferret.uri
}

func TestMain(m *testing.M) {
	code := m.Run()
	if ferret.cancel != nil {
		ferret.cancel()
		select {
		case <-ferret.done:
		case <-time.After(10 * time.Second):
		}
	}
	if ferret.dir != "" {
		_ = os.RemoveAll(ferret.dir)
	}
	os.Exit(code)
}

var dbSeq atomic.Int64

var unsafeDBChars = regexp.MustCompile(`[^A-Za-z0-9_]+`)

// dbName derives a database name from the test name: MongoDB and FerretDB accept letters,
// digits and "_", and at most 63 bytes.
func dbName(t testing.TB) string {
	n := unsafeDBChars.ReplaceAllString(t.Name(), "_")
	if len(n) > 40 {
		n = n[len(n)-40:]
	}
	return fmt.Sprintf("t%d_%s", dbSeq.Add(1), n)
}

// openAt opens a store on a fresh database of the deployment at uri and drops the database
// when the test ends.
func openAt(t testing.TB, uri string) *Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	name := dbName(t)
	s, err := Open(ctx, uri, name, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})))
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
