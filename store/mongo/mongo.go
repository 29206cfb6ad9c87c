// Package mongo is the MongoDB implementation of store.Store (driver v2), the store operators
// move to when they outgrow the embedded SQLite one.
//
// Every resource is one self-contained document written with single-document atomicity: there
// are no multi-document transactions anywhere (FerretDB, our CI stand-in, has none, and sharded
// MongoDB makes them costly). Concurrent writers are ordered by optimistic concurrency on the
// document's version field. Joins (_include, _revinclude) are second queries, never $lookup.
// The document model and why it uses composite keys rather than $elemMatch are described in
// doc.go; the translation of the search IR in query.go.
package mongo

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/fhir/search"
	"github.com/openhealthexchange/ohx/store"
)

var _ store.Store = (*Store)(nil)

// maxAttempts bounds the optimistic-concurrency retries of one write. A lost race costs one
// extra read and write; 32 losses in a row mean pathological contention on one resource.
const maxAttempts = 32

// Store is a store.Store on a MongoDB database. It is safe for concurrent use.
type Store struct {
	client *mongo.Client
	db     *mongo.Database
	reg    *search.Registry
	colls  map[string]*mongo.Collection
	log    *slog.Logger
	locks  *docLocks
	keep   int // Options.HistoryVersions
	// recordWrites paces the sweeps of expired records.
	recordWrites atomic.Int64
	// chainLimit is the most targets a chained clause may reach (0: maxChainTargets); tests
	// lower it.
	chainLimit int
	// slotKey caches the key of CreateUnique's derived ids (see unique.go).
	slotKey atomic.Pointer[[]byte]
	// totalBound is store.TotalBound; tests lower it.
	totalBound int
}

// Options tunes the store.
type Options struct {
	// HistoryVersions is how many versions of each resource are kept, the current one included:
	// 0 keeps every version, N prunes older ones when the resource is written (history.go).
	HistoryVersions int
}

// Open connects to the MongoDB deployment at uri, uses database, and creates the indexes of
// every resource type (idempotent). A nil log discards log output.
func Open(ctx context.Context, uri, database string, opt Options, log *slog.Logger) (*Store, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if database == "" {
		return nil, errors.New("mongo: open: empty database name")
	}
	client, err := mongo.Connect(options.Client().ApplyURI(uri))
	if err != nil {
		return nil, fmt.Errorf("mongo: connect: %w", err)
	}
	s := &Store{
		client: client,
		db:     client.Database(database),
		reg:    search.DefaultRegistry(),
		colls:  map[string]*mongo.Collection{},
		log:    log,
		locks:  &docLocks{seed: maphash.MakeSeed()},

		totalBound: store.TotalBound,
	}
	s.keep = max(opt.HistoryVersions, 0)
	if err := client.Ping(ctx, nil); err != nil {
		_ = client.Disconnect(context.Background())
		return nil, fmt.Errorf("mongo: ping: %w", err)
	}
	ferret, err := isFerretDB(ctx, client)
	if err != nil {
		_ = client.Disconnect(context.Background())
		return nil, fmt.Errorf("mongo: buildInfo: %w", err)
	}
	if ferret {
		// See lock.go: FerretDB's conditional updates are not atomic.
		s.locks.enabled = true
		log.InfoContext(ctx, "mongo: the server is FerretDB; writes of one document are serialised in this process")
	}
	for _, typ := range s.reg.Types() {
		s.colls[typ] = s.db.Collection(typ)
	}
	if err := s.ensureIndexes(ctx); err != nil {
		_ = client.Disconnect(context.Background())
		return nil, err
	}
	return s, nil
}

// Close disconnects from the deployment.
func (s *Store) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.client.Disconnect(ctx); err != nil {
		return fmt.Errorf("mongo: close: %w", err)
	}
	return nil
}

