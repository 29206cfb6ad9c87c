package api

import (
	"context"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/openhealthexchange/ohx/providers"
)

// WebhookSink persists notifications durably before the vendor is acknowledged.
type WebhookSink interface {
	// Notify persists the notifications of one delivery (jobs coalesced by their keys) before
	// returning. Unknown vendor users are skipped, not an error (no oracle). An error means
	// nothing durable can be assumed: the delivery is answered 503 and the vendor retries.
	Notify(ctx context.Context, provider string, ns []providers.Notification) error
}

// WebhookConfig enables /webhooks/{provider}[/{secret}].
type WebhookConfig struct {
	Sink     WebhookSink
	Handlers map[string]providers.Webhooks // by provider name
}

func (s *Server) webhookRoutes(e *gin.Engine) {
	if s.cfg.Webhooks == nil {
		return
	}
	h := s.webhook
	for _, path := range []string{"/webhooks/:provider", "/webhooks/:provider/:secret"} {
		e.POST(path, h)
		// Vendors check the callback URL while subscribing (Withings with a HEAD, Google Health
		// with a POST, Fitbit with a GET): the adapter answers those too.
		e.HEAD(path, h)
		e.GET(path, h)
	}
}

// webhook hands one delivery to the provider's adapter, which alone knows how the vendor
// authenticates it, persists what it announces and only then answers with the adapter's status:
// the vendor's 2xx means the work is durable. The payload is only a hint: data is always
// re-fetched with the patient's own token. Neither the body nor the secret path segment is logged.
func (s *Server) webhook(c *gin.Context) {
	provider := c.Param("provider")
	h, ok := s.cfg.Webhooks.Handlers[provider]
	if !ok || h == nil {
		c.AbortWithStatus(http.StatusNotFound)
		return
	}
	received := time.Now()
	body, err := io.ReadAll(c.Request.Body)
	if err != nil {
		// The limits middleware caps the body (Config.MaxBodyBytes): a body beyond it is 413.
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			c.AbortWithStatus(http.StatusRequestEntityTooLarge)
			return
		}
		c.AbortWithStatus(http.StatusBadRequest)
		return
	}
	ctx := c.Request.Context()
	resp, err := h.HandleWebhook(ctx, providers.WebhookRequest{
		Method:   c.Request.Method,
		Header:   c.Request.Header.Clone(),
		Query:    c.Request.URL.Query(),
		Body:     body,
		Secret:   c.Param("secret"),
		Received: received,
	})
	if err != nil {
		var we *providers.WebhookError
		if errors.As(err, &we) {
			// Forged, mistyped or malformed deliveries are the sender's problem: debug only.
			s.log.Debug("webhook refused", "provider", provider, "status", we.Status, "err", err)
			c.AbortWithStatus(we.Status)
			return
		}
		s.log.Error("webhook handling failed", "provider", provider, "err", err)
		c.AbortWithStatus(http.StatusInternalServerError)
		return
	}
	if len(resp.Notifications) > 0 {
		if s.cfg.Webhooks.Sink == nil {
			s.log.Error("webhook notifications but no sink configured", "provider", provider)
			c.AbortWithStatus(http.StatusServiceUnavailable)
			return
		}
		if err := s.cfg.Webhooks.Sink.Notify(ctx, provider, resp.Notifications); err != nil {
			// Not persisted: let the vendor retry (Withings does, up to 10 times:
			// https://oauth.withings.com/developer-guide/v3/integration-guide/withings-rpm/data-api/notifications/notification-overview/).
			s.log.Error("persisting webhook notifications failed", "provider", provider, "err", err)
			c.AbortWithStatus(http.StatusServiceUnavailable)
			return
		}
	}
	status := resp.Status
	if status == 0 {
		status = http.StatusOK
	}
	if len(resp.Body) > 0 {
		ct := resp.ContentType
		if ct == "" {
			ct = "application/octet-stream"
		}
		c.Data(status, ct, resp.Body)
		return
	}
	c.Status(status)
}
