package mongo

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/openhealthexchange/ohx/store"
)

// The job queue is the jobs collection, one document per job, dead letters included, written
// with single-document atomicity only:
//
//   - A claim is a findOneAndUpdate per job, filtered on {dead: false, ready <= now} and sorted
//     in claim order on the claim index {dead, pri desc, ready, c, _id}; it sets the owner and
//     the lease, and moves ready to the lease's end. ready is nb while a job waits and lu while
//     it is leased, so one filter finds waiting jobs that are due and abandoned ones, and
//     MongoDB's index bounds skip the jobs not yet due of every priority. Of concurrent claims
//     of one job, on any number of handles, exactly one matches.
//   - Every other write of a leased job is filtered on its owner, so a lease taken over makes
//     the old owner's writes match nothing: ErrLeaseLost.
//   - Keys are unique among pending jobs through the unique index on ks: ks is "k:"+key while a
//     keyed job is pending and "i:"+id otherwise (unkeyed jobs and dead letters), so every
//     document has a distinct ks and only pending jobs compete for a key. FerretDB v1 has no
//     partial or sparse unique index; a plain one on this derived field needs neither. An
//     enqueue inserts, and of concurrent inserts of one key exactly one succeeds; the others
//     coalesce into the winner.
//
// On FerretDB a filtered update is a query and a separate write (see lock.go), so every job and
// coverage write of one database takes a mutex shared by every Store of the process: the
// guarantees then hold among this process's handles, which is what the tests race. FerretDB
// also uses none of these indexes for our filters; it is a correctness stand-in only.

var (
	_ store.Jobs      = (*Store)(nil)
	_ store.Coverages = (*Store)(nil)
)

const (
	jobsCollection     = "jobs"
	coverageCollection = "coverage"
)

func (s *Store) jobs() *mongo.Collection     { return s.db.Collection(jobsCollection) }
func (s *Store) coverage() *mongo.Collection { return s.db.Collection(coverageCollection) }

// ferretLocks holds the process-wide mutexes of jobLock, by database and collection.
var ferretLocks sync.Map

// jobLock serialises the job or coverage writes (coll) of this database among every Store of
// the process when the server is FerretDB, and does nothing on MongoDB.
func (s *Store) jobLock(coll string) (unlock func()) {
	if !s.locks.enabled {
		return func() {}
	}
	v, _ := ferretLocks.LoadOrStore(s.db.Name()+"\x00"+coll, new(sync.Mutex))
	mu := v.(*sync.Mutex)
	mu.Lock()
	return mu.Unlock
}

// jobDoc is a job as stored. Times are Unix µs, 0 for none.
type jobDoc struct {
	ID      string `bson:"_id"`
	Type    string `bson:"t"`
	Key     string `bson:"k"`
	Slot    string `bson:"ks"`
	Pri     int64  `bson:"pri"`
	NB      int64  `bson:"nb"`
	Ready   int64  `bson:"ready"`
	Payload []byte `bson:"p"`
	Attempt int64  `bson:"att"`
	Err     string `bson:"err"`
	Created int64  `bson:"c"`
	Owner   string `bson:"o"`
	Lease   int64  `bson:"lu"`
	Rerun   bool   `bson:"rr"`
	Dead    bool   `bson:"dead"`
	Failed  int64  `bson:"fa"`
}

// keySlot is the ks of a pending job holding key; idSlot that of every other job.
func keySlot(key string) string { return "k:" + key }
func idSlot(id string) string   { return "i:" + id }

func micros(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMicro()
}

func fromMicros(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMicro(v).UTC()
}

func (d *jobDoc) job() store.Job {
	j := store.Job{ID: d.ID, Type: d.Type, Key: d.Key, Priority: int(d.Pri), NotBefore: fromMicros(d.NB), Attempt: int(d.Attempt),
		LastError: d.Err, Created: fromMicros(d.Created), Owner: d.Owner, LeaseUntil: fromMicros(d.Lease), Rerun: d.Rerun, Dead: d.Dead,
		FailedAt: fromMicros(d.Failed)}
	if len(d.Payload) > 0 {
		j.Payload = d.Payload
	}
	return j
}

