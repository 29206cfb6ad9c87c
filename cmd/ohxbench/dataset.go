package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/store/sqlite"
)

// dataset describes a generated data directory: what it holds and how fast it was written.
// It is kept beside the data (dataset.json) so that a reused data set still reports its load.
type dataset struct {
	Dir          string       `json:"dir"`
	Patients     int          `json:"patients"`
	PerPatient   int          `json:"per_patient"`
	Observations int          `json:"observations"`
	Batch        int          `json:"batch"`
	Generated    time.Time    `json:"generated"`
	Ingest       []ingestStep `json:"ingest"`
	// IngestRate is Observations/s over the whole load; FlatRatio the slowest step's rate over
	// the fastest's (1 is perfectly flat; the target is ≥ 0.8).
	IngestRate float64 `json:"ingest_obs_per_s"`
	FlatRatio  float64 `json:"ingest_flat_ratio"`
	MaxWAL     int64   `json:"max_wal_bytes"`
	// DiskBytes is ohx.db plus its WAL, measured when the benchmark starts.
	DiskBytes   int64   `json:"disk_bytes"`
	BytesPerObs float64 `json:"disk_bytes_per_observation"`
	Reused      bool    `json:"reused"`
	Schema      int     `json:"store_schema_version"`
	PatientIDs  string  `json:"patient_identifier_system"`
}

// ingestStep is the write rate of one tenth of the load.
type ingestStep struct {
	UpTo    int     `json:"up_to"`
	Rate    float64 `json:"obs_per_s"`
	DBBytes int64   `json:"db_bytes"`
	WAL     int64   `json:"wal_bytes"`
}

// mrnSystem is the identifier system of the benchmark's Patients (chained searches use it).
const mrnSystem = "urn:oid:2.16.840.1.113883.19.5.99999.1"

// ensureDataset returns the data set for cfg, generating it unless a complete one exists.
func ensureDataset(ctx context.Context, cfg config) (*dataset, error) {
	dir := filepath.Join(cfg.dir, fmt.Sprintf("sqlite-%dx%d", cfg.patients, cfg.perPat))
	meta := filepath.Join(dir, "dataset.json")
	var ds dataset
	b, err := os.ReadFile(meta)
	if err == nil && !cfg.fresh {
		if err := json.Unmarshal(b, &ds); err != nil {
			return nil, fmt.Errorf("read %s: %w", meta, err)
		}
	}
	if err == nil && !cfg.fresh && ds.Schema == sqlite.SchemaVersion() {
		ds.Reused = true
		fmt.Printf("data set: reusing %d Observations in %s (generated %s)\n", ds.Observations, dir, ds.Generated.Format(time.RFC3339))
	} else {
		if err := os.RemoveAll(dir); err != nil {
			return nil, err
		}
		if err == nil && !cfg.fresh {
			fmt.Printf("data set: %s was made with store schema %d, this build writes %d: generating it again\n", dir, ds.Schema, sqlite.SchemaVersion())
		}
		if err := generate(ctx, dir, cfg, &ds); err != nil {
			return nil, err
		}
		b, err := json.MarshalIndent(ds, "", "  ")
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(meta, b, 0o600); err != nil {
			return nil, err
		}
	}
	ds.Dir = dir
	ds.DiskBytes = fileSize(filepath.Join(dir, "ohx.db")) + fileSize(filepath.Join(dir, "ohx.db-wal"))
	ds.BytesPerObs = float64(ds.DiskBytes) / float64(ds.Observations)
	return &ds, nil
}

