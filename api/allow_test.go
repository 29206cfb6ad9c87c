package api_test

import (
	"strings"
	"testing"
)

// TestMethodNotAllowed checks the 405 answers: the Allow header (RFC 9110 §15.5.6) and the
// message list the methods the path does allow, per resource type and path shape.
func TestMethodNotAllowed(t *testing.T) {
	e := newPractitionerEnv(t, nil)
	tok := e.mint("system/*.*", "")
	ct := "application/fhir+json"
	for _, tc := range []struct {
		method, path string
		wantStatus   int
		wantAllow    string // "-": no Allow header
		wantIn       []string
	}{
		{"DELETE", "/fhir/Patient/p1", 405, "GET, PUT", []string{"DELETE is not allowed on Patient/{id}", "GET, PUT"}},
		{"PATCH", "/fhir/Patient/p1", 405, "GET, PUT", []string{"PATCH", "GET, PUT"}},
		{"DELETE", "/fhir/Patient", 405, "GET, POST, PUT", []string{"on Patient:", "GET, POST, PUT"}},
		{"PATCH", "/fhir/r4/Patient/p1", 405, "GET, PUT", []string{"GET, PUT"}},
		{"POST", "/fhir/Observation", 405, "GET", []string{"POST is not allowed on Observation:", "GET", "sync pipeline"}},
		{"PUT", "/fhir/Observation", 405, "GET", []string{"PUT is not allowed on Observation:", "sync pipeline"}},
		{"PUT", "/fhir/Device/dev-p1", 405, "GET", []string{"PUT is not allowed on Device/{id}", "GET"}},
		{"DELETE", "/fhir/DeviceAssociation/da-p1", 405, "GET", []string{"GET"}},
		{"DELETE", "/fhir/r4/Observation/vs-p1", 405, "GET", []string{"GET"}},
		{"DELETE", "/fhir/Practitioner/d1", 405, "GET", []string{"DELETE is not allowed on Practitioner/{id}", "GET"}},
		{"PUT", "/fhir/Practitioner/d1", 405, "GET", []string{"GET"}},
		{"POST", "/fhir/Practitioner", 404, "-", []string{"only read by id"}},
		{"GET", "/fhir/Practitioner?name=x", 404, "-", []string{"only read by id"}},
		{"DELETE", "/fhir/Medication/x", 404, "-", []string{"not supported"}},
		{"DELETE", "/fhir/r4/DeviceAssociation/da-p1", 404, "-", []string{"R5"}},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			r := e.do(tc.method, tc.path, `{"resourceType":"Observation"}`, "Authorization", "Bearer "+tok, "Content-Type", ct)
			if r.status != tc.wantStatus {
				t.Fatalf("status %d, want %d: %s", r.status, tc.wantStatus, r.body)
			}
			allow, has := r.header.Get("Allow"), len(r.header.Values("Allow")) > 0
			if tc.wantAllow == "-" && has || tc.wantAllow != "-" && allow != tc.wantAllow {
				t.Errorf("Allow %q (present %v), want %q", allow, has, tc.wantAllow)
			}
			diag := r.outcome(t).Issue[0].Diagnostics
			for _, w := range tc.wantIn {
				if !strings.Contains(diag, w) {
					t.Errorf("diagnostics %q do not say %q", diag, w)
				}
			}
			if strings.Contains(diag, "read-only over REST") {
				t.Errorf("diagnostics %q still call the type read-only", diag)
			}
		})
	}
}
