package pipeline

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/fhir/search"
	"github.com/openhealthexchange/ohx/providers"
	"github.com/openhealthexchange/ohx/providers/providertest"
	"github.com/openhealthexchange/ohx/providers/withings"
	"github.com/openhealthexchange/ohx/store"
)

const getmeasRoute = "POST /measure action=getmeas"

// vendorGroup is one Withings measure group the fake vendor holds: measures by meastype, the
// value in Withings' integer with unit -1 (748 → 74.8).
type vendorGroup struct {
	id       int
	date     int64
	measures map[int]int
}

// fakeMeasures is a fake getmeas: it answers windows (startdate ≤ date ≤ enddate, both
// inclusive as at Withings) and lastupdate queries (what changed: the groups in changed), keeps
// only the requested meastypes, and pages by offset, pageSize groups a page (0: one page).
type fakeMeasures struct {
	mu       sync.Mutex
	groups   []vendorGroup
	changed  []int // grpids a lastupdate query returns
	pageSize int
	// tamper, if set, changes the groups of one answer (call counts window answers' pages from 1).
	tamper func(call int, offset int, gs []vendorGroup) []vendorGroup
	calls  int
}

func (f *fakeMeasures) set(gs ...vendorGroup) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.groups = gs
}

func (f *fakeMeasures) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	types := map[int]bool{}
	for _, s := range strings.Split(r.Form.Get("meastypes"), ",") {
		n, _ := strconv.Atoi(s)
		types[n] = true
	}
	var gs []vendorGroup
	if lu := r.Form.Get("lastupdate"); lu != "" {
		for _, g := range f.groups {
			if slices.Contains(f.changed, g.id) {
				gs = append(gs, g)
			}
		}
	} else {
		start, _ := strconv.ParseInt(r.Form.Get("startdate"), 10, 64)
		end, _ := strconv.ParseInt(r.Form.Get("enddate"), 10, 64)
		for _, g := range f.groups {
			if g.date >= start && g.date <= end {
				gs = append(gs, g)
			}
		}
	}
	offset, _ := strconv.Atoi(r.Form.Get("offset"))
	if r.Form.Get("lastupdate") == "" {
		f.calls++
		if f.tamper != nil {
			gs = f.tamper(f.calls, offset, gs)
		}
	}
	more, next := 0, 0
	if f.pageSize > 0 {
		gs = gs[min(offset, len(gs)):]
		if len(gs) > f.pageSize {
			gs, more, next = gs[:f.pageSize], 1, offset+f.pageSize
		}
	}
	var grps []string
	for _, g := range gs {
		var ms []string
		for _, t := range []int{1, 9, 10, 11} {
			if v, ok := g.measures[t]; ok && types[t] {
				ms = append(ms, fmt.Sprintf(`{"value":%d,"type":%d,"unit":-1}`, v, t))
			}
		}
		if len(ms) == 0 {
			continue
		}
		grps = append(grps, fmt.Sprintf(`{"grpid":%d,"attrib":0,"date":%d,"created":%d,"modified":%d,"category":1,"deviceid":"dev-1","measures":[%s]}`,
			g.id, g.date, g.date, g.date, strings.Join(ms, ",")))
	}
	fmt.Fprintf(w, `{"status":0,"body":{"updatetime":%d,"timezone":"Europe/Paris","more":%d,"offset":%d,"measuregrps":[%s]}}`,
		time.Now().Unix(), more, next, strings.Join(grps, ","))
}

// The window the tests sync: a week of January 2024.
var (
	wdStart = time.Date(2024, 1, 10, 0, 0, 0, 0, time.UTC)
	wdEnd   = time.Date(2024, 1, 17, 0, 0, 0, 0, time.UTC)
)

func wdAt(d, h int) int64 { return time.Date(2024, 1, d, h, 0, 0, 0, time.UTC).Unix() }

func wdWeight(id int, date int64, v int) vendorGroup {
	return vendorGroup{id: id, date: date, measures: map[int]int{1: v}}
}

func newWithdrawRig(t *testing.T, f *fakeMeasures) *rig {
	t.Helper()
	return newWithdrawRigOn(t, openSQLite, f)
}

func newWithdrawRigOn(t *testing.T, open storeOpener, f *fakeMeasures) *rig {
	t.Helper()
	return newRigOn(t, open, map[string]providertest.Route{getmeasRoute: {Handler: f.serve}})
}

