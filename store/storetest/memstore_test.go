package storetest

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/fhir/search"
	"github.com/openhealthexchange/ohx/store"
)

// memStore is a minimal in-memory store.Store built directly on search.Matches. It exists only to
// check the suite itself: every expectation of the suite must hold for it.
type memStore struct {
	mu   sync.Mutex
	res  map[string]*memRes // by "Type/id"
	seq  int
	last time.Time
	reg  *search.Registry
	recs map[string]store.Record // by kind + "\x00" + id
	// hist holds prior versions by "Type/id", oldest first; keep is the retention (0: all).
	hist map[string][]*memRes
	keep int
	// totalBound is store.TotalBound (lowered for RunTotalBound).
	totalBound int
	// jobs holds pending jobs and dead letters by id; cov the coverage by key.
	jobs map[string]*store.Job
	cov  map[store.CoverageKey]store.Coverage
}

type memRes struct {
	typ, id     string
	version     int64
	lastUpdated time.Time
	deleted     bool
	json        []byte
	content     []byte // JSON without id and meta, for Upsert's change detection
	idx         search.Index
	firstIdent  *fhir.Identifier
}

var _ store.Store = (*memStore)(nil)

func newMemStore() *memStore {
	return &memStore{res: map[string]*memRes{}, reg: search.DefaultRegistry(), recs: map[string]store.Record{}, totalBound: store.TotalBound,
		jobs: map[string]*store.Job{}, cov: map[store.CoverageKey]store.Coverage{}}
}

func (m *memStore) now() time.Time {
	t := time.Now().UTC().Truncate(time.Microsecond)
	if !t.After(m.last) {
		t = m.last.Add(time.Microsecond)
	}
	m.last = t
	return t
}

func (m *memStore) entry(r *memRes) store.Entry {
	return store.Entry{Type: r.typ, ID: r.id, VersionID: r.version, LastUpdated: r.lastUpdated, JSON: r.json}
}

// write stores r as version v of typ/id.
func (m *memStore) write(r fhir.Resource, id string, v int64) (*memRes, error) {
	data, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	c, err := fhir.Decode(data, r.Type())
	if err != nil {
		return nil, err
	}
	b := c.Common()
	b.ID = ""
	b.Meta = nil
	content, _ := json.Marshal(c)
	b.ID = id
	if old := r.Common().Meta; old != nil {
		meta := *old
		b.Meta = &meta
	} else {
		b.Meta = &fhir.Meta{}
	}
	lu := m.now()
	b.Meta.VersionID = strconv.FormatInt(v, 10)
	b.Meta.LastUpdated = fhir.Instant(lu)
	out, err := json.Marshal(c)
	if err != nil {
		return nil, err
	}
	idx, err := search.Extract(c)
	if err != nil {
		return nil, err
	}
	mr := &memRes{typ: r.Type(), id: id, version: v, lastUpdated: lu, json: out, content: content, idx: idx}
	if ids := identifiers(c); len(ids) > 0 {
		mr.firstIdent = &ids[0]
	}
	m.keepPrior(r.Type()+"/"+id, v)
	m.res[r.Type()+"/"+id] = mr
	return mr, nil
}

func identifiers(r fhir.Resource) []fhir.Identifier {
	switch r := r.(type) {
	case *fhir.Observation:
		return r.Identifier
	case *fhir.Patient:
		return r.Identifier
	case *fhir.Device:
		return r.Identifier
	case *fhir.DeviceAssociation:
		return r.Identifier
	}
	return nil
}