// generate writes Patients and Devices, then the Observations in time order through the bulk
// upsert path, timing each tenth and watching the WAL.
func generate(ctx context.Context, dir string, cfg config, ds *dataset) error {
	*ds = dataset{Patients: cfg.patients, PerPatient: cfg.perPat, Observations: cfg.patients * cfg.perPat, Batch: cfg.batch,
		Generated: time.Now().UTC(), PatientIDs: mrnSystem, Schema: sqlite.SchemaVersion()}
	st, err := sqlite.Open(ctx, dir, sqlite.Options{}, nil)
	if err != nil {
		return err
	}
	closed := false
	defer func() {
		if !closed {
			st.Close()
		}
	}()
	var people []fhir.Resource
	for p := range cfg.patients {
		people = append(people, patient(p), device(p))
	}
	for len(people) > 0 {
		n := min(len(people), cfg.batch)
		if _, err := st.Upsert(ctx, people[:n]); err != nil {
			return fmt.Errorf("load patients: %w", err)
		}
		people = people[n:]
	}

	var maxWAL atomic.Int64
	stop := make(chan struct{})
	watched := make(chan struct{})
	wal := filepath.Join(dir, "ohx.db-wal")
	go func() {
		defer close(watched)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			if n := fileSize(wal); n > maxWAL.Load() {
				maxWAL.Store(n)
			}
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()

	total := ds.Observations
	step := max(total/10, 1)
	fmt.Printf("data set: writing %d Observations for %d patients in time order, batches of %d (bulk upsert)\n", total, cfg.patients, cfg.batch)
	fmt.Printf("  %10s %12s %12s %12s\n", "up to", "obs/s", "db MB", "WAL MB")
	t0 := time.Date(2026, 1, 1, 7, 0, 0, 0, time.UTC)
	batch := make([]fhir.Resource, 0, cfg.batch)
	n, stepStart, stepN := 0, time.Now(), 0
	start := stepStart
	write := func() error {
		if _, err := st.Upsert(ctx, batch); err != nil {
			return err
		}
		n += len(batch)
		batch = batch[:0]
		if n-stepN >= step || n == total {
			s := ingestStep{UpTo: n, Rate: float64(n-stepN) / time.Since(stepStart).Seconds(),
				DBBytes: fileSize(filepath.Join(dir, "ohx.db")), WAL: fileSize(wal)}
			ds.Ingest = append(ds.Ingest, s)
			fmt.Printf("  %10d %12.0f %12.1f %12.1f\n", s.UpTo, s.Rate, float64(s.DBBytes)/1e6, float64(s.WAL)/1e6)
			stepN, stepStart = n, time.Now()
		}
		return nil
	}
	// Each day touches every patient, like a live feed: consecutive writes land on different
	// patients, so a layout clustered by patient takes scattered writes.
	for i := range cfg.perPat {
		for p := range cfg.patients {
			batch = append(batch, observation(p, i, t0))
			if len(batch) == cap(batch) {
				if err := write(); err != nil {
					return err
				}
			}
		}
	}
	if len(batch) > 0 {
		if err := write(); err != nil {
			return err
		}
	}
	el := time.Since(start)
	closed = true
	if err := st.Close(); err != nil {
		return err
	}
	close(stop)
	<-watched
	ds.IngestRate = float64(n) / el.Seconds()
	ds.MaxWAL = maxWAL.Load()
	lo, hi := ds.Ingest[0].Rate, ds.Ingest[0].Rate
	for _, s := range ds.Ingest {
		lo, hi = min(lo, s.Rate), max(hi, s.Rate)
	}
	if hi > 0 {
		ds.FlatRatio = lo / hi
	}
	fmt.Printf("data set: %d Observations in %s = %.0f/s; slowest tenth / fastest = %.2f (target ≥ 0.80); WAL peak %.1f MB\n",
		n, el.Round(time.Millisecond), ds.IngestRate, ds.FlatRatio, float64(ds.MaxWAL)/1e6)
	return nil
}

// fileSize is the size of path, 0 if it does not exist (a WAL after a truncating checkpoint).
func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

func patient(p int) *fhir.Patient {
	return &fhir.Patient{Base: fhir.Base{ResourceType: "Patient", ID: "p" + strconv.Itoa(p)},
		Identifier: []fhir.Identifier{{System: mrnSystem, Value: "mrn-" + strconv.Itoa(p)}},
		Name:       []fhir.HumanName{{Family: "Bench", Given: []string{"Patient " + strconv.Itoa(p)}}},
		Gender:     []string{"female", "male"}[p%2], BirthDate: fmt.Sprintf("%d-%02d-%02d", 1940+p%60, 1+p%12, 1+p%28)}
}

func device(p int) *fhir.Device {
	id := "d" + strconv.Itoa(p)
	return &fhir.Device{Base: fhir.Base{ResourceType: "Device", ID: id},
		Identifier:   []fhir.Identifier{{System: fhir.IdentifierSystem("bench/device"), Value: id}},
		Status:       "active",
		Manufacturer: "Bench", ModelNumber: "Scale 1"}
}

// observation is the p-th patient's i-th measurement: body weight and heart rate alternate.
func observation(p, i int, t0 time.Time) *fhir.Observation {
	code, display, unit, ucum := "29463-7", "Body weight", "kg", "kg"
	value := fhir.Decimal(strconv.FormatFloat(60+float64((p*7+i)%400)/10, 'f', 1, 64))
	at := t0.AddDate(0, 0, i/2).Add(time.Duration(p%600) * time.Second)
	if i%2 == 1 {
		code, display, unit, ucum = "8867-4", "Heart rate", "beats/minute", "/min"
		value = fhir.Decimal(strconv.Itoa(55 + (p+i)%40))
	}
	id := fmt.Sprintf("o-%d-%d", p, i)
	return &fhir.Observation{
		Base:       fhir.Base{ResourceType: "Observation", ID: id},
		Identifier: []fhir.Identifier{{System: fhir.IdentifierSystem("bench/measure"), Value: id}},
		Status:     "final",
		Category: []fhir.CodeableConcept{{Coding: []fhir.Coding{{System: "http://terminology.hl7.org/CodeSystem/observation-category",
			Code: "vital-signs", Display: "Vital Signs"}}}},
		Code:              fhir.CodeableConcept{Coding: []fhir.Coding{{System: "http://loinc.org", Code: code, Display: display}}},
		Subject:           &fhir.Reference{Reference: "Patient/p" + strconv.Itoa(p)},
		EffectiveDateTime: at.Format("2006-01-02T15:04:05+01:00"),
		Device:            &fhir.Reference{Reference: "Device/d" + strconv.Itoa(p)},
		Value:             fhir.Value{ValueQuantity: &fhir.Quantity{Value: &value, Unit: unit, System: "http://unitsofmeasure.org", Code: ucum}},
	}
}