// wdSync runs a notified window fetch of the kinds.
func (g *rig) wdSync(t *testing.T, start, end time.Time, kinds ...fhir.SampleKind) {
	t.Helper()
	w := Work{Provider: withings.Name, Patient: "p1", Kinds: kinds, Start: start, End: end}
	if err := g.r.Process(t.Context(), w.Job(TypeFetch)); err != nil {
		t.Fatal(err)
	}
}

// wdByRecord returns the patient's Observations by their Withings record id.
func (g *rig) wdByRecord(t *testing.T) map[string]fhir.Observation {
	t.Helper()
	out := map[string]fhir.Observation{}
	for _, o := range g.observations(t) {
		for _, id := range o.Identifier {
			if strings.HasPrefix(id.System, fhir.DefaultNamespace.ProviderIdentifierPrefix(withings.Name)) {
				out[id.Value] = o
			}
		}
	}
	return out
}

func (g *rig) wdWithdrawn() float64 {
	return testutil.ToFloat64(g.r.jm.withdrawn.WithLabelValues(withings.Name))
}

// check compares status and version of the Observations of record ids.
func wdCheck(t *testing.T, obs map[string]fhir.Observation, want map[string]string) {
	t.Helper()
	for rec, sv := range want {
		o, ok := obs[rec]
		if !ok {
			t.Errorf("%s: not stored", rec)
			continue
		}
		if got := o.Status + "/v" + o.Meta.VersionID; got != sv {
			t.Errorf("%s: %s, want %s", rec, got, sv)
		}
	}
}

// TestWithdrawnMeasure: a weight the vendor's complete answer for its window no longer holds
// becomes entered-in-error (version 2, value kept, searchable by status, published); an
// incremental sync that omits a record changes nothing; a window that only touches the edge of a
// record does not mark it; the record coming back restores final.
func TestWithdrawnMeasure(t *testing.T) { onStores(t, testWithdrawnMeasure) }

