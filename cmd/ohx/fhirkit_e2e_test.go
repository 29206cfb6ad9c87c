package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestFHIRKitClient runs testdata/fhirkit/e2e.mjs, which drives the running server with the
// public fhir-kit-client library: create, update, vread, history, compartment search, a chained
// identifier search and nextPage to the end with totals. It needs Node.js and `npm ci` in that
// folder (.ci/run does both and sets OHX_REQUIRE_NODE=1, so there it fails instead of skipping).
func TestFHIRKitClient(t *testing.T) {
	dir, err := filepath.Abs(filepath.Join("..", "..", "testdata", "fhirkit"))
	if err != nil {
		t.Fatal(err)
	}
	node, err := exec.LookPath("node")
	if _, statErr := os.Stat(filepath.Join(dir, "node_modules", "fhir-kit-client")); err != nil || statErr != nil {
		if os.Getenv("OHX_REQUIRE_NODE") == "1" {
			t.Fatalf("node (%v) or testdata/fhirkit/node_modules (%v) missing", err, statErr)
		}
		t.Skip("needs node and `npm ci --prefix testdata/fhirkit`")
	}
	origin, env := authServer(t)
	getenv := func(k string) string { return env[k] }
	var out, errOut bytes.Buffer
	if err := run(t.Context(), []string{"token", "-token-url", origin + "/auth/token"}, getenv, nil, &out, &errOut); err != nil {
		t.Fatalf("ohx token: %v (%s)", err, errOut.String())
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "e2e.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "OHX_BASE="+origin+"/fhir", "OHX_TOKEN="+strings.TrimSpace(out.String()))
	res, err := cmd.CombinedOutput()
	t.Logf("fhir-kit-client:\n%s", res)
	if err != nil {
		t.Fatalf("e2e.mjs: %v", err)
	}
	if n := strings.Count(string(res), "\nok ") + 1; !strings.HasPrefix(string(res), "ok ") || n != 7 {
		t.Errorf("want 7 ok steps, got output:\n%s", res)
	}
}
