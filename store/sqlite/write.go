package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"
	"unsafe"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/fhir/search"
	"github.com/openhealthexchange/ohx/store"
)

// current is the stored state of one resource row.
type current struct {
	exists      bool
	version     int64
	deleted     bool
	patient     string
	sortDate    int64
	lastUpdated int64
	json        []byte
}

// jsonExpr is the current JSON of the resources row r. An Observation in a patient's
// compartment keeps its JSON only in its obs_clinical rows (resources.json is NULL): the row's
// patient, sort_date and clinical_system/clinical_code (its first code coding) are the primary key
// of one of them, so the JSON is one more seek away. Rows written before that layout, and every
// other resource, carry their JSON themselves; coalesce evaluates the subquery only when
// r.json is NULL (https://www.sqlite.org/lang_corefunc.html#coalesce).
const jsonExpr = `coalesce(r.json, (SELECT c.json FROM obs_clinical c WHERE c.patient = r.patient AND c.system = r.clinical_system
	AND c.code = r.clinical_code AND c.sort_date = r.sort_date AND c.id = r.id))`

func (s *Store) lookup(ctx context.Context, tx *sql.Tx, typ, id string) (current, error) {
	const q = `SELECT r.version, r.deleted, r.patient, r.sort_date, r.last_updated, ` + jsonExpr + ` FROM resources r WHERE r.type = ? AND r.id = ?`
	rows, err := s.queryIn(ctx, tx, q, typ, id)
	if err != nil {
		return current{}, fmt.Errorf("sqlite: read %s/%s: %w", typ, id, err)
	}
	defer rows.Close()
	var c current
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return current{}, fmt.Errorf("sqlite: read %s/%s: %w", typ, id, err)
		}
		return current{}, nil
	}
	var del int
	var js sql.NullString
	if err := rows.Scan(&c.version, &del, &c.patient, &c.sortDate, &c.lastUpdated, &js); err != nil {
		return current{}, fmt.Errorf("sqlite: read %s/%s: %w", typ, id, err)
	}
	c.exists, c.deleted = true, del != 0
	if js.Valid {
		c.json = textBytes(js.String)
	} else if !c.deleted {
		// A live row whose JSON is in neither place (see jsonExpr): never answer it as empty.
		return current{}, fmt.Errorf("sqlite: read %s/%s: the stored JSON is missing", typ, id)
	}
	return c, nil
}

// textBytes returns the bytes of a TEXT value scanned into a string, without a copy. Scanning
// into a string keeps the driver's value as it is (database/sql's convertAssign assigns a
// string source directly), and modernc.org/sqlite hands each TEXT value over in an allocation
// of its own, copied out of SQLite's memory for that row, so nothing else holds these bytes.
// They become store.Entry.JSON, which no caller may modify; a copy here was a third copy of
// every document served (SQLite → driver → RawBytes → Entry).
func textBytes(s string) []byte {
	if s == "" {
		return nil
	}
	return unsafe.Slice(unsafe.StringData(s), len(s))
}

// tx runs fn in an immediate write transaction.
func (s *Store) tx(ctx context.Context, fn func(*sql.Tx) error) error {
	select {
	case s.wtx <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("sqlite: begin: %w", ctx.Err())
	}
	defer func() { <-s.wtx }()
	s.capWAL(ctx)
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: begin: %w", err)
	}
	// Under the write lock (immediate transactions) nothing else appends to the WAL.
	s.wal.before = fileSize(s.wal.path)
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: commit: %w", err)
	}
	s.walWritten()
	// Statements first seen in this transaction are prepared now that the connection is free.
	if err := s.wstmts.preparePending(ctx); err != nil {
		s.log.Warn("preparing statements failed", "err", err)
	}
	return nil
}

// Create implements store.Store.
func (s *Store) Create(ctx context.Context, r fhir.Resource) (store.Entry, error) {
	if r.Common().ID == "" {
		r.Common().ID = store.NewID()
	}
	var e store.Entry
	err := s.tx(ctx, func(tx *sql.Tx) error {
		cur, err := s.lookup(ctx, tx, r.Type(), r.Common().ID)
		if err != nil {
			return err
		}
		if cur.exists {
			return fmt.Errorf("sqlite: create %s/%s: %w", r.Type(), r.Common().ID, store.ErrDuplicate)
		}
		w := newWriteBuf()
		if e, err = s.write(ctx, tx, w, r, cur); err != nil {
			return err
		}
		return s.flush(ctx, tx, w)
	})
	if err == nil {
		s.gens.bump(e.Type, search.PatientOf(r))
	}
	return e, err
}