// ensureIndexes creates the indexes of every collection; creating an existing index with the
// same keys and name is a no-op.
//
// Every index starts with pat where it serves patient searches, and {pat: 1, _id: 1} is the
// intended shard key (design decision 3): a patient's resources live on one shard and the hot
// search targets one shard. On FerretDB v1 all of them are created but none is used for our
// filters (its SQLite backend pushes down only an exact _id match, and even that scans), so
// FerretDB runs are correctness checks only. Indexes FerretDB cannot create at all are left out:
// a partial filter {del: false} would shrink every index on MongoDB, TTL and text indexes are
// not needed by this model.
func (s *Store) ensureIndexes(ctx context.Context) error {
	for _, typ := range s.reg.Types() {
		// One index per call: FerretDB v1 panics on a createIndexes of several indexes some of
		// which exist (validateIndexesForCreation deletes from its list by the original
		// positions), i.e. whenever a second instance opens the same database.
		for _, m := range indexModels(s.reg, typ) {
			if _, err := s.colls[typ].Indexes().CreateOne(ctx, m); err != nil {
				return fmt.Errorf("mongo: create indexes of %s: %w", typ, err)
			}
		}
	}
	// ListRecords reads one kind in id order.
	if _, err := s.records().Indexes().CreateOne(ctx, mongo.IndexModel{
		Keys: bson.D{{Key: "k", Value: 1}, {Key: "i", Value: 1}}, Options: options.Index().SetName("k_i"),
	}); err != nil {
		return fmt.Errorf("mongo: create indexes of records: %w", err)
	}
	// History and vread read one resource's versions, newest first (history.go).
	if _, err := s.history().Indexes().CreateOne(ctx, mongo.IndexModel{
		Keys: bson.D{{Key: "t", Value: 1}, {Key: "i", Value: 1}, {Key: fVersion, Value: -1}}, Options: options.Index().SetName("t_i_v"),
	}); err != nil {
		return fmt.Errorf("mongo: create indexes of history: %w", err)
	}
	// The job queue (jobs.go): claims and PendingJobs read the due jobs in claim order, DeadJobs
	// the dead letters newest first; ks makes a key unique among pending jobs.
	for _, m := range []mongo.IndexModel{
		{Keys: bson.D{{Key: "dead", Value: 1}, {Key: "pri", Value: -1}, {Key: "ready", Value: 1}, {Key: "c", Value: 1}, {Key: fID, Value: 1}}, Options: options.Index().SetName("claim")},
		{Keys: bson.D{{Key: "dead", Value: 1}, {Key: "fa", Value: -1}, {Key: fID, Value: 1}}, Options: options.Index().SetName("dead")},
		{Keys: bson.D{{Key: "ks", Value: 1}}, Options: options.Index().SetName("ks").SetUnique(true)},
	} {
		if _, err := s.jobs().Indexes().CreateOne(ctx, m); err != nil {
			return fmt.Errorf("mongo: create indexes of jobs: %w", err)
		}
	}
	// Coverage reads one connection's streams in kind order.
	if _, err := s.coverage().Indexes().CreateOne(ctx, mongo.IndexModel{
		Keys: bson.D{{Key: "pv", Value: 1}, {Key: "pt", Value: 1}, {Key: "kd", Value: 1}}, Options: options.Index().SetName("pv_pt_kd"),
	}); err != nil {
		return fmt.Errorf("mongo: create indexes of coverage: %w", err)
	}
	return nil
}

// indexModels lists the indexes of one collection, derived from the parameters of its type.
func indexModels(reg *search.Registry, typ string) []mongo.IndexModel {
	idx := func(name string, keys ...bson.E) mongo.IndexModel {
		return mongo.IndexModel{Keys: bson.D(keys), Options: options.Index().SetName(name)}
	}
	asc := func(f string) bson.E { return bson.E{Key: f, Value: 1} }
	desc := func(f string) bson.E { return bson.E{Key: f, Value: -1} }
	models := []mongo.IndexModel{
		// Patient compartment in _id order (default sort) and the shard key.
		idx("pat_id", asc(fPatient), asc(fID)),
		// A patient's timeline: _sort=-date / birthdate with keyset paging.
		idx("pat_sd_id", asc(fPatient), desc(fSort), asc(fID)),
		// _lastUpdated filters and sort (incremental polling across patients).
		idx("lu_id", asc(fLastUpd), asc(fID)),
		// Tokens across patients: identifiers (Upsert, FindByIdentifier), codes, statuses.
		idx("tk", asc(fTok)),
	}
	has := map[search.Type]bool{}
	var dateCols []string
	for _, p := range reg.Params(typ) {
		has[p.Type] = true
		if p.Type == search.Date && p.Name != "_lastUpdated" {
			dateCols = append(dateCols, p.Columns...)
		}
	}
	if _, ok := compartmentColumn[typ]; ok {
		// The hot path: patient + code (+ date range), e.g. Observation?patient=…&code=…&date=ge….
		name, keys := "pat_tk", []bson.E{asc(fPatient), asc(fTok)}
		if sp := search.SortDateParam(typ); sp != "" {
			name, keys = "pat_tk_"+sp, append(keys, asc(fDate+"."+sp+".lo"))
			// Newest first per code, in _sort=-date order with its _id tie-breaker: a LastN
			// group, and patient + code + _sort=-date, read in index order with no sort stage.
			models = append(models, idx("pat_tk_sd_id", asc(fPatient), asc(fTok), desc(fSort), desc(fID)))
		}
		models = append(models, idx(name, keys...))
	}
	if has[search.Reference] {
		// Reference searches and _revinclude.
		models = append(models, idx("rf", asc(fRef)))
	}
	if has[search.String] {
		// Anchored-prefix regexes on sn use index bounds; :exact uses se.
		models = append(models, idx("sn", asc(fStrNorm)), idx("se", asc(fStrExac)))
	}
	for _, col := range dateCols {
		models = append(models, idx("dt_"+col, asc(fDate+"."+col+".lo"), asc(fDate+"."+col+".hi")))
	}
	return models
}