func testWithdrawnMeasure(t *testing.T, open storeOpener) {
	f := &fakeMeasures{}
	f.set(wdWeight(1, wdAt(11, 8), 748), wdWeight(2, wdAt(12, 8), 751), wdWeight(3, wdAt(13, 8), 749))
	g := newWithdrawRigOn(t, open, f)
	var published []bool
	g.r.cfg.Upserted = func(_ context.Context, patient string, changed bool) error {
		published = append(published, changed)
		return nil
	}
	ctx := t.Context()
	g.wdSync(t, wdStart, wdEnd, fhir.KindWeight)
	wdCheck(t, g.wdByRecord(t), map[string]string{"12345/1/1": "final/v1", "12345/2/1": "final/v1", "12345/3/1": "final/v1"})

	// The patient deletes the second weight in the Withings app.
	f.set(wdWeight(1, wdAt(11, 8), 748), wdWeight(3, wdAt(13, 8), 749))

	// An incremental sync lists changes only: its silence about group 2 proves nothing.
	f.changed = []int{1}
	if err := g.r.Process(ctx, Work{Provider: withings.Name, Patient: "p1", Kinds: []fhir.SampleKind{fhir.KindWeight}}.Job(TypeFetch)); err != nil {
		t.Fatal(err)
	}
	wdCheck(t, g.wdByRecord(t), map[string]string{"12345/1/1": "final/v1", "12345/2/1": "final/v1", "12345/3/1": "final/v1"})
	if n := g.wdWithdrawn(); n != 0 {
		t.Fatalf("withdrawn after an incremental sync: %v", n)
	}

	// The notification's window: the complete answer no longer holds group 2.
	published = nil
	g.wdSync(t, wdStart, wdEnd, fhir.KindWeight)
	obs := g.wdByRecord(t)
	wdCheck(t, obs, map[string]string{"12345/1/1": "final/v1", "12345/2/1": "entered-in-error/v2", "12345/3/1": "final/v1"})
	if q := obs["12345/2/1"].ValueQuantity; q == nil || q.Value == nil || *q.Value != "75.1" {
		t.Errorf("withdrawn value %+v, want 75.1 kept", q)
	}
	if n := g.wdWithdrawn(); n != 1 {
		t.Errorf("ohx_observations_withdrawn_total = %v, want 1", n)
	}
	if !slices.Contains(published, true) {
		t.Errorf("the withdrawal did not reach the Upserted hook as a change: %v", published)
	}
	q, _, err := search.DefaultRegistry().Parse("Observation", []search.NameValue{{Name: "patient", Value: "p1"}, {Name: "status", Value: "entered-in-error"}}, search.Options{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := g.st.Search(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Matches) != 1 || res.Matches[0].ID != obs["12345/2/1"].ID {
		t.Errorf("status=entered-in-error found %d matches, want the withdrawn weight", len(res.Matches))
	}
	// Running the same window again changes nothing more.
	g.wdSync(t, wdStart, wdEnd, fhir.KindWeight)
	wdCheck(t, g.wdByRecord(t), map[string]string{"12345/2/1": "entered-in-error/v2"})
	if n := g.wdWithdrawn(); n != 1 {
		t.Errorf("withdrawn again: %v", n)
	}

	// Edges: the vendor now has nothing at all, but these windows claim neither weight 1 (at the
	// window's first second, which may or may not be in startdate's range) nor weight 3 (at the
	// end of the window, outside [Start, End)), nor anything outside them.
	f.set()
	g.wdSync(t, time.Unix(wdAt(11, 8), 0), time.Unix(wdAt(13, 8), 0), fhir.KindWeight)
	g.wdSync(t, time.Unix(wdAt(13, 8), 0).Add(-time.Hour), time.Unix(wdAt(13, 8), 0).Add(500*time.Millisecond), fhir.KindWeight)
	wdCheck(t, g.wdByRecord(t), map[string]string{"12345/1/1": "final/v1", "12345/2/1": "entered-in-error/v2", "12345/3/1": "final/v1"})

	// The record comes back: the ordinary upsert writes it as final.
	f.set(wdWeight(1, wdAt(11, 8), 748), wdWeight(2, wdAt(12, 8), 751), wdWeight(3, wdAt(13, 8), 749))
	g.wdSync(t, wdStart, wdEnd, fhir.KindWeight)
	wdCheck(t, g.wdByRecord(t), map[string]string{"12345/1/1": "final/v1", "12345/2/1": "final/v3", "12345/3/1": "final/v1"})
}

// TestWithdrawnPaged: an answer of two pages is one answer: a record on its second page is not
// withdrawn; a record the first read skipped (the vendor's offsets shifted while it paged) but
// the second read returns is not withdrawn; a record missing from both reads is.
func TestWithdrawnPaged(t *testing.T) { onStores(t, testWithdrawnPaged) }

func testWithdrawnPaged(t *testing.T, open storeOpener) {
	f := &fakeMeasures{pageSize: 2}
	f.set(wdWeight(1, wdAt(11, 8), 748), wdWeight(2, wdAt(12, 8), 751), wdWeight(3, wdAt(13, 8), 749))
	g := newWithdrawRigOn(t, open, f)
	g.wdSync(t, wdStart, wdEnd, fhir.KindWeight)
	all := map[string]string{"12345/1/1": "final/v1", "12345/2/1": "final/v1", "12345/3/1": "final/v1"}
	wdCheck(t, g.wdByRecord(t), all)
	if f.calls != 2 {
		t.Fatalf("getmeas window calls %d, want 2 pages", f.calls)
	}

	// Group 3 is on page 2 and present: nothing is withdrawn, and nothing is read twice.
	f.calls = 0
	g.wdSync(t, wdStart, wdEnd, fhir.KindWeight)
	wdCheck(t, g.wdByRecord(t), all)
	if f.calls != 2 || g.wdWithdrawn() != 0 {
		t.Errorf("calls %d withdrawn %v, want 2 and 0", f.calls, g.wdWithdrawn())
	}

	// The first read's second page misses group 3 (as when a record before it is deleted
	// between the pages); the confirming read has it.
	f.calls = 0
	f.tamper = func(call, offset int, gs []vendorGroup) []vendorGroup {
		if call == 2 {
			return slices.DeleteFunc(slices.Clone(gs), func(g vendorGroup) bool { return g.id == 3 })
		}
		return gs
	}
	g.wdSync(t, wdStart, wdEnd, fhir.KindWeight)
	wdCheck(t, g.wdByRecord(t), all)
	if f.calls != 4 || g.wdWithdrawn() != 0 {
		t.Errorf("calls %d withdrawn %v, want 4 (two reads) and 0", f.calls, g.wdWithdrawn())
	}

	// Really gone: missing from both reads.
	f.tamper = nil
	f.set(wdWeight(1, wdAt(11, 8), 748), wdWeight(2, wdAt(12, 8), 751), wdWeight(4, wdAt(14, 8), 760), wdWeight(5, wdAt(15, 8), 761))
	g.wdSync(t, wdStart, wdEnd, fhir.KindWeight)
	wdCheck(t, g.wdByRecord(t), map[string]string{"12345/1/1": "final/v1", "12345/2/1": "final/v1", "12345/3/1": "entered-in-error/v2",
		"12345/4/1": "final/v1", "12345/5/1": "final/v1"})
}

// TestWithdrawnSiblings: a blood-pressure group carries the panel and the pulse; a window of
// heart rate alone says nothing about the panel, nor about weights; an answer without the pulse
// withdraws the pulse only.
func TestWithdrawnSiblings(t *testing.T) {
	f := &fakeMeasures{}
	bp := vendorGroup{id: 7, date: wdAt(12, 9), measures: map[int]int{9: 800, 10: 1200, 11: 640}}
	f.set(bp, wdWeight(8, wdAt(12, 7), 748))
	g := newWithdrawRig(t, f)
	g.wdSync(t, wdStart, wdEnd, fhir.KindBloodPressure, fhir.KindHeartRate, fhir.KindWeight)
	all := map[string]string{"12345/7/bp": "final/v1", "12345/7/11": "final/v1", "12345/8/1": "final/v1"}
	wdCheck(t, g.wdByRecord(t), all)

	// Heart rate only: the fake answers meastypes=11, the group's pulse.
	g.wdSync(t, wdStart, wdEnd, fhir.KindHeartRate)
	wdCheck(t, g.wdByRecord(t), all)

	// Blood pressure (asked as a component kind) without the pulse: the panel stays, the pulse
	// is not asked for.
	g.wdSync(t, wdStart, wdEnd, fhir.KindSystolic)
	wdCheck(t, g.wdByRecord(t), all)

	// The group loses its pulse at the vendor: only the pulse goes.
	f.set(vendorGroup{id: 7, date: wdAt(12, 9), measures: map[int]int{9: 800, 10: 1200}}, wdWeight(8, wdAt(12, 7), 748))
	g.wdSync(t, wdStart, wdEnd, fhir.KindBloodPressure, fhir.KindHeartRate, fhir.KindWeight)
	wdCheck(t, g.wdByRecord(t), map[string]string{"12345/7/bp": "final/v1", "12345/7/11": "entered-in-error/v2", "12345/8/1": "final/v1"})
}

// TestWithdrawnHeldRecords: a blood-pressure group the vendor now returns with one of its two
// values makes no panel, but the group is still the vendor's: its stored panel stays final, while
// a weight the same answer no longer holds is withdrawn.
func TestWithdrawnHeldRecords(t *testing.T) { onStores(t, testWithdrawnHeldRecords) }

func testWithdrawnHeldRecords(t *testing.T, open storeOpener) {
	f := &fakeMeasures{}
	f.set(vendorGroup{id: 7, date: wdAt(12, 9), measures: map[int]int{9: 800, 10: 1200, 11: 640}}, wdWeight(8, wdAt(12, 7), 748))
	g := newWithdrawRigOn(t, open, f)
	kinds := []fhir.SampleKind{fhir.KindBloodPressure, fhir.KindHeartRate, fhir.KindWeight}
	g.wdSync(t, wdStart, wdEnd, kinds...)
	wdCheck(t, g.wdByRecord(t), map[string]string{"12345/7/bp": "final/v1", "12345/7/11": "final/v1", "12345/8/1": "final/v1"})

	// The diastolic value is gone from the group (the pulse stays) and the weight is deleted.
	f.set(vendorGroup{id: 7, date: wdAt(12, 9), measures: map[int]int{10: 1200, 11: 640}})
	g.wdSync(t, wdStart, wdEnd, kinds...)
	wdCheck(t, g.wdByRecord(t), map[string]string{"12345/7/bp": "final/v1", "12345/7/11": "final/v1", "12345/8/1": "entered-in-error/v2"})
	if n := g.wdWithdrawn(); n != 1 {
		t.Errorf("withdrawn %v, want 1 (the weight)", n)
	}
}

// TestWithdrawnOwnRecordsOnly: Observations that are not the connection's own records — a
// predecessor account's (another provider's identifier only), another Withings account's of the
// same patient, or one written after the answer was read — are never withdrawn; an Observation
// adopted from a predecessor (both identifiers) is, by its own identifier.
func TestWithdrawnOwnRecordsOnly(t *testing.T) {
	f := &fakeMeasures{}
	g := newWithdrawRig(t, f)
	ctx := t.Context()
	ns := fhir.DefaultNamespace
	mk := func(provider, system, rec string, at int64) *fhir.Observation {
		o, err := ns.MapSample(fhir.Sample{Provider: provider, UserID: "u", Kind: fhir.KindWeight, System: system, RecordID: rec,
			Value: "70.0", Unit: "kg", Start: time.Unix(at, 0).UTC()}, "p1")
		if err != nil {
			t.Fatal(err)
		}
		return o
	}
	pred := mk("fitbit", "fitbit/weight", "ABC/991", wdAt(12, 8))
	other := mk(withings.Name, "withings/measure", "999/5/1", wdAt(12, 9))
	adopted := mk("fitbit", "fitbit/weight", "ABC/992", wdAt(12, 10))
	own := mk(withings.Name, "withings/measure", "12345/6/1", wdAt(12, 10))
	adopted.Identifier = append(adopted.Identifier, own.Identifier...)
	if _, err := g.st.Upsert(ctx, []fhir.Resource{pred, other, adopted}); err != nil {
		t.Fatal(err)
	}
	// Written while the fetch runs, after the vendor answered (another job's upsert).
	late := mk(withings.Name, "withings/measure", "12345/9/1", wdAt(13, 8))
	f.tamper = func(call, _ int, gs []vendorGroup) []vendorGroup {
		if _, err := g.st.Upsert(context.Background(), []fhir.Resource{late}); err != nil {
			t.Error(err)
		}
		return gs
	}
	// The window was read completely before (the comparison covers only what an earlier window
	// read covered).
	key := store.CoverageKey{Provider: withings.Name, Patient: "p1", Kind: string(fhir.KindWeight)}
	if _, err := g.st.UpdateCoverage(ctx, key, time.Now(), func(c *store.Coverage) error { c.Add(wdStart, wdEnd); return nil }); err != nil {
		t.Fatal(err)
	}
	g.wdSync(t, wdStart, wdEnd, fhir.KindWeight)
	status := map[string]string{}
	for _, o := range g.observations(t) {
		status[o.Identifier[0].Value] = o.Status
	}
	want := map[string]string{"ABC/991": "final", "999/5/1": "final", "ABC/992": "entered-in-error", "12345/9/1": "final"}
	for rec, st := range want {
		if status[rec] != st {
			t.Errorf("%s: %q, want %q", rec, status[rec], st)
		}
	}
	if n := g.wdWithdrawn(); n != 1 {
		t.Errorf("withdrawn %v, want 1", n)
	}
}

// TestWithdrawnInside: which stored effective times a complete range holds.
func TestWithdrawnInside(t *testing.T) {
	meas := providers.CompleteRange{System: "withings/measure", Prefix: "1/", Kinds: []fhir.SampleKind{fhir.KindWeight},
		Start: time.Date(2024, 1, 10, 0, 0, 1, 0, time.UTC), End: time.Date(2024, 1, 17, 0, 0, 0, 0, time.UTC)}
	daily := providers.CompleteRange{System: "withings/activity", Prefix: "1/", Kinds: []fhir.SampleKind{fhir.KindSteps},
		After: "2024-01-10", Before: "2024-01-16"}
	weightCode := []fhir.Coding{{System: fhir.LOINCSystem, Code: "29463-7"}}
	stepsCode := []fhir.Coding{{System: fhir.LOINCSystem, Code: "41950-7"}}
	for _, tc := range []struct {
		name string
		cr   providers.CompleteRange
		o    fhir.Observation
		want bool
	}{
		{"weight inside", meas, fhir.Observation{Code: fhir.CodeableConcept{Coding: weightCode}, EffectiveDateTime: "2024-01-12T09:00:00+01:00"}, true},
		{"weight at the first second", meas, fhir.Observation{Code: fhir.CodeableConcept{Coding: weightCode}, EffectiveDateTime: "2024-01-10T01:00:00+01:00"}, false},
		{"weight at the end", meas, fhir.Observation{Code: fhir.CodeableConcept{Coding: weightCode}, EffectiveDateTime: "2024-01-17T00:00:00Z"}, false},
		{"weight a second before the end", meas, fhir.Observation{Code: fhir.CodeableConcept{Coding: weightCode}, EffectiveDateTime: "2024-01-16T23:59:59Z"}, true},
		{"another kind", meas, fhir.Observation{Code: fhir.CodeableConcept{Coding: stepsCode}, EffectiveDateTime: "2024-01-12T09:00:00Z"}, false},
		{"a date in an instant range", meas, fhir.Observation{Code: fhir.CodeableConcept{Coding: weightCode}, EffectiveDateTime: "2024-01-12"}, false},
		{"steps day inside", daily, fhir.Observation{Code: fhir.CodeableConcept{Coding: stepsCode},
			EffectivePeriod: &fhir.Period{Start: "2024-01-15T00:00:00+14:00", End: "2024-01-15T23:59:59+14:00"}}, true},
		{"steps on the first queried date", daily, fhir.Observation{Code: fhir.CodeableConcept{Coding: stepsCode},
			EffectivePeriod: &fhir.Period{Start: "2024-01-10T00:00:00-10:00", End: "2024-01-10T23:59:59-10:00"}}, false},
		{"steps on the last queried date", daily, fhir.Observation{Code: fhir.CodeableConcept{Coding: stepsCode}, EffectiveDateTime: "2024-01-16"}, false},
		{"steps date inside", daily, fhir.Observation{Code: fhir.CodeableConcept{Coding: stepsCode}, EffectiveDateTime: "2024-01-11"}, true},
		{"steps at an instant", daily, fhir.Observation{Code: fhir.CodeableConcept{Coding: stepsCode}, EffectiveDateTime: "2024-01-12T10:00:00Z"}, false},
		{"period ending outside", daily, fhir.Observation{Code: fhir.CodeableConcept{Coding: stepsCode},
			EffectivePeriod: &fhir.Period{Start: "2024-01-15T22:00:00+01:00", End: "2024-01-16T06:00:00+01:00"}}, false},
		{"period without an end", daily, fhir.Observation{Code: fhir.CodeableConcept{Coding: stepsCode},
			EffectivePeriod: &fhir.Period{Start: "2024-01-12T00:00:00Z"}}, false},
	} {
		if got := inside(&tc.o, tc.cr); got != tc.want {
			t.Errorf("%s: inside = %v, want %v", tc.name, got, tc.want)
		}
	}
	// The search window holds every local day of the date range in every zone.
	ge, lt, ok := searchWindow(daily)
	if !ok || !ge.Equal(time.Date(2024, 1, 10, 10, 0, 0, 0, time.UTC)) || !lt.Equal(time.Date(2024, 1, 16, 12, 0, 0, 0, time.UTC)) {
		t.Errorf("searchWindow = %v, %v, %v", ge, lt, ok)
	}
}

// TestWithdrawnDaily: daily activity is complete for the local dates strictly between the
// queried ones, whatever the day's zone; sleep sessions a day further inside. Only the records
// inside go when the vendor drops every one.
func TestWithdrawnDaily(t *testing.T) { onStores(t, testWithdrawnDaily) }

func testWithdrawnDaily(t *testing.T, open storeOpener) {
	var mu sync.Mutex
	days := []string{"2024-01-10", "2024-01-13", "2024-01-16"}
	nights := [][2]int64{{wdAt(11, 22), wdAt(12, 6)}, {wdAt(12, 22), wdAt(13, 6)}, {wdAt(14, 22), wdAt(15, 6)}}
	activity := func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if r.Form.Get("startdateymd") != "2024-01-10" || r.Form.Get("enddateymd") != "2024-01-16" {
			t.Errorf("getactivity dates %s..%s", r.Form.Get("startdateymd"), r.Form.Get("enddateymd"))
		}
		var as []string
		for i, d := range days {
			tz := []string{"Pacific/Kiritimati", "Pacific/Pago_Pago", "Europe/Paris"}[i%3]
			as = append(as, fmt.Sprintf(`{"date":%q,"timezone":%q,"deviceid":"dev-1","steps":%d}`, d, tz, 1000+i))
		}
		fmt.Fprintf(w, `{"status":0,"body":{"activities":[%s],"more":false,"offset":0}}`, strings.Join(as, ","))
	}
	sleep := func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		var ss []string
		for i, n := range nights {
			ss = append(ss, fmt.Sprintf(`{"id":%d,"timezone":"UTC","startdate":%d,"enddate":%d,"data":{"total_sleep_time":%d}}`, 50+i, n[0], n[1], 25200+60*i))
		}
		fmt.Fprintf(w, `{"status":0,"body":{"series":[%s],"more":false,"offset":0}}`, strings.Join(ss, ","))
	}
	g := newRigOn(t, open, map[string]providertest.Route{
		"POST /v2/measure action=getactivity": {Handler: activity},
		"POST /v2/sleep action=getsummary":    {Handler: sleep},
	})
	kinds := []fhir.SampleKind{fhir.KindSteps, fhir.KindSleep}
	g.wdSync(t, wdStart, wdEnd, kinds...)
	all := map[string]string{"12345/2024-01-10/steps": "final/v1", "12345/2024-01-13/steps": "final/v1", "12345/2024-01-16/steps": "final/v1",
		"12345/50/duration": "final/v1", "12345/51/duration": "final/v1", "12345/52/duration": "final/v1"}
	wdCheck(t, g.wdByRecord(t), all)

	mu.Lock()
	days, nights = nil, nil
	mu.Unlock()
	g.wdSync(t, wdStart, wdEnd, kinds...)
	all["12345/2024-01-13/steps"] = "entered-in-error/v2"
	all["12345/51/duration"] = "entered-in-error/v2"
	wdCheck(t, g.wdByRecord(t), all)
	if n := g.wdWithdrawn(); n != 2 {
		t.Errorf("withdrawn %v, want 2", n)
	}
}

