package sqlite

import (
	"sync"
	"sync/atomic"
)

// generations implements store.ChangeTracker: counters per (type, patient) and per type, bumped
// after each commit. A reader takes the counter before it reads, so a cache entry can only be
// stale if the counter has moved since.
type generations struct{ m sync.Map } // genKey → *atomic.Uint64

type genKey struct{ typ, patient string }

func (g *generations) get(k genKey) *atomic.Uint64 {
	if v, ok := g.m.Load(k); ok {
		return v.(*atomic.Uint64)
	}
	v, _ := g.m.LoadOrStore(k, new(atomic.Uint64))
	return v.(*atomic.Uint64)
}

// bump records committed writes of typ in the compartments of the given patients (old and new
// owner when a resource moves).
func (g *generations) bump(typ string, patients ...string) {
	g.get(genKey{typ, ""}).Add(1)
	for _, p := range patients {
		if p != "" {
			g.get(genKey{typ, p}).Add(1)
		}
	}
}

// Generation implements store.ChangeTracker.
func (s *Store) Generation(typ, patient string) uint64 {
	return s.gens.get(genKey{typ, patient}).Load()
}