// Put implements store.Store.
func (s *Store) Put(ctx context.Context, r fhir.Resource, opt store.WriteOptions) (store.Entry, bool, error) {
	if r.Common().ID == "" {
		return store.Entry{}, false, fmt.Errorf("sqlite: put %s: missing id", r.Type())
	}
	var e store.Entry
	var created bool
	var oldPatient string
	err := s.tx(ctx, func(tx *sql.Tx) error {
		cur, err := s.lookup(ctx, tx, r.Type(), r.Common().ID)
		if err != nil {
			return err
		}
		if opt.IfMatch != 0 && (!cur.exists || cur.deleted || cur.version != opt.IfMatch) {
			return fmt.Errorf("sqlite: put %s/%s: %w", r.Type(), r.Common().ID, store.ErrVersionConflict)
		}
		created = !cur.exists || cur.deleted
		oldPatient = cur.patient
		w := newWriteBuf()
		if e, err = s.write(ctx, tx, w, r, cur); err != nil {
			return err
		}
		return s.flush(ctx, tx, w)
	})
	if err == nil {
		s.gens.bump(e.Type, oldPatient, search.PatientOf(r))
	}
	return e, created, err
}

// write stores r as the version after cur, replacing its index rows. Rows are buffered in w
// and written by flush; the caller flushes before the transaction commits.
func (s *Store) write(ctx context.Context, tx *sql.Tx, w *writeBuf, r fhir.Resource, cur current) (store.Entry, error) {
	p, err := store.Prepare(r, cur.version+1, time.Now())
	if err != nil {
		return store.Entry{}, err
	}
	return s.writeRows(ctx, tx, w, p, cur, rowsOf(p, cur.exists))
}

// writeRows is write for a resource already prepared as the version after cur, whose rows are
// rows (rowsOf(p, cur.exists)).
func (s *Store) writeRows(ctx context.Context, tx *sql.Tx, w *writeBuf, p store.Prepared, cur current, rows preparedRows) (store.Entry, error) {
	if cur.exists {
		if err := s.dropIndex(ctx, tx, p.Type, p.ID, cur); err != nil {
			return store.Entry{}, err
		}
	}
	if err := s.keepPrior(ctx, tx, w, p.Type, p.ID, cur); err != nil {
		return store.Entry{}, err
	}
	w.pending[rows.key], w.written[rows.key] = true, true
	for _, k := range rows.identifiers {
		w.pending[k], w.written[k] = true, true
	}
	vals := rows.vals
	for _, sg := range rows.segs {
		w.add(sg.t, vals[:sg.n]...)
		vals = vals[sg.n:]
	}
	if rows.dated {
		if err := s.noteSpan(ctx, tx, p.Type, rows.span); err != nil {
			return store.Entry{}, err
		}
	}
	return store.Entry{Type: p.Type, ID: p.ID, VersionID: p.VersionID, LastUpdated: p.LastUpdated, JSON: p.JSON}, nil
}

// preparedRows are the rows a prepared resource is written as, made without the store (so the
// bulk upsert makes them on its speculating goroutine, off the one that holds the writer).
type preparedRows struct {
	key         string   // type/id
	identifiers []string // type|system|value of each identifier
	segs        []rowSeg // the rows in order: a table and how many of vals are its row
	vals        []any
	dated       bool  // the resource has a value of its type's date parameter
	span        int64 // that value's range (Hi - Lo)
}

// rowSeg is one row of preparedRows: its table and its number of values.
type rowSeg struct {
	t *table
	n int
}

// rowsOf makes the rows of p: its resources row, its index rows and its obs_clinical rows. exists
// tells whether the resource has a row already (a deleted one keeps its row; see
// tblResourcesNew).
func rowsOf(p store.Prepared, exists bool) preparedRows {
	out := preparedRows{key: p.Type + "/" + p.ID}
	var dateLo, dateHi sql.NullInt64
	if sp := search.SortDateParam(p.Type); sp != "" {
		for _, en := range p.Index.Entries {
			if en.Column == sp && en.Type == search.Date {
				dateLo = sql.NullInt64{Int64: en.Lo, Valid: true}
				dateHi = sql.NullInt64{Int64: en.Hi, Valid: true}
				out.dated, out.span = true, en.Hi-en.Lo
				break
			}
		}
	}
	add := func(t *table, vals ...any) {
		out.segs = append(out.segs, rowSeg{t, len(vals)})
		out.vals = append(out.vals, vals...)
	}
	lu := p.LastUpdated.UnixMicro()
	js := string(p.JSON)
	// The JSON is not kept on the resources row when obs_clinical rows carry it (one per code
	// coding, see jsonExpr).
	var rowJSON, clinSystem, clinCode any = js, nil, nil
	if c, ok := clinicalKey(p.Type, p.Index); ok {
		rowJSON, clinSystem, clinCode = nil, c.System, c.Code
	}
	resTbl, clinTbl := &tblResources, &tblClinical
	if !exists {
		resTbl, clinTbl = &tblResourcesNew, &tblClinicalNew
	}
	out.vals = make([]any, 0, len(tblResources.cols)+6*len(p.Index.Entries))
	add(resTbl, p.Type, p.ID, p.VersionID, lu, 0, p.Index.Patient, p.Index.SortDate, dateLo, dateHi, rowJSON, clinSystem, clinCode)
	for _, e := range p.Index.Entries {
		if t, vals := indexRow(p.Type, p.ID, p.Index.SortDate, e); t != nil {
			add(t, vals...)
		}
		if isClinical(p.Type, p.Index, e) {
			add(clinTbl, p.Index.Patient, e.System, e.Code, p.Index.SortDate, p.ID, p.VersionID, lu, dateLo, dateHi, js)
		}
		if e.Type == search.Token && e.Column == "identifier" {
			out.identifiers = append(out.identifiers, p.Type+"|"+e.System+"|"+e.Code)
		}
	}
	return out
}

