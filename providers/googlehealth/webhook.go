package googlehealth

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/providers"
)

// SignatureHeader carries the ECDSA P-256 signature of the raw JSON body, per the reference's
// EndpointAuthorization ("The signature is delivered in the X-HEALTHAPI-SIGNATURE HTTP header",
// https://developers.google.com/health/reference/rest/v4/projects.subscribers#EndpointAuthorization).
// ⚠ Unverified: the signature's encoding and where Google publishes the public key are not
// documented yet; one client library's docs name the header GOOGLE-HEALTH-API-SIGNATURE, which
// is accepted too. The signature is accepted as base64 (standard or URL alphabet) of either an
// ASN.1 DER signature or the 64-byte r‖s form, over SHA-256 of the body.
const SignatureHeader = "X-HEALTHAPI-SIGNATURE"

const altSignatureHeader = "GOOGLE-HEALTH-API-SIGNATURE"

// notificationPad widens a notification's changed interval: daily rollups and daily data points
// are read by civil day in the user's zone, which the delivery does not name, so the window is
// padded by a day on both sides (more than any UTC offset).
const notificationPad = 24 * time.Hour

// webhookBody is one delivery. ⚠ The notification format is not in the reference; this shape
// ({"data": {"healthUserId", "dataType", "operation", "intervals": [{"physicalTimeInterval":
// {startTime, endTime}, "civilIso8601TimeInterval": {…}}]}}, or an array of them) comes from
// public client implementations and is decoded leniently: the fields may also sit at the top
// level, the data type may be kebab- or snake-case or a resource name.
type webhookBody struct {
	Type        string       `json:"type"` // "verification" for the subscriber check
	Data        *webhookData `json:"data"`
	webhookData              // the same fields at the top level
}

type webhookData struct {
	HealthUserID string `json:"healthUserId"`
	User         string `json:"user"` // users/{healthUserId}, an alternative spelling
	DataType     string `json:"dataType"`
	Operation    string `json:"operation"`
	Intervals    []struct {
		Physical *struct {
			StartTime string `json:"startTime"`
			EndTime   string `json:"endTime"`
		} `json:"physicalTimeInterval"`
		Civil *struct {
			StartTime string `json:"startTime"`
			EndTime   string `json:"endTime"`
		} `json:"civilIso8601TimeInterval"`
	} `json:"intervals"`
}

// HandleWebhook authenticates one Google Health API delivery (POST /webhooks/googlehealth).
//
// Google sends the subscriber's secret as the complete Authorization header of every request
// (https://developers.google.com/health/webhooks): it is compared with Config.WebhookSecret in
// constant time; a missing header is 401, a wrong one (or any header while no secret is
// configured) 403, both *providers.WebhookError wrapping providers.ErrWebhookAuth. With
// Config.SignatureKey set, the body's ECDSA signature must verify as well (403 otherwise).
// A verification request ({"type": "verification"}, sent twice while a subscriber is created or
// updated) that passes gets 201 Created, as the reference requires
// (https://developers.google.com/health/reference/rest/v4/projects.subscribers/create).
// A notification becomes one providers.Notification per announced change, answered 204; a data
// type this deployment does not read is ignored. A body that is not JSON is 400. It never calls
// Google.
func (c *Client) HandleWebhook(_ context.Context, r providers.WebhookRequest) (providers.WebhookResponse, error) {
	if r.Method != http.MethodPost {
		return providers.WebhookResponse{}, providers.RefuseWebhook(http.StatusMethodNotAllowed, "googlehealth: method %s not allowed on the webhook", r.Method)
	}
	got := r.Header.Get("Authorization")
	if got == "" {
		return providers.WebhookResponse{}, providers.RefuseWebhook(http.StatusUnauthorized, "googlehealth: %w: no Authorization header", providers.ErrWebhookAuth)
	}
	if c.cfg.WebhookSecret == "" || subtle.ConstantTimeCompare([]byte(got), []byte(c.cfg.WebhookSecret)) != 1 {
		return providers.WebhookResponse{}, providers.RefuseWebhook(http.StatusForbidden, "googlehealth: %w: wrong Authorization header", providers.ErrWebhookAuth)
	}
	if c.cfg.SignatureKey != nil && !verifySignature(c.cfg.SignatureKey, r.Body, r.Header) {
		return providers.WebhookResponse{}, providers.RefuseWebhook(http.StatusForbidden, "googlehealth: %w: bad or missing payload signature", providers.ErrWebhookAuth)
	}
	items, verification, err := decodeWebhook(r.Body)
	if err != nil {
		return providers.WebhookResponse{}, providers.RefuseWebhook(http.StatusBadRequest, "googlehealth: malformed webhook body")
	}
	if verification {
		return providers.WebhookResponse{Status: http.StatusCreated}, nil
	}
	resp := providers.WebhookResponse{Status: http.StatusNoContent}
	sum := sha256.Sum256(r.Body)
	key := Name + ":" + hex.EncodeToString(sum[:16])
	for i, it := range items {
		n, ok := c.notification(it)
		if !ok {
			continue
		}
		n.Key = fmt.Sprintf("%s/%d", key, i)
		resp.Notifications = append(resp.Notifications, n)
	}
	return resp, nil
}

