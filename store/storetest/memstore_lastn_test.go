package storetest

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	"github.com/openhealthexchange/ohx/fhir/search"
	"github.com/openhealthexchange/ohx/store"
)

// LastN is store.Store.LastN by its definition: every live Observation matching q, grouped by
// each coding it carries (or by the named codings), newest first, n per group.
func (m *memStore) LastN(ctx context.Context, q *search.Query, n int) ([]store.CodeGroup, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("memstore: %w", err)
	}
	lq, err := store.SplitLastN(q)
	if err != nil {
		return nil, fmt.Errorf("memstore: lastn: %w", err)
	}
	if n <= 0 {
		return nil, fmt.Errorf("memstore: lastn: n = %d", n)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	resolve := func(typ, id string) (search.Index, bool) { // chained clauses decide on their targets
		r, ok := m.res[typ+"/"+id]
		if !ok || r.deleted {
			return search.Index{}, false
		}
		return r.idx, true
	}
	groups := map[store.Coding][]*memRes{}
	for _, r := range m.res {
		if r.typ != "Observation" || r.deleted || !search.MatchesWith(q, r.id, r.lastUpdated.UnixMicro(), r.idx, resolve) {
			continue
		}
		seen := map[store.Coding]bool{}
		for _, e := range r.idx.Entries {
			c := store.Coding{System: e.System, Code: e.Code}
			if e.Column != "code" || e.Type != search.Token || seen[c] || (lq.Named != nil && !slices.Contains(lq.Named, c)) {
				continue
			}
			seen[c] = true
			groups[c] = append(groups[c], r)
		}
	}
	var out []store.CodeGroup
	for c, rs := range groups {
		slices.SortFunc(rs, func(a, b *memRes) int { // _sort=-date: date, then id, descending
			return -cmp.Or(cmp.Compare(a.idx.SortDate, b.idx.SortDate), cmp.Compare(a.id, b.id))
		})
		g := store.CodeGroup{Coding: c}
		for _, r := range rs[:min(n, len(rs))] {
			g.Entries = append(g.Entries, m.entry(r))
		}
		out = append(out, g)
	}
	slices.SortFunc(out, func(a, b store.CodeGroup) int {
		return store.CompareCoding(a.Coding, b.Coding)
	})
	return out, nil
}