// coll returns the collection of a supported resource type.
func (s *Store) coll(typ string) (*mongo.Collection, error) {
	c, ok := s.colls[typ]
	if !ok {
		return nil, fmt.Errorf("resource type %q is not supported", typ)
	}
	return c, nil
}

// newID returns a random resource id (32 hex digits).
func newID() string {
	var b [16]byte
	_, _ = crand.Read(b[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}

// now returns the current time in Unix microseconds, later than after (so that lastUpdated
// strictly increases across the versions of one resource).
func now(after int64) int64 {
	t := time.Now().UnixMicro()
	if t <= after {
		t = after + 1
	}
	return t
}

// prepare sets id and meta on r, then marshals and indexes it into a document.
func (s *Store) prepare(r fhir.Resource, id string, version, lu int64) (*document, error) {
	b := r.Common()
	b.ResourceType = r.Type()
	b.ID = id
	if b.Meta == nil {
		b.Meta = &fhir.Meta{}
	}
	b.Meta.VersionID = strconv.FormatInt(version, 10)
	b.Meta.LastUpdated = fhir.Instant(time.UnixMicro(lu))
	js, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("marshal: %w", err)
	}
	h, err := contentHash(r)
	if err != nil {
		return nil, err
	}
	idx, err := search.Extract(r)
	if err != nil {
		return nil, err
	}
	d := &document{ID: id, Version: version, LastUpd: lu, Hash: h, JSON: string(js)}
	if err := buildIndex(d, idx); err != nil {
		return nil, err
	}
	return d, nil
}

// entryOf returns the served form of a live document.
func entryOf(typ string, d *document) store.Entry {
	return store.Entry{Type: typ, ID: d.ID, VersionID: d.Version, LastUpdated: time.UnixMicro(d.LastUpd).UTC(), JSON: []byte(d.JSON)}
}

// head is the part of a stored document the write paths read.
type head struct {
	ID      string `bson:"_id"`
	Version int64  `bson:"v"`
	LastUpd int64  `bson:"lu"`
	Deleted bool   `bson:"del"`
	Patient string `bson:"pat"`
	Hash    string `bson:"h"`
	// Amends: a change makes the stored Observation amended (store.Amends); set by lookup.
	Amends bool `bson:"-"`
}

var headProjection = bson.D{
	{Key: fVersion, Value: 1}, {Key: fLastUpd, Value: 1}, {Key: fDeleted, Value: 1},
	{Key: fPatient, Value: 1}, {Key: fHash, Value: 1},
}

// readHead returns the head of a document, or ok false if there is none.
func readHead(ctx context.Context, c *mongo.Collection, id string) (h head, ok bool, err error) {
	err = c.FindOne(ctx, bson.D{{Key: fID, Value: id}}, options.FindOne().SetProjection(headProjection)).Decode(&h)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return head{}, false, nil
	}
	if err != nil {
		return head{}, false, err
	}
	return h, true, nil
}

// versionFilter selects a document only at the version it was read at: the optimistic lock.
// pat is included so that a sharded collection routes the write to one shard.
func versionFilter(h head) bson.D {
	return bson.D{{Key: fID, Value: h.ID}, {Key: fPatient, Value: h.Patient}, {Key: fVersion, Value: h.Version}}
}

