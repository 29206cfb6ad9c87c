package mongo

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/fhir/search"
	"github.com/openhealthexchange/ohx/store"
)

// maxRevIncludes caps the resources one page brings in through _revinclude: a patient can have
// millions of Observations, and a page must stay a page.
const maxRevIncludes = 1000

// entryProjection is what reads and searches fetch to serve an entry.
var entryProjection = bson.D{
	{Key: fVersion, Value: 1}, {Key: fLastUpd, Value: 1}, {Key: fDeleted, Value: 1}, {Key: fJSON, Value: 1},
}

// rawEntry decodes the served form of a stored document; deleted reports a tombstone (JSON nil).
// The JSON bytes are copied out of the BSON string as they are: never decoded or re-encoded.
func rawEntry(typ string, raw bson.Raw) (e store.Entry, deleted bool, err error) {
	id, ok := raw.Lookup(fID).StringValueOK()
	if !ok {
		return e, false, errors.New("stored document without a string _id")
	}
	v, ok := raw.Lookup(fVersion).AsInt64OK()
	if !ok {
		return e, false, fmt.Errorf("stored document %s without a version", id)
	}
	lu, ok := raw.Lookup(fLastUpd).AsInt64OK()
	if !ok {
		return e, false, fmt.Errorf("stored document %s without lastUpdated", id)
	}
	e = store.Entry{Type: typ, ID: id, VersionID: v, LastUpdated: time.UnixMicro(lu).UTC()}
	if deleted, _ = raw.Lookup(fDeleted).BooleanOK(); deleted {
		return e, true, nil
	}
	js := raw.Lookup(fJSON)
	if js.Type != bson.TypeString || len(js.Value) < 5 {
		return e, false, fmt.Errorf("stored document %s without JSON", id)
	}
	// A BSON string is int32 length, bytes, NUL.
	e.JSON = slices.Clone(js.Value[4 : len(js.Value)-1])
	return e, false, nil
}

// row is one search match with what paging and _include need besides the entry.
type row struct {
	entry store.Entry
	sort  int64 // sd
	lu    int64
	refs  []string // rf keys, only when includes are requested
}

// sortField is one _sort key resolved to a document field.
type sortField struct {
	field string
	desc  bool
}

// sortFields maps q.Sort to document fields; the list always ends with _id.
func sortFields(q *search.Query) ([]sortField, error) {
	keys := q.Sort
	if len(keys) == 0 || keys[len(keys)-1].Param != "_id" {
		keys = append(slices.Clone(keys), search.SortKey{Param: "_id"})
	}
	out := make([]sortField, 0, len(keys))
	for _, k := range keys {
		var f string
		switch {
		case k.Param == "_id":
			f = fID
		case k.Param == "_lastUpdated":
			f = fLastUpd
		case k.Param == search.SortDateParam(q.Type):
			f = fSort
		default:
			return nil, fhir.Errorf(http.StatusBadRequest, fhir.CodeNotSupported, "_sort: %q is not sortable on %s", k.Param, q.Type)
		}
		out = append(out, sortField{field: f, desc: k.Desc})
		if f == fID {
			break
		}
	}
	return out, nil
}

// keyset is the condition "after the cursor row in sort order" (before it when back is set):
// (k1 > c1) or (k1 = c1 and k2 > c2) or … with _id last; > becomes < for descending keys.
func keyset(fields []sortField, c *search.Cursor, back bool) (cond, error) {
	if len(c.Keys) != len(fields)-1 {
		return cond{}, fhir.Invalid(fhir.CodeValue, "_page: the cursor does not fit this search's sort")
	}
	val := func(i int) any {
		if i == len(fields)-1 {
			return c.ID
		}
		return c.Keys[i]
	}
	cmp := func(i int, orEqual bool) string {
		up := fields[i].desc == back // ascending in the direction we read
		switch {
		case up && orEqual:
			return "$gte"
		case up:
			return "$gt"
		case orEqual:
			return "$lte"
		}
		return "$lt"
	}
	var branches []cond
	for i := range fields {
		d := bson.D{}
		for j := range i {
			d = append(d, bson.E{Key: fields[j].field, Value: val(j)})
		}
		d = append(d, bson.E{Key: fields[i].field, Value: op(cmp(i, false), val(i))})
		branches = append(branches, cond{d: d})
	}
	ks := orOf(branches...)
	if len(fields) > 1 {
		// Implied by the branches; lets MongoDB bound an index scan on the first key.
		ks = andOf(mk(fields[0].field, op(cmp(0, true), val(0))), ks)
	}
	return ks, nil
}

func (c cond) doc() bson.D {
	if c.all || c.d == nil {
		return bson.D{}
	}
	return c.d
}

