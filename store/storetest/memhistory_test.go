package storetest

import (
	"context"
	"fmt"
	"slices"

	"github.com/openhealthexchange/ohx/store"
)

// keepPrior moves the current version of key, about to be replaced by version next, into the
// history and prunes what the retention no longer keeps. The caller holds m.mu.
func (m *memStore) keepPrior(key string, next int64) {
	old, ok := m.res[key]
	if !ok {
		return
	}
	if m.hist == nil {
		m.hist = map[string][]*memRes{}
	}
	h := append(m.hist[key], old)
	if m.keep > 0 {
		h = slices.DeleteFunc(h, func(r *memRes) bool { return r.version <= next-int64(m.keep) })
	}
	m.hist[key] = h
}

func (m *memStore) versionEntry(r *memRes) store.Entry {
	e := m.entry(r)
	if r.deleted {
		e.JSON = nil
	}
	return e
}

func (m *memStore) ReadVersion(ctx context.Context, typ, id string, version int64) (store.Entry, error) {
	if err := ctx.Err(); err != nil {
		return store.Entry{}, fmt.Errorf("memstore: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	cur, ok := m.res[typ+"/"+id]
	if !ok {
		return store.Entry{}, store.ErrNotFound
	}
	for _, r := range append([]*memRes{cur}, m.hist[typ+"/"+id]...) {
		if r.version != version {
			continue
		}
		if r.deleted {
			return m.versionEntry(r), store.ErrDeleted
		}
		return m.entry(r), nil
	}
	return store.Entry{}, store.ErrNotFound
}

func (m *memStore) History(ctx context.Context, q store.HistoryQuery) ([]store.Entry, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("memstore: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	cur, ok := m.res[q.Type+"/"+q.ID]
	if !ok {
		return nil, store.ErrNotFound
	}
	var out []store.Entry
	prior := slices.Clone(m.hist[q.Type+"/"+q.ID])
	slices.Reverse(prior)
	all := append([]*memRes{cur}, prior...)
	for _, r := range all {
		switch {
		case q.Before > 0 && r.version >= q.Before,
			!q.Since.IsZero() && r.lastUpdated.Before(q.Since),
			!q.Until.IsZero() && !r.lastUpdated.Before(q.Until):
			continue
		}
		if len(out) == max(q.Count, 1) {
			break
		}
		out = append(out, m.versionEntry(r))
	}
	return out, nil
}

func (m *memStore) PurgeHistory(ctx context.Context, typ, id string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memstore: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.res[typ+"/"+id]; !ok {
		return store.ErrNotFound
	}
	delete(m.hist, typ+"/"+id)
	return nil
}
