package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
)

// maxCachedStmts bounds the prepared-statement cache: search SQL varies with the shape of the
// query (number of clauses and values), not with the values, so a few hundred shapes cover real
// traffic; rarer shapes are prepared per use.
const maxCachedStmts = 512

// stmtCache keeps statements prepared once per pool. The SQLite driver would otherwise compile
// the SQL on every call, which costs as much as running a small search.
type stmtCache struct {
	db *sql.DB
	mu sync.RWMutex
	m  map[string]*sql.Stmt
	// pending holds writer SQL first seen inside a transaction. It cannot be prepared there: the
	// writer pool's only connection belongs to the transaction, so PrepareContext would wait for
	// it forever. It is prepared after the transaction ends.
	pending map[string]bool
}

func newStmtCache(db *sql.DB) *stmtCache {
	return &stmtCache{db: db, m: map[string]*sql.Stmt{}, pending: map[string]bool{}}
}

// cached returns a cached statement, or nil after noting the SQL for preparePending.
func (c *stmtCache) cached(query string) *sql.Stmt {
	c.mu.RLock()
	st := c.m[query]
	c.mu.RUnlock()
	if st == nil {
		c.mu.Lock()
		if len(c.m)+len(c.pending) < maxCachedStmts {
			c.pending[query] = true
		}
		c.mu.Unlock()
	}
	return st
}

// preparePending prepares the SQL noted by cached; call it with no transaction open.
func (c *stmtCache) preparePending(ctx context.Context) error {
	c.mu.Lock()
	qs := make([]string, 0, len(c.pending))
	for q := range c.pending {
		qs = append(qs, q)
	}
	c.pending = map[string]bool{}
	c.mu.Unlock()
	for _, q := range qs {
		st, err := c.db.PrepareContext(ctx, q)
		if err != nil {
			return fmt.Errorf("sqlite: prepare: %w", err)
		}
		c.mu.Lock()
		if _, dup := c.m[q]; dup {
			st.Close()
		} else {
			c.m[q] = st
		}
		c.mu.Unlock()
	}
	return nil
}

// get returns a prepared statement and a release function (a no-op for cached statements).
func (c *stmtCache) get(ctx context.Context, query string) (*sql.Stmt, func(), error) {
	c.mu.RLock()
	st, ok := c.m[query]
	c.mu.RUnlock()
	if ok {
		return st, func() {}, nil
	}
	st, err := c.db.PrepareContext(ctx, query)
	if err != nil {
		return nil, nil, fmt.Errorf("sqlite: prepare: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.m[query]; ok {
		st.Close()
		return old, func() {}, nil
	}
	if len(c.m) >= maxCachedStmts {
		return st, func() { st.Close() }, nil
	}
	c.m[query] = st
	return st, func() {}, nil
}

func (c *stmtCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, st := range c.m {
		st.Close()
	}
	c.m = map[string]*sql.Stmt{}
}

// query runs a cached read statement.
func (s *Store) query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	st, release, err := s.rstmts.get(ctx, query)
	if err != nil {
		return nil, err
	}
	defer release()
	return st.QueryContext(ctx, args...)
}

// txExec runs a write statement inside tx, prepared once it has been seen.
func (s *Store) txExec(ctx context.Context, tx *sql.Tx, query string, args ...any) (sql.Result, error) {
	if st := s.wstmts.cached(query); st != nil {
		return tx.StmtContext(ctx, st).ExecContext(ctx, args...)
	}
	return tx.ExecContext(ctx, query, args...)
}

// txQuery runs a statement returning rows inside tx, prepared once it has been seen.
func (s *Store) txQuery(ctx context.Context, tx *sql.Tx, query string, args ...any) (*sql.Rows, error) {
	if st := s.wstmts.cached(query); st != nil {
		return tx.StmtContext(ctx, st).QueryContext(ctx, args...)
	}
	return tx.QueryContext(ctx, query, args...)
}

// queryIn runs a cached query inside tx, or on the read pool when tx is nil.
func (s *Store) queryIn(ctx context.Context, tx *sql.Tx, query string, args ...any) (*sql.Rows, error) {
	if tx != nil {
		return s.txQuery(ctx, tx, query, args...)
	}
	return s.query(ctx, query, args...)
}