// TestWithdrawnMany: an answer that would withdraw more than a few records is read again first;
// records the second read returns stay final, what both reads lack goes.
func TestWithdrawnMany(t *testing.T) {
	f := &fakeMeasures{}
	var gs []vendorGroup
	for i := 1; i <= 5; i++ {
		gs = append(gs, wdWeight(i, wdAt(10+i, 8), 740+i))
	}
	f.set(gs...)
	g := newWithdrawRig(t, f)
	g.wdSync(t, wdStart, wdEnd, fhir.KindWeight)
	// A moment's empty answer, then the vendor's data again, bar group 5.
	f.calls = 0
	f.tamper = func(call, _ int, gs []vendorGroup) []vendorGroup {
		if call == 1 {
			return nil
		}
		return slices.DeleteFunc(slices.Clone(gs), func(g vendorGroup) bool { return g.id == 5 })
	}
	g.wdSync(t, wdStart, wdEnd, fhir.KindWeight)
	if f.calls != 2 {
		t.Errorf("getmeas calls %d, want 2 (the answer read again)", f.calls)
	}
	wdCheck(t, g.wdByRecord(t), map[string]string{"12345/1/1": "final/v1", "12345/4/1": "final/v1", "12345/5/1": "entered-in-error/v2"})
	if n := g.wdWithdrawn(); n != 1 {
		t.Errorf("withdrawn %v, want 1", n)
	}
}

