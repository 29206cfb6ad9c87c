package api

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/openhealthexchange/ohx/store"
)

// fakeTracker is a store.ChangeTracker whose generations the test moves.
type fakeTracker struct {
	mu   sync.Mutex
	gens map[dep]uint64
}

func (f *fakeTracker) Generation(typ, patient string) uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.gens[dep{typ, patient}]
}

func (f *fakeTracker) bump(typ, patient string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.gens == nil {
		f.gens = map[dep]uint64{}
	}
	f.gens[dep{typ, patient}]++
}

// testCache returns a cache of budget bytes whose clock the test sets.
func testCache(t *testing.T, budget int64, ttl time.Duration) (*resultCache, *fakeTracker, *time.Time) {
	t.Helper()
	tr := &fakeTracker{}
	rc := newTrackedCache(tr, ttl, budget, prometheus.NewRegistry())
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	rc.now = func() time.Time { return now }
	return rc, tr, &now
}

func putSearch(rc *resultCache, tr *fakeTracker, key string, size int) {
	deps := []dep{{"Observation", "p1"}}
	rc.put(key, []byte(strings.Repeat("x", size)), deps, rc.snapshot(deps))
}

// The old cache admitted nothing once it held its maximum of entries, until expired ones were
// swept: a new search must always be admitted, the least recently used making room.
func TestCacheAdmitsWhenFull(t *testing.T) {
	rc, tr, _ := testCache(t, 64<<10, time.Minute)
	for i := range 1000 {
		putSearch(rc, tr, fmt.Sprintf("old %d", i), 1000)
	}
	if _, ok := rc.get("old 999"); !ok {
		t.Fatal("the newest entry is not served")
	}
	putSearch(rc, tr, "new", 1000)
	if _, ok := rc.get("new"); !ok {
		t.Error("a new search was not admitted by a full cache")
	}
	if _, ok := rc.get("old 0"); ok {
		t.Error("the least recently used entry survived a full cache")
	}
	// A repeated search stays: each hit makes it the most recently used.
	putSearch(rc, tr, "polled", 1000)
	for i := range 500 {
		putSearch(rc, tr, fmt.Sprintf("churn %d", i), 1000)
		if _, ok := rc.get("polled"); !ok {
			t.Fatalf("the polled search was evicted after %d other searches", i)
		}
	}
}

// However many different searches come, the cache holds at most its budget, and an entry larger
// than budget/16 is not kept.
func TestCacheByteBudget(t *testing.T) {
	const budget = 256 << 10
	rc, tr, _ := testCache(t, budget, time.Minute)
	for i := range 5000 {
		putSearch(rc, tr, fmt.Sprintf("Observation?patient=p%d&date=ge2026-01-%02d", i, i%28+1), 500+(i%7)*300)
		if _, bytes := rc.usage(); bytes > budget {
			t.Fatalf("after %d searches the cache holds %d bytes, over its budget of %d", i+1, bytes, budget)
		}
	}
	if n, _ := rc.usage(); n == 0 || n >= 5000 {
		t.Errorf("got %d entries held, want some but not all", n)
	}
	putSearch(rc, tr, "huge", budget/16+1)
	if _, ok := rc.get("huge"); ok {
		t.Error("an entry over budget/16 was cached")
	}
	putSearch(rc, tr, "large", budget/16-itemOverhead-100)
	if _, ok := rc.get("large"); !ok {
		t.Error("an entry under budget/16 was not cached")
	}
	// Replacing an entry does not count it twice.
	_, before := rc.usage()
	putSearch(rc, tr, "large", budget/16-itemOverhead-100)
	if _, after := rc.usage(); after != before {
		t.Errorf("replacing an entry changed the bytes held from %d to %d", before, after)
	}
}

// An expired entry is never served, even if nothing swept it, and leaves room for new ones.
func TestCacheExpiry(t *testing.T) {
	rc, tr, now := testCache(t, 64<<10, time.Minute)
	putSearch(rc, tr, "s", 100)
	rc.putEntry("read", store.Entry{Type: "Patient", ID: "p1", VersionID: 1, JSON: []byte(`{}`)}, rc.typeGeneration("Patient"), R5)
	*now = now.Add(59 * time.Second)
	if _, ok := rc.get("s"); !ok {
		t.Fatal("a fresh search was not served")
	}
	if _, ok := rc.getEntry("read"); !ok {
		t.Fatal("a fresh read was not served")
	}
	*now = now.Add(time.Second)
	if _, ok := rc.get("s"); ok {
		t.Error("an expired search was served")
	}
	if _, ok := rc.getEntry("read"); ok {
		t.Error("an expired read was served")
	}
	if n, bytes := rc.usage(); n != 0 || bytes != 0 {
		t.Errorf("expired entries still held: %d entries, %d bytes", n, bytes)
	}
	// Expired entries at the old end make way before live ones are evicted.
	putSearch(rc, tr, "a", 100)
	*now = now.Add(2 * time.Minute)
	putSearch(rc, tr, "b", 100)
	if n, _ := rc.usage(); n != 1 {
		t.Errorf("got %d entries, want the expired one dropped on admission", n)
	}
}

// An entry is served only while the generations it was built under hold.
func TestCacheInvalidation(t *testing.T) {
	rc, tr, _ := testCache(t, 64<<10, time.Minute)
	putSearch(rc, tr, "s", 100)
	tr.bump("Observation", "p2")
	if _, ok := rc.get("s"); !ok {
		t.Error("another patient's write invalidated the entry")
	}
	tr.bump("Observation", "p1")
	if _, ok := rc.get("s"); ok {
		t.Error("a stale entry was served")
	}
}

// With the cache off (a negative budget, or a store that cannot report changes) nothing is
// cached, and every method is safe on the nil cache.
func TestCacheOff(t *testing.T) {
	rc := newResultCache(nil, time.Minute, -1, prometheus.NewRegistry())
	if rc != nil {
		t.Fatal("a negative budget gave a cache")
	}
	rc.put("k", []byte("{}"), nil, nil)
	if _, ok := rc.get("k"); ok {
		t.Error("the nil cache served an entry")
	}
	rc.putEntry("r", store.Entry{Type: "Patient", ID: "p1"}, rc.typeGeneration("Patient"), R5)
	if _, ok := rc.getEntry("r"); ok {
		t.Error("the nil cache served a read")
	}
}
