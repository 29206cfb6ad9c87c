package api

import (
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	gocache "github.com/patrickmn/go-cache"

	"github.com/openhealthexchange/ohx/fhir/search"
	"github.com/openhealthexchange/ohx/store"
)

// resultCache keeps searchset bodies for repeated searches (EHRs poll the same query). An entry
// remembers the store's change generations of everything it was built from, read before the
// search ran; it is served only while all of them are unchanged, so it is invalidated exactly when
// the patient's data (or an included type) changes. The TTL only bounds memory.
type resultCache struct {
	c        *gocache.Cache
	tracker  store.ChangeTracker
	maxItems int
	maxBytes int
	lookups  *prometheus.CounterVec
}

type dep struct{ typ, patient string }

type cachedResult struct {
	body []byte
	deps []dep
	gens []uint64
}

func newResultCache(st store.Store, ttl time.Duration, maxItems, maxBytes int, reg *prometheus.Registry) *resultCache {
	t, ok := st.(store.ChangeTracker)
	if !ok || maxItems <= 0 {
		return nil // a store shared with other processes: their writes would go unseen
	}
	rc := &resultCache{c: gocache.New(ttl, 2*ttl), tracker: t, maxItems: maxItems, maxBytes: maxBytes,
		lookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ohx_search_cache_lookups_total", Help: "Search result cache lookups by outcome (hit, miss, stale).",
		}, []string{"outcome"})}
	reg.MustRegister(rc.lookups)
	return rc
}

func (rc *resultCache) snapshot(deps []dep) []uint64 {
	g := make([]uint64, len(deps))
	for i, d := range deps {
		g[i] = rc.tracker.Generation(d.typ, d.patient)
	}
	return g
}

// get returns a body still valid for key.
func (rc *resultCache) get(key string) ([]byte, bool) {
	if rc == nil {
		return nil, false
	}
	v, ok := rc.c.Get(key)
	if !ok {
		rc.lookups.WithLabelValues("miss").Inc()
		return nil, false
	}
	e := v.(*cachedResult)
	for i, d := range e.deps {
		if rc.tracker.Generation(d.typ, d.patient) != e.gens[i] {
			rc.c.Delete(key)
			rc.lookups.WithLabelValues("stale").Inc()
			return nil, false
		}
	}
	rc.lookups.WithLabelValues("hit").Inc()
	return e.body, true
}

func (rc *resultCache) put(key string, body []byte, deps []dep, gens []uint64) {
	if rc == nil || len(body) > rc.maxBytes || rc.c.ItemCount() >= rc.maxItems {
		return
	}
	rc.c.SetDefault(key, &cachedResult{body: body, deps: deps, gens: gens})
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
	v, ok := rc.c.Get(key)
	if !ok {
		return store.Entry{}, false
	}
	e, ok := v.(*cachedEntry)
	if !ok {
		return store.Entry{}, false
	}
	for i, d := range e.deps {
		if rc.tracker.Generation(d.typ, d.patient) != e.gens[i] {
			rc.c.Delete(key)
			return store.Entry{}, false
		}
	}
	return e.entry, true
}

// putEntry caches a read; gens must have been taken, for the same deps, before the read. Since
// the compartment is only known after reading, the caller snapshots the type-wide generation
// first and the entry is kept only if that has not moved either.
func (rc *resultCache) putEntry(key string, e store.Entry, typeGen uint64, v Version) {
	if rc == nil || len(e.JSON) > rc.maxBytes || rc.c.ItemCount() >= rc.maxItems {
		return
	}
	// Snapshot first, then check the type-wide counter: writers bump it before the compartment's,
	// so a write that raced the read is either caught here or left the snapshot behind.
	deps := readDeps(e, v)
	gens := rc.snapshot(deps)
	if rc.tracker.Generation(e.Type, "") != typeGen {
		return // a write of this type raced the read
	}
	rc.c.SetDefault(key, &cachedEntry{entry: e, deps: deps, gens: gens})
}