// isClinical reports whether the index entry e of a resource makes an obs_clinical row: a code
// coding of an Observation in a patient's compartment.
func isClinical(typ string, idx search.Index, e search.Entry) bool {
	return typ == "Observation" && idx.Patient != "" && e.Type == search.Token && e.Column == "code"
}

// clinicalKey returns the first entry that makes an obs_clinical row (isClinical), if any.
func clinicalKey(typ string, idx search.Index) (search.Entry, bool) {
	for _, e := range idx.Entries {
		if isClinical(typ, idx, e) {
			return e, true
		}
	}
	return search.Entry{}, false
}

// indexRow is the index table row of the entry e of typ/id, whose resources row has the sort
// date sortDate, its values in the table's column order, or a nil table for an entry kept on
// the resources row (the sort date). Every column of an index table is part of its primary key,
// so the values also name the row to delete. Token and reference rows carry the sort date
// before the id (see the migration that added it).
func indexRow(typ, id string, sortDate int64, e search.Entry) (*table, []any) {
	switch e.Type {
	case search.Token:
		return &tblToken, []any{typ, e.Column, e.System, e.Code, sortDate, id}
	case search.Reference:
		return &tblRef, []any{typ, e.Column, e.RefType, e.RefID, e.RefURL, sortDate, id}
	case search.String:
		return &tblString, []any{typ, e.Column, e.Norm, e.Exact, id}
	case search.Date:
		if e.Column != search.SortDateParam(typ) { // the sort date lives on the row itself
			return &tblDate, []any{typ, e.Column, e.Lo, e.Hi, id}
		}
	case search.Quantity:
		return &tblQuantity, []any{typ, e.Column, e.Num, e.System, e.Code, e.Unit, id}
	}
	return nil, nil
}

// deleteRowSQL is the statement deleting one row of t by all its columns (indexRow).
func deleteRowSQL(t *table) string {
	return "DELETE FROM " + t.name + " WHERE " + strings.Join(t.cols, " = ? AND ") + " = ?"
}

// indexTables are the tables of search index rows (indexRow).
var indexTables = []*table{&tblToken, &tblRef, &tblString, &tblDate, &tblQuantity}

// dropIndex deletes the index rows of the stored version cur of typ/id. Their keys are derived
// from its JSON, as write made them: an index on (type, id) in each index table, which every
// insert would keep up to date, cost one more scattered B-tree insert per index entry (ids are
// hashes, so each commit dirtied a page of each such index per resource it wrote). Rows made by
// an earlier indexer are rebuilt when the indexer changes (reindex). Should the JSON not decode,
// each table's rows of the type are scanned for the id instead.
func (s *Store) dropIndex(ctx context.Context, tx *sql.Tx, typ, id string, cur current) error {
	if cur.deleted {
		return nil // a deletion dropped its rows
	}
	idx, err := storedIndex(typ, cur.json)
	if err != nil {
		s.log.Warn("stored resource does not decode: unindexing it by scanning", "type", typ, "id", id, "err", err)
		for _, t := range indexTables {
			if _, err := s.txExec(ctx, tx, `DELETE FROM `+t.name+` WHERE type = ? AND id = ?`, typ, id); err != nil {
				return fmt.Errorf("sqlite: unindex %s/%s: %w", typ, id, err)
			}
		}
		if typ == "Observation" && cur.patient != "" {
			if _, err := s.txExec(ctx, tx, `DELETE FROM obs_clinical WHERE patient = ? AND id = ?`, cur.patient, id); err != nil {
				return fmt.Errorf("sqlite: unindex %s/%s: %w", typ, id, err)
			}
		}
		return nil
	}
	for _, e := range idx.Entries {
		if t, vals := indexRow(typ, id, cur.sortDate, e); t != nil {
			if _, err := s.txExec(ctx, tx, deleteRowSQL(t), vals...); err != nil {
				return fmt.Errorf("sqlite: unindex %s/%s: %w", typ, id, err)
			}
		}
		// The obs_clinical rows, one per code coding, by their primary key.
		if isClinical(typ, idx, e) {
			if _, err := s.txExec(ctx, tx, `DELETE FROM obs_clinical WHERE patient = ? AND system = ? AND code = ? AND sort_date = ? AND id = ?`,
				cur.patient, e.System, e.Code, cur.sortDate, id); err != nil {
				return fmt.Errorf("sqlite: unindex %s/%s: %w", typ, id, err)
			}
		}
	}
	return nil
}