// claimSort is the claim order; the claim index serves it.
var claimSort = bson.D{{Key: "pri", Value: -1}, {Key: "ready", Value: 1}, {Key: "c", Value: 1}, {Key: fID, Value: 1}}

// isDuplicate reports a unique-index violation. FerretDB reports one caused by an update as an
// internal error carrying SQLite's message.
func isDuplicate(err error) bool {
	return mongo.IsDuplicateKeyError(err) || (err != nil && strings.Contains(err.Error(), "UNIQUE constraint failed"))
}

// findJob returns the job matching filter, or ok false.
func (s *Store) findJob(ctx context.Context, filter bson.D) (d jobDoc, ok bool, err error) {
	err = s.jobs().FindOne(ctx, filter).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return jobDoc{}, false, nil
	}
	return d, err == nil, err
}

// EnqueueJob implements store.Jobs: an insert, arbitrated by the unique ks index for keyed
// jobs; a loser coalesces into the pending job holding the key.
func (s *Store) EnqueueJob(ctx context.Context, j store.Job, now time.Time) (string, bool, error) {
	if j.Type == "" {
		return "", false, errors.New("mongo: enqueue job: no type")
	}
	defer s.jobLock(jobsCollection)()
	if j.Created.IsZero() {
		j.Created = now
	}
	if j.NotBefore.IsZero() {
		j.NotBefore = now
	}
	callerID := j.ID != ""
	if !callerID {
		j.ID = store.NewID()
	}
	d := jobDoc{ID: j.ID, Type: j.Type, Key: j.Key, Slot: idSlot(j.ID), Pri: int64(j.Priority), NB: micros(j.NotBefore), Ready: micros(j.NotBefore),
		Payload: nonNil(j.Payload), Created: micros(j.Created)}
	if j.Key != "" {
		d.Slot = keySlot(j.Key)
	}
	for attempt := range maxAttempts {
		_, err := s.jobs().InsertOne(ctx, d)
		if err == nil {
			return d.ID, false, nil
		}
		if !isDuplicate(err) {
			return "", false, fmt.Errorf("mongo: enqueue job %s: %w", j.Type, err)
		}
		if j.Key != "" {
			id, done, err := s.coalesce(ctx, j, now)
			if err != nil {
				return "", false, fmt.Errorf("mongo: enqueue job %s: %w", j.Type, err)
			}
			if done {
				return id, true, nil
			}
		}
		if j.Key == "" && !callerID { // an id collision, however unlikely: draw another
			d.ID = store.NewID()
			d.Slot = idSlot(d.ID)
			continue
		}
		if callerID {
			if _, taken, err := s.findJob(ctx, bson.D{{Key: fID, Value: d.ID}}); err != nil {
				return "", false, fmt.Errorf("mongo: enqueue job %s: %w", j.Type, err)
			} else if taken {
				return "", false, fmt.Errorf("mongo: enqueue job %s: id %s: %w", j.Type, d.ID, store.ErrDuplicate)
			}
		}
		// The holder of the key went (completed, dead-lettered) since the insert: try again.
		s.log.DebugContext(ctx, "mongo: enqueue lost a race, retrying", "type", j.Type, "attempt", attempt+1)
		if err := backoff(ctx, attempt); err != nil {
			return "", false, fmt.Errorf("mongo: enqueue job %s: %w", j.Type, err)
		}
	}
	return "", false, fmt.Errorf("mongo: enqueue job %s: %d concurrent writers won in a row: %w", j.Type, maxAttempts, store.ErrVersionConflict)
}

