package mongo

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/openhealthexchange/ohx/store"
)

// Budgets live in one collection: _id the budget's key, s the counted sub-windows, v a version
// for optimistic concurrency (a replace filtered on {_id, v} is atomic for one document on
// MongoDB), x when none of the sub-windows counts any more (Unix ms; expired documents are
// swept now and then and read as empty).

const budgetsCollection = "budgets"

type budgetDoc struct {
	ID      string          `bson:"_id"`
	Slots   []budgetSlotDoc `bson:"s"`
	Version int64           `bson:"v"`
	Exp     int64           `bson:"x"`
}

type budgetSlotDoc struct {
	Start int64 `bson:"s"`
	End   int64 `bson:"e"`
	Used  int64 `bson:"n"`
}

var (
	// budgetLocks holds the process-wide mutexes of budgetLock, by database.
	budgetLocks sync.Map
	// budgetWrites paces the sweeps of expired budgets.
	budgetWrites atomic.Int64
)

func (s *Store) budgets() *mongo.Collection { return s.db.Collection(budgetsCollection) }

// budgetLock serialises this process's budget updates of the database when the server is
// FerretDB, whose conditional replace is not atomic (lock.go), and does nothing on MongoDB.
func (s *Store) budgetLock() (unlock func()) {
	if !s.locks.enabled {
		return func() {}
	}
	v, _ := budgetLocks.LoadOrStore(s.db.Name(), new(sync.Mutex))
	mu := v.(*sync.Mutex)
	mu.Lock()
	return mu.Unlock
}

// TakeBudget implements store.Budgets with an optimistic read-modify-write of the budget's
// document, retried when another instance updated it in between.
func (s *Store) TakeBudget(ctx context.Context, key string, l store.BudgetLimit, n int, now time.Time) (store.BudgetGrant, error) {
	if err := l.Validate(); err != nil {
		return store.BudgetGrant{}, fmt.Errorf("mongo: take budget %s: %w", key, err)
	}
	for attempt := range maxAttempts {
		g, done, err := s.takeBudgetAttempt(ctx, key, l, n, now)
		if err != nil || done {
			return g, err
		}
		if err := backoff(ctx, attempt); err != nil {
			return store.BudgetGrant{}, fmt.Errorf("mongo: take budget %s: %w", key, err)
		}
	}
	return store.BudgetGrant{}, fmt.Errorf("mongo: take budget %s: %d concurrent writers won in a row: %w", key, maxAttempts, store.ErrVersionConflict)
}

// takeBudgetAttempt is one optimistic try; done is false when another writer won.
func (s *Store) takeBudgetAttempt(ctx context.Context, key string, l store.BudgetLimit, n int, now time.Time) (store.BudgetGrant, bool, error) {
	defer s.budgetLock()()
	var d budgetDoc
	err := s.budgets().FindOne(ctx, bson.D{{Key: "_id", Value: key}}).Decode(&d)
	found := err == nil
	if err != nil && !errors.Is(err, mongo.ErrNoDocuments) {
		return store.BudgetGrant{}, false, fmt.Errorf("mongo: take budget %s: %w", key, err)
	}
	slots := make([]store.BudgetSlot, len(d.Slots))
	for i, sd := range d.Slots {
		slots[i] = store.BudgetSlot{Start: sd.Start, End: sd.End, Used: int(sd.Used)}
	}
	g, kept, expires, err := store.TakeBudget(slots, l, n, now)
	if err != nil {
		return store.BudgetGrant{}, false, fmt.Errorf("mongo: take budget %s: %w", key, err)
	}
	if g.N == 0 && len(kept) == len(slots) {
		return g, true, nil // nothing granted, nothing dropped: no write
	}
	nd := budgetDoc{ID: key, Slots: make([]budgetSlotDoc, len(kept)), Version: d.Version + 1, Exp: expMillis(expires)}
	for i, k := range kept {
		nd.Slots[i] = budgetSlotDoc{Start: k.Start, End: k.End, Used: int64(k.Used)}
	}
	if !found {
		_, err := s.budgets().InsertOne(ctx, nd)
		if isDuplicate(err) {
			return store.BudgetGrant{}, false, nil
		}
		if err != nil {
			return store.BudgetGrant{}, false, fmt.Errorf("mongo: take budget %s: %w", key, err)
		}
		return g, true, nil
	}
	res, err := s.budgets().ReplaceOne(ctx, bson.D{{Key: "_id", Value: key}, {Key: "v", Value: d.Version}}, nd)
	if err != nil {
		return store.BudgetGrant{}, false, fmt.Errorf("mongo: take budget %s: %w", key, err)
	}
	if res.MatchedCount != 1 {
		return store.BudgetGrant{}, false, nil
	}
	s.sweepBudgets(ctx)
	return g, true, nil
}

// sweepBudgets deletes expired budgets now and then, so per-user budgets do not pile up. A
// budget updated after it expired has a new expiry and is not matched.
func (s *Store) sweepBudgets(ctx context.Context) {
	if budgetWrites.Add(1)%500 != 0 {
		return
	}
	_, err := s.budgets().DeleteMany(ctx, bson.D{{Key: "x", Value: bson.D{{Key: "$gt", Value: 0}, {Key: "$lte", Value: time.Now().UnixMilli()}}}})
	if err != nil {
		s.log.Warn("sweeping expired budgets failed", "err", err)
	}
}
