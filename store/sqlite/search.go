package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/fhir/search"
	"github.com/openhealthexchange/ohx/store"
)

// maxRevInclude caps the resources one page may pull in through _revinclude.
const maxRevInclude = 1000

// sqlQuery is a query under construction.
type sqlQuery struct {
	from    string
	where   []string
	args    []any
	sortCol map[string]string // sort parameter → column expression
	hot     bool
	// correlated counts the EXISTS filters added on the hot path (inIndex).
	correlated int
}

func (b *sqlQuery) add(cond string, args ...any) {
	b.where = append(b.where, cond)
	b.args = append(b.args, args...)
}

// maxCorrelated bounds the correlated EXISTS filters of one hot-path query (inIndex).
const maxCorrelated = 4

// inIndex adds "r.id [NOT] IN (sub)" for an index subquery sub selecting ids. On the hot path
// it is a correlated [NOT] EXISTS instead: there the obs_clinical range drives the scan and
// each row costs one seek in the index table, where IN would first collect the ids of every
// matching resource of every patient (a category, say) into a temporary list.
//
// The index tables have no index on (type, id) (dropIndex), so the correlated form is used only
// when seek says the condition names every primary key column before id: each row is then one
// seek, where a condition on a prefix would read that whole range per row.
func (b *sqlQuery) inIndex(not, seek bool, sub string, args []any) {
	cond := "r.id IN (" + sub + ")"
	if b.hot && seek && b.correlated < maxCorrelated {
		// Each correlated subquery adds to SQLite's planning work on every prepare: 99 of them
		// took 0.4 s to prepare where the IN form took 40 ms, so only the first few are EXISTS.
		b.correlated++
		// The row of r is one key: token and reference rows (the only seekable ones) carry the
		// resource's sort date before its id.
		cond = "EXISTS (" + sub + " AND sort_date = r.sort_date AND id = r.id)"
	}
	if not {
		cond = "NOT " + cond
	}
	b.add(cond, args...)
}

// plan translates the filters of q (not sort, cursor or limit).
func (s *Store) plan(q *search.Query) *sqlQuery {
	b := &sqlQuery{from: "resources r", sortCol: map[string]string{"_id": "r.id", "_lastUpdated": "r.last_updated"}}
	if sp := search.SortDateParam(q.Type); sp != "" {
		b.sortCol[sp] = "r.sort_date"
	}
	clauses := slices.Clone(q.Clauses)
	// The hot path: one patient's Observations of one coded concept. obs_clinical is clustered on
	// exactly (patient, system, code, date, id), so the scan is contiguous and already in date order.
	if q.Type == "Observation" {
		pi := slices.IndexFunc(clauses, func(c search.Clause) bool { return isSinglePatient(c) })
		if pi < 0 {
			// A chain to the patient (patient.identifier=…): the same range scan per matching patient.
			pi = slices.IndexFunc(clauses, func(c search.Clause) bool { return isPatientChain(q.Type, c) })
		}
		ci := slices.IndexFunc(clauses, func(c search.Clause) bool {
			return c.Param.Name == "code" && c.Modifier == "" && len(c.Values) == 1 && !c.Values[0].AnySystem && !c.Values[0].AnyCode
		})
		if pi >= 0 && ci >= 0 {
			p, c := clauses[pi], clauses[ci]
			b.hot = true
			// obs_clinical holds live rows only (deletes remove them), hence no deleted filter.
			b.from = "obs_clinical r"
			if p.Chain != nil {
				chainClause(b, q.Type, p)
			} else {
				b.add("r.patient = ?", p.Values[0].RefID)
			}
			b.add("r.system = ? AND r.code = ?", c.Values[0].System, c.Values[0].Code)
			clauses = slices.Delete(slices.Clone(clauses), max(pi, ci), max(pi, ci)+1)
			clauses = slices.Delete(clauses, min(pi, ci), min(pi, ci)+1)
		}
	}
	if !b.hot {
		b.add("r.type = ? AND r.deleted = 0", q.Type)
	}
	for _, c := range clauses {
		s.clause(b, q.Type, c)
	}
	return b
}