// backoff sleeps a little after a lost race, so that contending writers spread out.
func backoff(ctx context.Context, attempt int) error {
	d := time.Duration(rand.IntN(1+min(attempt, 8)*500)) * time.Microsecond
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Create stores a new resource with version 1. It returns store.ErrDuplicate if a resource
// (live or deleted) with that id exists.
func (s *Store) Create(ctx context.Context, r fhir.Resource) (store.Entry, error) {
	typ := r.Type()
	c, err := s.coll(typ)
	if err != nil {
		return store.Entry{}, fmt.Errorf("mongo: create: %w", err)
	}
	id := r.Common().ID
	if id == "" {
		id = newID()
	} else if !fhir.ValidID(id) {
		return store.Entry{}, fhir.Invalid(fhir.CodeValue, "%s.id: invalid id", typ)
	}
	d, err := s.prepare(r, id, 1, now(0))
	if err != nil {
		return store.Entry{}, fmt.Errorf("mongo: create %s: %w", typ, err)
	}
	if err := s.insert(ctx, c, typ, d); err != nil {
		if mongo.IsDuplicateKeyError(err) {
			return store.Entry{}, fmt.Errorf("mongo: create %s/%s: %w", typ, id, store.ErrDuplicate)
		}
		return store.Entry{}, fmt.Errorf("mongo: create %s/%s: %w", typ, id, err)
	}
	return entryOf(typ, d), nil
}

// Put creates or replaces the resource with the id r carries. created is true if no live
// resource had that id (a deleted one is brought back with the next version). It returns
// store.ErrVersionConflict if opt.IfMatch is set and differs from the current version (or there
// is no resource with that id).
func (s *Store) Put(ctx context.Context, r fhir.Resource, opt store.WriteOptions) (store.Entry, bool, error) {
	typ := r.Type()
	c, err := s.coll(typ)
	if err != nil {
		return store.Entry{}, false, fmt.Errorf("mongo: put: %w", err)
	}
	id := r.Common().ID
	if !fhir.ValidID(id) {
		return store.Entry{}, false, fhir.Invalid(fhir.CodeValue, "%s.id: missing or invalid id", typ)
	}
	for attempt := range maxAttempts {
		// On FerretDB the document lock spans the whole read-modify-write (see lock.go), so
		// in-process writers queue instead of exhausting their retries; on MongoDB it is a no-op
		// and the version filter arbitrates.
		unlock := s.locks.lock(typ, id)
		e, created, done, err := s.putAttempt(ctx, c, r, typ, id, opt)
		unlock()
		if err != nil || done {
			return e, created, err
		}
		// Another writer got there first.
		if opt.IfMatch != 0 {
			return store.Entry{}, false, fmt.Errorf("mongo: put %s/%s: If-Match %d: %w", typ, id, opt.IfMatch, store.ErrVersionConflict)
		}
		s.log.DebugContext(ctx, "mongo: put lost a race, retrying", "type", typ, "attempt", attempt+1)
		if err := backoff(ctx, attempt); err != nil {
			return store.Entry{}, false, fmt.Errorf("mongo: put %s/%s: %w", typ, id, err)
		}
	}
	return store.Entry{}, false, fmt.Errorf("mongo: put %s/%s: %d concurrent writers won in a row: %w", typ, id, maxAttempts, store.ErrVersionConflict)
}

// putAttempt is one optimistic try of Put; done is false when another writer won the race.
// The caller holds the document lock.
func (s *Store) putAttempt(ctx context.Context, c *mongo.Collection, r fhir.Resource, typ, id string, opt store.WriteOptions) (e store.Entry, created, done bool, err error) {
	cur, prior, found, err := s.readPrior(ctx, c, id)
	if err != nil {
		return store.Entry{}, false, false, fmt.Errorf("mongo: put %s/%s: %w", typ, id, err)
	}
	if opt.IfMatch != 0 && (!found || cur.Version != opt.IfMatch) {
		return store.Entry{}, false, false, fmt.Errorf("mongo: put %s/%s: If-Match %d: %w", typ, id, opt.IfMatch, store.ErrVersionConflict)
	}
	if !found {
		d, err := s.prepare(r, id, 1, now(0))
		if err != nil {
			return store.Entry{}, false, false, fmt.Errorf("mongo: put %s/%s: %w", typ, id, err)
		}
		_, err = c.InsertOne(ctx, d)
		if err == nil {
			return entryOf(typ, d), true, true, nil
		}
		if !mongo.IsDuplicateKeyError(err) {
			return store.Entry{}, false, false, fmt.Errorf("mongo: put %s/%s: %w", typ, id, err)
		}
		return store.Entry{}, false, false, nil
	}
	d, err := s.prepare(r, id, cur.Version+1, now(cur.LastUpd))
	if err != nil {
		return store.Entry{}, false, false, fmt.Errorf("mongo: put %s/%s: %w", typ, id, err)
	}
	if err := s.keepPriors(ctx, []historyDoc{priorOf(typ, cur, prior)}); err != nil {
		return store.Entry{}, false, false, fmt.Errorf("mongo: put %s/%s: %w", typ, id, err)
	}
	res, err := c.ReplaceOne(ctx, versionFilter(cur), d)
	if err != nil {
		return store.Entry{}, false, false, fmt.Errorf("mongo: put %s/%s: %w", typ, id, err)
	}
	if res.MatchedCount == 1 {
		s.prune(ctx, typ, written{id, d.Version})
		return entryOf(typ, d), cur.Deleted, true, nil
	}
	return store.Entry{}, false, false, nil
}

// Read returns the current version. It returns store.ErrNotFound for an unknown id and
// store.ErrDeleted, with VersionID and LastUpdated set, for a deleted one.
func (s *Store) Read(ctx context.Context, typ, id string) (store.Entry, error) {
	c, err := s.coll(typ)
	if err != nil {
		return store.Entry{}, fmt.Errorf("mongo: read: %w", err)
	}
	raw, err := c.FindOne(ctx, bson.D{{Key: fID, Value: id}}, options.FindOne().SetProjection(entryProjection)).Raw()
	if errors.Is(err, mongo.ErrNoDocuments) {
		return store.Entry{}, fmt.Errorf("mongo: read %s/%s: %w", typ, id, store.ErrNotFound)
	}
	if err != nil {
		return store.Entry{}, fmt.Errorf("mongo: read %s/%s: %w", typ, id, err)
	}
	e, deleted, err := rawEntry(typ, raw)
	if err != nil {
		return store.Entry{}, fmt.Errorf("mongo: read %s/%s: %w", typ, id, err)
	}
	if deleted {
		return e, fmt.Errorf("mongo: read %s/%s: %w", typ, id, store.ErrDeleted)
	}
	return e, nil
}

// Delete marks the resource deleted, drops its JSON and index, and bumps its version. It
// returns store.ErrNotFound for an unknown id; deleting a deleted resource is a no-op.
func (s *Store) Delete(ctx context.Context, typ, id string) error {
	c, err := s.coll(typ)
	if err != nil {
		return fmt.Errorf("mongo: delete: %w", err)
	}
	for attempt := range maxAttempts {
		cur, prior, found, err := s.readPrior(ctx, c, id)
		if err != nil {
			return fmt.Errorf("mongo: delete %s/%s: %w", typ, id, err)
		}
		if !found {
			return fmt.Errorf("mongo: delete %s/%s: %w", typ, id, store.ErrNotFound)
		}
		if cur.Deleted {
			return nil
		}
		tomb := &document{ID: id, Version: cur.Version + 1, LastUpd: now(cur.LastUpd), Deleted: true, Patient: cur.Patient, Sort: fhir.MinTime}
		if err := s.keepPriors(ctx, []historyDoc{priorOf(typ, cur, prior)}); err != nil {
			return fmt.Errorf("mongo: delete %s/%s: %w", typ, id, err)
		}
		res, err := s.replace(ctx, c, typ, cur, tomb)
		if err != nil {
			return fmt.Errorf("mongo: delete %s/%s: %w", typ, id, err)
		}
		if res.MatchedCount == 1 {
			s.prune(ctx, typ, written{id, tomb.Version})
			return nil
		}
		s.log.DebugContext(ctx, "mongo: delete lost a race, retrying", "type", typ, "attempt", attempt+1)
		if err := backoff(ctx, attempt); err != nil {
			return fmt.Errorf("mongo: delete %s/%s: %w", typ, id, err)
		}
	}
	return fmt.Errorf("mongo: delete %s/%s: %d concurrent writers won in a row: %w", typ, id, maxAttempts, store.ErrVersionConflict)
}

// FindByIdentifier returns the ids of live resources of typ carrying the identifier, in id order.
func (s *Store) FindByIdentifier(ctx context.Context, typ, system, value string) ([]string, error) {
	c, err := s.coll(typ)
	if err != nil {
		return nil, fmt.Errorf("mongo: find by identifier: %w", err)
	}
	filter := bson.D{{Key: fDeleted, Value: false}, {Key: fTok, Value: tokenKey(identifierColumn, system, value)}}
	opts := options.Find().SetProjection(bson.D{{Key: fID, Value: 1}}).SetSort(bson.D{{Key: fID, Value: 1}})
	cur, err := c.Find(ctx, filter, opts)
	if err != nil {
		return nil, fmt.Errorf("mongo: find %s by identifier: %w", typ, err)
	}
	defer cur.Close(context.WithoutCancel(ctx))
	var ids []string
	for cur.Next(ctx) {
		id, ok := cur.Current.Lookup(fID).StringValueOK()
		if !ok {
			return nil, fmt.Errorf("mongo: find %s by identifier: non-string _id", typ)
		}
		ids = append(ids, id)
	}
	if err := cur.Err(); err != nil {
		return nil, fmt.Errorf("mongo: find %s by identifier: %w", typ, err)
	}
	return ids, nil
}