// coalesce merges an enqueue of j into the pending job holding j.Key; done is false if there is
// none (any more).
func (s *Store) coalesce(ctx context.Context, j store.Job, now time.Time) (id string, done bool, err error) {
	slot := keySlot(j.Key)
	h, found, err := s.findJob(ctx, bson.D{{Key: "ks", Value: slot}})
	if err != nil || !found {
		return "", false, err
	}
	var filter, update bson.D
	switch {
	case h.Owner == "": // waiting: the earlier NotBefore (ready follows it), the higher priority
		nb := micros(j.NotBefore)
		filter = bson.D{{Key: fID, Value: h.ID}, {Key: "ks", Value: slot}, {Key: "o", Value: ""}}
		update = bson.D{{Key: "$min", Value: bson.D{{Key: "nb", Value: nb}, {Key: "ready", Value: nb}}}, {Key: "$max", Value: bson.D{{Key: "pri", Value: int64(j.Priority)}}}}
	case !h.Rerun: // running: mark it, due from now once it completes
		filter = bson.D{{Key: fID, Value: h.ID}, {Key: "ks", Value: slot}, {Key: "o", Value: h.Owner}, {Key: "rr", Value: false}}
		update = bson.D{{Key: "$set", Value: bson.D{{Key: "rr", Value: true}, {Key: "nb", Value: micros(now)}}}, {Key: "$max", Value: bson.D{{Key: "pri", Value: int64(j.Priority)}}}}
	default: // running and marked already
		filter = bson.D{{Key: fID, Value: h.ID}, {Key: "ks", Value: slot}, {Key: "o", Value: h.Owner}, {Key: "rr", Value: true}}
		update = bson.D{{Key: "$max", Value: bson.D{{Key: "pri", Value: int64(j.Priority)}}}}
	}
	res, err := s.jobs().UpdateOne(ctx, filter, update)
	if err != nil {
		return "", false, err
	}
	if res.MatchedCount == 0 {
		// Claimed, completed or marked since the read: the caller tries again.
		return "", false, nil
	}
	return h.ID, true, nil
}

// ClaimJobs implements store.Jobs: one findOneAndUpdate per job, each atomic.
func (s *Store) ClaimJobs(ctx context.Context, owner string, max int, lease time.Duration, now time.Time) ([]store.Job, error) {
	if owner == "" || lease < store.Precision {
		// A lease shorter than the stored precision would end the instant it starts: the job
		// would match this very claim's filter again.
		return nil, fmt.Errorf("mongo: claim jobs: owner %q, lease %s: need an owner and a lease of at least %s", owner, lease, store.Precision)
	}
	if max <= 0 {
		return nil, ctx.Err()
	}
	defer s.jobLock(jobsCollection)()
	until := micros(now.Add(lease))
	filter := bson.D{{Key: "dead", Value: false}, {Key: "ready", Value: bson.D{{Key: "$lte", Value: micros(now)}}}}
	update := bson.D{{Key: "$set", Value: bson.D{{Key: "o", Value: owner}, {Key: "lu", Value: until}, {Key: "ready", Value: until}, {Key: "rr", Value: false}}}}
	opts := options.FindOneAndUpdate().SetSort(claimSort).SetReturnDocument(options.After)
	var out []store.Job
	for len(out) < max {
		var d jobDoc
		err := s.jobs().FindOneAndUpdate(ctx, filter, update, opts).Decode(&d)
		if errors.Is(err, mongo.ErrNoDocuments) {
			break
		}
		if err != nil {
			s.release(ctx, out, owner)
			return nil, fmt.Errorf("mongo: claim jobs: %w", err)
		}
		out = append(out, d.job())
	}
	return out, nil
}

// release hands back, best effort, the jobs a failed ClaimJobs had leased already, so that they
// wait in their place instead of sitting unrun until their lease expires. Called with the job
// lock held.
func (s *Store) release(ctx context.Context, js []store.Job, owner string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	for _, j := range js {
		nb := micros(j.NotBefore)
		_, _ = s.jobs().UpdateOne(ctx, heldBy(j.ID, owner), bson.D{{Key: "$set", Value: bson.D{
			{Key: "o", Value: ""}, {Key: "lu", Value: int64(0)}, {Key: "ready", Value: nb}}}})
	}
}

