package mongo

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/store"
)

// Version history. The resource's document is always its current version; prior versions live
// in one collection, one document each:
//
//	_id   "Type/id/version"
//	t, i  resource type and id
//	v     version
//	lu    meta.lastUpdated in Unix µs
//	del   true for a deletion (no json)
//	pat   the version's patient compartment (kept for a future patient-first shard key)
//	json  the JSON as it was served
//
// A write that replaces version v first inserts the copy of v, then replaces the current
// document with the optimistic version filter. There is no transaction between the two, and none
// is needed:
//   - version v is immutable once written (every change makes v+1), so every writer that copies
//     it — racing writers that all read v, a retry after a lost race or a crash — writes the same
//     bytes under the same _id; a duplicate key means it is already saved and is ignored;
//   - if the replacement then loses its race or never happens, the copy describes a version that
//     did exist (or still is current): readers take versions below the current one from this
//     collection and the current one from the resource's document, so a copy of the current
//     version is never shown twice;
//   - history first means a crash can never leave a replaced version without its copy.
//
// FerretDB v1 runs every operation used here (insertMany unordered, find with sort and limit,
// deleteMany with $or). Reads of one resource's history go through {t, i, v}; on a sharded
// deployment the collection would be sharded on {t: 1, i: 1} so that they target one shard.

const historyCollection = "history"

type historyDoc struct {
	ID      string `bson:"_id"`
	Type    string `bson:"t"`
	RID     string `bson:"i"`
	Version int64  `bson:"v"`
	LastUpd int64  `bson:"lu"`
	Deleted bool   `bson:"del"`
	Patient string `bson:"pat"`
	JSON    string `bson:"json,omitempty"`
}

func historyKey(typ, id string, v int64) string {
	return typ + "/" + id + "/" + strconv.FormatInt(v, 10)
}

func (s *Store) history() *mongo.Collection { return s.db.Collection(historyCollection) }

// historyOn reports whether prior versions are copied at all (a retention of 1 keeps only the
// current version).
func (s *Store) historyOn() bool { return s.keep != 1 }

// priorOf is the history document of the stored version h (js is its JSON, "" for a deletion).
func priorOf(typ string, h head, js string) historyDoc {
	return historyDoc{ID: historyKey(typ, h.ID, h.Version), Type: typ, RID: h.ID, Version: h.Version, LastUpd: h.LastUpd, Deleted: h.Deleted, Patient: h.Patient, JSON: js}
}

// priorProjection reads the head of a document and its JSON: what a write needs to copy it.
var priorProjection = append(slices.Clone(headProjection), bson.E{Key: fJSON, Value: 1})

type priorRow struct {
	Head head   `bson:",inline"`
	JSON string `bson:"json"`
}

// readPrior returns the head of a document and, when history is kept, its JSON.
func (s *Store) readPrior(ctx context.Context, c *mongo.Collection, id string) (h head, js string, ok bool, err error) {
	if !s.historyOn() {
		h, ok, err = readHead(ctx, c, id)
		return h, "", ok, err
	}
	var r priorRow
	err = c.FindOne(ctx, bson.D{{Key: fID, Value: id}}, options.FindOne().SetProjection(priorProjection)).Decode(&r)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return head{}, "", false, nil
	}
	if err != nil {
		return head{}, "", false, err
	}
	return r.Head, r.JSON, true, nil
}

// keepPriors saves the copies of the versions about to be replaced; copies already saved are
// left as they are (see the comment at the top of this file).
func (s *Store) keepPriors(ctx context.Context, docs []historyDoc) error {
	if !s.historyOn() || len(docs) == 0 {
		return nil
	}
	ds := make([]any, len(docs))
	for i := range docs {
		ds[i] = docs[i]
	}
	_, err := s.history().InsertMany(ctx, ds, options.InsertMany().SetOrdered(false))
	if err == nil {
		return nil
	}
	var bwe mongo.BulkWriteException
	if errors.As(err, &bwe) && bwe.WriteConcernError == nil && len(bwe.WriteErrors) > 0 {
		dupsOnly := true
		for _, we := range bwe.WriteErrors {
			if we.Code != 11000 && we.Code != 11001 { // duplicate key
				dupsOnly = false
				break
			}
		}
		if dupsOnly {
			return nil
		}
	}
	return fmt.Errorf("save prior versions: %w", err)
}

// written is a resource version a write stored, for pruning.
type written struct {
	id      string
	version int64
}

