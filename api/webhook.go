package api

import (
	"context"
	"crypto/subtle"
	"errors"
	"net/http"

	"github.com/gin-gonic/gin"
)

// WebhookSink receives authenticated vendor notifications. It must persist the work durably
// before returning: the vendor gets its 2xx only after that.
type WebhookSink interface {
	// Notified records that the vendor user has new data. key identifies the notification so that
	// a redelivery is idempotent. It returns nothing for unknown users (no oracle): the caller
	// answers 200 either way.
	Notified(ctx context.Context, provider, vendorUser, key string) error
}

// WebhookConfig enables /webhooks/{provider}/{secret}.
type WebhookConfig struct {
	Sink WebhookSink
	// Secrets maps provider names to the secret path segment registered with the vendor.
	Secrets map[string]string
}

func (s *Server) webhookRoutes(e *gin.Engine) {
	if s.cfg.Webhooks == nil {
		return
	}
	h := s.webhook
	e.POST("/webhooks/:provider/:secret", h)
	// Withings checks the callback URL with HEAD (and GET) while registering a subscription.
	e.HEAD("/webhooks/:provider/:secret", h)
	e.GET("/webhooks/:provider/:secret", h)
}

// webhook authenticates a notification by the secret in its URL (Withings signs nothing,
// providers.md §1.7), persists a sync job and answers 200 within the vendor's deadline. The
// payload is only a hint: data is always re-fetched with the patient's own token.
func (s *Server) webhook(c *gin.Context) {
	want, ok := s.cfg.Webhooks.Secrets[c.Param("provider")]
	if !ok || subtle.ConstantTimeCompare([]byte(want), []byte(c.Param("secret"))) != 1 {
		c.AbortWithStatus(http.StatusNotFound)
		return
	}
	if c.Request.Method != http.MethodPost {
		c.Status(http.StatusOK)
		return
	}
	if err := c.Request.ParseForm(); err != nil {
		// The limits middleware caps the body (Config.MaxBodyBytes): a body beyond it is 413,
		// not a malformed form.
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			c.AbortWithStatus(http.StatusRequestEntityTooLarge)
			return
		}
		c.AbortWithStatus(http.StatusBadRequest)
		return
	}
	f := c.Request.PostForm
	user := f.Get("userid")
	if user == "" {
		c.Status(http.StatusOK) // nothing to do; not an error the vendor can fix
		return
	}
	key := user + "/" + f.Get("appli") + "/" + f.Get("startdate") + "/" + f.Get("enddate") + "/" + f.Get("date") + "/" + f.Get("action")
	if err := s.cfg.Webhooks.Sink.Notified(c.Request.Context(), c.Param("provider"), user, key); err != nil {
		// Not persisted: let the vendor retry (it does, up to 10 times).
		s.log.Error("persisting a webhook notification failed", "provider", c.Param("provider"), "err", err)
		c.AbortWithStatus(http.StatusServiceUnavailable)
		return
	}
	c.Status(http.StatusOK)
}