func leaseLost(op, id string) error {
	return fmt.Errorf("mongo: %s job %s: %w", op, id, store.ErrLeaseLost)
}

// heldBy selects the job while owner holds it.
func heldBy(id, owner string) bson.D {
	return bson.D{{Key: fID, Value: id}, {Key: "o", Value: owner}, {Key: "dead", Value: false}}
}

// RenewJob implements store.Jobs.
func (s *Store) RenewJob(ctx context.Context, id, owner string, lease time.Duration, now time.Time) error {
	if owner == "" {
		return leaseLost("renew", id)
	}
	if lease < store.Precision {
		return fmt.Errorf("mongo: renew job %s: lease %s: need at least %s", id, lease, store.Precision)
	}
	defer s.jobLock(jobsCollection)()
	until := micros(now.Add(lease))
	res, err := s.jobs().UpdateOne(ctx, heldBy(id, owner), bson.D{{Key: "$set", Value: bson.D{{Key: "lu", Value: until}, {Key: "ready", Value: until}}}})
	if err != nil {
		return fmt.Errorf("mongo: renew job %s: %w", id, err)
	}
	if res.MatchedCount == 0 {
		return leaseLost("renew", id)
	}
	return nil
}

// CompleteJob implements store.Jobs: a delete filtered on the owner and on no Rerun mark, or, for
// a marked job, an update filtered on the mark.
func (s *Store) CompleteJob(ctx context.Context, id, owner string) error {
	if owner == "" {
		return leaseLost("complete", id)
	}
	defer s.jobLock(jobsCollection)()
	for attempt := range maxAttempts {
		res, err := s.jobs().DeleteOne(ctx, append(heldBy(id, owner), bson.E{Key: "rr", Value: false}))
		if err != nil {
			return fmt.Errorf("mongo: complete job %s: %w", id, err)
		}
		if res.DeletedCount == 1 {
			return nil
		}
		d, found, err := s.findJob(ctx, heldBy(id, owner))
		if err != nil {
			return fmt.Errorf("mongo: complete job %s: %w", id, err)
		}
		if !found {
			return leaseLost("complete", id)
		}
		if d.Rerun {
			up, err := s.jobs().UpdateOne(ctx, append(heldBy(id, owner), bson.E{Key: "rr", Value: true}, bson.E{Key: "nb", Value: d.NB}),
				bson.D{{Key: "$set", Value: bson.D{{Key: "o", Value: ""}, {Key: "lu", Value: int64(0)}, {Key: "ready", Value: d.NB},
					{Key: "att", Value: int64(0)}, {Key: "err", Value: ""}, {Key: "rr", Value: false}}}})
			if err != nil {
				return fmt.Errorf("mongo: complete job %s: %w", id, err)
			}
			if up.MatchedCount == 1 {
				return nil
			}
		}
		if err := backoff(ctx, attempt); err != nil {
			return fmt.Errorf("mongo: complete job %s: %w", id, err)
		}
	}
	return fmt.Errorf("mongo: complete job %s: %d concurrent writers won in a row: %w", id, maxAttempts, store.ErrVersionConflict)
}

// FailJob implements store.Jobs: one update filtered on the owner. A dead letter gives up its
// key (ks becomes its id's).
func (s *Store) FailJob(ctx context.Context, id, owner string, f store.JobFailure) error {
	if owner == "" {
		return leaseLost("fail", id)
	}
	defer s.jobLock(jobsCollection)()
	set := bson.D{{Key: "err", Value: f.Error}, {Key: "o", Value: ""}, {Key: "lu", Value: int64(0)}}
	if f.Dead {
		at := f.At
		if at.IsZero() {
			at = time.Now()
		}
		set = append(set, bson.E{Key: "dead", Value: true}, bson.E{Key: "fa", Value: micros(at)}, bson.E{Key: "ks", Value: idSlot(id)})
	} else {
		retry := micros(retryAt(f))
		set = append(set, bson.E{Key: "nb", Value: retry}, bson.E{Key: "ready", Value: retry})
	}
	res, err := s.jobs().UpdateOne(ctx, heldBy(id, owner), bson.D{{Key: "$set", Value: set}, {Key: "$inc", Value: bson.D{{Key: "att", Value: int64(1)}}}})
	if err != nil {
		return fmt.Errorf("mongo: fail job %s: %w", id, err)
	}
	if res.MatchedCount == 0 {
		return leaseLost("fail", id)
	}
	return nil
}