func isSinglePatient(c search.Clause) bool {
	return c.Param.Name == "patient" && c.Modifier == "" && len(c.Values) == 1 && c.Values[0].RefID != "" && c.Values[0].RefType == "Patient"
}

func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}

func (s *Store) clause(b *sqlQuery, typ string, c search.Clause) {
	p := c.Param
	switch {
	case c.Chain != nil:
		chainClause(b, typ, c)
		return
	case p.Name == "_id":
		switch {
		case c.Modifier == "missing":
			b.add(map[bool]string{true: "0", false: "1"}[c.Missing])
		default:
			ids := make([]any, len(c.Values))
			for i, v := range c.Values {
				ids[i] = v.Code
			}
			op := "IN"
			if c.Modifier == "not" {
				op = "NOT IN"
			}
			b.add("r.id "+op+" ("+placeholders(len(ids))+")", ids...)
		}
		return
	case p.Name == "_lastUpdated":
		if c.Modifier == "missing" {
			b.add(map[bool]string{true: "0", false: "1"}[c.Missing])
			return
		}
		s.dateClause(b, typ, c, "r.last_updated", "(r.last_updated + 1)", "r.last_updated")
		return
	case p.Type == search.Date && p.Name == search.SortDateParam(typ):
		if c.Modifier == "missing" {
			b.add(map[bool]string{true: "r.date_lo IS NULL", false: "r.date_lo IS NOT NULL"}[c.Missing])
			return
		}
		s.dateClause(b, typ, c, "r.date_lo", "r.date_hi", b.sortCol[p.Name])
		return
	case isSinglePatient(c):
		// The patient column holds the subject's Patient id: the same fact, on an index that also
		// orders by date.
		b.add("r.patient = ?", c.Values[0].RefID)
		return
	}
	table := map[search.Type]string{search.Token: "idx_token", search.Reference: "idx_ref", search.String: "idx_string",
		search.Date: "idx_date", search.Quantity: "idx_quantity"}[p.Type]
	cols := make([]any, len(p.Columns))
	for i, col := range p.Columns {
		cols[i] = col
	}
	sub := "SELECT id FROM " + table + " WHERE type = ? AND col IN (" + placeholders(len(cols)) + ")"
	args := append([]any{typ}, cols...)
	if p.IsView() {
		sub += " AND ref_type IN (" + placeholders(len(p.Targets)) + ")"
		for _, t := range p.Targets {
			args = append(args, t)
		}
	}
	if c.Modifier == "missing" {
		b.inIndex(c.Missing, false, sub, args)
		return
	}
	var ors []string
	seek := c.Modifier == "" || c.Modifier == "not"
	for _, v := range c.Values {
		cond, vargs := valueCond(c, v)
		ors = append(ors, cond)
		args = append(args, vargs...)
		seek = seek && seekable(c, v)
	}
	b.inIndex(c.Modifier == "not", seek, sub+" AND ("+strings.Join(ors, " OR ")+")", args)
}

// seekable reports whether valueCond of v fixes every primary key column of its index table
// before the sort date and id: idx_token (type, col, code, system, sort_date, id), idx_ref
// (type, col, ref_id, ref_type, ref_url, sort_date, id). A token without a system has been
// given the stored systems (resolveSystems).
func seekable(c search.Clause, v search.Value) bool {
	switch c.Param.Type {
	case search.Token:
		return !v.AnyCode && !v.AnySystem
	case search.Reference:
		return v.RefURL == "" && v.RefType != "" && v.RefID != ""
	}
	return false
}

