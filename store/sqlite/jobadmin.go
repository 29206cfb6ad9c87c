package sqlite

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/openhealthexchange/ohx/store"
)

// DiscardDeadJob implements store.Jobs: one DELETE filtered on the dead flag, in the write
// transaction, so a job retried (dead = 0) by another handle just before is left alone.
func (s *Store) DiscardDeadJob(ctx context.Context, id string) error {
	err := s.q.tx(ctx, func(tx *sql.Tx) error {
		n, err := affected(s.q.txExec(ctx, tx, `DELETE FROM jobs WHERE id = ? AND dead = 1`, id))
		if err != nil {
			return err
		}
		if n == 0 {
			return store.ErrNotFound
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sqlite: discard dead job %s: %w", id, err)
	}
	return nil
}