// GetJob implements store.Jobs.
func (s *Store) GetJob(ctx context.Context, id string) (store.Job, error) {
	d, found, err := s.findJob(ctx, bson.D{{Key: fID, Value: id}})
	if err != nil {
		return store.Job{}, fmt.Errorf("mongo: get job %s: %w", id, err)
	}
	if !found {
		return store.Job{}, fmt.Errorf("mongo: get job %s: %w", id, store.ErrNotFound)
	}
	return d.job(), nil
}

// PendingJobs implements store.Jobs, reading the claim index in order.
func (s *Store) PendingJobs(ctx context.Context, limit int) ([]store.Job, error) {
	return s.listJobs(ctx, "pending", limit, false, claimSort)
}

// DeadJobs implements store.Jobs, reading the dead index in order.
func (s *Store) DeadJobs(ctx context.Context, limit int) ([]store.Job, error) {
	return s.listJobs(ctx, "dead", limit, true, bson.D{{Key: "fa", Value: -1}, {Key: fID, Value: 1}})
}

func (s *Store) listJobs(ctx context.Context, what string, limit int, dead bool, sort bson.D) ([]store.Job, error) {
	if limit <= 0 {
		return nil, ctx.Err()
	}
	cur, err := s.jobs().Find(ctx, bson.D{{Key: "dead", Value: dead}}, options.Find().SetSort(sort).SetLimit(int64(limit)))
	if err != nil {
		return nil, fmt.Errorf("mongo: list %s jobs: %w", what, err)
	}
	defer cur.Close(context.WithoutCancel(ctx))
	var out []store.Job
	for cur.Next(ctx) {
		var d jobDoc
		if err := cur.Decode(&d); err != nil {
			return nil, fmt.Errorf("mongo: list %s jobs: %w", what, err)
		}
		out = append(out, d.job())
	}
	if err := cur.Err(); err != nil {
		return nil, fmt.Errorf("mongo: list %s jobs: %w", what, err)
	}
	return out, nil
}

// RetryDeadJob implements store.Jobs: one update filtered on the dead letter, taking its key
// back through the unique ks index.
func (s *Store) RetryDeadJob(ctx context.Context, id string, now time.Time) error {
	defer s.jobLock(jobsCollection)()
	d, found, err := s.findJob(ctx, bson.D{{Key: fID, Value: id}, {Key: "dead", Value: true}})
	if err != nil {
		return fmt.Errorf("mongo: retry dead job %s: %w", id, err)
	}
	if !found {
		return fmt.Errorf("mongo: retry dead job %s: %w", id, store.ErrNotFound)
	}
	slot := idSlot(id)
	if d.Key != "" {
		slot = keySlot(d.Key)
		// Checked first because FerretDB reports the index violation of an update vaguely.
		if _, held, err := s.findJob(ctx, bson.D{{Key: "ks", Value: slot}}); err != nil {
			return fmt.Errorf("mongo: retry dead job %s: %w", id, err)
		} else if held {
			return fmt.Errorf("mongo: retry dead job %s: a pending job holds its key: %w", id, store.ErrDuplicate)
		}
	}
	nb := micros(now)
	res, err := s.jobs().UpdateOne(ctx, bson.D{{Key: fID, Value: id}, {Key: "dead", Value: true}}, bson.D{{Key: "$set", Value: bson.D{
		{Key: "dead", Value: false}, {Key: "fa", Value: int64(0)}, {Key: "att", Value: int64(0)}, {Key: "o", Value: ""}, {Key: "lu", Value: int64(0)},
		{Key: "rr", Value: false}, {Key: "nb", Value: nb}, {Key: "ready", Value: nb}, {Key: "ks", Value: slot},
	}}})
	if isDuplicate(err) {
		return fmt.Errorf("mongo: retry dead job %s: a pending job holds its key: %w", id, store.ErrDuplicate)
	}
	if err != nil {
		return fmt.Errorf("mongo: retry dead job %s: %w", id, err)
	}
	if res.MatchedCount == 0 {
		return fmt.Errorf("mongo: retry dead job %s: %w", id, store.ErrNotFound)
	}
	return nil
}

