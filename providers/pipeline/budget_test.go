package pipeline

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/openhealthexchange/ohx/providers"
	"github.com/openhealthexchange/ohx/providers/providertest"
	"github.com/openhealthexchange/ohx/providers/withings"
	"github.com/openhealthexchange/ohx/store"
	"github.com/openhealthexchange/ohx/store/sqlite"
)

// instanceTransport names the instance that sent a request in a header, so that the fake
// vendor's record tells the instances apart.
type instanceTransport struct {
	name string
	next http.RoundTripper
}

func (t instanceTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("X-Instance", t.name)
	return t.next.RoundTrip(r)
}

// TestRunnersShareVendorLimit: two runners, each with its own Withings client, vault and handle
// on one store (two ohx instances), work off 20 device syncs against a fake Withings with an
// application limit of 5 requests per second shared through the store. Every job runs once,
// both runners make progress, and the fake never sees more than 5 requests in any second —
// where each runner alone, with 4 workers and no in-process limit, would send them all at once.
func TestRunnersShareVendorLimit(t *testing.T) {
	const jobs = 20
	quota := store.BudgetLimit{Limit: 5, Window: time.Second, Slots: 10}
	fake := providertest.NewServer(t, map[string]providertest.Route{"POST /v2/user action=getdevice": {File: "withings/getdevice_account.json"}})
	dir := t.TempDir()
	key := map[string][]byte{"k": make([]byte, 32)}
	var runners []*Runner
	var first *sqlite.Store
	for _, name := range []string{"a", "b"} {
		st, err := sqlite.Open(t.Context(), dir, sqlite.Options{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		if first == nil {
			first = st
		}
		hc := &http.Client{Transport: instanceTransport{name: name, next: fake.Client().Transport}}
		caller, err := providers.NewClient(providers.ClientConfig{Provider: withings.Name, CacheTTL: -1, MaxRetries: -1,
			AppQuota: quota, Budgets: st}, hc, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		w, err := withings.New(withings.Config{ClientID: "c", ClientSecret: "s", RedirectURL: "https://ohx.test/cb", APIURL: fake.URL()}, caller, nil)
		if err != nil {
			t.Fatal(err)
		}
		vault, err := providers.NewVault(st, key, "k", nil)
		if err != nil {
			t.Fatal(err)
		}
		runners = append(runners, NewRunner(Config{
			CallbackURL: func(string) string { return "https://ohx.test/webhooks/withings/s" },
			Lease:       time.Minute, MaxAttempts: 3, Workers: 4, Poll: 20 * time.Millisecond, Reconcile: -1,
		}, providers.NewRegistry(w), vault, st, nil))
		if name == "a" {
			for i := range jobs {
				if err := vault.Save(t.Context(), &providers.Connection{Provider: withings.Name, PatientID: fmt.Sprintf("p%d", i),
					VendorUserID: fmt.Sprint(1000 + i), Status: providers.StatusActive,
					Token: &oauth2.Token{AccessToken: "a1", RefreshToken: "r1", Expiry: time.Now().Add(time.Hour)}}); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	for i := range jobs {
		if _, _, err := runners[i%2].Enqueue(t.Context(), Work{Provider: withings.Name, Patient: fmt.Sprintf("p%d", i)}.Job(TypeDeviceSync)); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	for _, r := range runners {
		wg.Go(func() { r.Run(ctx) })
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		pending, err := first.PendingJobs(t.Context(), 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(pending) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d jobs still pending after 60 s", len(pending))
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	wg.Wait()

	if dead, err := first.DeadJobs(t.Context(), 100); err != nil || len(dead) != 0 {
		t.Errorf("dead letters: %v %+v, want none", err, dead)
	}
	var at []time.Time
	per := map[string]int{}
	for _, r := range fake.Requests() {
		at = append(at, r.At)
		per[r.Header.Get("X-Instance")]++
	}
	if len(at) != jobs {
		t.Errorf("vendor requests: %d, want one per job (%d)", len(at), jobs)
	}
	most := 0
	for _, a := range at {
		n := 0
		for _, b := range at {
			if !b.Before(a) && b.Sub(a) < quota.Window {
				n++
			}
		}
		most = max(most, n)
	}
	t.Logf("%d requests (per instance %v), at most %d in one second, over %v", len(at), per, most, at[len(at)-1].Sub(at[0]))
	if most > quota.Limit {
		t.Errorf("the vendor saw %d requests in one second, want at most %d", most, quota.Limit)
	}
	if per["a"] == 0 || per["b"] == 0 {
		t.Errorf("requests per runner %v: both must make progress", per)
	}
}
