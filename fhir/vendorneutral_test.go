package fhir

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// vendorName matches the names of the vendors ohx integrates, case-insensitively. Plain "google"
// is not matched: the google/fhir/go and google/go-cmp import paths are legitimate.
var vendorName = regexp.MustCompile(`(?i)withings|fitbit|google[ _-]?health`)

// packageSources returns the non-test Go files of this package and its sub-packages, with their
// contents.
func packageSources(tb testing.TB) map[string][]byte {
	tb.Helper()
	files := map[string][]byte{}
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != "." && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files[path] = b
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	// The walk must have seen this package and fhir/search, or the tests below prove nothing.
	for _, want := range []string{"mapping.go", filepath.Join("search", "registry.go")} {
		if _, ok := files[want]; !ok {
			tb.Fatalf("source walk did not find %s (found %d files)", want, len(files))
		}
	}
	return files
}

// TestVendorNeutral: no code or comment of fhir or fhir/search names a vendor. Vendor rules live
// in the adapters, which hand over provider-neutral samples and devices; a new vendor must add
// nothing here.
func TestVendorNeutral(t *testing.T) {
	for path, b := range packageSources(t) {
		for i, line := range strings.Split(string(b), "\n") {
			if m := vendorName.FindString(line); m != "" {
				t.Errorf("%s:%d names the vendor %q: %s", path, i+1, m, strings.TrimSpace(line))
			}
		}
	}
}

// TestVendorNamePattern: the pattern of TestVendorNeutral finds what it must and spares the
// legitimate Google import paths.
func TestVendorNamePattern(t *testing.T) {
	for _, s := range []string{"Withings attrib 1", "FITBIT", "Google Health API", "googlehealth", "google_health", "google-health"} {
		if !vendorName.MatchString(s) {
			t.Errorf("%q not matched", s)
		}
	}
	for _, s := range []string{`"github.com/google/fhir/go/jsonformat"`, `"github.com/google/go-cmp/cmp"`, "health data"} {
		if vendorName.MatchString(s) {
			t.Errorf("%q matched", s)
		}
	}
}

// TestNoProviderImports: fhir and fhir/search import no provider package, so no vendor rule can
// reach the mapper through a dependency either.
func TestNoProviderImports(t *testing.T) {
	fset := token.NewFileSet()
	imports := 0
	for path, b := range packageSources(t) {
		f, err := parser.ParseFile(fset, path, b, parser.ImportsOnly)
		if err != nil {
			t.Fatalf("parse %s: %v", path, err)
		}
		for _, imp := range f.Imports {
			imports++
			p, err := strconv.Unquote(imp.Path.Value)
			if err != nil {
				t.Fatalf("%s: import %s: %v", path, imp.Path.Value, err)
			}
			if strings.Contains(p, "/providers") || vendorName.MatchString(p) {
				t.Errorf("%s imports %s", path, p)
			}
		}
	}
	if imports == 0 {
		t.Fatal("no imports parsed")
	}
}
