package storetest

import (
	"errors"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/store"
)

// upsertBatch builds the pipeline's typical batch: n weight Observations and a few Devices, each
// with a distinct first identifier. value(i) gives the i-th Observation's value.
func upsertBatch(n int, value func(i int) string) []fhir.Resource {
	var rs []fhir.Resource
	for i := range n {
		rs = append(rs, newObservation("", loincCode(codeWeight),
			withIdentifier(ident(measSystem, fmt.Sprintf("u-%03d", i))),
			withSubject("Patient/pat-1"),
			withDevice("Device/dev-1"),
			withDate(fmt.Sprintf("2024-01-%02dT%02d:%02d:00Z", 1+i%28, i%24, i%60)),
			withValue(ucumQty(value(i), "kg")),
		))
	}
	for i := range 5 {
		d := newDevice("")
		d.Identifier = []fhir.Identifier{ident(devSystem, fmt.Sprintf("W-%d", i))}
		d.Manufacturer = "Withings"
		d.Status = "active"
		rs = append(rs, d)
	}
	return rs
}

func baseValue(i int) string { return fmt.Sprintf("%d.%d", 60+i%40, i%10) }

func testUpsert(t *testing.T, open opener) {
	t.Run("Bulk", func(t *testing.T) {
		s := open(t)
		const n = 200
		first, err := s.Upsert(t.Context(), upsertBatch(n, baseValue))
		if err != nil {
			t.Fatalf("first Upsert: %v", err)
		}
		if len(first) != n+5 {
			t.Fatalf("first Upsert: %d results, want %d (one per resource, in order)", len(first), n+5)
		}
		seen := map[string]bool{}
		for i, r := range first {
			// Created and Changed are exclusive: Changed reports an update of a stored resource.
			if !r.Created || r.Changed || r.VersionID != 1 || !fhir.ValidID(r.ID) {
				t.Errorf("first Upsert[%d] = %+v, want Created, not Changed, version 1, a valid id", i, r)
			}
			if seen[r.ID] {
				t.Errorf("first Upsert[%d]: id %q assigned twice", i, r.ID)
			}
			seen[r.ID] = true
		}

		// Results are in input order: check a few against FindByIdentifier.
		for _, i := range []int{0, 7, n - 1} {
			got, err := s.FindByIdentifier(t.Context(), "Observation", measSystem, fmt.Sprintf("u-%03d", i))
			if err != nil {
				t.Fatalf("FindByIdentifier: %v", err)
			}
			if diff := cmp.Diff([]string{first[i].ID}, got); diff != "" {
				t.Errorf("FindByIdentifier(u-%03d) vs Upsert result %d (-want +got):\n%s", i, i, diff)
			}
		}
		e := mustRead(t, s, "Observation", first[7].ID)
		o := checkMeta(t, e).(*fhir.Observation)
		if e.VersionID != 1 || o.ValueQuantity == nil || string(*o.ValueQuantity.Value) != baseValue(7) {
			t.Errorf("Read after Upsert: version %d value %+v, want version 1 value %s", e.VersionID, o.ValueQuantity, baseValue(7))
		}
		res := mustSearch(t, s, parse(t, "Observation", "_summary=count&code="+codeWeight))
		if res.Total != n {
			t.Errorf("Search after Upsert: Total = %d, want %d", res.Total, n)
		}

		// The same batch again (rebuilt, so nothing depends on whether the store changed the
		// input structs) writes nothing.
		second, err := s.Upsert(t.Context(), upsertBatch(n, baseValue))
		if err != nil {
			t.Fatalf("second Upsert: %v", err)
		}
		if diff := cmp.Diff(unchanged(first), second); diff != "" {
			t.Errorf("second, identical Upsert (-want +got):\n%s", diff)
		}
		checkSameEntry(t, e, mustRead(t, s, "Observation", first[7].ID))

		// Change ten values; give five others a client meta.versionId and meta.lastUpdated,
		// which the store ignores ("unchanged content (ignoring meta)").
		changed := func(i int) bool { return i%20 == 3 }
		batch := upsertBatch(n, func(i int) string {
			if changed(i) {
				return "250.5"
			}
			return baseValue(i)
		})
		for i := 0; i < 50; i += 10 {
			batch[i].Common().Meta = &fhir.Meta{VersionID: "99", LastUpdated: "2000-01-01T00:00:00Z"}
		}
		third, err := s.Upsert(t.Context(), batch)
		if err != nil {
			t.Fatalf("third Upsert: %v", err)
		}
		want := unchanged(first)
		for i := range n {
			if changed(i) {
				want[i].Changed = true
				want[i].VersionID = 2
			}
		}
		if diff := cmp.Diff(want, third); diff != "" {
			t.Errorf("Upsert with 10 changed values (-want +got):\n%s", diff)
		}
		e3 := mustRead(t, s, "Observation", first[3].ID)
		o3 := checkMeta(t, e3).(*fhir.Observation)
		if e3.VersionID != 2 || o3.ValueQuantity == nil || *o3.ValueQuantity.Value != "250.5" {
			t.Errorf("Read of a changed resource: version %d value %+v, want version 2 value 250.5", e3.VersionID, o3.ValueQuantity)
		}
		res = mustSearch(t, s, parse(t, "Observation", "value-quantity=250.5"))
		if got := len(res.Matches); got != 10 {
			t.Errorf("Search value-quantity=250.5 after Upsert: %d matches, want 10", got)
		}
	})

	t.Run("MatchesStoredResources", func(t *testing.T) {
		s := open(t)
		e := mustCreate(t, s, newObservation("obs-1", loincCode(codeWeight), withIdentifier(ident(measSystem, "m-1")), withValue(ucumQty("70", "kg"))))
		res, err := s.Upsert(t.Context(), []fhir.Resource{
			newObservation("", loincCode(codeWeight), withIdentifier(ident(measSystem, "m-1")), withValue(ucumQty("71", "kg"))),
			// A Device with the same identifier is another resource: matching is per type.
			func() fhir.Resource {
				d := newDevice("")
				d.Identifier = []fhir.Identifier{ident(measSystem, "m-1")}
				return d
			}(),
		})
		if err != nil {
			t.Fatalf("Upsert: %v", err)
		}
		if len(res) != 2 {
			t.Fatalf("Upsert: %d results, want 2", len(res))
		}
		if diff := cmp.Diff(store.UpsertResult{ID: "obs-1", VersionID: e.VersionID + 1, Changed: true}, res[0]); diff != "" {
			t.Errorf("Upsert of a created Observation (-want +got):\n%s", diff)
		}
		if !res[1].Created || res[1].ID == "" {
			t.Errorf("Upsert of a Device with an Observation's identifier = %+v, want Created", res[1])
		}
		o := decode(t, mustRead(t, s, "Observation", "obs-1")).(*fhir.Observation)
		if o.ValueQuantity == nil || *o.ValueQuantity.Value != "71" {
			t.Errorf("Read after Upsert: value %+v, want 71", o.ValueQuantity)
		}
	})

	// The vendor mappings make every value final; the store knows whether a version was stored
	// (and so could have been read) before: a changed value is amended, an unchanged one is not
	// a new version, whichever of final or amended the vendor's value was mapped after.
	t.Run("AmendsChangedObservation", func(t *testing.T) {
		s := open(t)
		obsOf := func(record, kg string, opts ...obsOpt) fhir.Resource {
			return newObservation("", loincCode(codeWeight), append([]obsOpt{withIdentifier(ident(measSystem, record)),
				withSubject("Patient/pat-1"), withDate("2024-03-01T08:00:00Z"), withValue(ucumQty(kg, "kg"))}, opts...)...)
		}
		obs := func(kg string, opts ...obsOpt) fhir.Resource { return obsOf("a-1", kg, opts...) }
		status := func(id string) (int64, string) {
			t.Helper()
			e := mustRead(t, s, "Observation", id)
			return e.VersionID, decode(t, e).(*fhir.Observation).Status
		}
		steps := []struct {
			name    string
			r       fhir.Resource
			version int64
			status  string
		}{
			{"new", obs("70"), 1, "final"},
			{"the same value again", obs("70"), 1, "final"},
			{"a changed value", obs("71"), 2, "amended"},
			{"that value again, mapped final", obs("71"), 2, "amended"},
			{"that value, already amended", obs("71", withStatus("amended")), 2, "amended"},
			{"changed again", obs("72"), 3, "amended"},
			{"deleted at the vendor", obs("72", withStatus("entered-in-error")), 4, "entered-in-error"},
			// Back at the vendor: the value is final again, not an amendment of a withdrawn one.
			{"brought back", obs("72"), 5, "final"},
			{"changed after that", obs("73"), 6, "amended"},
		}
		var id string
		for _, st := range steps {
			res, err := s.Upsert(t.Context(), []fhir.Resource{st.r})
			if err != nil {
				t.Fatalf("%s: Upsert: %v", st.name, err)
			}
			if id == "" {
				id = res[0].ID
			}
			if res[0].ID != id || res[0].VersionID != st.version {
				t.Errorf("%s: Upsert = %+v, want %s version %d", st.name, res[0], id, st.version)
			}
			if v, got := status(id); v != st.version || got != st.status {
				t.Errorf("%s: stored version %d status %q, want version %d status %q", st.name, v, got, st.version, st.status)
			}
		}
		// Two values of one record in one call: the second amends the first.
		res := mustUpsert(t, s, obsOf("a-3", "90"), obsOf("a-3", "91"))
		if v, got := status(res[1].ID); got != "amended" || res[1].ID != res[0].ID {
			t.Errorf("two values in one call: %s and %s, stored version %d status %q, want one resource, amended", res[0].ID, res[1].ID, v, got)
		}
		// A preliminary value that becomes final is not amended.
		mustUpsert(t, s, obsOf("a-2", "80", withStatus("preliminary")))
		res = mustUpsert(t, s, obsOf("a-2", "81"))
		if v, got := status(res[0].ID); v != 2 || got != "final" {
			t.Errorf("preliminary then final: version %d status %q, want 2 final", v, got)
		}
		// Another resource type keeps what it is given.
		d := newDevice("")
		d.Identifier = []fhir.Identifier{ident(devSystem, "a-dev")}
		d.Status = "active"
		mustUpsert(t, s, d)
		d = newDevice("")
		d.Identifier = []fhir.Identifier{ident(devSystem, "a-dev")}
		d.Status = "inactive"
		res = mustUpsert(t, s, d)
		if got := decode(t, mustRead(t, s, "Device", res[0].ID)).(*fhir.Device); res[0].VersionID != 2 || got.Status != "inactive" {
			t.Errorf("changed Device: version %d status %q, want 2 inactive", res[0].VersionID, got.Status)
		}
	})

	t.Run("Duplicate", func(t *testing.T) {
		s := open(t)
		for _, id := range []string{"pat-1", "pat-2"} {
			p := newPatient(id)
			p.Identifier = []fhir.Identifier{ident(mrnSystem, "dup")}
			mustCreate(t, s, p)
		}
		fresh := newPatient("")
		fresh.Identifier = []fhir.Identifier{ident(mrnSystem, "fresh")}
		dup := newPatient("")
		dup.Identifier = []fhir.Identifier{ident(mrnSystem, "dup")}
		dup.Gender = "other"
		if _, err := s.Upsert(t.Context(), []fhir.Resource{fresh, dup}); !errors.Is(err, store.ErrDuplicate) {
			t.Fatalf("Upsert of a resource matching two stored ones: err = %v, want ErrDuplicate", err)
		}
		// "fails the whole call": the resource before the duplicate was not written either.
		got, err := s.FindByIdentifier(t.Context(), "Patient", mrnSystem, "fresh")
		if err != nil || len(got) != 0 {
			t.Errorf("after a failed Upsert, FindByIdentifier(fresh) = %v, %v; want nothing written", got, err)
		}
		for _, id := range []string{"pat-1", "pat-2"} {
			if e := mustRead(t, s, "Patient", id); e.VersionID != 1 {
				t.Errorf("after a failed Upsert, Patient/%s has version %d, want 1", id, e.VersionID)
			}
		}
	})

	t.Run("RequiresIdentifier", func(t *testing.T) {
		s := open(t)
		if _, err := s.Upsert(t.Context(), []fhir.Resource{newObservation("", loincCode(codeWeight))}); err == nil {
			t.Errorf("Upsert of a resource without identifier: err = nil, want an error")
		}
	})
}

// unchanged returns the results an idempotent repeat of an upsert reports.
func unchanged(rs []store.UpsertResult) []store.UpsertResult {
	out := make([]store.UpsertResult, len(rs))
	for i, r := range rs {
		out[i] = store.UpsertResult{ID: r.ID, VersionID: r.VersionID}
	}
	return out
}
