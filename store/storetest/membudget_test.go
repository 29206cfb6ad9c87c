package storetest

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/openhealthexchange/ohx/store"
)

// TakeBudget implements store.Budgets on the memStore's records, under its lock.
func (m *memStore) TakeBudget(ctx context.Context, key string, l store.BudgetLimit, n int, now time.Time) (store.BudgetGrant, error) {
	if err := ctx.Err(); err != nil {
		return store.BudgetGrant{}, fmt.Errorf("memstore: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var slots []store.BudgetSlot
	if r, ok := m.recs["ohx-budget\x00"+key]; ok {
		if err := json.Unmarshal(r.Doc, &slots); err != nil {
			return store.BudgetGrant{}, fmt.Errorf("memstore: take budget: %w", err)
		}
	}
	g, kept, expires, err := store.TakeBudget(slots, l, n, now)
	if err != nil {
		return store.BudgetGrant{}, fmt.Errorf("memstore: take budget: %w", err)
	}
	doc, err := json.Marshal(kept)
	if err != nil {
		return store.BudgetGrant{}, fmt.Errorf("memstore: take budget: %w", err)
	}
	m.recs["ohx-budget\x00"+key] = store.Record{Kind: "ohx-budget", ID: key, Doc: doc, Expires: expires}
	return g, nil
}

// TestBudgetsMemStore runs the budget checks against the in-memory reference store, one handle
// standing for both in the shared checks.
func TestBudgetsMemStore(t *testing.T) {
	RunBudgets(t, func(t testing.TB) store.Budgets { return newMemStore() })
	RunBudgetsShared(t, func(t testing.TB) (store.Budgets, store.Budgets) { s := newMemStore(); return s, s })
}