// prune deletes the versions the retention no longer keeps, after a write. A failure is
// logged, not returned: the write itself succeeded, and the next write of the resource prunes
// everything older than its window anyway.
func (s *Store) prune(ctx context.Context, typ string, ws ...written) {
	if s.keep <= 0 {
		return
	}
	var or bson.A
	for _, w := range ws {
		if w.version > int64(s.keep) {
			or = append(or, bson.D{{Key: "t", Value: typ}, {Key: "i", Value: w.id}, {Key: fVersion, Value: op("$lte", w.version-int64(s.keep))}})
		}
	}
	for start := 0; start < len(or); start += lookupChunk {
		chunk := or[start:min(start+lookupChunk, len(or))]
		f := bson.D{{Key: "$or", Value: chunk}}
		if len(chunk) == 1 {
			f = chunk[0].(bson.D)
		}
		if _, err := s.history().DeleteMany(ctx, f); err != nil {
			s.log.WarnContext(ctx, "mongo: pruning history failed", "type", typ, "err", err)
			return
		}
	}
}

// priorsOf reads the copies of the versions the planned replacements of ops replace, in one
// query per chunk (the bulk upsert looks up heads without JSON, so that unchanged resources, the
// common case of a re-sync, cost nothing more). A document no longer at the planned version is
// skipped: its replacement will find the version gone and be redone by upsertOne, which saves
// its own copy.
func (s *Store) priorsOf(ctx context.Context, c *mongo.Collection, typ string, ops []upsertOp) ([]historyDoc, error) {
	if !s.historyOn() {
		return nil, nil
	}
	var docs []historyDoc
	var ids []string
	want := map[string]int64{}
	for _, o := range ops {
		if o.replace {
			ids = append(ids, o.prev.ID)
			want[o.prev.ID] = o.prev.Version
		}
	}
	for start := 0; start < len(ids); start += lookupChunk {
		chunk := ids[start:min(start+lookupChunk, len(ids))]
		cur, err := c.Find(ctx, in(fID, chunk).doc(), options.Find().SetProjection(priorProjection))
		if err != nil {
			return nil, fmt.Errorf("read prior versions: %w", err)
		}
		for cur.Next(ctx) {
			var r priorRow
			if err := cur.Decode(&r); err != nil {
				_ = cur.Close(context.WithoutCancel(ctx))
				return nil, fmt.Errorf("read prior versions: %w", err)
			}
			if v, ok := want[r.Head.ID]; ok && v == r.Head.Version {
				docs = append(docs, priorOf(typ, r.Head, r.JSON))
			}
		}
		err = cur.Err()
		_ = cur.Close(context.WithoutCancel(ctx))
		if err != nil {
			return nil, fmt.Errorf("read prior versions: %w", err)
		}
	}
	return docs, nil
}

// keepPriorAt saves the copy of the stored version h before a replacement of it; ok is false
// if the document is no longer at that version (a concurrent writer won: retry).
func (s *Store) keepPriorAt(ctx context.Context, c *mongo.Collection, typ string, h head) (ok bool, err error) {
	if !s.historyOn() {
		return true, nil
	}
	var r priorRow
	err = c.FindOne(ctx, bson.D{{Key: fID, Value: h.ID}, {Key: fVersion, Value: h.Version}}, options.FindOne().SetProjection(priorProjection)).Decode(&r)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read prior version: %w", err)
	}
	return true, s.keepPriors(ctx, []historyDoc{priorOf(typ, r.Head, r.JSON)})
}

// historyEntry is the served form of a history document.
func historyEntry(typ string, d historyDoc) store.Entry {
	e := store.Entry{Type: typ, ID: d.RID, VersionID: d.Version, LastUpdated: time.UnixMicro(d.LastUpd).UTC()}
	if !d.Deleted {
		e.JSON = []byte(d.JSON)
	}
	return e
}

// readCurrent reads the current version of a resource; ok is false if it was never stored.
func (s *Store) readCurrent(ctx context.Context, typ, id string) (e store.Entry, deleted, ok bool, err error) {
	c, err := s.coll(typ)
	if err != nil {
		return store.Entry{}, false, false, err
	}
	raw, err := c.FindOne(ctx, bson.D{{Key: fID, Value: id}}, options.FindOne().SetProjection(entryProjection)).Raw()
	if errors.Is(err, mongo.ErrNoDocuments) {
		return store.Entry{}, false, false, nil
	}
	if err != nil {
		return store.Entry{}, false, false, err
	}
	e, deleted, err = rawEntry(typ, raw)
	return e, deleted, err == nil, err
}

