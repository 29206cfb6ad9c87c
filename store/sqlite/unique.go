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

// Conditional creates and transactions need no extra table to be atomic here: every write runs
// in an immediate transaction, which takes the database's write lock at BEGIN, so a lookup and
// the write that depends on it, made in one transaction, see and exclude every other writer —
// other connections and other processes on the same file included (busy_timeout makes them
// wait for the lock instead of failing).

var _ store.Transactor = (*Store)(nil)

// CreateUnique implements store.Store: the identifier lookup and the insert are one write
// transaction.
func (s *Store) CreateUnique(ctx context.Context, r fhir.Resource, system, value string) (store.Entry, bool, error) {
	typ := r.Type()
	if !store.CarriesIdentifier(r, system, value) {
		return store.Entry{}, false, fmt.Errorf("sqlite: create unique %s: the resource does not carry the identifier", typ)
	}
	r.Common().ID = store.NewID()
	var e store.Entry
	var created bool
	err := s.tx(ctx, func(tx *sql.Tx) error {
		ids, err := s.findByIdentifier(ctx, tx, typ, system, value)
		if err != nil {
			return err
		}
		switch len(ids) {
		case 0:
		case 1:
			cur, err := s.lookup(ctx, tx, typ, ids[0])
			if err != nil {
				return err
			}
			e = store.Entry{Type: typ, ID: ids[0], VersionID: cur.version, LastUpdated: time.UnixMicro(cur.lastUpdated).UTC(), JSON: cur.json, Patient: cur.patient}
			return nil
		default:
			return fmt.Errorf("sqlite: create unique %s: the identifier is carried by %d resources: %w", typ, len(ids), store.ErrDuplicate)
		}
		w := newWriteBuf()
		if e, err = s.write(ctx, tx, w, r, current{}); err != nil {
			return err
		}
		created = true
		return s.flush(ctx, tx, w)
	})
	if err != nil {
		return store.Entry{}, false, err
	}
	if created {
		s.gens.bump(typ, search.PatientOf(r))
	}
	return e, created, nil
}

// Transact implements store.Transactor with one write transaction.
func (s *Store) Transact(ctx context.Context, ops []store.TxOp) ([]store.TxResult, error) {
	out := make([]store.TxResult, len(ops))
	var patients [][3]string // type, old patient, new patient of each write
	err := s.tx(ctx, func(tx *sql.Tx) error {
		patients = patients[:0]
		w := newWriteBuf()
		for i, op := range ops {
			res, oldPatient, err := s.txOp(ctx, tx, w, op)
			if err != nil {
				return &store.TxError{Index: i, Err: err}
			}
			out[i] = res
			patients = append(patients, [3]string{res.Entry.Type, oldPatient, search.PatientOf(op.Resource)})
		}
		return s.flush(ctx, tx, w)
	})
	if err != nil {
		return nil, err
	}
	for _, p := range patients {
		s.gens.bump(p[0], p[1], p[2])
	}
	return out, nil
}

// txOp performs one op of Transact inside tx; oldPatient is the compartment the resource was in.
func (s *Store) txOp(ctx context.Context, tx *sql.Tx, w *writeBuf, op store.TxOp) (res store.TxResult, oldPatient string, err error) {
	r := op.Resource
	typ, id := r.Type(), r.Common().ID
	if id == "" {
		return res, "", fmt.Errorf("sqlite: transaction: %s without id", typ)
	}
	unique := op.UniqueSystem != "" || op.UniqueValue != ""
	if unique && !store.CarriesIdentifier(r, op.UniqueSystem, op.UniqueValue) {
		return res, "", fmt.Errorf("sqlite: transaction: %s/%s does not carry its unique identifier", typ, id)
	}
	// An earlier op wrote this resource or identifier: make its rows visible first.
	if w.pending[typ+"/"+id] || (unique && w.pending[typ+"|"+op.UniqueSystem+"|"+op.UniqueValue]) {
		if err := s.flush(ctx, tx, w); err != nil {
			return res, "", err
		}
	}
	cur, err := s.lookup(ctx, tx, typ, id)
	if err != nil {
		return res, "", err
	}
	if op.Create && cur.exists {
		return res, "", fmt.Errorf("sqlite: create %s/%s: %w", typ, id, store.ErrDuplicate)
	}
	if op.IfMatch != 0 && (!cur.exists || cur.deleted || cur.version != op.IfMatch) {
		return res, "", fmt.Errorf("sqlite: put %s/%s: %w", typ, id, store.ErrVersionConflict)
	}
	if unique {
		ids, err := s.findByIdentifier(ctx, tx, typ, op.UniqueSystem, op.UniqueValue)
		if err != nil {
			return res, "", err
		}
		for _, other := range ids {
			if other != id {
				return res, "", fmt.Errorf("sqlite: write %s/%s: its unique identifier is carried by %s/%s: %w", typ, id, typ, other, store.ErrDuplicate)
			}
		}
	}
	e, err := s.write(ctx, tx, w, r, cur)
	if err != nil {
		return res, "", err
	}
	return store.TxResult{Entry: e, Created: !cur.exists || cur.deleted}, cur.patient, nil
}
