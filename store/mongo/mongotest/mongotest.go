// Package mongotest runs FerretDB v1 embedded in a test binary as the MongoDB stand-in of CI
// (https://docs.ferretdb.io/): no mongod can be installed on the project's machines. Import it only from
// tests: it pulls FerretDB into the binary that imports it.
//
// FerretDB runs on its SQLite backend in a temporary directory (never ?mode=memory: the second
// upsert on an update path hangs there) with an ERROR-level logger (at WARN it dumps every error
// reply). One instance serves the whole test binary; every test gets its own database.
package mongotest

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

var ferret struct {
	once   sync.Once
	uri    string
	err    error
	dir    string
	cancel context.CancelFunc
	done   chan struct{}
}

// URI starts the shared FerretDB on first use and returns its MongoDB URI.
func URI(t testing.TB) string {
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

// Stop shuts the shared FerretDB down and removes its files; call it from TestMain after m.Run.
func Stop() {
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
}

var dbSeq atomic.Int64

var unsafeDBChars = regexp.MustCompile(`[^A-Za-z0-9_]+`)

// DBName derives a unique database name from the test name: MongoDB and FerretDB accept
// letters, digits and "_", and at most 63 bytes.
func DBName(t testing.TB) string {
	n := unsafeDBChars.ReplaceAllString(t.Name(), "_")
	if len(n) > 40 {
		n = n[len(n)-40:]
	}
	return fmt.Sprintf("t%d_%s", dbSeq.Add(1), n)
}