// valueCond is the per-entry condition of match.go for one value, over the index table columns.
func valueCond(c search.Clause, v search.Value) (string, []any) {
	switch c.Param.Type {
	case search.Token:
		switch {
		case v.AnyCode:
			return "system = ?", []any{v.System}
		case v.AnySystem:
			return "code = ?", []any{v.Code}
		}
		return "(code = ? AND system = ?)", []any{v.Code, v.System}
	case search.Reference:
		if v.RefURL != "" {
			return "ref_url = ?", []any{v.RefURL}
		}
		if v.RefType != "" {
			// A local reference is indexed with an empty ref_url (search.Extract): naming it
			// lets the primary key reach id (seekable).
			return "(ref_id = ? AND ref_type = ? AND ref_url = '')", []any{v.RefID, v.RefType}
		}
		return "ref_id = ?", []any{v.RefID}
	case search.String:
		switch c.Modifier {
		case "exact":
			return "exact = ?", []any{v.Str}
		case "contains":
			return "instr(norm, ?) > 0", []any{v.Norm}
		}
		// Prefix match as a range, so the (col, norm) key serves it; 0xFF never occurs in UTF-8.
		return "(norm >= ? AND norm < ?)", []any{v.Norm, v.Norm + "\xff"}
	case search.Quantity:
		var unit string
		var args []any
		switch {
		case v.UnitAny:
			unit, args = "(code = ? OR unit = ?) AND ", []any{v.Code, v.Code}
		default:
			if !v.AnySystem {
				unit += "system = ? AND "
				args = append(args, v.System)
			}
			if !v.AnyCode {
				unit += "code = ? AND "
				args = append(args, v.Code)
			}
		}
		var num string
		switch v.Prefix {
		case "ne":
			num, args = "NOT (num >= ? AND num < ?)", append(args, v.NumLo, v.NumHi)
		case "gt", "sa":
			num, args = "num > ?", append(args, v.Num)
		case "lt", "eb":
			num, args = "num < ?", append(args, v.Num)
		case "ge":
			num, args = "num >= ?", append(args, v.Num)
		case "le":
			num, args = "num <= ?", append(args, v.Num)
		case "ap":
			d := max(v.Num*0.1, -v.Num*0.1)
			num, args = "(num >= ? AND num <= ?)", append(args, v.Num-d, v.Num+d)
		default:
			num, args = "(num >= ? AND num < ?)", append(args, v.NumLo, v.NumHi)
		}
		return "(" + unit + num + ")", args
	case search.Date:
		return dateCond(v, "lo", "hi")
	}
	return "0", nil
}

// dateCond is DateMatches over the target columns lo and hi.
func dateCond(v search.Value, lo, hi string) (string, []any) {
	eq := "(" + lo + " >= ? AND " + hi + " <= ?)"
	switch v.Prefix {
	case "ne":
		return "NOT " + eq, []any{v.Lo, v.Hi}
	case "gt":
		return hi + " > ?", []any{v.Hi}
	case "lt":
		return lo + " < ?", []any{v.Lo}
	case "ge":
		return "(" + hi + " > ? OR " + eq + ")", []any{v.Hi, v.Lo, v.Hi}
	case "le":
		return "(" + lo + " < ? OR " + eq + ")", []any{v.Lo, v.Lo, v.Hi}
	case "sa":
		return lo + " >= ?", []any{v.Hi}
	case "eb":
		return hi + " <= ?", []any{v.Lo}
	case "ap":
		return "(" + lo + " < ? AND " + hi + " > ?)", []any{v.Hi, v.Lo}
	}
	return eq, []any{v.Lo, v.Hi}
}

// dateClause adds a date clause on (lo, hi) columns and, derived from it, a necessary bound on the
// start column startCol that an index can serve: every prefix except ne bounds where a matching
// range can start, given the longest range stored for the type.
func (s *Store) dateClause(b *sqlQuery, typ string, c search.Clause, lo, hi, startCol string) {
	var ors []string
	var args []any
	s.mu.RLock()
	span := s.maxSpan[typ]
	s.mu.RUnlock()
	if lo == "r.last_updated" {
		span = 1
	}
	const unbounded = int64(1) << 62
	minLo, maxLo := unbounded, -unbounded // union of the per-value bounds: lo in (minLo, maxLo)
	for _, v := range c.Values {
		cond, a := dateCond(v, lo, hi)
		ors = append(ors, cond)
		args = append(args, a...)
		l, h := -unbounded, unbounded
		switch v.Prefix {
		case "", "eq":
			l, h = v.Lo-1, v.Hi
		case "lt", "eb":
			h = v.Lo
		case "le":
			h = v.Hi
		case "sa":
			l = v.Hi - 1
		case "gt", "ge", "ap":
			if span < unbounded/4 {
				l = min(v.Lo, v.Hi) - span - 1
			}
			if v.Prefix == "ap" {
				h = v.Hi
			}
		}
		minLo, maxLo = min(minLo, l), max(maxLo, h)
	}
	b.add("("+strings.Join(ors, " OR ")+")", args...)
	if startCol == "" {
		return
	}
	if minLo > -unbounded {
		b.add(startCol+" > ?", minLo)
	}
	if maxLo < unbounded {
		b.add(startCol+" < ?", maxLo)
	}
}

