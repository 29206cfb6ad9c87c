package storetest

import (
	"context"
	"fmt"

	"github.com/openhealthexchange/ohx/store"
)

func (m *memStore) DiscardDeadJob(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memstore: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	j, ok := m.jobs[id]
	if !ok || !j.Dead {
		return fmt.Errorf("memstore: dead job %s: %w", id, store.ErrNotFound)
	}
	delete(m.jobs, id)
	return nil
}