func (m *memStore) Create(ctx context.Context, r fhir.Resource) (store.Entry, error) {
	if err := ctx.Err(); err != nil {
		return store.Entry{}, fmt.Errorf("memstore: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	id := r.Common().ID
	if id == "" {
		m.seq++
		id = fmt.Sprintf("m%d", m.seq)
	}
	if _, ok := m.res[r.Type()+"/"+id]; ok {
		return store.Entry{}, store.ErrDuplicate
	}
	mr, err := m.write(r, id, 1)
	if err != nil {
		return store.Entry{}, err
	}
	return m.entry(mr), nil
}

func (m *memStore) Put(ctx context.Context, r fhir.Resource, opt store.WriteOptions) (store.Entry, bool, error) {
	if err := ctx.Err(); err != nil {
		return store.Entry{}, false, fmt.Errorf("memstore: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	id := r.Common().ID
	if id == "" {
		return store.Entry{}, false, errors.New("memstore: Put without id")
	}
	old, ok := m.res[r.Type()+"/"+id]
	if opt.IfMatch != 0 && (!ok || old.deleted || old.version != opt.IfMatch) {
		return store.Entry{}, false, store.ErrVersionConflict
	}
	v := int64(1)
	if ok {
		v = old.version + 1
	}
	mr, err := m.write(r, id, v)
	if err != nil {
		return store.Entry{}, false, err
	}
	return m.entry(mr), !ok || old.deleted, nil
}

func (m *memStore) Read(ctx context.Context, typ, id string) (store.Entry, error) {
	if err := ctx.Err(); err != nil {
		return store.Entry{}, fmt.Errorf("memstore: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.res[typ+"/"+id]
	switch {
	case !ok:
		return store.Entry{}, store.ErrNotFound
	case r.deleted:
		return m.entry(r), store.ErrDeleted
	}
	return m.entry(r), nil
}

func (m *memStore) Delete(ctx context.Context, typ, id string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memstore: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.res[typ+"/"+id]
	switch {
	case !ok:
		return store.ErrNotFound
	case r.deleted:
		return nil
	}
	m.keepPrior(typ+"/"+id, r.version+1)
	m.res[typ+"/"+id] = &memRes{typ: typ, id: id, version: r.version + 1, lastUpdated: m.now(), deleted: true}
	return nil
}

func (m *memStore) FindByIdentifier(ctx context.Context, typ, system, value string) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("memstore: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.find(typ, system, value), nil
}

func (m *memStore) find(typ, system, value string) []string {
	var out []string
	for _, r := range m.res {
		if r.typ != typ || r.deleted {
			continue
		}
		for _, e := range r.idx.Entries {
			if e.Column == "identifier" && e.System == system && e.Code == value {
				out = append(out, r.id)
				break
			}
		}
	}
	slices.Sort(out)
	return out
}

func (m *memStore) Upsert(ctx context.Context, rs []fhir.Resource) ([]store.UpsertResult, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("memstore: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	targets := make([]string, len(rs))
	for i, r := range rs {
		ids := identifiers(r)
		if len(ids) == 0 || ids[0].System == "" || ids[0].Value == "" {
			return nil, fmt.Errorf("memstore: upsert %s without identifier", r.Type())
		}
		found := m.find(r.Type(), ids[0].System, ids[0].Value)
		if len(found) > 1 {
			return nil, store.ErrDuplicate
		}
		if len(found) == 1 {
			targets[i] = found[0]
		}
	}
	out := make([]store.UpsertResult, len(rs))
	for i, r := range rs {
		if targets[i] == "" {
			// An earlier resource of the call may have created it.
			if ids := identifiers(r); len(ids) > 0 {
				if found := m.find(r.Type(), ids[0].System, ids[0].Value); len(found) == 1 {
					targets[i] = found[0]
				}
			}
		}
		if targets[i] == "" {
			m.seq++
			id := fmt.Sprintf("m%d", m.seq)
			if _, err := m.write(r, id, 1); err != nil {
				return nil, err
			}
			out[i] = store.UpsertResult{ID: id, VersionID: 1, Created: true}
			continue
		}
		old := m.res[r.Type()+"/"+targets[i]]
		c, err := fhir.Decode(mustJSON(r), r.Type())
		if err != nil {
			return nil, err
		}
		c.Common().ID, c.Common().Meta = "", nil
		same := bytes.Equal(mustJSON(c), old.content)
		if o, ok := decodeStored(old.content, r.Type()).(*fhir.Observation); !same && ok && store.Amends(o.Status) && store.SetAmended(c, true) {
			store.SetAmended(r, true)
			same = bytes.Equal(mustJSON(c), old.content)
		}
		if same {
			out[i] = store.UpsertResult{ID: old.id, VersionID: old.version}
			continue
		}
		if _, err := m.write(r, old.id, old.version+1); err != nil {
			return nil, err
		}
		out[i] = store.UpsertResult{ID: old.id, VersionID: old.version + 1, Changed: true}
	}
	return out, nil
}

// sortKeys returns the int64 sort values of r for every sort key but the final _id.
func sortKeys(q *search.Query, r *memRes) []int64 {
	var out []int64
	for _, k := range q.Sort {
		switch k.Param {
		case "_id":
		case "_lastUpdated":
			out = append(out, r.lastUpdated.UnixMicro())
		default:
			out = append(out, r.idx.SortDate)
		}
	}
	return out
}

// compareCursor orders (keys, id) positions as q sorts them.
func compareCursor(q *search.Query, ak []int64, aid string, bk []int64, bid string) int {
	for i, k := range q.Sort {
		var c int
		if k.Param == "_id" {
			c = cmp.Compare(aid, bid)
		} else {
			c = cmp.Compare(ak[i], bk[i])
		}
		if k.Desc {
			c = -c
		}
		if c != 0 {
			return c
		}
	}
	return 0
}

func (m *memStore) Search(ctx context.Context, q *search.Query) (*store.Result, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("memstore: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var rows []*memRes
	for _, r := range m.res {
		if r.typ == q.Type && !r.deleted && search.MatchesWith(q, r.id, r.lastUpdated.UnixMicro(), r.idx, m.resolve) {
			rows = append(rows, r)
		}
	}
	if q.SummaryCount {
		return &store.Result{Total: len(rows)}, nil
	}
	slices.SortFunc(rows, func(a, b *memRes) int {
		return compareCursor(q, sortKeys(q, a), a.id, sortKeys(q, b), b.id)
	})
	var page []*memRes
	hasPrev, hasNext := false, false
	switch c := q.Cursor; {
	case c == nil:
		page = rows[:min(q.Count, len(rows))]
		hasNext = len(rows) > q.Count
	case !c.Prev:
		i, _ := slices.BinarySearchFunc(rows, c, func(r *memRes, c *search.Cursor) int {
			if compareCursor(q, sortKeys(q, r), r.id, c.Keys, c.ID) <= 0 {
				return -1
			}
			return 1
		})
		after := rows[i:]
		page = after[:min(q.Count, len(after))]
		hasPrev, hasNext = i > 0, len(after) > q.Count
	default:
		i, _ := slices.BinarySearchFunc(rows, c, func(r *memRes, c *search.Cursor) int {
			if compareCursor(q, sortKeys(q, r), r.id, c.Keys, c.ID) < 0 {
				return -1
			}
			return 1
		})
		before := rows[:i]
		page = before[max(0, len(before)-q.Count):]
		hasPrev, hasNext = len(before) > q.Count, i < len(rows)
	}
	res := &store.Result{Total: -1}
	if q.Total == "accurate" || (q.Cursor == nil && !hasNext) || (q.Total != "none" && len(rows) <= m.totalBound) {
		res.Total = len(rows)
	}
	if len(page) > 0 {
		first, last := page[0], page[len(page)-1]
		if hasNext {
			res.Next = &search.Cursor{Keys: sortKeys(q, last), ID: last.id}
		}
		if hasPrev {
			res.Prev = &search.Cursor{Prev: true, Keys: sortKeys(q, first), ID: first.id}
		}
	}
	seen := map[string]bool{}
	for _, r := range page {
		res.Matches = append(res.Matches, m.entry(r))
		seen[r.typ+"/"+r.id] = true
	}
	add := func(r *memRes) {
		if r == nil || r.deleted || seen[r.typ+"/"+r.id] {
			return
		}
		seen[r.typ+"/"+r.id] = true
		res.Included = append(res.Included, m.entry(r))
	}
	for _, inc := range q.Include {
		p := m.reg.Param(inc.Source, inc.Param)
		for _, r := range page {
			for _, e := range r.idx.Entries {
				if slices.Contains(p.Columns, e.Column) && e.RefType == inc.Target {
					add(m.res[e.RefType+"/"+e.RefID])
				}
			}
		}
	}
	for _, inc := range q.RevInclude {
		p := m.reg.Param(inc.Source, inc.Param)
		for _, src := range m.res {
			if src.typ != inc.Source || src.deleted {
				continue
			}
			for _, e := range src.idx.Entries {
				if slices.Contains(p.Columns, e.Column) && e.RefType == q.Type && pageHas(page, e.RefID) {
					add(src)
				}
			}
		}
	}
	return res, nil
}

// resolve is the search.Resolver of the live resources; the caller holds m.mu.
func (m *memStore) resolve(typ, id string) (search.Index, bool) {
	if r, ok := m.res[typ+"/"+id]; ok && !r.deleted {
		return r.idx, true
	}
	return search.Index{}, false
}

func pageHas(page []*memRes, id string) bool {
	return slices.ContainsFunc(page, func(r *memRes) bool { return r.id == id })
}

func (m *memStore) Close() error { return nil }

// live returns the record (kind, id) unless it is absent or expired.
func (m *memStore) live(kind, id string) (store.Record, bool) {
	r, ok := m.recs[kind+"\x00"+id]
	if !ok || (!r.Expires.IsZero() && !time.Now().Before(r.Expires)) {
		return store.Record{}, false
	}
	return r, true
}

func (m *memStore) PutRecord(ctx context.Context, kind, id string, doc []byte, expires time.Time) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memstore: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.recs[kind+"\x00"+id] = store.Record{Kind: kind, ID: id, Doc: bytes.Clone(doc), Expires: expires}
	return nil
}

func (m *memStore) CreateRecord(ctx context.Context, kind, id string, doc []byte, expires time.Time) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memstore: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.live(kind, id); ok {
		return store.ErrDuplicate
	}
	m.recs[kind+"\x00"+id] = store.Record{Kind: kind, ID: id, Doc: bytes.Clone(doc), Expires: expires}
	return nil
}

func (m *memStore) GetRecord(ctx context.Context, kind, id string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("memstore: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.live(kind, id)
	if !ok {
		return nil, store.ErrNotFound
	}
	return bytes.Clone(r.Doc), nil
}

func (m *memStore) TakeRecord(ctx context.Context, kind, id string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("memstore: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.live(kind, id)
	if !ok {
		return nil, store.ErrNotFound
	}
	delete(m.recs, kind+"\x00"+id)
	return r.Doc, nil
}

func (m *memStore) DeleteRecord(ctx context.Context, kind, id string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memstore: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.recs, kind+"\x00"+id)
	return nil
}

func (m *memStore) ListRecords(ctx context.Context, kind string) ([]store.Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("memstore: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []store.Record
	for _, r := range m.recs {
		if r.Kind == kind {
			if l, ok := m.live(kind, r.ID); ok {
				l.Doc = bytes.Clone(l.Doc)
				out = append(out, l)
			}
		}
	}
	slices.SortFunc(out, func(a, b store.Record) int { return cmp.Compare(a.ID, b.ID) })
	return out, nil
}

func (m *memStore) CreateUnique(ctx context.Context, r fhir.Resource, system, value string) (store.Entry, bool, error) {
	if err := ctx.Err(); err != nil {
		return store.Entry{}, false, fmt.Errorf("memstore: %w", err)
	}
	if !store.CarriesIdentifier(r, system, value) {
		return store.Entry{}, false, errors.New("memstore: CreateUnique of a resource without the identifier")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	switch ids := m.find(r.Type(), system, value); len(ids) {
	case 0:
	case 1:
		return m.entry(m.res[r.Type()+"/"+ids[0]]), false, nil
	default:
		return store.Entry{}, false, store.ErrDuplicate
	}
	m.seq++
	mr, err := m.write(r, fmt.Sprintf("m%d", m.seq), 1)
	if err != nil {
		return store.Entry{}, false, err
	}
	return m.entry(mr), true, nil
}

var _ store.Transactor = (*memStore)(nil)

// Transact checks every op against the state the earlier ones leave before writing any, so
// that it is all or nothing without undoing writes.
func (m *memStore) Transact(ctx context.Context, ops []store.TxOp) ([]store.TxResult, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("memstore: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	type state struct {
		exists, deleted bool
		version         int64
	}
	states := map[string]state{}          // by Type/id, after the ops checked so far
	written := map[string]fhir.Resource{} // by Type/id: the last op's resource
	stateOf := func(key string) state {
		if st, ok := states[key]; ok {
			return st
		}
		r, ok := m.res[key]
		if !ok {
			return state{}
		}
		return state{exists: true, deleted: r.deleted, version: r.version}
	}
	before := make([]state, len(ops))
	for i, op := range ops {
		r := op.Resource
		typ, id := r.Type(), r.Common().ID
		key := typ + "/" + id
		fail := func(err error) ([]store.TxResult, error) { return nil, &store.TxError{Index: i, Err: err} }
		if id == "" {
			return fail(errors.New("memstore: transaction op without id"))
		}
		cur := stateOf(key)
		if op.Create && cur.exists {
			return fail(store.ErrDuplicate)
		}
		if op.IfMatch != 0 && (!cur.exists || cur.deleted || cur.version != op.IfMatch) {
			return fail(store.ErrVersionConflict)
		}
		if op.UniqueSystem != "" || op.UniqueValue != "" {
			if !store.CarriesIdentifier(r, op.UniqueSystem, op.UniqueValue) {
				return fail(errors.New("memstore: transaction op without its unique identifier"))
			}
			var holders []string
			for _, h := range m.find(typ, op.UniqueSystem, op.UniqueValue) {
				if _, ok := written[typ+"/"+h]; !ok {
					holders = append(holders, h)
				}
			}
			for _, w := range written {
				if w.Type() == typ && store.CarriesIdentifier(w, op.UniqueSystem, op.UniqueValue) {
					holders = append(holders, w.Common().ID)
				}
			}
			for _, h := range holders {
				if h != id {
					return fail(store.ErrDuplicate)
				}
			}
		}
		if _, err := search.Extract(r); err != nil {
			return fail(err)
		}
		before[i] = cur
		states[key] = state{exists: true, version: cur.version + 1}
		written[key] = r
	}
	out := make([]store.TxResult, len(ops))
	for i, op := range ops {
		mr, err := m.write(op.Resource, op.Resource.Common().ID, before[i].version+1)
		if err != nil {
			return nil, err // checked above: cannot happen
		}
		out[i] = store.TxResult{Entry: m.entry(mr), Created: !before[i].exists || before[i].deleted}
	}
	return out, nil
}

// The job queue and coverage store, kept as plainly as possible: every call takes the lock and
// works on the maps, listing and sorting all jobs where a store would read an index.

var (
	_ store.Jobs      = (*memStore)(nil)
	_ store.Coverages = (*memStore)(nil)
)

// keep is t as stores keep it: UTC, whole microseconds (the zero time stays zero).
func keep(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.UTC().Truncate(store.Precision)
}

// readyAt is when a pending job can next be claimed.
func readyAt(j *store.Job) time.Time {
	if j.Owner != "" {
		return j.LeaseUntil
	}
	return j.NotBefore
}

// claimOrder orders pending jobs as ClaimJobs and PendingJobs do.
func claimOrder(a, b *store.Job) int {
	return cmp.Or(cmp.Compare(b.Priority, a.Priority), readyAt(a).Compare(readyAt(b)), a.Created.Compare(b.Created), cmp.Compare(a.ID, b.ID))
}

func cloneJob(j *store.Job) store.Job {
	c := *j
	c.Payload = bytes.Clone(j.Payload)
	return c
}

// pending returns the pending jobs in claim order; the caller holds the lock.
func (m *memStore) pending() []*store.Job {
	var out []*store.Job
	for _, j := range m.jobs {
		if !j.Dead {
			out = append(out, j)
		}
	}
	slices.SortFunc(out, claimOrder)
	return out
}

// holder returns the pending job holding key; the caller holds the lock.
func (m *memStore) holder(key string) *store.Job {
	for _, j := range m.jobs {
		if !j.Dead && j.Key == key {
			return j
		}
	}
	return nil
}

func (m *memStore) EnqueueJob(ctx context.Context, j store.Job, now time.Time) (string, bool, error) {
	if err := ctx.Err(); err != nil {
		return "", false, fmt.Errorf("memstore: %w", err)
	}
	if j.Type == "" {
		return "", false, errors.New("memstore: enqueue job without a type")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	nb := keep(cmp.Or(j.NotBefore, now))
	if j.Key != "" {
		if h := m.holder(j.Key); h != nil {
			h.Priority = max(h.Priority, j.Priority)
			switch {
			case h.Owner == "":
				if nb.Before(h.NotBefore) {
					h.NotBefore = nb
				}
			case !h.Rerun:
				h.Rerun, h.NotBefore = true, keep(now)
			}
			return h.ID, true, nil
		}
	}
	if j.ID == "" {
		j.ID = store.NewID()
	} else if _, ok := m.jobs[j.ID]; ok {
		return "", false, fmt.Errorf("memstore: job %s: %w", j.ID, store.ErrDuplicate)
	}
	m.jobs[j.ID] = &store.Job{ID: j.ID, Type: j.Type, Key: j.Key, Priority: j.Priority, NotBefore: nb, Payload: bytes.Clone(j.Payload),
		Created: keep(cmp.Or(j.Created, now))}
	return j.ID, false, nil
}

func (m *memStore) ClaimJobs(ctx context.Context, owner string, n int, lease time.Duration, now time.Time) ([]store.Job, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("memstore: %w", err)
	}
	if owner == "" || lease < store.Precision {
		return nil, errors.New("memstore: claim jobs without an owner or lease")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []store.Job
	for _, j := range m.pending() {
		if len(out) == n {
			break
		}
		if readyAt(j).After(now) {
			continue
		}
		j.Owner, j.LeaseUntil, j.Rerun = owner, keep(now.Add(lease)), false
		out = append(out, cloneJob(j))
	}
	return out, nil
}

// leased returns the job owner holds, or ErrLeaseLost; the caller holds the lock.
func (m *memStore) leased(id, owner string) (*store.Job, error) {
	j, ok := m.jobs[id]
	if !ok || j.Dead || owner == "" || j.Owner != owner {
		return nil, fmt.Errorf("memstore: job %s: %w", id, store.ErrLeaseLost)
	}
	return j, nil
}

func (m *memStore) RenewJob(ctx context.Context, id, owner string, lease time.Duration, now time.Time) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memstore: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if lease < store.Precision {
		return errors.New("memstore: renew with a lease below Precision")
	}
	j, err := m.leased(id, owner)
	if err != nil {
		return err
	}
	j.LeaseUntil = keep(now.Add(lease))
	return nil
}

func (m *memStore) CompleteJob(ctx context.Context, id, owner string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memstore: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	j, err := m.leased(id, owner)
	if err != nil {
		return err
	}
	if !j.Rerun {
		delete(m.jobs, id)
		return nil
	}
	j.Owner, j.LeaseUntil, j.Attempt, j.LastError, j.Rerun = "", time.Time{}, 0, "", false
	return nil
}

func (m *memStore) FailJob(ctx context.Context, id, owner string, f store.JobFailure) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memstore: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	j, err := m.leased(id, owner)
	if err != nil {
		return err
	}
	j.Attempt++
	j.LastError, j.Owner, j.LeaseUntil = f.Error, "", time.Time{}
	if f.Dead {
		j.Dead, j.FailedAt = true, keep(cmp.Or(f.At, time.Now()))
	} else {
		j.NotBefore = keep(cmp.Or(f.RetryAt, f.At, time.Now()))
	}
	return nil
}

func (m *memStore) GetJob(ctx context.Context, id string) (store.Job, error) {
	if err := ctx.Err(); err != nil {
		return store.Job{}, fmt.Errorf("memstore: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	j, ok := m.jobs[id]
	if !ok {
		return store.Job{}, fmt.Errorf("memstore: job %s: %w", id, store.ErrNotFound)
	}
	return cloneJob(j), nil
}

func (m *memStore) PendingJobs(ctx context.Context, limit int) ([]store.Job, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("memstore: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []store.Job
	for _, j := range m.pending() {
		if len(out) == limit {
			break
		}
		out = append(out, cloneJob(j))
	}
	return out, nil
}

func (m *memStore) DeadJobs(ctx context.Context, limit int) ([]store.Job, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("memstore: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var dead []*store.Job
	for _, j := range m.jobs {
		if j.Dead {
			dead = append(dead, j)
		}
	}
	slices.SortFunc(dead, func(a, b *store.Job) int { return cmp.Or(b.FailedAt.Compare(a.FailedAt), cmp.Compare(a.ID, b.ID)) })
	var out []store.Job
	for _, j := range dead[:min(limit, len(dead))] {
		out = append(out, cloneJob(j))
	}
	return out, nil
}

func (m *memStore) RetryDeadJob(ctx context.Context, id string, now time.Time) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memstore: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	j, ok := m.jobs[id]
	if !ok || !j.Dead {
		return fmt.Errorf("memstore: dead job %s: %w", id, store.ErrNotFound)
	}
	if j.Key != "" && m.holder(j.Key) != nil {
		return fmt.Errorf("memstore: dead job %s: %w", id, store.ErrDuplicate)
	}
	j.Dead, j.FailedAt, j.Attempt, j.Owner, j.LeaseUntil, j.Rerun, j.NotBefore = false, time.Time{}, 0, "", time.Time{}, false, keep(now)
	return nil
}

func (m *memStore) JobStats(ctx context.Context, now time.Time) (store.JobStats, error) {
	if err := ctx.Err(); err != nil {
		return store.JobStats{}, fmt.Errorf("memstore: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var st store.JobStats
	for _, j := range m.jobs {
		switch {
		case j.Dead:
			st.Dead++
		case j.Owner != "" && j.LeaseUntil.After(now):
			st.Running++
		default:
			st.Waiting++
		}
	}
	return st, nil
}

func cloneCoverage(c store.Coverage) store.Coverage {
	c.Intervals = slices.Clone(c.Intervals)
	return c
}

func (m *memStore) Coverage(ctx context.Context, provider, patient string) ([]store.Coverage, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("memstore: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	out := []store.Coverage{}
	for k, c := range m.cov {
		if k.Provider == provider && k.Patient == patient {
			out = append(out, cloneCoverage(c))
		}
	}
	slices.SortFunc(out, func(a, b store.Coverage) int { return cmp.Compare(a.Kind, b.Kind) })
	return out, nil
}

func (m *memStore) UpdateCoverage(ctx context.Context, k store.CoverageKey, now time.Time, fn func(*store.Coverage) error) (store.Coverage, error) {
	if err := ctx.Err(); err != nil {
		return store.Coverage{}, fmt.Errorf("memstore: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.cov[k]
	if ok {
		c = cloneCoverage(c)
	} else {
		c = store.Coverage{CoverageKey: k}
	}
	if err := fn(&c); err != nil {
		return store.Coverage{}, err
	}
	c.CoverageKey, c.Updated = k, now
	c = c.Normalized()
	m.cov[k] = c
	return cloneCoverage(c), nil
}

func (m *memStore) DeleteCoverage(ctx context.Context, provider, patient string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memstore: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for k := range m.cov {
		if k.Provider == provider && k.Patient == patient {
			delete(m.cov, k)
		}
	}
	return nil
}

// TestRunJobsSharedMemStore runs the shared-database job checks with one memStore behind both
// handles.
func TestRunJobsSharedMemStore(t *testing.T) {
	RunJobsShared(t, func(t testing.TB) (store.Store, store.Store) {
		s := newMemStore()
		t.Cleanup(func() { s.Close() })
		return s, s
	})
}

// decodeStored decodes stored content, nil if it does not decode.
func decodeStored(content []byte, typ string) fhir.Resource {
	r, err := fhir.Decode(content, typ)
	if err != nil {
		return nil
	}
	return r
}