// JobStats implements store.Jobs with three counts (not one snapshot: an operator's view).
func (s *Store) JobStats(ctx context.Context, now time.Time) (store.JobStats, error) {
	t := micros(now)
	var st store.JobStats
	for _, c := range []struct {
		n      *int
		filter bson.D
	}{
		{&st.Waiting, bson.D{{Key: "dead", Value: false}, {Key: "$or", Value: bson.A{
			bson.D{{Key: "o", Value: ""}}, bson.D{{Key: "lu", Value: bson.D{{Key: "$lte", Value: t}}}},
		}}}},
		{&st.Running, bson.D{{Key: "dead", Value: false}, {Key: "o", Value: bson.D{{Key: "$ne", Value: ""}}}, {Key: "lu", Value: bson.D{{Key: "$gt", Value: t}}}}},
		{&st.Dead, bson.D{{Key: "dead", Value: true}}},
	} {
		n, err := s.jobs().CountDocuments(ctx, c.filter)
		if err != nil {
			return store.JobStats{}, fmt.Errorf("mongo: job stats: %w", err)
		}
		*c.n = int(n)
	}
	return st, nil
}

// coverageDoc is one stream's coverage; v is its version, the optimistic lock of
// UpdateCoverage.
type coverageDoc struct {
	ID        string        `bson:"_id"`
	Provider  string        `bson:"pv"`
	Patient   string        `bson:"pt"`
	Kind      string        `bson:"kd"`
	Intervals []intervalDoc `bson:"iv"`
	Cursor    string        `bson:"cur"`
	Updated   int64         `bson:"u"`
	Version   int64         `bson:"v"`
}

type intervalDoc struct {
	Start int64 `bson:"s"`
	End   int64 `bson:"e"`
}

// coverageID is an unambiguous _id for a stream: the components' lengths come first.
func coverageID(k store.CoverageKey) string {
	return strconv.Itoa(len(k.Provider)) + ":" + strconv.Itoa(len(k.Patient)) + ":" + k.Provider + k.Patient + k.Kind
}

func (d *coverageDoc) coverage() store.Coverage {
	c := store.Coverage{CoverageKey: store.CoverageKey{Provider: d.Provider, Patient: d.Patient, Kind: d.Kind}, Intervals: make([]store.Interval, len(d.Intervals)),
		Cursor: d.Cursor, Updated: fromMicros(d.Updated)}
	for i, iv := range d.Intervals {
		c.Intervals[i] = store.Interval{Start: time.UnixMicro(iv.Start).UTC(), End: time.UnixMicro(iv.End).UTC()}
	}
	return c
}

// Coverage implements store.Coverages.
func (s *Store) Coverage(ctx context.Context, provider, patient string) ([]store.Coverage, error) {
	cur, err := s.coverage().Find(ctx, bson.D{{Key: "pv", Value: provider}, {Key: "pt", Value: patient}}, options.Find().SetSort(bson.D{{Key: "kd", Value: 1}}))
	if err != nil {
		return nil, fmt.Errorf("mongo: coverage: %w", err)
	}
	defer cur.Close(context.WithoutCancel(ctx))
	out := []store.Coverage{}
	for cur.Next(ctx) {
		var d coverageDoc
		if err := cur.Decode(&d); err != nil {
			return nil, fmt.Errorf("mongo: coverage: %w", err)
		}
		out = append(out, d.coverage())
	}
	if err := cur.Err(); err != nil {
		return nil, fmt.Errorf("mongo: coverage: %w", err)
	}
	return out, nil
}