// count counts the documents matching f, stopping after limit of them when limit > 0.
func count(ctx context.Context, c *mongo.Collection, f cond, limit int) (int, error) {
	if f.none {
		return 0, nil
	}
	opts := options.Count()
	if limit > 0 {
		opts.SetLimit(int64(limit))
	}
	n, err := c.CountDocuments(ctx, f.doc(), opts)
	if err != nil {
		return 0, err
	}
	return int(n), nil
}

// Search runs a parsed query and returns one page (see store.Result for Next, Prev and Total).
func (s *Store) Search(ctx context.Context, q *search.Query) (*store.Result, error) {
	c, err := s.coll(q.Type)
	if err != nil {
		return nil, fmt.Errorf("mongo: search: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("mongo: search %s: %w", q.Type, err)
	}
	if q, err = s.resolveChains(ctx, q); err != nil {
		return nil, err
	}
	f, err := filterOf(q)
	if err != nil {
		return nil, fmt.Errorf("mongo: search %s: %w", q.Type, err)
	}
	res := &store.Result{Total: -1}
	if q.SummaryCount || q.Count <= 0 {
		if res.Total, err = count(ctx, c, f, 0); err != nil {
			return nil, fmt.Errorf("mongo: count %s: %w", q.Type, err)
		}
		return res, nil
	}
	fields, err := sortFields(q)
	if err != nil {
		return nil, err
	}
	cur := q.Cursor
	back := cur != nil && cur.Prev
	page := f
	if cur != nil {
		ks, err := keyset(fields, cur, back)
		if err != nil {
			return nil, err
		}
		page = andOf(f, ks)
	}
	withRefs := len(q.Include) > 0
	rows, err := s.fetchPage(ctx, c, q.Type, page, fields, back, q.Count+1, withRefs)
	if err != nil {
		return nil, fmt.Errorf("mongo: search %s: %w", q.Type, err)
	}
	more := len(rows) > q.Count
	if more {
		rows = rows[:q.Count]
	}
	if back {
		slices.Reverse(rows)
	}
	res.Matches = make([]store.Entry, len(rows))
	for i := range rows {
		res.Matches[i] = rows[i].entry
	}
	at := func(r *row) *search.Cursor {
		c := &search.Cursor{ID: r.entry.ID}
		for _, f := range fields[:len(fields)-1] {
			if f.field == fLastUpd {
				c.Keys = append(c.Keys, r.lu)
			} else {
				c.Keys = append(c.Keys, r.sort)
			}
		}
		return c
	}
	switch {
	case !back:
		if more {
			res.Next = at(&rows[len(rows)-1])
		}
		if cur != nil {
			// Not the first page. An empty page (the rows after the cursor went away) still
			// links back to the rows before the cursor row.
			res.Prev = &search.Cursor{Prev: true, Keys: cur.Keys, ID: cur.ID}
			if len(rows) > 0 {
				res.Prev = at(&rows[0])
				res.Prev.Prev = true
			}
		}
	default:
		if more {
			res.Prev = at(&rows[0])
			res.Prev.Prev = true
		}
		res.Next = &search.Cursor{Keys: cur.Keys, ID: cur.ID}
		if len(rows) > 0 {
			res.Next = at(&rows[len(rows)-1])
		}
	}
	switch {
	case cur == nil && !more:
		res.Total = len(rows) // free: the first page holds every match
	case q.Total == "accurate":
		if res.Total, err = count(ctx, c, f, 0); err != nil {
			return nil, fmt.Errorf("mongo: count %s: %w", q.Type, err)
		}
	case q.Total != "none":
		// Cheap when it is small: the count stops after totalBound+1 documents (store.TotalBound).
		n, err := count(ctx, c, f, s.totalBound+1)
		if err != nil {
			return nil, fmt.Errorf("mongo: count %s: %w", q.Type, err)
		}
		if n <= s.totalBound {
			res.Total = n
		}
	}
	if len(rows) > 0 && (len(q.Include) > 0 || len(q.RevInclude) > 0) {
		if res.Included, err = s.includes(ctx, q, rows); err != nil {
			return nil, fmt.Errorf("mongo: search %s: %w", q.Type, err)
		}
	}
	return res, nil
}

// fetchPage reads up to limit rows matching f in sort order (reversed when back).
func (s *Store) fetchPage(ctx context.Context, c *mongo.Collection, typ string, f cond, fields []sortField, back bool, limit int, withRefs bool) ([]row, error) {
	if f.none {
		return nil, nil
	}
	sortD := make(bson.D, len(fields))
	for i, sf := range fields {
		dir := 1
		if sf.desc != back {
			dir = -1
		}
		sortD[i] = bson.E{Key: sf.field, Value: dir}
	}
	proj := append(slices.Clone(entryProjection), bson.E{Key: fSort, Value: 1})
	if withRefs {
		proj = append(proj, bson.E{Key: fRef, Value: 1})
	}
	opts := options.Find().SetSort(sortD).SetLimit(int64(limit)).SetProjection(proj)
	cur, err := c.Find(ctx, f.doc(), opts)
	if err != nil {
		return nil, err
	}
	defer cur.Close(context.WithoutCancel(ctx))
	var rows []row
	for cur.Next(ctx) {
		raw := cur.Current
		e, deleted, err := rawEntry(typ, raw)
		if err != nil {
			return nil, err
		}
		if deleted {
			continue // the filter excludes tombstones; be safe anyway
		}
		r := row{entry: e, lu: e.LastUpdated.UnixMicro()}
		r.sort, _ = raw.Lookup(fSort).AsInt64OK()
		if withRefs {
			r.refs, err = rawStrings(raw.Lookup(fRef))
			if err != nil {
				return nil, err
			}
		}
		rows = append(rows, r)
	}
	if err := cur.Err(); err != nil {
		return nil, err
	}
	return rows, nil
}

// rawStrings decodes an array of strings; a missing field is an empty array.
func rawStrings(v bson.RawValue) ([]string, error) {
	if v.Type == 0 || v.Type == bson.TypeNull {
		return nil, nil
	}
	arr, ok := v.ArrayOK()
	if !ok {
		return nil, errors.New("index field is not an array")
	}
	vals, err := arr.Values()
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(vals))
	for _, x := range vals {
		str, ok := x.StringValueOK()
		if !ok {
			return nil, errors.New("index key is not a string")
		}
		out = append(out, str)
	}
	return out, nil
}