// TestWithdrawnOnlyWhereCoveredBefore: a record stored without a window read (an incremental
// sync) is not compared with the first window read of its range, which only covers it; the next
// read of the range, now covered, withdraws it.
func TestWithdrawnOnlyWhereCoveredBefore(t *testing.T) {
	f := &fakeMeasures{}
	g := newWithdrawRig(t, f)
	o, err := fhir.DefaultNamespace.MapSample(fhir.Sample{Provider: withings.Name, UserID: "u", Kind: fhir.KindWeight,
		System: "withings/measure", RecordID: "12345/6/1", Value: "70.0", Unit: "kg", Start: time.Unix(wdAt(12, 10), 0).UTC()}, "p1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.st.Upsert(t.Context(), []fhir.Resource{o}); err != nil {
		t.Fatal(err)
	}
	status := func() string {
		t.Helper()
		for _, o := range g.observations(t) {
			if o.Identifier[0].Value == "12345/6/1" {
				return o.Status
			}
		}
		t.Fatal("the stored Observation is gone")
		return ""
	}
	g.wdSync(t, wdStart, wdEnd, fhir.KindWeight)
	if s := status(); s != "final" || g.wdWithdrawn() != 0 {
		t.Fatalf("after the first window read: %q, %v withdrawn; want final, 0", s, g.wdWithdrawn())
	}
	g.wdSync(t, wdStart, wdEnd, fhir.KindWeight)
	if s := status(); s != "entered-in-error" || g.wdWithdrawn() != 1 {
		t.Errorf("after the second window read: %q, %v withdrawn; want entered-in-error, 1", s, g.wdWithdrawn())
	}
}