// orderAndCursor appends the ORDER BY and the keyset condition; reverse flips every direction
// (for previous pages).
func (b *sqlQuery) orderAndCursor(q *search.Query, cur *search.Cursor, reverse bool) (order string, err error) {
	var parts []string
	keys := q.Sort
	exprs := make([]string, len(keys))
	desc := make([]bool, len(keys))
	for i, k := range keys {
		e, ok := b.sortCol[k.Param]
		if !ok {
			return "", fhir.Invalid(fhir.CodeNotSupported, "_sort: %s is not sortable", k.Param)
		}
		exprs[i], desc[i] = e, k.Desc != reverse
		dir := "ASC"
		if desc[i] {
			dir = "DESC"
		}
		parts = append(parts, e+" "+dir)
	}
	if cur != nil {
		if len(cur.Keys) != len(keys)-1 {
			return "", fhir.Invalid(fhir.CodeInvalid, "_page: the paging cursor does not fit this search")
		}
		vals := make([]any, len(keys))
		for i := range cur.Keys {
			vals[i] = cur.Keys[i]
		}
		vals[len(keys)-1] = cur.ID
		// (k1 > v1) OR (k1 = v1 AND k2 > v2) OR …, with < for descending keys.
		var ors []string
		var args []any
		for i := range keys {
			var ands []string
			for j := 0; j < i; j++ {
				ands = append(ands, exprs[j]+" = ?")
				args = append(args, vals[j])
			}
			op := " > ?"
			if desc[i] {
				op = " < ?"
			}
			ands = append(ands, exprs[i]+op)
			args = append(args, vals[i])
			ors = append(ors, "("+strings.Join(ands, " AND ")+")")
		}
		b.add("("+strings.Join(ors, " OR ")+")", args...)
	}
	return " ORDER BY " + strings.Join(parts, ", "), nil
}

type row struct {
	store.Entry
	keys []int64
}

// Search implements store.Store.
func (s *Store) Search(ctx context.Context, q *search.Query) (*store.Result, error) {
	q, err := s.resolve(ctx, q)
	if err != nil {
		return nil, err
	}
	res := &store.Result{Total: -1}
	if q.SummaryCount || q.Total == "accurate" {
		b := s.plan(q)
		n, err := s.count(ctx, b, 0)
		if err != nil {
			return nil, err
		}
		res.Total = n
		if q.SummaryCount {
			return res, nil
		}
	}
	b := s.plan(q)
	prev := q.Cursor != nil && q.Cursor.Prev
	order, err := b.orderAndCursor(q, q.Cursor, prev)
	if err != nil {
		return nil, err
	}
	rows, err := s.fetch(ctx, b, q, order, q.Count+1)
	if err != nil {
		return nil, err
	}
	more := len(rows) > q.Count
	if more {
		rows = rows[:q.Count]
	}
	if prev {
		slices.Reverse(rows)
	}
	for _, r := range rows {
		res.Matches = append(res.Matches, r.Entry)
	}
	if len(rows) > 0 {
		first, last := rows[0], rows[len(rows)-1]
		if prev {
			res.Next = &search.Cursor{Keys: last.keys, ID: last.ID}
			if more {
				res.Prev = &search.Cursor{Prev: true, Keys: first.keys, ID: first.ID}
			}
		} else {
			if more {
				res.Next = &search.Cursor{Keys: last.keys, ID: last.ID}
			}
			if q.Cursor != nil {
				res.Prev = &search.Cursor{Prev: true, Keys: first.keys, ID: first.ID}
			}
		}
	}
	if res.Total < 0 && q.Cursor == nil && !more {
		res.Total = len(rows)
	}
	if res.Total < 0 && q.Total != "none" {
		// Cheap when it is small: the count stops after totalBound+1 rows (store.TotalBound).
		n, err := s.count(ctx, s.plan(q), s.totalBound+1)
		if err != nil {
			return nil, err
		}
		if n <= s.totalBound {
			res.Total = n
		}
	}
	if err := s.includes(ctx, q, res); err != nil {
		return nil, err
	}
	return res, nil
}