// decodeWebhook returns the notifications of a body (an object or an array of objects), or
// verification=true for the subscriber check.
func decodeWebhook(body []byte) ([]webhookData, bool, error) {
	body = bytes.TrimSpace(body)
	var objs []webhookBody
	if len(body) > 0 && body[0] == '[' {
		if err := json.Unmarshal(body, &objs); err != nil {
			return nil, false, err
		}
	} else {
		var one webhookBody
		if err := json.Unmarshal(body, &one); err != nil {
			return nil, false, err
		}
		if one.Type == "verification" {
			return nil, true, nil
		}
		objs = []webhookBody{one}
	}
	var out []webhookData
	for _, o := range objs {
		if o.Data != nil {
			out = append(out, *o.Data)
		} else {
			out = append(out, o.webhookData)
		}
	}
	return out, false, nil
}

// notification maps one announced change; ok=false for a change we do not act on (no user, a
// data type this deployment does not read).
func (c *Client) notification(d webhookData) (providers.Notification, bool) {
	user := d.HealthUserID
	if user == "" {
		user = strings.TrimPrefix(d.User, "users/")
	}
	if !userIDRE.MatchString(user) {
		return providers.Notification{}, false
	}
	name := d.DataType
	if i := strings.LastIndex(name, "/"); i >= 0 {
		name = name[i+1:]
	}
	dt, ok := typeByName(strings.ReplaceAll(strings.ToLower(name), "_", "-"))
	if !ok || !c.kinds.Enabled(dt.kind) {
		return providers.Notification{}, false
	}
	n := providers.Notification{VendorUser: user, Event: providers.EventData, Kinds: []fhir.SampleKind{dt.kind}}
	for _, iv := range d.Intervals {
		var s, e time.Time
		if iv.Physical != nil {
			s, _ = time.Parse(time.RFC3339Nano, iv.Physical.StartTime)
			e, _ = time.Parse(time.RFC3339Nano, iv.Physical.EndTime)
		}
		if s.IsZero() && iv.Civil != nil {
			// Civil times have no zone: read as UTC, the pad covers every offset.
			s, _ = time.Parse("2006-01-02T15:04:05.999999999", iv.Civil.StartTime)
			e, _ = time.Parse("2006-01-02T15:04:05.999999999", iv.Civil.EndTime)
		}
		if s.IsZero() {
			continue
		}
		if e.Before(s) {
			e = s
		}
		if n.Start.IsZero() || s.Before(n.Start) {
			n.Start = s
		}
		if e.After(n.End) {
			n.End = e
		}
	}
	if !n.Start.IsZero() {
		n.Start, n.End = n.Start.Add(-notificationPad).UTC(), n.End.Add(notificationPad).UTC()
	}
	slices.Sort(n.Kinds)
	return n, true
}

// verifySignature checks an ECDSA P-256 signature of SHA-256(body) (see SignatureHeader).
// ecdsa.Verify's arithmetic does not depend on secret data: there is no secret here to leak.
func verifySignature(key *ecdsa.PublicKey, body []byte, h http.Header) bool {
	sig := strings.TrimSpace(h.Get(SignatureHeader))
	if sig == "" {
		sig = strings.TrimSpace(h.Get(altSignatureHeader))
	}
	if sig == "" {
		return false
	}
	var raw []byte
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(sig); err == nil {
			raw = b
			break
		}
	}
	if raw == nil {
		return false
	}
	digest := sha256.Sum256(body)
	if ecdsa.VerifyASN1(key, digest[:], raw) {
		return true
	}
	if len(raw) == 64 {
		r, s := new(big.Int).SetBytes(raw[:32]), new(big.Int).SetBytes(raw[32:])
		return ecdsa.Verify(key, digest[:], r, s)
	}
	return false
}
