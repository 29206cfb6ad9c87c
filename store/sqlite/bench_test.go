package sqlite

import (
	"fmt"
	"testing"
	"time"

	"github.com/openhealthexchange/ohx/fhir"
)

// BenchmarkUpsert measures the pipeline's write path: bulk upserts of new Observations.
func BenchmarkUpsert(b *testing.B) {
	s := openTest(b)
	base := time.Date(2026, 1, 1, 8, 0, 0, 0, time.UTC)
	const batch = 2000
	n := 0
	b.ReportAllocs()
	for b.Loop() {
		rs := make([]fhir.Resource, batch)
		for i := range rs {
			rs[i] = weight(fmt.Sprintf("p%d", n%1000), base.Add(time.Duration(n)*time.Minute), "70.0")
			n++
		}
		if _, err := s.Upsert(b.Context(), rs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "obs/s")
}

// BenchmarkUpsertChanged measures re-syncs that change every resource: each write also keeps
// the version it replaces (history.go).
func BenchmarkUpsertChanged(b *testing.B) {
	s := openTest(b)
	base := time.Date(2026, 1, 1, 8, 0, 0, 0, time.UTC)
	const batch = 2000
	mk := func(round int) []fhir.Resource {
		rs := make([]fhir.Resource, batch)
		for i := range rs {
			rs[i] = weight(fmt.Sprintf("p%d", i%1000), base.Add(time.Duration(i)*time.Minute), fmt.Sprintf("70.%d", round%10))
		}
		return rs
	}
	if _, err := s.Upsert(b.Context(), mk(0)); err != nil {
		b.Fatal(err)
	}
	n, round := 0, 1
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Upsert(b.Context(), mk(round)); err != nil {
			b.Fatal(err)
		}
		round++
		n += batch
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "obs/s")
}