// UpdateCoverage implements store.Coverages with optimistic concurrency: the stored version is
// read, fn applied, and the result inserted (version 1) or replaced only if the version is
// unchanged; a lost race runs fn again on what the winner stored.
func (s *Store) UpdateCoverage(ctx context.Context, k store.CoverageKey, now time.Time, fn func(*store.Coverage) error) (store.Coverage, error) {
	id := coverageID(k)
	for attempt := range maxAttempts {
		c, done, err := s.updateCoverageAttempt(ctx, k, id, now, fn)
		if err != nil || done {
			return c, err
		}
		s.log.DebugContext(ctx, "mongo: coverage update lost a race, retrying", "attempt", attempt+1)
		if err := backoff(ctx, attempt); err != nil {
			return store.Coverage{}, fmt.Errorf("mongo: update coverage: %w", err)
		}
	}
	return store.Coverage{}, fmt.Errorf("mongo: update coverage: %d concurrent writers won in a row: %w", maxAttempts, store.ErrVersionConflict)
}

// updateCoverageAttempt is one optimistic try; done is false when another writer won.
func (s *Store) updateCoverageAttempt(ctx context.Context, k store.CoverageKey, id string, now time.Time, fn func(*store.Coverage) error) (store.Coverage, bool, error) {
	defer s.jobLock(coverageCollection)()
	var d coverageDoc
	err := s.coverage().FindOne(ctx, bson.D{{Key: fID, Value: id}}).Decode(&d)
	found := err == nil
	if err != nil && !errors.Is(err, mongo.ErrNoDocuments) {
		return store.Coverage{}, false, fmt.Errorf("mongo: update coverage: %w", err)
	}
	c := store.Coverage{CoverageKey: k}
	if found {
		c = d.coverage()
	}
	if err := fn(&c); err != nil {
		return store.Coverage{}, false, err
	}
	c.CoverageKey, c.Updated = k, now
	c = c.Normalized()
	nd := coverageDoc{ID: id, Provider: k.Provider, Patient: k.Patient, Kind: k.Kind, Intervals: make([]intervalDoc, len(c.Intervals)),
		Cursor: c.Cursor, Updated: micros(c.Updated), Version: d.Version + 1}
	for i, iv := range c.Intervals {
		nd.Intervals[i] = intervalDoc{Start: iv.Start.UnixMicro(), End: iv.End.UnixMicro()}
	}
	if !found {
		_, err := s.coverage().InsertOne(ctx, nd)
		if isDuplicate(err) {
			return store.Coverage{}, false, nil
		}
		if err != nil {
			return store.Coverage{}, false, fmt.Errorf("mongo: update coverage: %w", err)
		}
		return c, true, nil
	}
	res, err := s.coverage().ReplaceOne(ctx, bson.D{{Key: fID, Value: id}, {Key: fVersion, Value: d.Version}}, nd)
	if err != nil {
		return store.Coverage{}, false, fmt.Errorf("mongo: update coverage: %w", err)
	}
	return c, res.MatchedCount == 1, nil
}

// DeleteCoverage implements store.Coverages.
func (s *Store) DeleteCoverage(ctx context.Context, provider, patient string) error {
	defer s.jobLock(coverageCollection)()
	if _, err := s.coverage().DeleteMany(ctx, bson.D{{Key: "pv", Value: provider}, {Key: "pt", Value: patient}}); err != nil {
		return fmt.Errorf("mongo: delete coverage: %w", err)
	}
	return nil
}

// nonNil stores an empty payload for nil.
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// retryAt is when a failed job may run again: f.RetryAt, or at once (f.At, else the store's
// clock) when it is zero — never the zero time, which would put the job ahead of every job that
// became due before it.
func retryAt(f store.JobFailure) time.Time {
	switch {
	case !f.RetryAt.IsZero():
		return f.RetryAt
	case !f.At.IsZero():
		return f.At
	}
	return time.Now()
}
