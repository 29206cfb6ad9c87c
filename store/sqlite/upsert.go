package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/fhir/search"
	"github.com/openhealthexchange/ohx/store"
)

// The bulk upsert path (a sync job writes a vendor page, thousands of resources, per call). Two
// things make it cheaper than a loop of single upserts:
//   - the stored state of the whole batch is read up front, a few hundred identifiers or ids per
//     statement (prefetch), instead of two statements per resource;
//   - each resource is encoded and indexed (store.Prepare), and its rows made (rowsOf), on a
//     goroutine of its own, ahead of the loop that writes, so that on a machine with a second
//     core that work overlaps the SQLite work; the buffered rows are flushed every flushEvery
//     resources, so that both run during the whole batch.
//
// A resource whose identifier or id an earlier resource of the same batch wrote is matched the
// slow way, after a flush, exactly as before: the prefetched state predates the batch.

const (
	// prefetchChunk bounds the values of one IN list (SQLite allows 32,766 host parameters,
	// https://www.sqlite.org/limits.html#max_variable_number); chunks come in powers of two so
	// that a few prepared statements serve every batch.
	prefetchChunk = 256
	// flushEvery is how many written resources are buffered before their rows are inserted.
	flushEvery = 256
)

// prefetched is the stored state of a batch before it is written.
type prefetched struct {
	ids map[string][]string // type|system|value → ids holding that identifier
	cur map[string]current  // type/id → stored row (absent: no row)
	// known marks the type/id keys that were looked up, found or not.
	known map[string]bool
}

// chunks calls fn with successive parts of vals of power-of-two sizes up to prefetchChunk.
func chunks(vals []string, fn func(part []string) error) error {
	for len(vals) > 0 {
		n := prefetchChunk
		for n > len(vals) {
			n /= 2
		}
		if err := fn(vals[:n]); err != nil {
			return err
		}
		vals = vals[n:]
	}
	return nil
}

// prefetch reads, inside tx, the resources holding the batch's first identifiers and the rows
// of the ids they resolve to (or the resources' own ids when the identifier is new).
func (s *Store) prefetch(ctx context.Context, tx *sql.Tx, rs []fhir.Resource, keys []idKey) (*prefetched, error) {
	p := &prefetched{ids: map[string][]string{}, cur: map[string]current{}, known: map[string]bool{}}
	// Identifier values per type; the system is compared here (the primary key of idx_token
	// leads with type, col, code).
	byType := map[string][]string{}
	wantSys := map[string]bool{}
	seen := map[string]bool{}
	for i, r := range rs {
		k := keys[i]
		wantSys[r.Type()+"|"+k.system+"|"+k.value] = true
		if tv := r.Type() + "|" + k.value; !seen[tv] {
			seen[tv] = true
			byType[r.Type()] = append(byType[r.Type()], k.value)
		}
	}
	for typ, vals := range byType {
		err := chunks(vals, func(part []string) error {
			args := make([]any, 0, len(part)+1)
			args = append(args, typ)
			for _, v := range part {
				args = append(args, v)
			}
			rows, err := s.txQuery(ctx, tx, `SELECT system, code, id FROM idx_token WHERE type = ? AND col = 'identifier' AND code IN (`+placeholders(len(part))+`)`, args...)
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
				var sys, code, id string
				if err := rows.Scan(&sys, &code, &id); err != nil {
					return err
				}
				if k := typ + "|" + sys + "|" + code; wantSys[k] {
					p.ids[k] = append(p.ids[k], id)
				}
			}
			return rows.Err()
		})
		if err != nil {
			return nil, fmt.Errorf("sqlite: upsert: find by identifier: %w", err)
		}
	}
	// The rows to compare with or write after.
	idsByType := map[string][]string{}
	for i, r := range rs {
		k := keys[i]
		id := r.Common().ID
		if ids := p.ids[r.Type()+"|"+k.system+"|"+k.value]; len(ids) == 1 {
			id = ids[0]
		}
		if id == "" || p.known[r.Type()+"/"+id] {
			continue
		}
		p.known[r.Type()+"/"+id] = true
		idsByType[r.Type()] = append(idsByType[r.Type()], id)
	}
	for typ, ids := range idsByType {
		err := chunks(ids, func(part []string) error {
			args := make([]any, 0, len(part)+1)
			args = append(args, typ)
			for _, v := range part {
				args = append(args, v)
			}
			rows, err := s.txQuery(ctx, tx, `SELECT r.id, r.version, r.deleted, r.patient, r.sort_date, r.last_updated, `+jsonExpr+
				` FROM resources r WHERE r.type = ? AND r.id IN (`+placeholders(len(part))+`)`, args...)
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
				var c current
				var id string
				var del int
				var js sql.NullString
				if err := rows.Scan(&id, &c.version, &del, &c.patient, &c.sortDate, &c.lastUpdated, &js); err != nil {
					return err
				}
				c.exists, c.deleted = true, del != 0
				if js.Valid {
					c.json = textBytes(js.String)
				} else if !c.deleted {
					return fmt.Errorf("%s/%s: the stored JSON is missing", typ, id)
				}
				p.cur[typ+"/"+id] = c
			}
			return rows.Err()
		})
		if err != nil {
			return nil, fmt.Errorf("sqlite: upsert: read stored resources: %w", err)
		}
	}
	return p, nil
}

