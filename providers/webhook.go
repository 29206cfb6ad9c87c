package providers

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/openhealthexchange/ohx/fhir"
)

// Webhooks is the part of the adapter contract that receives a vendor's notifications. The API
// is generic: it routes /webhooks/{provider}[/{secret}], caps and reads the body once, and hands
// the request to the adapter, which alone knows how the vendor authenticates its deliveries
// (a secret URL, an HMAC signature, an Authorization header), how it verifies a subscriber, and
// which status it expects back. The API persists the notifications and only then answers with
// the adapter's status: the vendor's 2xx means the work is durable.
type Webhooks interface {
	// HandleWebhook authenticates one request and returns what it carries: a verification
	// answer (no notifications), or notifications to persist before answering Status. A request
	// that fails authentication or validation returns a *WebhookError with the status the vendor
	// expects for it. It must not call the vendor or decrypt anything: it runs on the
	// acknowledgement path.
	HandleWebhook(ctx context.Context, r WebhookRequest) (WebhookResponse, error)
}

// WebhookRequest is one delivery as received.
type WebhookRequest struct {
	Method string
	Header http.Header
	Query  url.Values
	// Body is the raw body, read once (signatures are computed over these exact bytes).
	Body []byte
	// Secret is the path segment after /webhooks/{provider}/, "" when the URL had none.
	Secret string
	// Received is when the request arrived.
	Received time.Time
}

// WebhookResponse is the adapter's answer to a delivery.
type WebhookResponse struct {
	// Status is the HTTP status the vendor expects once the notifications are persisted (for a
	// verification request: at once).
	Status int
	// ContentType and Body are an optional response body (a verification echo).
	ContentType string
	Body        []byte
	// Notifications are the changes the delivery announces (none for a verification).
	Notifications []Notification
}

// Event is what a notification announces.
type Event string

// Notification events.
const (
	// EventData announces new, changed or deleted data of the kinds in the window.
	EventData Event = "data"
	// EventRevoked announces that the user withdrew ohx's access at the vendor (unlink,
	// account deletion): the connection needs a new consent.
	EventRevoked Event = "revoked"
)

// Notification is one change a vendor announced for one of its users.
type Notification struct {
	// VendorUser is the vendor's user id (matched to a connection; unknown users are ignored).
	VendorUser string
	Event      Event
	// Kinds are the data kinds that changed, as the adapter's Fetch understands them; empty means
	// every kind the adapter reads.
	Kinds []fhir.SampleKind
	// Start and End bound the data that changed, [Start, End); both zero when the vendor does
	// not say (an incremental sync from the stream's cursor follows).
	Start, End time.Time
	// Key identifies the delivery so that a redelivery coalesces with the first: the same
	// vendor notification always gives the same key.
	Key string
}

// WebhookError is a delivery the adapter refused, with the status the vendor expects for it
// (404 for a wrong secret path or a Fitbit signature mismatch, 401/403 for a Google Health
// verification without the configured Authorization, 400 for a malformed body).
type WebhookError struct {
	// Status is the HTTP status answered, with no body (the API never echoes why).
	Status int
	Err    error
}

// Error describes the refusal for logs; it must carry no secret, signature or payload.
func (e *WebhookError) Error() string {
	return fmt.Sprintf("webhook refused (status %d): %v", e.Status, e.Err)
}

// Unwrap returns the cause (ErrWebhookAuth for failed authentication).
func (e *WebhookError) Unwrap() error { return e.Err }

// ErrWebhookAuth is wrapped by WebhookErrors for deliveries that failed authentication.
var ErrWebhookAuth = errors.New("webhook authentication failed")

// RefuseWebhook returns a *WebhookError with status and a cause formatted like fmt.Errorf (%w
// wraps).
func RefuseWebhook(status int, format string, args ...any) error {
	return &WebhookError{Status: status, Err: fmt.Errorf(format, args...)}
}
