package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/openhealthexchange/ohx/store"
)

// budgetKind is the records kind holding the shared rate-limit budgets: one record per budget,
// its document the counted sub-windows as JSON [[start, end, used], …] (Unix ns), expiring
// when none of them counts any more. The write transaction (BEGIN IMMEDIATE, see Open) makes the
// read-modify-write atomic across every connection to the file, other processes included.
const budgetKind = "ohx-budget"

// TakeBudget implements store.Budgets.
func (s *Store) TakeBudget(ctx context.Context, key string, l store.BudgetLimit, n int, now time.Time) (store.BudgetGrant, error) {
	if err := l.Validate(); err != nil {
		return store.BudgetGrant{}, fmt.Errorf("sqlite: take budget %s: %w", key, err)
	}
	var g store.BudgetGrant
	err := s.tx(ctx, func(tx *sql.Tx) error {
		slots, err := s.budgetSlots(ctx, tx, key)
		if err != nil {
			return err
		}
		var kept []store.BudgetSlot
		var expires time.Time
		g, kept, expires, err = store.TakeBudget(slots, l, n, now)
		if err != nil {
			return fmt.Errorf("sqlite: take budget %s: %w", key, err)
		}
		if g.N == 0 && len(kept) == len(slots) {
			return nil // nothing granted, nothing dropped: no write
		}
		doc, err := encodeBudget(kept)
		if err != nil {
			return fmt.Errorf("sqlite: take budget %s: %w", key, err)
		}
		if _, err := s.txExec(ctx, tx, `INSERT INTO records (kind, id, doc, expires) VALUES (?, ?, ?, ?)
			ON CONFLICT (kind, id) DO UPDATE SET doc = excluded.doc, expires = excluded.expires`,
			budgetKind, key, doc, expiresAt(expires)); err != nil {
			return fmt.Errorf("sqlite: take budget %s: %w", key, err)
		}
		return s.sweep(ctx, tx)
	})
	if err != nil {
		return store.BudgetGrant{}, err
	}
	return g, nil
}

// budgetSlots reads a budget's stored sub-windows inside the write transaction. An expired
// record holds none that still count, so it is read as well: TakeBudget drops what is stale.
func (s *Store) budgetSlots(ctx context.Context, tx *sql.Tx, key string) ([]store.BudgetSlot, error) {
	rows, err := s.txQuery(ctx, tx, `SELECT doc FROM records WHERE kind = ? AND id = ?`, budgetKind, key)
	if err != nil {
		return nil, fmt.Errorf("sqlite: take budget %s: %w", key, err)
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("sqlite: take budget %s: %w", key, err)
		}
		return nil, nil
	}
	var doc []byte
	if err := rows.Scan(&doc); err != nil {
		return nil, fmt.Errorf("sqlite: take budget %s: %w", key, err)
	}
	slots, err := decodeBudget(doc)
	if err != nil {
		// A record we cannot read must not turn into an unlimited budget.
		return nil, fmt.Errorf("sqlite: take budget %s: stored budget: %w", key, err)
	}
	return slots, rows.Close()
}

func encodeBudget(slots []store.BudgetSlot) ([]byte, error) {
	a := make([][3]int64, len(slots))
	for i, s := range slots {
		a[i] = [3]int64{s.Start, s.End, int64(s.Used)}
	}
	return json.Marshal(a)
}

func decodeBudget(doc []byte) ([]store.BudgetSlot, error) {
	if len(doc) == 0 {
		return nil, nil
	}
	var a [][3]int64
	if err := json.Unmarshal(doc, &a); err != nil {
		return nil, err
	}
	slots := make([]store.BudgetSlot, len(a))
	for i, v := range a {
		slots[i] = store.BudgetSlot{Start: v[0], End: v[1], Used: int(v[2])}
	}
	return slots, nil
}
