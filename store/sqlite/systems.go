package sqlite

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/openhealthexchange/ohx/fhir/search"
)

// resolve prepares q for plan: chains become plain clauses (resolveChains) and tokens without
// a system get the stored systems (resolveSystems).
func (s *Store) resolve(ctx context.Context, q *search.Query) (*search.Query, error) {
	q, err := s.resolveChains(ctx, q)
	if err != nil {
		return nil, err
	}
	return s.resolveSystems(ctx, q)
}

// maxSystems bounds the systems a token value without one is expanded to; a code stored under
// more stays a match on the code alone.
const maxSystems = 16

// resolveSystems returns q with each token value that names no system ("code" rather than
// "system|code") replaced by one value per system the code is stored under, an equivalent
// filter. idx_token's primary key is (type, col, code, system, sort_date, id): with the system named, a
// correlated filter on the hot path (inIndex) is one seek per row, where the code alone reads
// every row of that code per row (a category). A lone system also makes a code clause the hot
// path's (plan).
func (s *Store) resolveSystems(ctx context.Context, q *search.Query) (*search.Query, error) {
	var out *search.Query
	for i, c := range q.Clauses {
		if c.Chain != nil || c.Param.Type != search.Token || (c.Modifier != "" && c.Modifier != "not") ||
			!slices.ContainsFunc(c.Values, func(v search.Value) bool { return v.AnySystem && !v.AnyCode }) {
			continue
		}
		var vals []search.Value
		expanded := false
		for _, v := range c.Values {
			if !v.AnySystem || v.AnyCode {
				vals = append(vals, v)
				continue
			}
			systems, err := s.tokenSystems(ctx, q.Type, c.Param.Columns, v.Code)
			if err != nil {
				return nil, err
			}
			if len(systems) == 0 || len(systems) > maxSystems {
				vals = append(vals, v) // nothing to match, or too many to list: left as it was
				continue
			}
			for _, sys := range systems {
				w := v
				w.System, w.AnySystem = sys, false
				vals = append(vals, w)
			}
			expanded = true
		}
		if !expanded {
			continue
		}
		if out == nil {
			cp := *q
			cp.Clauses = slices.Clone(q.Clauses)
			out = &cp
		}
		out.Clauses[i].Values = vals
	}
	if out == nil {
		return q, nil
	}
	return out, nil
}

// systemCache remembers the systems of recently searched codes, valid while the type's write
// generation has not moved.
type systemCache struct {
	mu sync.Mutex
	m  map[string]cachedSystems
}

type cachedSystems struct {
	gen     uint64
	systems []string
}

// maxCachedCodes bounds the cache: searches name arbitrary codes.
const maxCachedCodes = 4096

// The steps of tokenSystems: the least system of a code, then the next one after a system.
const (
	firstSystemSQL = `SELECT system FROM idx_token WHERE type = ? AND col = ? AND code = ? ORDER BY system LIMIT 1`
	nextSystemSQL  = `SELECT system FROM idx_token WHERE type = ? AND col = ? AND code = ? AND system > ? ORDER BY system LIMIT 1`
)

// tokenSystems lists the distinct systems of code in the columns cols of typ (up to
// maxSystems+1), one seek per system: SQLite does not skip-scan the primary key by itself
// without ANALYZE statistics (https://www.sqlite.org/optoverview.html#skipscan).
func (s *Store) tokenSystems(ctx context.Context, typ string, cols []string, code string) ([]string, error) {
	key := typ + "\x00" + strings.Join(cols, ",") + "\x00" + code
	gen := s.Generation(typ, "") // before the read: a write committed after it moves the counter
	s.systems.mu.Lock()
	c, ok := s.systems.m[key]
	s.systems.mu.Unlock()
	if ok && c.gen == gen {
		return c.systems, nil
	}
	var systems []string
	for _, col := range cols {
		sys, ok, err := s.firstString(ctx, firstSystemSQL, typ, col, code)
		for ; err == nil && ok && len(systems) <= maxSystems; sys, ok, err = s.firstString(ctx, nextSystemSQL, typ, col, code, sys) {
			if !slices.Contains(systems, sys) {
				systems = append(systems, sys)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("sqlite: systems of %s %s: %w", typ, col, err)
		}
	}
	slices.Sort(systems)
	s.systems.mu.Lock()
	if s.systems.m == nil || len(s.systems.m) >= maxCachedCodes {
		s.systems.m = map[string]cachedSystems{}
	}
	s.systems.m[key] = cachedSystems{gen: gen, systems: systems}
	s.systems.mu.Unlock()
	return systems, nil
}

// firstString runs a query for one string on the read pool; ok is false when it finds no row.
func (s *Store) firstString(ctx context.Context, query string, args ...any) (string, bool, error) {
	rows, err := s.query(ctx, query, args...)
	if err != nil {
		return "", false, err
	}
	defer rows.Close()
	if !rows.Next() {
		return "", false, rows.Err()
	}
	var v string
	if err := rows.Scan(&v); err != nil {
		return "", false, err
	}
	return v, true, rows.Close()
}
