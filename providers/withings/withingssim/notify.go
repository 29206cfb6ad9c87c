package withingssim

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/openhealthexchange/ohx/providers/sim/simweb"
)

// Notification categories (appli) a subscription may name
// (https://developer.withings.com/developer-guide/v3/data-api/keep-user-data-up-to-date/).
var knownApplis = map[int]bool{1: true, 2: true, 4: true, 16: true, 44: true, 46: true, 50: true, 51: true,
	52: true, 53: true, 54: true, 55: true, 58: true, 62: true}

// Categories Push announces.
const (
	appliWeight      = 1
	appliCirculatory = 4
)

// subscriptionExpires is what notify list reports as "expires": Withings subscriptions no
// longer expire and carry the largest 32-bit timestamp.
const subscriptionExpires = 2147483647

func readSubscription(f url.Values, needURL bool) (int, string, *apiError) {
	appli, err := strconv.Atoi(f.Get("appli"))
	if err != nil || !knownApplis[appli] {
		return 0, "", invalidParams("appli")
	}
	cb := f.Get("callbackurl")
	if needURL && (!simweb.AbsoluteHTTP(cb) || len(cb) > 255) {
		return 0, "", &apiError{Status: statusBadCallback, Text: "The callback URL is either absent or incorrect"}
	}
	return appli, cb, nil
}

// callbackCheckTimeout is how long the callback has to answer the HEAD of a subscribe: Withings
// wants an answer within two seconds
// (https://developer.withings.com/developer-guide/v3/data-api/keep-user-data-up-to-date/).
const callbackCheckTimeout = 2 * time.Second

// checkCallback is the check Withings makes before registering a callback URL: a HEAD request
// that must be answered 2xx
// (https://developer.withings.com/developer-guide/v3/integration-guide/bulkship-sdk/data-api/notifications/notification-subscribe).
// Plain HTTP and localhost are accepted, as Withings accepts them from applications in
// development (restricted) mode.
func (s *Simulator) checkCallback(r *http.Request) *apiError {
	_, cb, aerr := readSubscription(r.Form, true)
	if aerr != nil {
		return aerr
	}
	bad := &apiError{Status: statusBadCallback, Text: "The callback URL is either absent or incorrect"}
	ctx, cancel := context.WithTimeout(r.Context(), callbackCheckTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, cb, nil)
	if err != nil {
		return bad
	}
	res, err := s.http.Do(req)
	if err != nil {
		s.log.Warn("callback check failed", "error", simweb.RedactURL(err))
		return bad
	}
	res.Body.Close()
	if res.StatusCode < 200 || res.StatusCode > 299 {
		s.log.Warn("callback check refused", "status", res.StatusCode)
		return bad
	}
	return nil
}

// notifySubscribe is /notify action=subscribe: it records (appli, callbackurl) for the user;
// subscribing twice is harmless.
func (s *Simulator) notifySubscribe(r *http.Request, a *account) (any, *apiError) {
	appli, cb, aerr := readSubscription(r.Form, true)
	if aerr != nil {
		return nil, aerr
	}
	for _, sub := range a.subs {
		if sub.Appli == appli && sub.CallbackURL == cb {
			return struct{}{}, nil
		}
	}
	a.subs = append(a.subs, subscription{Appli: appli, CallbackURL: cb, Comment: r.Form.Get("comment")})
	s.log.Info("subscribed", "userid", a.userID, "appli", appli)
	return struct{}{}, nil
}

type profileJSON struct {
	Appli       int    `json:"appli"`
	CallbackURL string `json:"callbackurl"`
	Expires     int64  `json:"expires"`
	Comment     string `json:"comment"`
}

// notifyList is /notify action=list: the user's subscriptions, of one appli when given.
func (s *Simulator) notifyList(r *http.Request, a *account) (any, *apiError) {
	want := 0
	if v := r.Form.Get("appli"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return nil, invalidParams("appli")
		}
		want = n
	}
	out := []profileJSON{}
	for _, sub := range a.subs {
		if want == 0 || sub.Appli == want {
			out = append(out, profileJSON{sub.Appli, sub.CallbackURL, subscriptionExpires, sub.Comment})
		}
	}
	return struct {
		Profiles []profileJSON `json:"profiles"`
	}{out}, nil
}

// notifyGet is /notify action=get: one subscription (an unknown one is status 286).
func (s *Simulator) notifyGet(r *http.Request, a *account) (any, *apiError) {
	appli, cb, aerr := readSubscription(r.Form, true)
	if aerr != nil {
		return nil, aerr
	}
	for _, sub := range a.subs {
		if sub.Appli == appli && sub.CallbackURL == cb {
			return struct {
				Appli       int    `json:"appli"`
				CallbackURL string `json:"callbackurl"`
				Comment     string `json:"comment"`
			}{sub.Appli, sub.CallbackURL, sub.Comment}, nil
		}
	}
	return nil, &apiError{Status: statusNoSubscription, Text: "No such subscription was found"}
}

// notifyRevoke is /notify action=revoke: it removes the (appli, callbackurl) subscription (an
// unknown one is status 294).
func (s *Simulator) notifyRevoke(r *http.Request, a *account) (any, *apiError) {
	appli, cb, aerr := readSubscription(r.Form, true)
	if aerr != nil {
		return nil, aerr
	}
	for i, sub := range a.subs {
		if sub.Appli == appli && sub.CallbackURL == cb {
			a.subs = append(a.subs[:i], a.subs[i+1:]...)
			s.log.Info("unsubscribed", "userid", a.userID, "appli", appli)
			return struct{}{}, nil
		}
	}
	return nil, &apiError{Status: statusNothingToDelete, Text: "No such subscription could be deleted"}
}
