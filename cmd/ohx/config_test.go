package main

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/store/sqlite"
)

// TestIdentifierNamespace: the namespace defaults to the stable project constant, is read from
// OHX_IDENTIFIER_NAMESPACE or -identifier-namespace, and a bad value is an error naming what the
// user set.
func TestIdentifierNamespace(t *testing.T) {
	parse := func(args []string, env map[string]string) (Config, error) {
		return parseConfig("ohx serve", args, func(k string) string { return env[k] }, io.Discard)
	}
	cfg, err := parse(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := fhir.Namespace("https://github.com/openhealthexchange/ohx"); cfg.IdentifierNamespace != want || fhir.DefaultNamespace != want {
		t.Errorf("default: got %q (fhir.DefaultNamespace %q), want %q", cfg.IdentifierNamespace, fhir.DefaultNamespace, want)
	}
	cfg, err = parse(nil, map[string]string{"OHX_IDENTIFIER_NAMESPACE": "urn:oid:1.2.3.4"})
	if err != nil || cfg.IdentifierNamespace != "urn:oid:1.2.3.4" {
		t.Errorf("from the environment: got %q, %v", cfg.IdentifierNamespace, err)
	}
	cfg, err = parse([]string{"-identifier-namespace", "https://ids.hospital.test"}, map[string]string{"OHX_IDENTIFIER_NAMESPACE": "urn:oid:1.2.3.4"})
	if err != nil || cfg.IdentifierNamespace != "https://ids.hospital.test" {
		t.Errorf("the flag must win: got %q, %v", cfg.IdentifierNamespace, err)
	}
	for _, bad := range []string{"https://ids.hospital.test/", "ids.hospital.test", "https://ids.hospital.test/a|b", "ftp://ids.hospital.test"} {
		if _, err := parse(nil, map[string]string{"OHX_IDENTIFIER_NAMESPACE": bad}); err == nil || !strings.Contains(err.Error(), "OHX_IDENTIFIER_NAMESPACE") {
			t.Errorf("OHX_IDENTIFIER_NAMESPACE=%q: got %v, want an error naming the variable", bad, err)
		}
		if _, err := parse([]string{"-identifier-namespace", bad}, nil); err == nil || !strings.Contains(err.Error(), "-identifier-namespace") {
			t.Errorf("-identifier-namespace %q: got %v, want an error naming the flag", bad, err)
		}
	}
}

// TestBaseURLKeepsIdentifiers: moving the server to another public base URL changes neither the
// namespace nor the identifiers and ids of what it syncs.
func TestBaseURLKeepsIdentifiers(t *testing.T) {
	s := fhir.Sample{Provider: "withings", System: "withings/measure", RecordID: "12345/1/1", Kind: fhir.KindWeight,
		Start: time.Date(2024, 1, 1, 8, 0, 0, 0, time.UTC), Value: "72.4", Unit: "kg"}
	var got []*fhir.Observation
	for _, env := range []map[string]string{
		{"OHX_BASE_URL": "http://localhost:8080/fhir"},
		{"OHX_BASE_URL": "https://fhir.hospital.test/ohx/fhir"},
	} {
		cfg, err := parseConfig("ohx serve", nil, func(k string) string { return env[k] }, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		o, err := cfg.IdentifierNamespace.MapSample(s, "p1")
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, o)
	}
	key := func(o *fhir.Observation) string {
		return o.ID + " " + o.Identifier[0].System + "|" + o.Identifier[0].Value + " " + o.Meta.Source
	}
	if a, b := key(got[0]), key(got[1]); a != b {
		t.Errorf("the base URL changed the identifiers: %s, then %s", a, b)
	}
}

// TestNamespaceGuard: the first start with vendors records the namespace in the store; a later
// start under another namespace is refused, naming the setting and the recorded value.
func TestNamespaceGuard(t *testing.T) {
	st, err := sqlite.Open(t.Context(), t.TempDir(), sqlite.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for range 2 {
		if err := checkNamespace(t.Context(), st, fhir.DefaultNamespace, false); err != nil {
			t.Fatalf("the recorded namespace: %v", err)
		}
	}
	err = checkNamespace(t.Context(), st, "urn:oid:1.2.3.4", true)
	if err == nil || !strings.Contains(err.Error(), "OHX_IDENTIFIER_NAMESPACE") || !strings.Contains(err.Error(), string(fhir.DefaultNamespace)) {
		t.Errorf("another namespace: got %v, want an error naming the setting and the recorded namespace", err)
	}
}

// TestNamespaceGuardLegacyStore: a store with connections but no recorded namespace was synced
// under the old fixed namespace; the default is refused (naming the value that keeps its
// identifiers) and an explicit choice is recorded.
func TestNamespaceGuardLegacyStore(t *testing.T) {
	st, err := sqlite.Open(t.Context(), t.TempDir(), sqlite.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	err = checkNamespace(t.Context(), st, fhir.DefaultNamespace, true)
	if err == nil || !strings.Contains(err.Error(), "OHX_IDENTIFIER_NAMESPACE=https://ohx.example") {
		t.Fatalf("a legacy store under the default: %v", err)
	}
	if err := checkNamespace(t.Context(), st, legacyNamespace, true); err != nil {
		t.Fatalf("the legacy namespace chosen: %v", err)
	}
	if err := checkNamespace(t.Context(), st, fhir.DefaultNamespace, true); err == nil {
		t.Error("after recording the legacy namespace, the default was accepted")
	}
}