// ReadVersion returns one version of a resource (vread). It returns store.ErrNotFound for an
// unknown resource or version (never written, or pruned) and store.ErrDeleted, with VersionID
// and LastUpdated set, for a deletion.
func (s *Store) ReadVersion(ctx context.Context, typ, id string, version int64) (store.Entry, error) {
	cur, deleted, ok, err := s.readCurrent(ctx, typ, id)
	if err != nil {
		return store.Entry{}, fmt.Errorf("mongo: read %s/%s version %d: %w", typ, id, version, err)
	}
	if !ok || version < 1 || version > cur.VersionID {
		return store.Entry{}, fmt.Errorf("mongo: read %s/%s version %d: %w", typ, id, version, store.ErrNotFound)
	}
	e := cur
	if version < cur.VersionID {
		var d historyDoc
		err := s.history().FindOne(ctx, bson.D{{Key: fID, Value: historyKey(typ, id, version)}}).Decode(&d)
		if errors.Is(err, mongo.ErrNoDocuments) {
			return store.Entry{}, fmt.Errorf("mongo: read %s/%s version %d: %w", typ, id, version, store.ErrNotFound)
		}
		if err != nil {
			return store.Entry{}, fmt.Errorf("mongo: read %s/%s version %d: %w", typ, id, version, err)
		}
		e, deleted = historyEntry(typ, d), d.Deleted
	}
	if deleted {
		e.JSON = nil
		return e, fmt.Errorf("mongo: read %s/%s version %d: %w", typ, id, version, store.ErrDeleted)
	}
	return e, nil
}

// History returns the versions of one resource q selects, newest first. It returns
// store.ErrNotFound if the resource was never stored.
func (s *Store) History(ctx context.Context, q store.HistoryQuery) ([]store.Entry, error) {
	cur, deleted, ok, err := s.readCurrent(ctx, q.Type, q.ID)
	if err != nil {
		return nil, fmt.Errorf("mongo: history of %s/%s: %w", q.Type, q.ID, err)
	}
	if !ok {
		return nil, fmt.Errorf("mongo: history of %s/%s: %w", q.Type, q.ID, store.ErrNotFound)
	}
	count := max(q.Count, 1)
	lo, hi := fhir.MinTime, fhir.MaxTime
	if !q.Since.IsZero() {
		lo = q.Since.UnixMicro()
	}
	if !q.Until.IsZero() {
		hi = q.Until.UnixMicro()
	}
	before := q.Before
	if before <= 0 {
		before = math.MaxInt64
	}
	var out []store.Entry
	if lu := cur.LastUpdated.UnixMicro(); cur.VersionID < before && lu >= lo && lu < hi {
		if deleted {
			cur.JSON = nil
		}
		out = append(out, cur)
	}
	// Below the current version: a copy of the current version itself (a write that saved it
	// and then lost its race) is never taken from here.
	before = min(before, cur.VersionID)
	if len(out) == count || before <= 1 {
		return out, nil
	}
	f := bson.D{
		{Key: "t", Value: q.Type}, {Key: "i", Value: q.ID},
		{Key: fVersion, Value: op("$lt", before)},
		{Key: fLastUpd, Value: bson.D{{Key: "$gte", Value: lo}, {Key: "$lt", Value: hi}}},
	}
	opts := options.Find().SetSort(bson.D{{Key: fVersion, Value: -1}}).SetLimit(int64(count - len(out)))
	c, err := s.history().Find(ctx, f, opts)
	if err != nil {
		return nil, fmt.Errorf("mongo: history of %s/%s: %w", q.Type, q.ID, err)
	}
	var docs []historyDoc
	if err := c.All(ctx, &docs); err != nil {
		return nil, fmt.Errorf("mongo: history of %s/%s: %w", q.Type, q.ID, err)
	}
	for _, d := range docs {
		out = append(out, historyEntry(q.Type, d))
	}
	return out, nil
}

// PurgeHistory erases the prior versions of a resource. It returns store.ErrNotFound for an
// unknown id.
func (s *Store) PurgeHistory(ctx context.Context, typ, id string) error {
	c, err := s.coll(typ)
	if err != nil {
		return fmt.Errorf("mongo: purge history: %w", err)
	}
	if _, ok, err := readHead(ctx, c, id); err != nil {
		return fmt.Errorf("mongo: purge history of %s/%s: %w", typ, id, err)
	} else if !ok {
		return fmt.Errorf("mongo: purge history of %s/%s: %w", typ, id, store.ErrNotFound)
	}
	if _, err := s.history().DeleteMany(ctx, bson.D{{Key: "t", Value: typ}, {Key: "i", Value: id}}); err != nil {
		return fmt.Errorf("mongo: purge history of %s/%s: %w", typ, id, err)
	}
	return nil
}
