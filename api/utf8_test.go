package api_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/openhealthexchange/ohx/fhir"
)

// TestInvalidUTF8Rejected: bodies and search parameters that are not UTF-8 are a 400
// OperationOutcome saying so, and nothing is stored (audit item 10); the body used to be stored
// with U+FFFD in place of the bad bytes and answered 201.
func TestInvalidUTF8Rejected(t *testing.T) {
	e := newAuthEnv(t)
	auth := "Bearer " + e.mint("system/Patient.cruds", "")
	patients := func() int {
		t.Helper()
		b := e.get("/fhir/Patient?_summary=count", "Authorization", auth).bundle(t)
		if b.Total == nil {
			t.Fatal("no total")
		}
		return *b.Total
	}
	before := patients()
	latin1 := `{"resourceType":"Patient","id":"px","identifier":[{"system":"urn:mrn","value":"px"}],"name":[{"family":"M` + "\xfc" + `ller"}]}`
	fhirJSON := "application/fhir+json"
	form := "application/x-www-form-urlencoded"
	for _, tc := range []struct {
		name, method, path, body, contentType, code string
	}{
		{"create", "POST", "/fhir/Patient", latin1, fhirJSON, fhir.CodeStructure},
		{"update as create", "PUT", "/fhir/Patient/px", latin1, fhirJSON, fhir.CodeStructure},
		{"conditional update", "PUT", "/fhir/Patient?identifier=urn:mrn|px", latin1, fhirJSON, fhir.CodeStructure},
		{"search value", "GET", "/fhir/Patient?family=M%FCller", "", "", fhir.CodeInvalid},
		{"search name", "GET", "/fhir/Patient?fam%FCly=x", "", "", fhir.CodeInvalid},
		{"_search body, percent-encoded", "POST", "/fhir/Patient/_search", "family=M%FCller", form, fhir.CodeInvalid},
		{"_search body, raw byte", "POST", "/fhir/Patient/_search", "family=M\xfcller", form, fhir.CodeInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do(tc.method, tc.path, tc.body, "Authorization", auth, "Content-Type", tc.contentType)
			if r.status != http.StatusBadRequest {
				t.Fatalf("status %d, want 400: %s", r.status, r.body)
			}
			if is := r.outcome(t).Issue[0]; is.Code != tc.code || !strings.Contains(is.Diagnostics, "UTF-8") {
				t.Errorf("issue %+v, want %s naming UTF-8", is, tc.code)
			}
		})
	}
	if after := patients(); after != before {
		t.Errorf("%d Patients after, %d before", after, before)
	}
	if r := e.get("/fhir/Patient/px", "Authorization", auth); r.status != http.StatusNotFound {
		t.Errorf("GET Patient/px: %d, want 404", r.status)
	}
	// The same body in UTF-8 is stored.
	clean := strings.Replace(latin1, "\xfc", "ü", 1)
	if r := e.do("PUT", "/fhir/Patient/px", clean, "Authorization", auth, "Content-Type", fhirJSON); r.status != http.StatusCreated || !strings.Contains(string(r.body), "Müller") {
		t.Errorf("PUT in UTF-8: %d %s", r.status, r.body)
	}
}