// count counts the rows of b, stopping after limit of them when limit > 0 (a LIMIT-ed
// subquery: the scan ends there instead of at the last match).
func (s *Store) count(ctx context.Context, b *sqlQuery, limit int) (int, error) {
	var n int
	stmt := "SELECT count(*) FROM " + b.from + " WHERE " + strings.Join(b.where, " AND ")
	args := b.args
	if limit > 0 {
		stmt = "SELECT count(*) FROM (SELECT 1 FROM " + b.from + " WHERE " + strings.Join(b.where, " AND ") + " LIMIT ?)"
		args = append(slices.Clip(args), limit)
	}
	if err := s.r.QueryRowContext(ctx, stmt, args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("sqlite: count: %w", err)
	}
	return n, nil
}

// SQL returns the statement a search runs, for query-plan tests.
func (s *Store) SQL(q *search.Query) (string, []any, error) {
	b := s.plan(q)
	order, err := b.orderAndCursor(q, q.Cursor, false)
	if err != nil {
		return "", nil, err
	}
	return s.selectSQL(b, q, order), append(b.args, q.Count+1), nil
}

func (s *Store) selectSQL(b *sqlQuery, q *search.Query, order string) string {
	sel := "SELECT r.id, r.version, r.last_updated, " + jsonExpr
	if b.hot {
		sel = "SELECT r.id, r.version, r.last_updated, r.json" // obs_clinical carries the JSON
	}
	for _, k := range q.Sort[:len(q.Sort)-1] {
		sel += ", " + b.sortCol[k.Param]
	}
	return sel + " FROM " + b.from + " WHERE " + strings.Join(b.where, " AND ") + order + " LIMIT ?"
}

func (s *Store) fetch(ctx context.Context, b *sqlQuery, q *search.Query, order string, limit int) ([]row, error) {
	rs, err := s.query(ctx, s.selectSQL(b, q, order), append(b.args, limit)...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: search %s: %w", q.Type, err)
	}
	defer rs.Close()
	out := make([]row, 0, min(limit, 1024))
	nk := len(q.Sort) - 1
	var (
		id      string
		version int64
		lu      int64
		js      sql.NullString
		keys    = make([]int64, nk)
	)
	dest := []any{&id, &version, &lu, &js}
	for i := range keys {
		dest = append(dest, &keys[i])
	}
	for rs.Next() {
		if err := rs.Scan(dest...); err != nil {
			return nil, fmt.Errorf("sqlite: search %s: %w", q.Type, err)
		}
		if !js.Valid {
			return nil, fmt.Errorf("sqlite: search %s: the stored JSON of %s is missing", q.Type, id)
		}
		out = append(out, row{Entry: store.Entry{Type: q.Type, ID: id, VersionID: version, LastUpdated: time.UnixMicro(lu).UTC(),
			JSON: textBytes(js.String)}, keys: slices.Clone(keys)})
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: search %s: %w", q.Type, err)
	}
	return out, nil
}

