package mongo

import (
	"context"
	"hash/maphash"
	"slices"
	"sync"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// FerretDB v1 runs an update as two steps: it queries the documents, applies the filter in Go,
// then writes each result with UPDATE … WHERE _id = ? (internal/handler/msg_update.go,
// backends/sqlite UpdateAll). The filter is not re-checked when writing, so two concurrent
// replacements filtered on {_id, v: 3} can both match and both write: optimistic concurrency on
// v loses updates there. MongoDB evaluates filter and write atomically for one document and
// needs nothing more. When the server is FerretDB (buildInfo reports ferretdbVersion) every
// write call of a document made by this Store holds that document's stripe lock, which makes the
// two steps atomic among this process's writers — the only writers of a test database.

// stripes is the number of document locks; documents hashing to the same stripe share it.
const stripes = 64

// docLocks serialises writes of one document within this process (FerretDB only).
type docLocks struct {
	enabled bool
	seed    maphash.Seed
	mu      [stripes]sync.Mutex
}

// lock takes the stripes of the documents typ/ids in index order (so that callers locking
// several never deadlock) and returns the function releasing them.
func (l *docLocks) lock(typ string, ids ...string) (unlock func()) {
	if !l.enabled {
		return func() {}
	}
	idx := make([]int, 0, len(ids))
	for _, id := range ids {
		idx = append(idx, int(maphash.String(l.seed, typ+"/"+id)%stripes))
	}
	slices.Sort(idx)
	idx = slices.Compact(idx)
	for _, i := range idx {
		l.mu[i].Lock()
	}
	return func() {
		for _, i := range slices.Backward(idx) {
			l.mu[i].Unlock()
		}
	}
}

// isFerretDB reports whether the deployment is FerretDB rather than MongoDB.
func isFerretDB(ctx context.Context, client *mongo.Client) (bool, error) {
	var info bson.Raw
	err := client.Database("admin").RunCommand(ctx, bson.D{{Key: "buildInfo", Value: 1}}).Decode(&info)
	if err != nil {
		return false, err
	}
	_, err = info.LookupErr("ferretdbVersion")
	return err == nil, nil
}

// insert inserts a new document.
func (s *Store) insert(ctx context.Context, c *mongo.Collection, typ string, d *document) error {
	defer s.locks.lock(typ, d.ID)()
	_, err := c.InsertOne(ctx, d)
	return err
}

// replace replaces the document read as cur, if it is still at that version.
func (s *Store) replace(ctx context.Context, c *mongo.Collection, typ string, cur head, d *document) (*mongo.UpdateResult, error) {
	defer s.locks.lock(typ, cur.ID)()
	return c.ReplaceOne(ctx, versionFilter(cur), d)
}
