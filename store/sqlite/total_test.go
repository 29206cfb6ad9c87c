package sqlite

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/fhir/search"
	"github.com/openhealthexchange/ohx/store"
	"github.com/openhealthexchange/ohx/store/storetest"
)

// TestTotalBound runs the bounded-total conformance check with a small bound.
func TestTotalBound(t *testing.T) {
	storetest.RunTotalBound(t, 5, func(t testing.TB) store.Store {
		s := openTest(t)
		s.totalBound = 5
		return s
	})
}

// BenchmarkTotal measures what Bundle.total costs for one patient with many Observations: the
// count that stops after limit matches (limit 0: the exact count of _total=accurate), next to
// the page of 50 it accompanies. The bound store.TotalBound is chosen from these numbers
// (README "Totals").
func BenchmarkTotal(b *testing.B) {
	const heavy = 100_000
	s := openTest(b)
	base := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	seed := func(patient string, n int) {
		for i := 0; i < n; i += 2000 {
			rs := make([]fhir.Resource, 0, 2000)
			for j := i; j < min(i+2000, n); j++ {
				rs = append(rs, weight(patient, base.Add(time.Duration(j)*time.Minute), "70.0"))
			}
			if _, err := s.Upsert(b.Context(), rs); err != nil {
				b.Fatal(err)
			}
		}
	}
	seed("heavy", heavy)
	for i := range 20 {
		seed("p"+strconv.Itoa(i), 1000)
	}
	for _, query := range []string{
		"patient=heavy&_sort=-date",
		"patient=heavy&code=http://loinc.org|29463-7&_sort=-date", // the clustered hot path
		"patient=heavy&code=http://loinc.org|29463-7&date=ge2020-02-01&_sort=-date",
		"patient=heavy&date=ge2020-02-01&_sort=-date",
		"code=http://loinc.org|29463-7&_sort=-date", // every patient
	} {
		pairs, err := search.ParseRawQuery(query)
		if err != nil {
			b.Fatal(err)
		}
		q, _, err := search.DefaultRegistry().Parse("Observation", pairs, search.Options{})
		if err != nil {
			b.Fatal(err)
		}
		pageOnly := *q
		pageOnly.Total = "none"
		for _, c := range []struct {
			name string
			q    *search.Query
		}{{"page50", &pageOnly}, {"page50+total", q}} {
			b.Run(query+"/"+c.name, func(b *testing.B) {
				for b.Loop() {
					if _, err := s.Search(b.Context(), c.q); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
		for _, limit := range []int{1_001, 10_001, 50_001, 0} {
			b.Run(fmt.Sprintf("%s/count%d", query, limit), func(b *testing.B) {
				for b.Loop() {
					if _, err := s.count(b.Context(), s.plan(q), limit); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
