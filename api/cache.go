package api

import (
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/openhealthexchange/ohx/fhir/search"
	"github.com/openhealthexchange/ohx/store"
)

// resultCache keeps searchset bodies for repeated searches (EHRs poll the same query) and stored
// entries for reads by id. An entry remembers the store's change generations of everything it
// was built from, read before the search ran; it is served only while all of them are unchanged,
// so it is invalidated exactly when the patient's data (or an included type) changes.
//
// Memory is bounded by bytes, not entries: the cache keeps at most maxBytes of keys and bodies
// (an estimate of each entry's footprint), evicting the least recently used entries to admit a
// new one, so a new search is always admitted however full the cache is; an entry larger than
// maxBytes/16 is not kept at all. The TTL bounds how long an entry may be served: an expired
// entry is never served, and is dropped when it is next looked up or reaches the old end.
type resultCache struct {
	tracker  store.ChangeTracker
	ttl      time.Duration
	maxBytes int64 // budget
	maxEntry int64 // largest entry kept
	now      func() time.Time
	lookups  *prometheus.CounterVec

	mu    sync.Mutex
	lru   *simplelru.LRU[string, *cacheItem] // guarded by mu
	bytes int64                              // footprint of the entries in lru; guarded by mu
}

type dep struct{ typ, patient string }

// cacheItem is one cached value (*cachedResult or *cachedEntry) with its footprint and expiry.
type cacheItem struct {
	value   any
	size    int64
	expires time.Time
}

type cachedResult struct {
	body []byte
	deps []dep
	gens []uint64
}

// itemOverhead approximates the bookkeeping of one entry besides its key, body and deps: the
// list element, the map slot, the item and value structs.
const itemOverhead = 256

func footprint(key string, body int, deps []dep) int64 {
	n := int64(itemOverhead + len(key) + body)
	for _, d := range deps {
		n += int64(len(d.typ)+len(d.patient)) + 40 // two string headers and a generation
	}
	return n
}

// newResultCache returns the cache, or nil (no caching) when maxBytes is not positive or the store
// cannot report its changes (a store shared with other processes: their writes would go unseen).
func newResultCache(st store.Store, ttl time.Duration, maxBytes int64, reg *prometheus.Registry) *resultCache {
	t, ok := st.(store.ChangeTracker)
	if !ok || maxBytes <= 0 {
		return nil
	}
	return newTrackedCache(t, ttl, maxBytes, reg)
}

// newTrackedCache returns a cache invalidated by t's generations.
func newTrackedCache(t store.ChangeTracker, ttl time.Duration, maxBytes int64, reg *prometheus.Registry) *resultCache {
	rc := &resultCache{tracker: t, ttl: ttl, maxBytes: maxBytes, maxEntry: maxBytes / 16, now: time.Now,
		lookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ohx_search_cache_lookups_total", Help: "Search result cache lookups by outcome (hit, miss, stale).",
		}, []string{"outcome"})}
	// The count bound is never reached: the byte budget evicts first.
	rc.lru, _ = simplelru.NewLRU[string, *cacheItem](math.MaxInt, func(_ string, it *cacheItem) { rc.bytes -= it.size })
	reg.MustRegister(rc.lookups)
	return rc
}

// lookup returns the live value for key, dropping it if it has expired.
func (rc *resultCache) lookup(key string) (any, bool) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	it, ok := rc.lru.Get(key)
	if !ok {
		return nil, false
	}
	if !rc.now().Before(it.expires) {
		rc.lru.Remove(key)
		return nil, false
	}
	return it.value, true
}

// keep stores value under key, evicting the least recently used entries (expired ones first
// when they are the oldest) until it fits the budget. An entry over maxEntry is not kept.
func (rc *resultCache) keep(key string, value any, size int64) {
	if size > rc.maxEntry {
		return
	}
	now := rc.now()
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.lru.Remove(key) // a replaced value's bytes leave with it (Add would not report them)
	for {
		_, old, ok := rc.lru.GetOldest()
		if !ok || (rc.bytes+size <= rc.maxBytes && now.Before(old.expires)) {
			break
		}
		rc.lru.RemoveOldest()
	}
	rc.lru.Add(key, &cacheItem{value: value, size: size, expires: now.Add(rc.ttl)})
	rc.bytes += size
}

// forget drops key.
func (rc *resultCache) forget(key string) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.lru.Remove(key)
}

// usage reports the entries and bytes held, for tests.
func (rc *resultCache) usage() (entries int, bytes int64) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.lru.Len(), rc.bytes
}

// typeGeneration is the type-wide change generation of typ, 0 without a cache.
func (rc *resultCache) typeGeneration(typ string) uint64 {
	if rc == nil {
		return 0
	}
	return rc.tracker.Generation(typ, "")
}

func (rc *resultCache) snapshot(deps []dep) []uint64 {
	g := make([]uint64, len(deps))
	for i, d := range deps {
		g[i] = rc.tracker.Generation(d.typ, d.patient)
	}
	return g
}

// fresh reports whether generations taken for deps are still current.
func (rc *resultCache) fresh(deps []dep, gens []uint64) bool {
	for i, d := range deps {
		if rc.tracker.Generation(d.typ, d.patient) != gens[i] {
			return false
		}
	}
	return true
}

