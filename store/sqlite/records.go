package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/openhealthexchange/ohx/store"
)

// sweepEvery is how many record writes pass between sweeps of expired records.
const sweepEvery = 500

var recordWrites atomic.Int64

func expiresAt(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMicro()
}

// live is the SQL condition for a record that has not expired.
const live = `(expires = 0 OR expires > ?)`

// sweep deletes expired records now and then, so replay caches and codes do not pile up.
func (s *Store) sweep(ctx context.Context, tx *sql.Tx) error {
	if recordWrites.Add(1)%sweepEvery != 0 {
		return nil
	}
	_, err := s.txExec(ctx, tx, `DELETE FROM records WHERE expires > 0 AND expires <= ?`, time.Now().UnixMicro())
	return err
}

// PutRecord implements store.Records.
func (s *Store) PutRecord(ctx context.Context, kind, id string, doc []byte, expires time.Time) error {
	doc = nonNil(doc)
	return s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := s.txExec(ctx, tx, `INSERT INTO records (kind, id, doc, expires) VALUES (?, ?, ?, ?)
			ON CONFLICT (kind, id) DO UPDATE SET doc = excluded.doc, expires = excluded.expires`, kind, id, doc, expiresAt(expires)); err != nil {
			return fmt.Errorf("sqlite: put record %s: %w", kind, err)
		}
		return s.sweep(ctx, tx)
	})
}

// CreateRecord implements store.Records. The write transaction makes check and insert atomic.
func (s *Store) CreateRecord(ctx context.Context, kind, id string, doc []byte, expires time.Time) error {
	doc = nonNil(doc)
	return s.tx(ctx, func(tx *sql.Tx) error {
		now := time.Now().UnixMicro()
		res, err := s.txExec(ctx, tx, `INSERT INTO records (kind, id, doc, expires) VALUES (?, ?, ?, ?)
			ON CONFLICT (kind, id) DO UPDATE SET doc = excluded.doc, expires = excluded.expires
			WHERE records.expires > 0 AND records.expires <= ?`, kind, id, doc, expiresAt(expires), now)
		if err != nil {
			return fmt.Errorf("sqlite: create record %s: %w", kind, err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("sqlite: create record %s: %w", kind, err)
		} else if n == 0 {
			return fmt.Errorf("sqlite: create record %s: %w", kind, store.ErrDuplicate)
		}
		return s.sweep(ctx, tx)
	})
}

// GetRecord implements store.Records.
func (s *Store) GetRecord(ctx context.Context, kind, id string) ([]byte, error) {
	rows, err := s.query(ctx, `SELECT doc FROM records WHERE kind = ? AND id = ? AND `+live, kind, id, time.Now().UnixMicro())
	if err != nil {
		return nil, fmt.Errorf("sqlite: get record %s: %w", kind, err)
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("sqlite: get record %s: %w", kind, err)
		}
		return nil, fmt.Errorf("sqlite: get record %s: %w", kind, store.ErrNotFound)
	}
	var doc []byte
	if err := rows.Scan(&doc); err != nil {
		return nil, fmt.Errorf("sqlite: get record %s: %w", kind, err)
	}
	return doc, nil
}

// TakeRecord implements store.Records with DELETE … RETURNING: one statement, so atomic.
func (s *Store) TakeRecord(ctx context.Context, kind, id string) ([]byte, error) {
	var doc []byte
	err := s.tx(ctx, func(tx *sql.Tx) error {
		rows, err := s.txQuery(ctx, tx, `DELETE FROM records WHERE kind = ? AND id = ? AND `+live+` RETURNING doc`, kind, id, time.Now().UnixMicro())
		if err != nil {
			return fmt.Errorf("sqlite: take record %s: %w", kind, err)
		}
		defer rows.Close()
		if !rows.Next() {
			if err := rows.Err(); err != nil {
				return fmt.Errorf("sqlite: take record %s: %w", kind, err)
			}
			return fmt.Errorf("sqlite: take record %s: %w", kind, store.ErrNotFound)
		}
		if err := rows.Scan(&doc); err != nil {
			return fmt.Errorf("sqlite: take record %s: %w", kind, err)
		}
		return rows.Close()
	})
	if err != nil {
		return nil, err
	}
	return doc, nil
}

// DeleteRecord implements store.Records.
func (s *Store) DeleteRecord(ctx context.Context, kind, id string) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := s.txExec(ctx, tx, `DELETE FROM records WHERE kind = ? AND id = ?`, kind, id); err != nil {
			return fmt.Errorf("sqlite: delete record %s: %w", kind, err)
		}
		return nil
	})
}

// ListRecords implements store.Records.
func (s *Store) ListRecords(ctx context.Context, kind string) ([]store.Record, error) {
	rows, err := s.query(ctx, `SELECT id, doc, expires FROM records WHERE kind = ? AND `+live+` ORDER BY id`, kind, time.Now().UnixMicro())
	if err != nil {
		return nil, fmt.Errorf("sqlite: list records %s: %w", kind, err)
	}
	defer rows.Close()
	var out []store.Record
	for rows.Next() {
		r := store.Record{Kind: kind}
		var exp int64
		if err := rows.Scan(&r.ID, &r.Doc, &exp); err != nil {
			return nil, fmt.Errorf("sqlite: list records %s: %w", kind, err)
		}
		if exp > 0 {
			r.Expires = time.UnixMicro(exp).UTC()
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("sqlite: list records %s: %w", kind, err)
	}
	return out, nil
}

// nonNil stores an empty document for nil: leases and markers carry no content.
func nonNil(doc []byte) []byte {
	if doc == nil {
		return []byte{}
	}
	return doc
}
