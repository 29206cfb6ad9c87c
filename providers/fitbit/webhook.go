package fitbit

import (
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/openhealthexchange/ohx/providers"
)

// The calendar date of a notification is the user's local date
// (https://dev.fitbit.com/build/reference/web-api/developer-guide/using-subscriptions/), and the
// acknowledgement path cannot look up the user's zone. UTC offsets run from −12:00 to +14:00
// (https://www.iana.org/time-zones): the local day [D 00:00, D+1 00:00) lies within
// [D 00:00 UTC − 14 h, D+1 00:00 UTC + 12 h) in every zone.
const (
	widenBefore = 14 * time.Hour
	widenAfter  = 12 * time.Hour
)

// notificationItem is one element of a notification body.
type notificationItem struct {
	CollectionType string `json:"collectionType"`
	Date           string `json:"date"`
	OwnerID        string `json:"ownerId"`
	OwnerType      string `json:"ownerType"`
	SubscriptionID string `json:"subscriptionId"`
}

// signature is the X-Fitbit-Signature of body: Base64(HMAC-SHA1(key = client secret + "&", raw
// body)). The "&" is part of the key: it is the OAuth 1.0 signing key with an empty token secret
// (https://dev.fitbit.com/build/reference/web-api/developer-guide/using-subscriptions/);
// without it no genuine notification verifies.
func signature(body []byte, clientSecret string) []byte {
	m := hmac.New(sha1.New, []byte(clientSecret+"&"))
	m.Write(body)
	return m.Sum(nil)
}

func refuseAuth(format string, args ...any) error {
	return &providers.WebhookError{Status: http.StatusNotFound, Err: fmt.Errorf("fitbit: %w: "+format, append([]any{providers.ErrWebhookAuth}, args...)...)}
}

// HandleWebhook authenticates and decodes one Fitbit subscriber delivery; it never calls Fitbit.
//
// GET ?verify=CODE is the subscriber verification: 204 for the configured code (compared in
// constant time), a 404 *providers.WebhookError for any other code, for a GET without one and
// whenever no code is configured. A POST must carry X-Fitbit-Signature (see signature), checked in
// constant time over the raw body; a missing or wrong one is a 404 *providers.WebhookError
// wrapping providers.ErrWebhookAuth, as Fitbit's guide asks. A signed body that is not the
// documented JSON array is a 400. Otherwise the answer is 204 with one notification per item:
// userRevokedAccess (and deleteUser) → EventRevoked; activities, body and sleep → EventData for
// the enabled kinds of that collection over the item's local date widened to every zone; foods and
// unknown collections are ignored. Identical items of one delivery give one notification.
func (c *Client) HandleWebhook(_ context.Context, r providers.WebhookRequest) (providers.WebhookResponse, error) {
	switch r.Method {
	case http.MethodGet:
		code := r.Query.Get("verify")
		if c.cfg.VerificationCode == "" || code == "" ||
			subtle.ConstantTimeCompare([]byte(code), []byte(c.cfg.VerificationCode)) != 1 {
			return providers.WebhookResponse{}, refuseAuth("wrong or missing verification code")
		}
		return providers.WebhookResponse{Status: http.StatusNoContent}, nil
	case http.MethodPost:
	default:
		return providers.WebhookResponse{}, providers.RefuseWebhook(http.StatusMethodNotAllowed, "fitbit: method %s not allowed", r.Method)
	}
	got, err := base64.StdEncoding.DecodeString(strings.TrimSpace(r.Header.Get("X-Fitbit-Signature")))
	if err != nil || len(got) == 0 {
		return providers.WebhookResponse{}, refuseAuth("missing or malformed signature")
	}
	if !hmac.Equal(got, signature(r.Body, c.cfg.ClientSecret)) {
		return providers.WebhookResponse{}, refuseAuth("signature mismatch")
	}
	var items []notificationItem
	if err := json.Unmarshal(r.Body, &items); err != nil {
		return providers.WebhookResponse{}, providers.RefuseWebhook(http.StatusBadRequest, "fitbit: notification body is not a JSON array of items")
	}
	resp := providers.WebhookResponse{Status: http.StatusNoContent}
	seen := map[string]bool{}
	for _, it := range items {
		n, err := c.notification(it)
		if err != nil {
			return providers.WebhookResponse{}, &providers.WebhookError{Status: http.StatusBadRequest, Err: err}
		}
		if n == nil || seen[n.Key] {
			continue
		}
		seen[n.Key] = true
		resp.Notifications = append(resp.Notifications, *n)
	}
	return resp, nil
}

// notification turns one item into a notification; nil for items we do not act on.
func (c *Client) notification(it notificationItem) (*providers.Notification, error) {
	if it.OwnerID == "" {
		return nil, fmt.Errorf("fitbit: notification item without ownerId")
	}
	n := &providers.Notification{VendorUser: it.OwnerID, Key: notificationKey(it)}
	switch it.CollectionType {
	case colRevoked, colDeleted:
		n.Event = providers.EventRevoked
		return n, nil
	case colActivities, colBody, colSleep:
	default:
		return nil, nil // foods, and collections we never subscribe to
	}
	n.Event = providers.EventData
	for _, k := range c.kinds.Sorted() {
		if kindCollection[k] == it.CollectionType {
			n.Kinds = append(n.Kinds, k)
		}
	}
	if len(n.Kinds) == 0 {
		return nil, nil
	}
	slices.Sort(n.Kinds)
	if it.Date != "" {
		day, err := time.Parse(layoutDate, it.Date)
		if err != nil {
			return nil, fmt.Errorf("fitbit: notification date is not yyyy-MM-dd")
		}
		n.Start, n.End = day.Add(-widenBefore), day.AddDate(0, 0, 1).Add(widenAfter)
	}
	return n, nil
}

// notificationKey identifies an item by (ownerId, collectionType, date): a redelivery and
// duplicates within a burst coalesce. Hashed, so the key carries no user id into job tables.
func notificationKey(it notificationItem) string {
	h := sha256.New()
	for _, v := range []string{it.OwnerID, it.CollectionType, it.Date} {
		fmt.Fprintf(h, "%d:%s;", len(v), v)
	}
	return Name + ":" + hex.EncodeToString(h.Sum(nil)[:16])
}
