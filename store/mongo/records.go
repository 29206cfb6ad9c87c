package mongo

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/openhealthexchange/ohx/store"
)

// Records live in one collection: _id "kind/id", k kind, i id, d document, x expiry (Unix ms,
// 0 = never). No TTL index (FerretDB has none, and expiry must be exact anyway): reads filter
// on x, and writes sweep expired records now and then.

const recordsCollection = "records"

type recordDoc struct {
	ID   string `bson:"_id"`
	Kind string `bson:"k"`
	RID  string `bson:"i"`
	Doc  []byte `bson:"d"`
	Exp  int64  `bson:"x"`
}

func recordKey(kind, id string) string { return kind + "/" + id }

func expMillis(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// liveFilter matches the record (kind, id) if it has not expired.
func liveFilter(kind, id string) bson.D {
	return bson.D{
		{Key: "_id", Value: recordKey(kind, id)},
		{Key: "$or", Value: bson.A{bson.D{{Key: "x", Value: 0}}, bson.D{{Key: "x", Value: bson.D{{Key: "$gt", Value: time.Now().UnixMilli()}}}}}},
	}
}

func (s *Store) records() *mongo.Collection { return s.db.Collection(recordsCollection) }

func (s *Store) sweepRecords(ctx context.Context) {
	if s.recordWrites.Add(1)%500 != 0 {
		return
	}
	_, err := s.records().DeleteMany(ctx, bson.D{{Key: "x", Value: bson.D{{Key: "$gt", Value: 0}, {Key: "$lte", Value: time.Now().UnixMilli()}}}})
	if err != nil {
		s.log.Warn("sweeping expired records failed", "err", err)
	}
}

// PutRecord implements store.Records.
func (s *Store) PutRecord(ctx context.Context, kind, id string, doc []byte, expires time.Time) error {
	defer s.locks.lock(recordsCollection, recordKey(kind, id))()
	d := recordDoc{ID: recordKey(kind, id), Kind: kind, RID: id, Doc: doc, Exp: expMillis(expires)}
	if _, err := s.records().ReplaceOne(ctx, bson.D{{Key: "_id", Value: d.ID}}, d, options.Replace().SetUpsert(true)); err != nil {
		return fmt.Errorf("mongo: put record %s: %w", kind, err)
	}
	s.sweepRecords(ctx)
	return nil
}

// CreateRecord implements store.Records: an insert, atomic on the unique _id; an expired record
// in the way is replaced only if it is still expired when replaced.
func (s *Store) CreateRecord(ctx context.Context, kind, id string, doc []byte, expires time.Time) error {
	defer s.locks.lock(recordsCollection, recordKey(kind, id))()
	d := recordDoc{ID: recordKey(kind, id), Kind: kind, RID: id, Doc: doc, Exp: expMillis(expires)}
	_, err := s.records().InsertOne(ctx, d)
	if err == nil {
		s.sweepRecords(ctx)
		return nil
	}
	if !mongo.IsDuplicateKeyError(err) {
		return fmt.Errorf("mongo: create record %s: %w", kind, err)
	}
	res, err := s.records().ReplaceOne(ctx, bson.D{
		{Key: "_id", Value: d.ID},
		{Key: "x", Value: bson.D{{Key: "$gt", Value: 0}, {Key: "$lte", Value: time.Now().UnixMilli()}}},
	}, d)
	if err != nil {
		return fmt.Errorf("mongo: create record %s: %w", kind, err)
	}
	if res.MatchedCount == 0 {
		return fmt.Errorf("mongo: create record %s: %w", kind, store.ErrDuplicate)
	}
	return nil
}

// GetRecord implements store.Records.
func (s *Store) GetRecord(ctx context.Context, kind, id string) ([]byte, error) {
	var d recordDoc
	err := s.records().FindOne(ctx, liveFilter(kind, id)).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, fmt.Errorf("mongo: get record %s: %w", kind, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("mongo: get record %s: %w", kind, err)
	}
	return d.Doc, nil
}

// TakeRecord implements store.Records with FindOneAndDelete, atomic for one document.
func (s *Store) TakeRecord(ctx context.Context, kind, id string) ([]byte, error) {
	defer s.locks.lock(recordsCollection, recordKey(kind, id))()
	var d recordDoc
	err := s.records().FindOneAndDelete(ctx, liveFilter(kind, id)).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, fmt.Errorf("mongo: take record %s: %w", kind, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("mongo: take record %s: %w", kind, err)
	}
	return d.Doc, nil
}

// DeleteRecord implements store.Records.
func (s *Store) DeleteRecord(ctx context.Context, kind, id string) error {
	defer s.locks.lock(recordsCollection, recordKey(kind, id))()
	if _, err := s.records().DeleteOne(ctx, bson.D{{Key: "_id", Value: recordKey(kind, id)}}); err != nil {
		return fmt.Errorf("mongo: delete record %s: %w", kind, err)
	}
	return nil
}

// ListRecords implements store.Records.
func (s *Store) ListRecords(ctx context.Context, kind string) ([]store.Record, error) {
	cur, err := s.records().Find(ctx, bson.D{
		{Key: "k", Value: kind},
		{Key: "$or", Value: bson.A{bson.D{{Key: "x", Value: 0}}, bson.D{{Key: "x", Value: bson.D{{Key: "$gt", Value: time.Now().UnixMilli()}}}}}},
	}, options.Find().SetSort(bson.D{{Key: "i", Value: 1}}))
	if err != nil {
		return nil, fmt.Errorf("mongo: list records %s: %w", kind, err)
	}
	defer cur.Close(ctx)
	var out []store.Record
	for cur.Next(ctx) {
		var d recordDoc
		if err := cur.Decode(&d); err != nil {
			return nil, fmt.Errorf("mongo: list records %s: %w", kind, err)
		}
		r := store.Record{Kind: kind, ID: d.RID, Doc: d.Doc}
		if d.Exp > 0 {
			r.Expires = time.UnixMilli(d.Exp).UTC()
		}
		out = append(out, r)
	}
	if err := cur.Err(); err != nil {
		return nil, fmt.Errorf("mongo: list records %s: %w", kind, err)
	}
	return out, nil
}
