package sqlite

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/store"
)

// BenchmarkEnqueueUnderUpserts measures the webhook acknowledgement's store path: 1,000
// enqueues/s paced open-loop (each its own goroutine, as concurrent webhook requests are) while
// bulk upserts of 5,000 Observations run back to back, as the sync pipeline's do. It reports
// the enqueue latency's p50/p99/max per queue durability.
func BenchmarkEnqueueUnderUpserts(b *testing.B) {
	for _, dur := range []string{QueueSyncNormal, QueueSyncFull} {
		b.Run(dur, func(b *testing.B) {
			s, err := Open(b.Context(), b.TempDir(), Options{QueueSync: dur}, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			ctx, cancel := context.WithCancel(b.Context())
			var bg sync.WaitGroup
			bg.Add(1)
			go func() { // the runner's bulk upserts
				defer bg.Done()
				base := time.Date(2026, 1, 1, 8, 0, 0, 0, time.UTC)
				for n := 0; ctx.Err() == nil; {
					rs := make([]fhir.Resource, 5000)
					for i := range rs {
						rs[i] = weight(fmt.Sprintf("p%d", n%1000), base.Add(time.Duration(n)*time.Minute), "70.0")
						n++
					}
					if _, err := s.Upsert(ctx, rs); err != nil && ctx.Err() == nil {
						b.Error(err)
						return
					}
				}
			}()
			var mu sync.Mutex
			var lat []time.Duration
			var wg sync.WaitGroup
			tick := time.NewTicker(time.Millisecond)
			i := 0
			for b.Loop() {
				<-tick.C
				wg.Add(1)
				go func(i int) {
					defer wg.Done()
					t0 := time.Now()
					if _, _, err := s.EnqueueJob(ctx, store.Job{Type: "fetch", Key: fmt.Sprint("k", i), Payload: []byte(`{}`)}, t0); err != nil {
						b.Error(err)
					}
					d := time.Since(t0)
					mu.Lock()
					lat = append(lat, d)
					mu.Unlock()
				}(i)
				i++
			}
			tick.Stop()
			wg.Wait()
			cancel()
			bg.Wait()
			slices.Sort(lat)
			pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))]) / 1e6 }
			b.ReportMetric(pct(0.5), "p50-ms")
			b.ReportMetric(pct(0.99), "p99-ms")
			b.ReportMetric(float64(lat[len(lat)-1])/1e6, "max-ms")
			s.q.gmu.Lock()
			b.ReportMetric(float64(s.q.grouped)/float64(max(s.q.groups, 1)), "jobs/commit")
			s.q.gmu.Unlock()
		})
	}
}
