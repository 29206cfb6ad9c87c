package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
)

// Rows are written with multi-row INSERTs: one statement per table and chunk instead of one per
// row, which is most of the cost of the write path with this driver. Chunks come in power-of-two
// sizes so that a handful of prepared statements per table serve every batch.
const maxChunk = 64

type table struct {
	name     string
	cols     []string
	conflict string // ON CONFLICT clause, or ""
	verb     string // INSERT or INSERT OR IGNORE
	// orElse, for a table of new rows (INSERT OR IGNORE), is the same table's statement that
	// replaces rows: a chunk that inserted fewer rows than it holds is written again with it.
	orElse *table
}

var (
	tblResources = table{name: "resources", cols: []string{"type", "id", "version", "last_updated", "deleted", "patient", "sort_date", "date_lo", "date_hi", "json", "clinical_system", "clinical_code"},
		verb: "INSERT",
		conflict: ` ON CONFLICT (type, id) DO UPDATE SET version = excluded.version, last_updated = excluded.last_updated, deleted = 0,
			patient = excluded.patient, sort_date = excluded.sort_date, date_lo = excluded.date_lo, date_hi = excluded.date_hi, json = excluded.json,
			clinical_system = excluded.clinical_system, clinical_code = excluded.clinical_code`}
	tblToken    = table{name: "idx_token", cols: []string{"type", "col", "system", "code", "sort_date", "id"}, verb: "INSERT OR IGNORE"}
	tblRef      = table{name: "idx_ref", cols: []string{"type", "col", "ref_type", "ref_id", "ref_url", "sort_date", "id"}, verb: "INSERT OR IGNORE"}
	tblString   = table{name: "idx_string", cols: []string{"type", "col", "norm", "exact", "id"}, verb: "INSERT OR IGNORE"}
	tblDate     = table{name: "idx_date", cols: []string{"type", "col", "lo", "hi", "id"}, verb: "INSERT OR IGNORE"}
	tblQuantity = table{name: "idx_quantity", cols: []string{"type", "col", "num", "system", "code", "unit", "id"}, verb: "INSERT OR IGNORE"}
	// OR REPLACE: a row left behind under the same key (dropIndex derives the keys to delete
	// from the old JSON) must never keep serving an older version through jsonExpr.
	tblClinical = table{name: "obs_clinical", cols: []string{"patient", "system", "code", "sort_date", "id", "version", "last_updated", "date_lo", "date_hi", "json"}, verb: "INSERT OR REPLACE"}
	// The rows of resources not stored yet (most of a backfill) are inserted OR IGNORE. SQLite
	// keeps a statement journal for a multi-row statement that may abort halfway
	// (https://www.sqlite.org/tempfiles.html#stmtjrnl), as an upsert (DO UPDATE) or OR REPLACE
	// with NOT NULL columns may, and copies into it every page the statement touches first;
	// one that ignores every conflict never aborts. Such a row cannot be stored already (the
	// write found none in this transaction), but should one be, its chunk is written again with
	// orElse, which replaces it as for a stored resource.
	tblResourcesNew = table{name: "resources", cols: tblResources.cols, verb: "INSERT OR IGNORE", orElse: &tblResources}
	tblClinicalNew  = table{name: "obs_clinical", cols: tblClinical.cols, verb: "INSERT OR IGNORE", orElse: &tblClinical}
	tables          = []*table{&tblResources, &tblResourcesNew, &tblToken, &tblRef, &tblString, &tblDate, &tblQuantity, &tblClinical, &tblClinicalNew, &tblHistory}
)

func (t *table) insertSQL(rows int) string {
	var b strings.Builder
	b.WriteString(t.verb + " INTO " + t.name + " (" + strings.Join(t.cols, ", ") + ") VALUES ")
	row := "(" + placeholders(len(t.cols)) + ")"
	for i := range rows {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(row)
	}
	b.WriteString(t.conflict)
	return b.String()
}

// writeBuf gathers the rows of one transaction, table by table.
type writeBuf struct {
	rows map[*table][]any // flattened values
	// pending are the resources (type/id) and identifiers (type|system|value) with unflushed
	// rows: seeing one again means flushing first, so later reads in the transaction see it.
	pending map[string]bool
	// written holds the same keys for every resource written through this buffer; unlike
	// pending it survives flushes (Upsert trusts its prefetch only for keys not in it).
	written map[string]bool
}

func newWriteBuf() *writeBuf {
	return &writeBuf{rows: map[*table][]any{}, pending: map[string]bool{}, written: map[string]bool{}}
}

func (w *writeBuf) add(t *table, vals ...any) {
	w.rows[t] = append(w.rows[t], vals...)
}

// flush writes every buffered row.
func (s *Store) flush(ctx context.Context, tx *sql.Tx, w *writeBuf) error {
	for _, t := range tables {
		vals := w.rows[t]
		n := len(vals) / len(t.cols)
		for n > 0 {
			chunk := maxChunk
			for chunk > n {
				chunk /= 2
			}
			k := chunk * len(t.cols)
			res, err := s.txExec(ctx, tx, t.insertSQL(chunk), vals[:k]...)
			if err != nil {
				return fmt.Errorf("sqlite: write %s: %w", t.name, err)
			}
			if t.orElse != nil {
				n, err := res.RowsAffected()
				if err != nil {
					return fmt.Errorf("sqlite: write %s: %w", t.name, err)
				}
				if n != int64(chunk) {
					if _, err := s.txExec(ctx, tx, t.orElse.insertSQL(chunk), vals[:k]...); err != nil {
						return fmt.Errorf("sqlite: write %s: %w", t.name, err)
					}
				}
			}
			vals, n = vals[k:], n-chunk
		}
		w.rows[t] = w.rows[t][:0]
	}
	clear(w.pending)
	return nil
}