// includes resolves _include and _revinclude for the page's matches.
func (s *Store) includes(ctx context.Context, q *search.Query, res *store.Result) error {
	if len(res.Matches) == 0 || (len(q.Include) == 0 && len(q.RevInclude) == 0) {
		return nil
	}
	seen := map[string]bool{}
	for _, m := range res.Matches {
		seen[m.Type+"/"+m.ID] = true
	}
	ids := make([]any, len(res.Matches))
	for i, m := range res.Matches {
		ids[i] = m.ID
	}
	want := map[string][]string{} // type → ids to load, in discovery order
	addWant := func(typ, id string) {
		if !seen[typ+"/"+id] {
			seen[typ+"/"+id] = true
			want[typ] = append(want[typ], id)
		}
	}
	// The references of the page's matches, from their JSON (no index on idx_ref (type, id),
	// see dropIndex): indexed once each, whatever the number of _include parameters.
	var idxs []search.Index
	if len(q.Include) > 0 {
		idxs = make([]search.Index, len(res.Matches))
		for i, m := range res.Matches {
			idx, err := storedIndex(m.Type, m.JSON)
			if err != nil {
				return fmt.Errorf("sqlite: include: %s/%s: %w", m.Type, m.ID, err)
			}
			idxs[i] = idx
		}
	}
	for _, inc := range q.Include {
		cols := s.reg.Param(inc.Source, inc.Param).Columns
		for i, m := range res.Matches {
			if m.Type != inc.Source {
				continue
			}
			for _, e := range idxs[i].Entries {
				// As the index rows: a local reference of one of the parameter's columns to the target.
				if e.Type == search.Reference && e.RefURL == "" && e.RefType == inc.Target && e.RefID != "" && slices.Contains(cols, e.Column) {
					addWant(inc.Target, e.RefID)
				}
			}
		}
	}
	for _, inc := range q.RevInclude {
		cols := s.reg.Param(inc.Source, inc.Param).Columns
		args := []any{inc.Source}
		for _, c := range cols {
			args = append(args, c)
		}
		args = append(append(args, q.Type), ids...)
		rows, err := s.r.QueryContext(ctx, `SELECT DISTINCT id FROM idx_ref WHERE type = ? AND col IN (`+placeholders(len(cols))+`) AND ref_type = ? AND ref_id IN (`+placeholders(len(ids))+`) LIMIT `+fmt.Sprint(maxRevInclude), args...)
		if err != nil {
			return fmt.Errorf("sqlite: revinclude %s: %w", inc, err)
		}
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return fmt.Errorf("sqlite: revinclude %s: %w", inc, err)
			}
			addWant(inc.Source, id)
		}
		rows.Close()
	}
	types := make([]string, 0, len(want))
	for t := range want {
		types = append(types, t)
	}
	slices.Sort(types)
	for _, t := range types {
		entries, err := s.readMany(ctx, t, want[t])
		if err != nil {
			return err
		}
		res.Included = append(res.Included, entries...)
	}
	return nil
}

// readMany reads live resources by id, in the order given; missing or deleted ones are skipped.
func (s *Store) readMany(ctx context.Context, typ string, ids []string) ([]store.Entry, error) {
	args := []any{typ}
	for _, id := range ids {
		args = append(args, id)
	}
	rows, err := s.r.QueryContext(ctx, `SELECT r.id, r.version, r.last_updated, `+jsonExpr+` FROM resources r WHERE r.type = ? AND r.deleted = 0 AND r.id IN (`+placeholders(len(ids))+`)`, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: read %s: %w", typ, err)
	}
	defer rows.Close()
	byID := map[string]store.Entry{}
	for rows.Next() {
		e := store.Entry{Type: typ}
		var lu int64
		var js sql.NullString
		if err := rows.Scan(&e.ID, &e.VersionID, &lu, &js); err != nil {
			return nil, fmt.Errorf("sqlite: read %s: %w", typ, err)
		}
		if !js.Valid {
			return nil, fmt.Errorf("sqlite: read %s/%s: the stored JSON is missing", typ, e.ID)
		}
		e.LastUpdated = time.UnixMicro(lu).UTC()
		e.JSON = textBytes(js.String)
		byID[e.ID] = e
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: read %s: %w", typ, err)
	}
	out := make([]store.Entry, 0, len(byID))
	for _, id := range ids {
		if e, ok := byID[id]; ok {
			out = append(out, e)
		}
	}
	return out, nil
}
