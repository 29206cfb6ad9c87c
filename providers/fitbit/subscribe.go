package fitbit

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"

	"golang.org/x/oauth2"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/providers"
)

// Subscription collections (https://dev.fitbit.com/build/reference/web-api/developer-guide/using-subscriptions/).
const (
	colActivities = "activities"
	colBody       = "body"
	colSleep      = "sleep"
	colRevoked    = "userRevokedAccess"
	colDeleted    = "deleteUser"
)

// collections in subscription order. userRevokedAccess, always subscribed, is last.
var collections = []string{colActivities, colBody, colSleep, colRevoked}

// kindCollection is the collection whose notifications announce each kind. SpO2, HRV, breathing
// rate and skin temperature are computed from the main sleep and written when the night syncs,
// so they follow sleep. ECG has no collection: incremental syncs pick it up.
var kindCollection = map[fhir.SampleKind]string{
	fhir.KindSteps:                    colActivities,
	fhir.KindDistance:                 colActivities,
	fhir.KindCalories:                 colActivities,
	fhir.KindElevation:                colActivities,
	fhir.KindRestingHeartRate:         colActivities,
	fhir.KindWeight:                   colBody,
	fhir.KindBMI:                      colBody,
	fhir.KindFatRatio:                 colBody,
	fhir.KindSleep:                    colSleep,
	fhir.KindSpO2:                     colSleep,
	fhir.KindHRVRMSSD:                 colSleep,
	fhir.KindRespiratoryRate:          colSleep,
	fhir.KindSkinTemperatureVariation: colSleep,
}