// idKey is a resource's first identifier.
type idKey struct{ system, value string }

// plan is what the batch loop does with one resource, decided from the prefetched state.
type plan struct {
	fast  bool // decided from the prefetch; otherwise matched the slow way
	id    string
	cur   current
	dupes int // resources holding the identifier (more than 1 is an error)
}

// Upsert implements store.Store. The whole batch is one transaction: one fsync for many rows.
func (s *Store) Upsert(ctx context.Context, rs []fhir.Resource) ([]store.UpsertResult, error) {
	keys := make([]idKey, len(rs))
	for i, r := range rs {
		sys, val, ok := store.FirstIdentifier(r)
		if !ok {
			return nil, fmt.Errorf("sqlite: upsert %s: an identifier is required", r.Type())
		}
		keys[i] = idKey{sys, val}
	}
	out := make([]store.UpsertResult, len(rs))
	type touch struct{ typ, old, new string }
	var touched []touch
	err := s.tx(ctx, func(tx *sql.Tx) error {
		touched = touched[:0]
		pre, err := s.prefetch(ctx, tx, rs, keys)
		if err != nil {
			return err
		}
		// A resource is planned from the prefetch unless an earlier one of the batch has its
		// identifier or resolves to its id (that one's write decides what this one finds).
		plans := make([]plan, len(rs))
		claimed := map[string]bool{}
		for i, r := range rs {
			typ, k := r.Type(), keys[i]
			ids := pre.ids[typ+"|"+k.system+"|"+k.value]
			pl := plan{dupes: len(ids)}
			switch len(ids) {
			case 0:
				pl.id = r.Common().ID
			case 1:
				pl.id = ids[0]
			}
			ik := typ + "|" + k.system + "|" + k.value
			pl.fast = pl.id != "" && len(ids) <= 1 && !claimed[ik] && !claimed[typ+"/"+pl.id] && pre.known[typ+"/"+pl.id]
			claimed[ik], claimed[typ+"/"+pl.id] = true, true
			if r.Common().ID != "" {
				claimed[typ+"/"+r.Common().ID] = true
			}
			if pl.fast {
				pl.cur = pre.cur[typ+"/"+pl.id]
			}
			plans[i] = pl
		}
		spec, stop := s.speculate(rs, plans)
		defer stop()

		w := newWriteBuf()
		buffered := 0
		for i, r := range rs {
			pl := plans[i]
			var sp specResult
			if pl.fast {
				sp = <-spec[i]
			}
			typ, k := r.Type(), keys[i]
			ik := typ + "|" + k.system + "|" + k.value
			if pl.fast && (w.written[ik] || w.written[typ+"/"+pl.id]) {
				// An earlier resource's write added this identifier or id (one with several
				// identifiers): the prefetch no longer tells.
				pl.fast = false
				r.Common().ID, r.Common().Meta = sp.p.origID, sp.p.origMeta
				if sp.p.amended {
					store.SetAmended(r, false)
				}
			}
			var e store.Entry
			var cur current
			if pl.fast {
				if sp.err != nil {
					return sp.err
				}
				cur = pl.cur
				if pl.dupes == 0 && cur.exists && !cur.deleted {
					return fmt.Errorf("sqlite: upsert %s/%s: id taken by another resource: %w", typ, pl.id, store.ErrDuplicate)
				}
				if sp.same {
					out[i] = store.UpsertResult{ID: pl.id, VersionID: cur.version}
					continue
				}
				if e, err = s.writeRows(ctx, tx, w, sp.p.Prepared, cur, sp.p.rows); err != nil {
					return err
				}
			} else {
				var same bool
				if cur, same, err = s.matchSlow(ctx, tx, w, r, k); err != nil {
					return err
				}
				if same {
					out[i] = store.UpsertResult{ID: r.Common().ID, VersionID: cur.version}
					continue
				}
				if e, err = s.write(ctx, tx, w, r, cur); err != nil {
					return err
				}
			}
			touched = append(touched, touch{e.Type, cur.patient, search.PatientOf(r)})
			out[i] = store.UpsertResult{ID: e.ID, VersionID: e.VersionID, Created: !cur.exists || cur.deleted, Changed: cur.exists && !cur.deleted}
			if buffered++; buffered >= flushEvery {
				if err := s.flush(ctx, tx, w); err != nil {
					return err
				}
				buffered = 0
			}
		}
		return s.flush(ctx, tx, w)
	})
	if err != nil {
		return nil, err
	}
	for _, t := range touched {
		s.gens.bump(t.typ, t.old, t.new)
	}
	return out, nil
}