// storedIndex is the index of a stored resource's JSON.
func storedIndex(typ string, js []byte) (search.Index, error) {
	r, err := fhir.Decode(js, typ)
	if err != nil {
		return search.Index{}, err
	}
	return search.Extract(r)
}

// noteSpan records the longest date range of a type, which lets gt/ge/sa searches bound the
// start column: a range ending after x starts after x - maxSpan.
func (s *Store) noteSpan(ctx context.Context, tx *sql.Tx, typ string, span int64) error {
	s.mu.RLock()
	known := s.maxSpan[typ]
	s.mu.RUnlock()
	if span <= known {
		return nil
	}
	if _, err := s.txExec(ctx, tx, `INSERT INTO date_span (type, max_span) VALUES (?, ?)
		ON CONFLICT (type) DO UPDATE SET max_span = max(max_span, excluded.max_span)`, typ, span); err != nil {
		return fmt.Errorf("sqlite: record date span: %w", err)
	}
	s.mu.Lock()
	if span > s.maxSpan[typ] {
		s.maxSpan[typ] = span
	}
	s.mu.Unlock()
	return nil
}

// Read implements store.Store.
func (s *Store) Read(ctx context.Context, typ, id string) (store.Entry, error) {
	cur, err := s.lookup(ctx, nil, typ, id)
	if err != nil {
		return store.Entry{}, err
	}
	if !cur.exists {
		return store.Entry{}, fmt.Errorf("sqlite: read %s/%s: %w", typ, id, store.ErrNotFound)
	}
	e := store.Entry{Type: typ, ID: id, VersionID: cur.version, LastUpdated: time.UnixMicro(cur.lastUpdated).UTC(), Patient: cur.patient}
	if cur.deleted {
		return e, fmt.Errorf("sqlite: read %s/%s: %w", typ, id, store.ErrDeleted)
	}
	e.JSON = cur.json
	return e, nil
}

// Delete implements store.Store.
func (s *Store) Delete(ctx context.Context, typ, id string) error {
	var patient string
	err := s.tx(ctx, func(tx *sql.Tx) error {
		cur, err := s.lookup(ctx, tx, typ, id)
		if err != nil {
			return err
		}
		if !cur.exists {
			return fmt.Errorf("sqlite: delete %s/%s: %w", typ, id, store.ErrNotFound)
		}
		if cur.deleted {
			return nil
		}
		if err := s.dropIndex(ctx, tx, typ, id, cur); err != nil {
			return err
		}
		w := newWriteBuf()
		if err := s.keepPrior(ctx, tx, w, typ, id, cur); err != nil {
			return err
		}
		if err := s.flush(ctx, tx, w); err != nil {
			return err
		}
		_, err = s.txExec(ctx, tx, `UPDATE resources SET deleted = 1, json = NULL, clinical_system = NULL, clinical_code = NULL, version = version + 1,
			last_updated = ?, date_lo = NULL, date_hi = NULL WHERE type = ? AND id = ?`, time.Now().UnixMicro(), typ, id)
		if err != nil {
			return fmt.Errorf("sqlite: delete %s/%s: %w", typ, id, err)
		}
		patient = cur.patient
		return nil
	})
	if err == nil {
		s.gens.bump(typ, patient)
	}
	return err
}

// FindByIdentifier implements store.Store.
func (s *Store) FindByIdentifier(ctx context.Context, typ, system, value string) ([]string, error) {
	return s.findByIdentifier(ctx, nil, typ, system, value)
}

func (s *Store) findByIdentifier(ctx context.Context, tx *sql.Tx, typ, system, value string) ([]string, error) {
	const q = `SELECT id FROM idx_token WHERE type = ? AND col = 'identifier' AND code = ? AND system = ?`
	rows, err := s.queryIn(ctx, tx, q, typ, value, system)
	if err != nil {
		return nil, fmt.Errorf("sqlite: find %s by identifier: %w", typ, err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("sqlite: find %s by identifier: %w", typ, err)
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}
