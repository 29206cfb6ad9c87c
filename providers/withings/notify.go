package withings

import (
	"context"
	"errors"
	"net/url"
	"slices"
	"strconv"

	"golang.org/x/oauth2"

	"github.com/openhealthexchange/ohx/fhir"
)

// Notification categories (appli), from
// https://developer.withings.com/developer-guide/v3/data-api/keep-user-data-up-to-date/ and
// https://developer.withings.com/developer-guide/v3/integration-guide/bulkship-sdk/data-api/notifications/notification-content .
const (
	appliWeight      = 1  // weight and body composition → getmeas
	appliTemperature = 2  // temperature → getmeas
	appliCirculatory = 4  // blood pressure, heart rate, SpO2 → getmeas
	appliActivity    = 16 // daily activity → getactivity
	appliSleep       = 44 // sleep → getsummary
	appliUser        = 46 // user events: delete, unlink, update
	appliECG         = 54 // ECG → heart list + get (⚠ unverified in the public table)
)

// kindAppli is the notification category announcing new data of each kind. VO2max and height
// are body measures of getmeas; they are announced with weight (appli 1) ⚠ not in the table.
var kindAppli = map[fhir.SampleKind]int{
	fhir.KindWeight:            appliWeight,
	fhir.KindHeight:            appliWeight,
	fhir.KindFatFreeMass:       appliWeight,
	fhir.KindFatRatio:          appliWeight,
	fhir.KindFatMass:           appliWeight,
	fhir.KindMuscleMass:        appliWeight,
	fhir.KindHydration:         appliWeight,
	fhir.KindBoneMass:          appliWeight,
	fhir.KindPulseWaveVelocity: appliWeight,
	fhir.KindVO2Max:            appliWeight,
	fhir.KindBodyTemperature:   appliTemperature,
	fhir.KindSkinTemperature:   appliTemperature,
	fhir.KindBloodPressure:     appliCirculatory,
	fhir.KindHeartRate:         appliCirculatory,
	fhir.KindSpO2:              appliCirculatory,
	fhir.KindSteps:             appliActivity,
	fhir.KindDistance:          appliActivity,
	fhir.KindElevation:         appliActivity,
	fhir.KindCalories:          appliActivity,
	fhir.KindSleep:             appliSleep,
	fhir.KindRespiratoryRate:   appliSleep,
	fhir.KindECG:               appliECG,
}

// subscriptionComment is sent as the subscription's comment: Withings shows it to nobody we
// need, and it must carry no PHI and no internal ids.
const subscriptionComment = "ohx"

// Applis returns the notification categories subscribed for kinds (nil: the enabled kinds):
// one per kind family, plus 46 (user events), which is how an unlink or account deletion reaches
// us. Sorted.
func (c *Client) Applis(kinds []fhir.SampleKind) []int {
	set := map[int]bool{appliUser: true}
	for k := range c.wanted(kinds) {
		if a, ok := kindAppli[k]; ok {
			set[a] = true
		}
	}
	out := make([]int, 0, len(set))
	for a := range set {
		out = append(out, a)
	}
	slices.Sort(out)
	return out
}

type notifyProfile struct {
	Appli       flexInt `json:"appli"`
	CallbackURL string  `json:"callbackurl"`
}

// Subscribe registers callbackURL for the notification categories of kinds (nil: the enabled
// kinds). It lists the user's subscriptions first and subscribes only the missing categories, so
// it is idempotent and doubles as the periodic repair (Withings drops a subscription after
// repeated failed deliveries). The callback URL carries the deployment's secret path segment: it
// goes into the request body, never into Call.Params (cache keys, metrics). Every category is
// attempted; the errors are joined (each an *providers.UpstreamError).
func (c *Client) Subscribe(ctx context.Context, user string, ts oauth2.TokenSource, callbackURL string, kinds []fhir.SampleKind) error {
	existing, err := c.listSubscriptions(ctx, user, ts)
	if err != nil {
		return err
	}
	have := map[int64]bool{}
	for _, p := range existing {
		if p.CallbackURL == callbackURL {
			have[p.Appli.Int()] = true
		}
	}
	var errs []error
	for _, a := range c.Applis(kinds) {
		if have[int64(a)] {
			continue
		}
		appli := strconv.Itoa(a)
		_, err := c.do(ctx, request{
			user:     user,
			endpoint: "notify/subscribe",
			path:     "/notify",
			form: url.Values{"action": {"subscribe"}, "callbackurl": {callbackURL}, "appli": {appli},
				"comment": {subscriptionComment}},
			params: url.Values{"action": {"subscribe"}, "appli": {appli}},
			ts:     ts,
		})
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Unsubscribe revokes every subscription of the user for callbackURL, category by category as
// listed by Withings. Errors are joined *providers.UpstreamErrors.
func (c *Client) Unsubscribe(ctx context.Context, user string, ts oauth2.TokenSource, callbackURL string) error {
	existing, err := c.listSubscriptions(ctx, user, ts)
	if err != nil {
		return err
	}
	var errs []error
	for _, p := range existing {
		if p.CallbackURL != callbackURL {
			continue
		}
		appli := strconv.FormatInt(p.Appli.Int(), 10)
		_, err := c.do(ctx, request{
			user:     user,
			endpoint: "notify/revoke",
			path:     "/notify",
			form:     url.Values{"action": {"revoke"}, "callbackurl": {callbackURL}, "appli": {appli}},
			params:   url.Values{"action": {"revoke"}, "appli": {appli}},
			ts:       ts,
		})
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// appliKinds are the enabled kinds a notification category announces (the reverse of
// kindAppli), sorted.
func (c *Client) appliKinds(appli int) []fhir.SampleKind {
	var ks []fhir.SampleKind
	for k, a := range kindAppli {
		if a == appli && c.kinds.Enabled(k) {
			ks = append(ks, k)
		}
	}
	slices.Sort(ks)
	return ks
}

// listSubscriptions is /notify action=list (every category). Never served from the cache: it
// decides what Subscribe and Unsubscribe change.
func (c *Client) listSubscriptions(ctx context.Context, user string, ts oauth2.TokenSource) ([]notifyProfile, error) {
	body, err := c.do(ctx, request{
		user:     user,
		endpoint: "notify/list",
		path:     "/notify",
		form:     url.Values{"action": {"list"}},
		ts:       ts,
	})
	if err != nil {
		return nil, err
	}
	var b struct {
		Profiles []notifyProfile `json:"profiles"`
	}
	if err := c.decodeBody(body, &b, "notify list"); err != nil {
		return nil, err
	}
	return b.Profiles, nil
}
