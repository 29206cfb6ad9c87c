package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"time"

	"golang.org/x/oauth2"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/providers"
	"github.com/openhealthexchange/ohx/providers/pipeline"
	"github.com/openhealthexchange/ohx/providers/withings"
	"github.com/openhealthexchange/ohx/store/sqlite"
)

// benchPipeline measures the sync pipeline end to end — vendor JSON over HTTP → adapter →
// fhir.MapSample → bulk upsert on a fresh embedded store — with a local fake Withings that serves
// `groups` measure groups of six body-composition measures each, 500 groups per page.
func benchPipeline(ctx context.Context, groups int) (*pipelineRun, error) {
	const perPage = 500
	types := []int{1, 5, 6, 8, 76, 88}
	base := time.Now().Add(-24 * time.Hour).Unix()
	page := func(offset int) []byte {
		type m struct{ Value, Type, Unit int }
		type g struct {
			GrpID    int    `json:"grpid"`
			Attrib   int    `json:"attrib"`
			Date     int64  `json:"date"`
			Category int    `json:"category"`
			DeviceID string `json:"deviceid"`
			Measures []m    `json:"measures"`
		}
		var gs []g
		for i := offset; i < min(offset+perPage, groups); i++ {
			grp := g{GrpID: i + 1, Date: base + int64(i), Category: 1, DeviceID: "scale-1"}
			for j, t := range types {
				grp.Measures = append(grp.Measures, m{Value: 7000 + i%500 + j, Type: t, Unit: -2})
			}
			gs = append(gs, grp)
		}
		more := 0
		if offset+perPage < groups {
			more = 1
		}
		b, _ := json.Marshal(map[string]any{"status": 0, "body": map[string]any{
			"updatetime": time.Now().Unix(), "timezone": "Europe/Paris", "more": more, "offset": offset + perPage, "measuregrps": gs}})
		return b
	}
	fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		off, _ := strconv.Atoi(r.PostForm.Get("offset"))
		w.Header().Set("Content-Type", "application/json")
		w.Write(page(off))
	}))
	defer fake.Close()

	dir, err := os.MkdirTemp("", "ohxbench-pipeline-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	st, err := sqlite.Open(ctx, dir, sqlite.Options{}, nil)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	log := slog.New(slog.DiscardHandler)
	caller, err := providers.NewClient(providers.ClientConfig{Provider: withings.Name, CacheTTL: -1}, fake.Client(), nil, log)
	if err != nil {
		return nil, err
	}
	kinds := []fhir.SampleKind{fhir.KindWeight, fhir.KindFatFreeMass, fhir.KindFatRatio, fhir.KindFatMass, fhir.KindMuscleMass, fhir.KindBoneMass}
	w, err := withings.New(withings.Config{ClientID: "c", ClientSecret: "s", RedirectURL: "http://x/cb", APIURL: fake.URL, Kinds: kinds}, caller, log)
	if err != nil {
		return nil, err
	}
	key := make([]byte, 32)
	rand.Read(key)
	vault, err := providers.NewVault(st, map[string][]byte{"k": key}, "k", log)
	if err != nil {
		return nil, err
	}
	conn := &providers.Connection{Provider: withings.Name, PatientID: "p1", VendorUserID: "42", Status: providers.StatusActive,
		Token: &oauth2.Token{AccessToken: "a", RefreshToken: "r", Expiry: time.Now().Add(3 * time.Hour)}}
	if err := vault.Save(ctx, conn); err != nil {
		return nil, err
	}
	r := pipeline.NewRunner(pipeline.Config{}, providers.NewRegistry(w), vault, st, log)
	start := time.Now()
	work := pipeline.Work{Provider: withings.Name, Patient: "p1", Start: time.Unix(base-1, 0), End: time.Now().Add(time.Hour)}
	if err := r.Process(ctx, work.Job(pipeline.TypeBackfill)); err != nil {
		return nil, err
	}
	el := time.Since(start)
	n := groups * len(types)
	fmt.Printf("pipeline: %d Withings measures (%d groups, %d pages) → FHIR → stored in %s = %.0f Observations/s (target ≥ 20,000/s)\n",
		n, groups, (groups+perPage-1)/perPage, el.Round(time.Millisecond), float64(n)/el.Seconds())
	return &pipelineRun{Observations: n, Seconds: el.Seconds(), Rate: float64(n) / el.Seconds()}, nil
}