// findEntries reads the live entries matching filter in _id order, at most limit (0: no limit).
func (s *Store) findEntries(ctx context.Context, typ string, filter cond, limit int) ([]store.Entry, error) {
	c, err := s.coll(typ)
	if err != nil || filter.none {
		return nil, err
	}
	opts := options.Find().SetSort(bson.D{{Key: fID, Value: 1}}).SetProjection(entryProjection)
	if limit > 0 {
		opts.SetLimit(int64(limit))
	}
	cur, err := c.Find(ctx, andOf(mk(fDeleted, false), filter).doc(), opts)
	if err != nil {
		return nil, err
	}
	defer cur.Close(context.WithoutCancel(ctx))
	var out []store.Entry
	for cur.Next(ctx) {
		e, deleted, err := rawEntry(typ, cur.Current)
		if err != nil {
			return nil, err
		}
		if !deleted {
			out = append(out, e)
		}
	}
	return out, cur.Err()
}

// includes runs _include and _revinclude as second queries (no $lookup: FerretDB lacks it and
// it would cross shards). Resources already among the matches or already included are skipped.
func (s *Store) includes(ctx context.Context, q *search.Query, rows []row) ([]store.Entry, error) {
	seen := map[string]bool{}
	matchIDs := make([]string, len(rows))
	for i, r := range rows {
		seen[q.Type+"/"+r.entry.ID] = true
		matchIDs[i] = r.entry.ID
	}
	var out []store.Entry
	add := func(es []store.Entry) int {
		n := 0
		for _, e := range es {
			if k := e.Type + "/" + e.ID; !seen[k] {
				seen[k] = true
				out = append(out, e)
				n++
			}
		}
		return n
	}
	for _, inc := range q.Include {
		p := s.reg.Param(inc.Source, inc.Param)
		if inc.Source != q.Type || p == nil {
			continue
		}
		var ids []string
		for _, r := range rows {
			for _, k := range r.refs {
				col, typ, id, ok := splitRefKey(k)
				if ok && typ == inc.Target && slices.Contains(p.Columns, col) && !seen[typ+"/"+id] {
					ids = append(ids, id)
				}
			}
		}
		if len(ids) == 0 {
			continue
		}
		es, err := s.findEntries(ctx, inc.Target, in(fID, uniq(ids)), 0)
		if err != nil {
			return nil, fmt.Errorf("_include %s: %w", inc, err)
		}
		add(es)
	}
	budget := maxRevIncludes
	for _, rev := range q.RevInclude {
		p := s.reg.Param(rev.Source, rev.Param)
		if rev.Target != q.Type || p == nil || budget <= 0 {
			continue
		}
		var keys []string
		for _, col := range p.Columns {
			for _, id := range matchIDs {
				keys = append(keys, localRefKey(col, rev.Target, id))
			}
		}
		f := in(fRef, keys)
		if col, ok := compartmentColumn[rev.Source]; ok && rev.Target == "Patient" && slices.Equal(p.Columns, []string{col}) {
			f = andOf(f, in(fPatient, matchIDs)) // implied: lets the pat-first indexes serve it
		}
		if rev.Source == q.Type {
			f = andOf(f, notOf(in(fID, matchIDs)))
		}
		es, err := s.findEntries(ctx, rev.Source, f, budget)
		if err != nil {
			return nil, fmt.Errorf("_revinclude %s: %w", rev, err)
		}
		budget -= add(es)
	}
	return out, nil
}
