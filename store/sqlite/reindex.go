package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/openhealthexchange/ohx/fhir/search"
)

// reindexBatch is how many resources one transaction of reindex indexes.
const reindexBatch = 2000

// reindex rebuilds the search index tables from the stored JSON when another indexer than this
// one (search.IndexVersion) made them: dropIndex finds a resource's rows by indexing its stored
// JSON again, so rows an earlier indexer made differently would otherwise outlive their
// resource's next version and keep matching. It runs before the store serves anything. The
// version is recorded last, so a rebuild cut short starts over at the next open. obs_clinical is
// not rebuilt: its keys are the code codings, patient and sort date, which no indexer change
// moves.
func (s *Store) reindex(ctx context.Context) error {
	var v int64
	err := s.w.QueryRowContext(ctx, `SELECT version FROM index_state`).Scan(&v)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		v = -1
	case err != nil:
		return fmt.Errorf("sqlite: read index version: %w", err)
	}
	if v == search.IndexVersion {
		return nil
	}
	start := time.Now()
	err = s.tx(ctx, func(tx *sql.Tx) error {
		for _, t := range indexTables {
			if _, err := tx.ExecContext(ctx, `DELETE FROM `+t.name); err != nil {
				return fmt.Errorf("sqlite: reindex: clear %s: %w", t.name, err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	indexed, skipped := 0, 0
	// Type by type (a seek for the next type), then id ranges of reindexBatch: each step is one
	// range of the primary key.
	for typ := ""; ; {
		if err := s.w.QueryRowContext(ctx, `SELECT type FROM resources WHERE type > ? ORDER BY type LIMIT 1`, typ).Scan(&typ); errors.Is(err, sql.ErrNoRows) {
			break
		} else if err != nil {
			return fmt.Errorf("sqlite: reindex: %w", err)
		}
		for after, more := "", true; more; {
			err := s.tx(ctx, func(tx *sql.Tx) error {
				rows, err := tx.QueryContext(ctx, `SELECT r.id, r.sort_date, `+jsonExpr+` FROM resources r WHERE r.type = ? AND r.id > ? AND r.deleted = 0
					ORDER BY r.id LIMIT ?`, typ, after, reindexBatch)
				if err != nil {
					return err
				}
				defer rows.Close()
				w := newWriteBuf()
				n := 0
				for rows.Next() {
					var id string
					var sortDate int64
					var js sql.NullString
					if err := rows.Scan(&id, &sortDate, &js); err != nil {
						return err
					}
					n++
					after = id
					idx, err := storedIndex(typ, []byte(js.String))
					if err != nil {
						// Readable still, but no longer searchable: the operator learns which.
						s.log.Warn("reindex: stored resource does not decode; it is left out of the index", "type", typ, "id", id, "err", err)
						skipped++
						continue
					}
					for _, e := range idx.Entries {
						if t, vals := indexRow(typ, id, sortDate, e); t != nil {
							w.add(t, vals...)
						}
					}
					indexed++
				}
				if err := rows.Err(); err != nil {
					return err
				}
				rows.Close()
				more = n == reindexBatch
				return s.flush(ctx, tx, w)
			})
			if err != nil {
				return fmt.Errorf("sqlite: reindex %s: %w", typ, err)
			}
		}
	}
	err = s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM index_state`); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO index_state (version) VALUES (?)`, search.IndexVersion)
		return err
	})
	if err != nil {
		return fmt.Errorf("sqlite: record index version: %w", err)
	}
	if v >= 0 || indexed > 0 {
		s.log.Info("search index rebuilt", "from_version", v, "version", search.IndexVersion, "resources", indexed, "skipped", skipped, "took", time.Since(start))
	}
	return nil
}