// get returns a body still valid for key.
func (rc *resultCache) get(key string) ([]byte, bool) {
	if rc == nil {
		return nil, false
	}
	v, ok := rc.lookup(key)
	e, isResult := v.(*cachedResult)
	if !ok || !isResult {
		rc.lookups.WithLabelValues("miss").Inc()
		return nil, false
	}
	if !rc.fresh(e.deps, e.gens) {
		rc.forget(key)
		rc.lookups.WithLabelValues("stale").Inc()
		return nil, false
	}
	rc.lookups.WithLabelValues("hit").Inc()
	return e.body, true
}

// put keeps a search body built from the data of deps as of gens (taken before the search).
func (rc *resultCache) put(key string, body []byte, deps []dep, gens []uint64) {
	if rc == nil {
		return
	}
	rc.keep(key, &cachedResult{body: body, deps: deps, gens: gens}, footprint(key, len(body), deps))
}

// searchDeps lists what a search result depends on: the searched type within the pinned
// patient's compartment (or the whole type), and every type brought in by includes.
func searchDeps(q *search.Query, v Version) []dep {
	patient := ""
	for _, c := range q.Clauses {
		if (c.Param.Name == "patient" || c.Param.Name == "subject") && c.Modifier == "" && len(c.Values) == 1 &&
			c.Values[0].RefType == "Patient" && c.Values[0].RefID != "" {
			patient = c.Values[0].RefID
		}
	}
	if q.Type == "Patient" || q.Type == "Device" {
		patient = "" // Patient and Device rows are not indexed by compartment in the tracker
	}
	deps := []dep{{q.Type, patient}}
	deps = append(deps, chainDeps(q)...)
	for _, i := range q.Include {
		deps = append(deps, dep{i.Target, ""})
	}
	for _, i := range q.RevInclude {
		deps = append(deps, dep{i.Source, ""})
	}
	if v == R4 {
		deps = append(deps, dep{"DeviceAssociation", ""}) // R4 Device.patient comes from associations
	}
	return deps
}

// searchKey is the result cache key of a parsed search: the FHIR version and base the body is
// rendered for, the parameters the parser applied (which determine the query and the self
// link), the page size and cursor, and the caller's binding. Every part is length-prefixed, so
// that no value can pose as a separator and two different searches never share a key.
func searchKey(v Version, base string, q *search.Query, binding string) string {
	var b strings.Builder
	field := func(s string) {
		b.WriteString(strconv.Itoa(len(s)))
		b.WriteByte(':')
		b.WriteString(s)
	}
	field("search")
	field(v.mimeParam())
	field(base)
	field(q.Type)
	field(strconv.Itoa(len(q.Applied)))
	for _, p := range q.Applied {
		field(p.Name)
		field(p.Value)
	}
	field(strconv.Itoa(q.Count))
	field(strconv.FormatBool(q.SummaryCount))
	if cur := q.Cursor; cur != nil {
		field(strconv.FormatBool(cur.Prev))
		field(strconv.Itoa(len(cur.Keys)))
		for _, k := range cur.Keys {
			field(strconv.FormatInt(k, 10))
		}
		field(cur.ID)
	} else {
		field("first")
	}
	field(binding)
	return b.String()
}

// readDeps is what a read depends on: the resource's type within its compartment, or the whole
// type for resources outside any compartment; R4 Devices also on the associations.
func readDeps(e store.Entry, v Version) []dep {
	deps := []dep{{e.Type, e.Patient}}
	if v == R4 && e.Type == "Device" {
		deps = append(deps, dep{"DeviceAssociation", ""})
	}
	return deps
}

// cachedEntry is a read result kept with the generations it was read under.
type cachedEntry struct {
	entry store.Entry
	deps  []dep
	gens  []uint64
}

// getEntry returns a still-valid stored entry for a read by id.
func (rc *resultCache) getEntry(key string) (store.Entry, bool) {
	if rc == nil {
		return store.Entry{}, false
	}
	v, ok := rc.lookup(key)
	e, isEntry := v.(*cachedEntry)
	if !ok || !isEntry {
		return store.Entry{}, false
	}
	if !rc.fresh(e.deps, e.gens) {
		rc.forget(key)
		return store.Entry{}, false
	}
	return e.entry, true
}

// putEntry caches a read; gens must have been taken, for the same deps, before the read. Since
// the compartment is only known after reading, the caller snapshots the type-wide generation
// first and the entry is kept only if that has not moved either.
func (rc *resultCache) putEntry(key string, e store.Entry, typeGen uint64, v Version) {
	if rc == nil {
		return
	}
	// Snapshot first, then check the type-wide counter: writers bump it before the compartment's,
	// so a write that raced the read is either caught here or left the snapshot behind.
	deps := readDeps(e, v)
	gens := rc.snapshot(deps)
	if rc.tracker.Generation(e.Type, "") != typeGen {
		return // a write of this type raced the read
	}
	size := footprint(key, len(e.JSON)+len(e.Type)+len(e.ID)+len(e.Patient), deps)
	rc.keep(key, &cachedEntry{entry: e, deps: deps, gens: gens}, size)
}
