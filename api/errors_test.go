package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/providers"
	"github.com/openhealthexchange/ohx/store"
)

func TestOutcomeFor(t *testing.T) {
	for _, tc := range []struct {
		name   string
		err    error
		status int
		code   string
	}{
		{"fhir error", fhir.Invalid(fhir.CodeValue, "date: bad"), 400, "value"},
		{"wrapped fhir error", fmt.Errorf("ctx: %w", fhir.Errorf(406, fhir.CodeNotSupported, "xml")), 406, "not-supported"},
		{"not found", fmt.Errorf("sqlite: read: %w", store.ErrNotFound), 404, "not-found"},
		{"deleted", fmt.Errorf("x: %w", store.ErrDeleted), 410, "deleted"},
		{"version conflict", fmt.Errorf("x: %w", store.ErrVersionConflict), 412, "conflict"},
		{"duplicate", fmt.Errorf("x: %w", store.ErrDuplicate), 409, "duplicate"},
		{"body too large", &http.MaxBytesError{Limit: 10}, 413, "too-costly"},
		{"deadline", fmt.Errorf("q: %w", context.DeadlineExceeded), 504, "timeout"},
		{"internal", errors.New("sqlite: disk I/O error at /var/lib/secret"), 500, "exception"},
		{"not connected", fmt.Errorf("job: %w", providers.ErrNotConnected), 422, "business-rule"},
		{"consent revoked", fmt.Errorf("refresh: %w", providers.ErrConsentRevoked), 502, "expired"},
		{"throttled", &providers.UpstreamError{Provider: "withings", Kind: providers.KindThrottled, Status: 601}, 503, "throttled"},
		{"transient", &providers.UpstreamError{Provider: "withings", Kind: providers.KindTransient, Status: 502}, 502, "transient"},
		{"vendor 400", &providers.UpstreamError{Provider: "withings", Kind: providers.KindPermanent, Status: 400}, 502, "exception"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, oo := outcomeFor(tc.err, "rid-1")
			if status != tc.status || oo.Issue[0].Code != tc.code {
				t.Errorf("got %d %s, want %d %s", status, oo.Issue[0].Code, tc.status, tc.code)
			}
			if tc.status == 500 && (strings.Contains(oo.Issue[0].Diagnostics, "secret") || !strings.Contains(oo.Issue[0].Diagnostics, "rid-1")) {
				t.Errorf("500 diagnostics %q must hide the cause and name the request id", oo.Issue[0].Diagnostics)
			}
		})
	}
	if status, oo := outcomeFor(context.Canceled, "r"); status != statusClientClosed || oo != nil {
		t.Errorf("canceled: got %d %v, want 499 and no body", status, oo)
	}
}
