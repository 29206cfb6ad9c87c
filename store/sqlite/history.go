package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/store"
)

// Version history. The resources row is always the current version; the history table holds
// the prior ones, unique on (type, id, version), with the JSON exactly as it was served (NULL for
// a deletion). A write copies the row it replaces into history in the same transaction, so the
// two never disagree. A create copies nothing, which keeps the ingest path (bulk upserts of new
// Observations) at one row per resource and table, as before history existed; a changed upsert
// appends its copies at the end of the rowid table, so a batch dirties a few pages of JSON
// rather than one per resource.

var tblHistory = table{name: "history", cols: []string{"type", "id", "version", "last_updated", "json"}, verb: "INSERT OR IGNORE"}

// keepPrior buffers the copy of cur, the version a write is about to replace, into history and
// prunes the versions the retention no longer keeps. The caller flushes w before committing.
func (s *Store) keepPrior(ctx context.Context, tx *sql.Tx, w *writeBuf, typ, id string, cur current) error {
	if !cur.exists {
		return nil
	}
	if s.keep != 1 {
		var js any // NULL: a deletion
		if !cur.deleted {
			js = string(cur.json)
		}
		w.add(&tblHistory, typ, id, cur.version, cur.lastUpdated, js)
	}
	// After the write the N newest versions are next, next-1, …, next-N+1; the buffered copy of
	// cur (next-1) is among them whenever it is written (N ≥ 2), so this never deletes it.
	if next := cur.version + 1; s.keep > 0 && next > int64(s.keep) {
		if _, err := s.txExec(ctx, tx, `DELETE FROM history WHERE type = ? AND id = ? AND version <= ?`, typ, id, next-int64(s.keep)); err != nil {
			return fmt.Errorf("sqlite: prune history of %s/%s: %w", typ, id, err)
		}
	}
	return nil
}

// ReadVersion implements store.Store.
func (s *Store) ReadVersion(ctx context.Context, typ, id string, version int64) (store.Entry, error) {
	cur, err := s.lookup(ctx, nil, typ, id)
	if err != nil {
		return store.Entry{}, err
	}
	if !cur.exists || version < 1 || version > cur.version {
		return store.Entry{}, fmt.Errorf("sqlite: read %s/%s version %d: %w", typ, id, version, store.ErrNotFound)
	}
	e := store.Entry{Type: typ, ID: id, VersionID: version}
	var js []byte
	if version == cur.version {
		e.LastUpdated, js = time.UnixMicro(cur.lastUpdated).UTC(), cur.json
		if cur.deleted {
			js = nil
		}
	} else {
		var lu int64
		err := s.r.QueryRowContext(ctx, `SELECT last_updated, json FROM history WHERE type = ? AND id = ? AND version = ?`, typ, id, version).Scan(&lu, &js)
		if errors.Is(err, sql.ErrNoRows) {
			return store.Entry{}, fmt.Errorf("sqlite: read %s/%s version %d: %w", typ, id, version, store.ErrNotFound)
		}
		if err != nil {
			return store.Entry{}, fmt.Errorf("sqlite: read %s/%s version %d: %w", typ, id, version, err)
		}
		e.LastUpdated = time.UnixMicro(lu).UTC()
	}
	if js == nil {
		return e, fmt.Errorf("sqlite: read %s/%s version %d: %w", typ, id, version, store.ErrDeleted)
	}
	e.JSON = js
	return e, nil
}

// History implements store.Store. One statement over the current row and the history rows
// reads one snapshot, so a concurrent write can neither duplicate nor drop a version.
func (s *Store) History(ctx context.Context, q store.HistoryQuery) ([]store.Entry, error) {
	before, since, until := q.Before, fhir.MinTime, fhir.MaxTime
	if before <= 0 {
		before = math.MaxInt64
	}
	if !q.Since.IsZero() {
		since = q.Since.UnixMicro()
	}
	if !q.Until.IsZero() {
		until = q.Until.UnixMicro()
	}
	const sel = `SELECT r.version, r.last_updated, %s FROM %s r WHERE r.type = ?1 AND r.id = ?2 AND r.version < ?3 AND r.last_updated >= ?4 AND r.last_updated < ?5`
	rows, err := s.query(ctx, fmt.Sprintf(sel, jsonExpr, "resources")+" UNION ALL "+fmt.Sprintf(sel, "r.json", "history")+" ORDER BY 1 DESC LIMIT ?6",
		q.Type, q.ID, before, since, until, max(q.Count, 1))
	if err != nil {
		return nil, fmt.Errorf("sqlite: history of %s/%s: %w", q.Type, q.ID, err)
	}
	defer rows.Close()
	var out []store.Entry
	for rows.Next() {
		e := store.Entry{Type: q.Type, ID: q.ID}
		var lu int64
		if err := rows.Scan(&e.VersionID, &lu, &e.JSON); err != nil {
			return nil, fmt.Errorf("sqlite: history of %s/%s: %w", q.Type, q.ID, err)
		}
		e.LastUpdated = time.UnixMicro(lu).UTC()
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: history of %s/%s: %w", q.Type, q.ID, err)
	}
	if len(out) == 0 {
		// Nothing selected: an unknown resource, or filters that exclude every version.
		cur, err := s.lookup(ctx, nil, q.Type, q.ID)
		if err != nil {
			return nil, err
		}
		if !cur.exists {
			return nil, fmt.Errorf("sqlite: history of %s/%s: %w", q.Type, q.ID, store.ErrNotFound)
		}
	}
	return out, nil
}

// PurgeHistory implements store.Store.
func (s *Store) PurgeHistory(ctx context.Context, typ, id string) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		cur, err := s.lookup(ctx, tx, typ, id)
		if err != nil {
			return err
		}
		if !cur.exists {
			return fmt.Errorf("sqlite: purge history of %s/%s: %w", typ, id, store.ErrNotFound)
		}
		if _, err := s.txExec(ctx, tx, `DELETE FROM history WHERE type = ? AND id = ?`, typ, id); err != nil {
			return fmt.Errorf("sqlite: purge history of %s/%s: %w", typ, id, err)
		}
		return nil
	})
}