// specPrepared is a prepared write plus what the resource held before speculation touched it.
type specPrepared struct {
	store.Prepared
	origID   string
	origMeta *fhir.Meta
	amended  bool         // store.SameOrAmended changed its status
	rows     preparedRows // its rows (rowsOf), made here rather than by the writing loop
}

// speculate prepares the planned resources in order on a goroutine: for a stored, live
// resource whether it is unchanged (store.SameOrAmended, which may make it amended), otherwise
// its write as the next version and the rows of that write. Each result arrives on its own
// channel. stop waits for the goroutine: it must not touch the resources once Upsert has
// returned.
func (s *Store) speculate(rs []fhir.Resource, plans []plan) ([]chan specResult, func()) {
	spec := make([]chan specResult, len(rs))
	for i := range spec {
		if plans[i].fast {
			spec[i] = make(chan specResult, 1)
		}
	}
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for i, r := range rs {
			pl := plans[i]
			if !pl.fast {
				continue
			}
			select {
			case <-quit:
				return
			default:
			}
			b := r.Common()
			var res specResult
			res.p.origID, res.p.origMeta = b.ID, b.Meta
			if pl.cur.exists && !pl.cur.deleted {
				same, amended, err := store.SameOrAmended(r, store.Entry{ID: pl.id, VersionID: pl.cur.version, LastUpdated: time.UnixMicro(pl.cur.lastUpdated), JSON: pl.cur.json})
				res.p.amended = amended
				if err != nil || same {
					res.same, res.err = same, err
					spec[i] <- res
					continue
				}
			}
			b.ID = pl.id
			res.p.Prepared, res.err = store.Prepare(r, pl.cur.version+1, time.Now())
			if res.err == nil {
				res.p.rows = rowsOf(res.p.Prepared, pl.cur.exists)
			}
			spec[i] <- res
		}
	}()
	return spec, func() { close(quit); <-done }
}

// specResult is what speculate sends for one resource: whether it equals the stored version,
// or its prepared write.
type specResult struct {
	same bool
	p    specPrepared
	err  error
}

// matchSlow finds the stored version of r by its first identifier inside tx, after flushing
// what the batch buffered (so that the reads see it). same reports that r equals
// the stored version (r then has the stored id).
func (s *Store) matchSlow(ctx context.Context, tx *sql.Tx, w *writeBuf, r fhir.Resource, k idKey) (current, bool, error) {
	if len(w.pending) > 0 {
		if err := s.flush(ctx, tx, w); err != nil {
			return current{}, false, err
		}
	}
	ids, err := s.findByIdentifier(ctx, tx, r.Type(), k.system, k.value)
	if err != nil {
		return current{}, false, err
	}
	var cur current
	switch len(ids) {
	case 0:
		if r.Common().ID == "" {
			r.Common().ID = store.NewID()
		}
		if cur, err = s.lookup(ctx, tx, r.Type(), r.Common().ID); err != nil {
			return current{}, false, err
		}
		if cur.exists && !cur.deleted {
			return current{}, false, fmt.Errorf("sqlite: upsert %s/%s: id taken by another resource: %w", r.Type(), r.Common().ID, store.ErrDuplicate)
		}
	case 1:
		if cur, err = s.lookup(ctx, tx, r.Type(), ids[0]); err != nil {
			return current{}, false, err
		}
		same, _, err := store.SameOrAmended(r, store.Entry{ID: ids[0], VersionID: cur.version, LastUpdated: time.UnixMicro(cur.lastUpdated), JSON: cur.json})
		if err != nil {
			return current{}, false, err
		}
		if same {
			return cur, true, nil
		}
	default:
		return current{}, false, fmt.Errorf("sqlite: upsert %s: identifier %s|%s matches %d resources: %w", r.Type(), k.system, k.value, len(ids), store.ErrDuplicate)
	}
	return cur, false, nil
}
