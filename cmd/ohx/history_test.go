package main

import (
	"errors"
	"io"
	"testing"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/store"
)

// TestHistoryVersions: OHX_HISTORY_VERSIONS / -history-versions reach the store, which then
// keeps only that many versions of each resource.
func TestHistoryVersions(t *testing.T) {
	for _, tc := range []struct {
		env  string
		args []string
		want int
	}{{"", nil, 0}, {"5", nil, 5}, {"5", []string{"-history-versions", "2"}, 2}} {
		cfg, err := parseConfig("ohx", tc.args, func(k string) string { return map[string]string{"OHX_HISTORY_VERSIONS": tc.env}[k] }, io.Discard)
		if err != nil || cfg.HistoryVersions != tc.want {
			t.Errorf("env %q args %v: HistoryVersions %d (%v), want %d", tc.env, tc.args, cfg.HistoryVersions, err, tc.want)
		}
	}
	if _, err := parseConfig("ohx", nil, func(k string) string { return map[string]string{"OHX_HISTORY_VERSIONS": "-1"}[k] }, io.Discard); err == nil {
		t.Error("OHX_HISTORY_VERSIONS=-1: want an error")
	}

	cfg, err := parseConfig("ohx", []string{"-history-versions", "2", "-data-dir", t.TempDir()}, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	st, err := openStore(t.Context(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, family := range []string{"A", "B", "C"} {
		if _, _, err := st.Put(t.Context(), &fhir.Patient{Base: fhir.Base{ResourceType: "Patient", ID: "p"}, Name: []fhir.HumanName{{Family: family}}}, store.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st.ReadVersion(t.Context(), "Patient", "p", 1); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("version 1 of 3 with -history-versions 2: err = %v, want ErrNotFound", err)
	}
	if _, err := st.ReadVersion(t.Context(), "Patient", "p", 2); err != nil {
		t.Errorf("version 2 of 3 with -history-versions 2: %v", err)
	}
}