// subscriptionIDPattern is what we accept as a subscription id from a listing before putting it
// into a path (ids are ≤ 50 characters).
var subscriptionIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,50}$`)

// subscriptionList is the answer of the list endpoints.
type subscriptionList struct {
	APISubscriptions *[]struct {
		CollectionType string `json:"collectionType"`
		OwnerID        string `json:"ownerId"`
		SubscriberID   string `json:"subscriberId"`
		SubscriptionID string `json:"subscriptionId"`
	} `json:"apiSubscriptions"`
}

// newSubscriptionID is an opaque random id: 16 bytes of Config.Rand, hex (32 characters). It never
// carries a patient or user id.
func (c *Client) newSubscriptionID() (string, error) {
	var b [16]byte
	if _, err := io.ReadFull(c.cfg.Rand, b[:]); err != nil {
		return "", fmt.Errorf("fitbit: subscription id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

func (c *Client) subscriberHeader() http.Header {
	if c.cfg.SubscriberID == "" {
		return nil
	}
	return http.Header{"X-Fitbit-Subscriber-Id": {c.cfg.SubscriberID}}
}

// Subscribe creates one subscription per collection the kinds need (nil: the enabled kinds), and
// one to userRevokedAccess, so that Fitbit delivers the user's revocation of ohx's access (the
// collection needs no scope,
// https://dev.fitbit.com/build/reference/web-api/subscription/create-subscription/):
// POST /1/user/-/{collection}/apiSubscriptions/{id}.json with a fresh opaque id and, when
// configured, X-Fitbit-Subscriber-Id. Fitbit answers 201 (created) or 200 (exists); 409 means the
// collection is already subscribed under another id, which is fine when the listing shows one of
// ours. The callback URL is configured in the Fitbit app settings, not per subscription, so
// callbackURL is not sent. Errors are *providers.UpstreamError.
func (c *Client) Subscribe(ctx context.Context, user string, ts oauth2.TokenSource, callbackURL string, kinds []fhir.SampleKind) error {
	_ = callbackURL
	need := map[string]bool{colRevoked: true}
	for k := range c.wanted(kinds) {
		if col, ok := kindCollection[k]; ok {
			need[col] = true
		}
	}
	for _, col := range collections {
		if !need[col] {
			continue
		}
		id, err := c.newSubscriptionID()
		if err != nil {
			return err
		}
		_, err = c.do(ctx, request{
			user: user, endpoint: "subscriptions/create", method: http.MethodPost,
			path: "/1/user/-/" + col + "/apiSubscriptions/" + id + ".json", params: url.Values{"collection": {col}},
			ts: ts, header: c.subscriberHeader(),
		})
		var ue *providers.UpstreamError
		if errors.As(err, &ue) && ue.Status == http.StatusConflict {
			err = c.confirmSubscribed(ctx, user, ts, col)
		}
		if errors.Is(err, errScopeDenied) {
			// The user did not grant this collection's scope: its data is skipped too, and the
			// other collections (userRevokedAccess among them) are still subscribed.
			c.log.Warn("subscription skipped: scope not granted", "collection", col)
			continue
		}
		if err != nil {
			return fmt.Errorf("fitbit: subscribe %s: %w", col, err)
		}
	}
	return nil
}

// confirmSubscribed handles a 409: done when the collection's listing holds a subscription of ours.
func (c *Client) confirmSubscribed(ctx context.Context, user string, ts oauth2.TokenSource, col string) error {
	subs, err := c.listSubscriptions(ctx, user, ts, "/1/user/-/"+col+"/apiSubscriptions.json")
	if err != nil {
		return err
	}
	for _, s := range subs {
		if s.CollectionType == col {
			return nil
		}
	}
	return upstream(providers.KindPermanent, http.StatusConflict, errors.New("subscription conflict and no subscription of ours listed"))
}

type subscription struct{ CollectionType, SubscriptionID string }

// listSubscriptions lists the user's subscriptions of this application (those of our subscriber
// when SubscriberID is configured).
func (c *Client) listSubscriptions(ctx context.Context, user string, ts oauth2.TokenSource, path string) ([]subscription, error) {
	a, err := c.do(ctx, request{user: user, endpoint: "subscriptions/list", path: path, ts: ts, header: c.subscriberHeader()})
	if err != nil {
		return nil, err
	}
	var l subscriptionList
	if err := decode(a.body, &l, "subscription list"); err != nil {
		return nil, err
	}
	if l.APISubscriptions == nil {
		return nil, upstream(providers.KindPermanent, http.StatusOK, errors.New(`unexpected subscription list: no "apiSubscriptions"`))
	}
	var out []subscription
	for _, s := range *l.APISubscriptions {
		if c.cfg.SubscriberID != "" && s.SubscriberID != c.cfg.SubscriberID {
			continue
		}
		out = append(out, subscription{CollectionType: s.CollectionType, SubscriptionID: s.SubscriptionID})
	}
	return out, nil
}

// Unsubscribe lists the user's subscriptions (GET /1/user/-/apiSubscriptions.json) and deletes each
// of ours (DELETE /1/user/-/{collection}/apiSubscriptions/{id}.json, 204; an already gone one, 404,
// is fine). callbackURL is not used (see Subscribe). Errors are *providers.UpstreamError.
func (c *Client) Unsubscribe(ctx context.Context, user string, ts oauth2.TokenSource, callbackURL string) error {
	_ = callbackURL
	subs, err := c.listSubscriptions(ctx, user, ts, "/1/user/-/apiSubscriptions.json")
	if err != nil {
		return err
	}
	for _, s := range subs {
		if !subscriptionIDPattern.MatchString(s.SubscriptionID) || !subscriptionIDPattern.MatchString(s.CollectionType) {
			return upstream(providers.KindPermanent, http.StatusOK, errors.New("subscription listing with an unusable id or collection"))
		}
		_, err := c.do(ctx, request{
			user: user, endpoint: "subscriptions/delete", method: http.MethodDelete,
			path:   "/1/user/-/" + s.CollectionType + "/apiSubscriptions/" + s.SubscriptionID + ".json",
			params: url.Values{"collection": {s.CollectionType}}, ts: ts, header: c.subscriberHeader(),
		})
		var ue *providers.UpstreamError
		if errors.As(err, &ue) && ue.Status == http.StatusNotFound {
			err = nil
		}
		if err != nil {
			return fmt.Errorf("fitbit: unsubscribe %s: %w", s.CollectionType, err)
		}
	}
	return nil
}
