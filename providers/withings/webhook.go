package withings

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/openhealthexchange/ohx/providers"
)

// dayWiden widens the UTC day of a notification's date on both sides. The date is the user's
// local day (https://developer.withings.com/developer-guide/v3/data-api/keep-user-data-up-to-date/),
// whose zone we only learn from the data, and UTC offsets run from −12:00 to +14:00
// (https://www.iana.org/time-zones): the local day [D 00:00, D+1 00:00) lies inside
// [D 00:00 UTC − 14 h, D+1 00:00 UTC + 14 h) whatever the zone.
const dayWiden = 14 * time.Hour

// HandleWebhook authenticates and decodes one Withings notification delivery.
//
// Withings signs nothing, so the only authentication is the secret path segment of the callback
// URL we registered (Config.WebhookSecret), compared in constant time; a wrong or missing one, or
// no configured secret, is a 404 *providers.WebhookError wrapping providers.ErrWebhookAuth, so the
// endpoint looks absent to whoever guesses. HEAD and GET answer 200 with no notification:
// Withings checks the callback URL with a HEAD while subscribing. A POST carries a form body
// (https://developer.withings.com/developer-guide/v3/data-api/keep-user-data-up-to-date/) with
// userid, appli, startdate/enddate (unix seconds) or date (YYYY-MM-DD) and, for appli 46, action;
// it gives at most one notification, and the answer is 200 either way — a delivery we cannot use
// (no userid, a category we do not read, a profile update) is not something Withings can fix by
// retrying. A malformed form or number is a 400 *providers.WebhookError. It never calls Withings.
func (c *Client) HandleWebhook(_ context.Context, r providers.WebhookRequest) (providers.WebhookResponse, error) {
	if c.cfg.WebhookSecret == "" || subtle.ConstantTimeCompare([]byte(c.cfg.WebhookSecret), []byte(r.Secret)) != 1 {
		return providers.WebhookResponse{}, &providers.WebhookError{Status: http.StatusNotFound, Err: fmt.Errorf("withings: %w: wrong callback secret", providers.ErrWebhookAuth)}
	}
	ok := providers.WebhookResponse{Status: http.StatusOK}
	switch r.Method {
	case http.MethodHead, http.MethodGet:
		return ok, nil
	case http.MethodPost:
	default:
		return providers.WebhookResponse{}, providers.RefuseWebhook(http.StatusMethodNotAllowed, "withings: method %s not allowed on the callback", r.Method)
	}
	// The parameters are in the body, not the URL (and never both).
	form, err := url.ParseQuery(string(r.Body))
	if err != nil {
		return providers.WebhookResponse{}, providers.RefuseWebhook(http.StatusBadRequest, "withings: malformed notification form")
	}
	n, err := c.notification(form)
	if err != nil {
		return providers.WebhookResponse{}, &providers.WebhookError{Status: http.StatusBadRequest, Err: err}
	}
	if n != nil {
		ok.Notifications = []providers.Notification{*n}
	}
	return ok, nil
}

// notification decodes a delivery form; nil when it announces nothing we act on.
func (c *Client) notification(form url.Values) (*providers.Notification, error) {
	user := form.Get("userid")
	if user == "" {
		return nil, nil
	}
	if _, err := strconv.ParseUint(user, 10, 64); err != nil {
		return nil, errors.New("withings: notification userid is not a number")
	}
	appli, err := strconv.Atoi(form.Get("appli"))
	if err != nil {
		return nil, errors.New("withings: notification appli is not a number")
	}
	n := &providers.Notification{VendorUser: user, Key: notificationKey(form)}
	if appli == appliUser {
		// Profile events (https://developer.withings.com/developer-guide/v3/data-api/keep-user-data-up-to-date/):
		// unlink and delete end our access; update (profile changes) carries no data.
		switch form.Get("action") {
		case "unlink", "delete":
			n.Event = providers.EventRevoked
			return n, nil
		}
		return nil, nil
	}
	n.Event = providers.EventData
	n.Kinds = c.appliKinds(appli)
	if len(n.Kinds) == 0 {
		return nil, nil // bed in/out, a category of a kind this deployment does not read, …
	}
	if n.Start, n.End, err = notificationWindow(form); err != nil {
		return nil, err
	}
	if (appli == appliActivity || appli == appliSleep) && form.Get("date") == "" && !n.Start.IsZero() {
		// Activity and sleep summaries are read by the user's local calendar day (getactivity
		// and getsummary take startdateymd/enddateymd), which an instant window only names in
		// UTC: a night ending 06:00 at UTC+10 is summarised on a local day the UTC dates of its
		// instants miss. Widen to every zone's day, as for date.
		n.Start, n.End = n.Start.Add(-dayWiden), n.End.Add(dayWiden)
	}
	return n, nil
}

// notificationWindow is [startdate, enddate+1 s) (Withings' enddate is inclusive and may equal
// startdate), the day of date widened by dayWiden, or zero when the delivery names neither.
func notificationWindow(form url.Values) (start, end time.Time, err error) {
	sd, ed := form.Get("startdate"), form.Get("enddate")
	if sd != "" || ed != "" {
		if sd == "" {
			sd = ed
		}
		if ed == "" {
			ed = sd
		}
		s, err1 := strconv.ParseInt(sd, 10, 64)
		e, err2 := strconv.ParseInt(ed, 10, 64)
		if err1 != nil || err2 != nil || s < 0 || e < s {
			return time.Time{}, time.Time{}, errors.New("withings: notification startdate/enddate are not an ordered pair of unix times")
		}
		return time.Unix(s, 0).UTC(), time.Unix(e+1, 0).UTC(), nil
	}
	d := form.Get("date")
	if d == "" {
		return time.Time{}, time.Time{}, nil
	}
	var day time.Time
	if strings.Contains(d, "-") {
		if day, err = time.Parse(time.DateOnly, d); err != nil {
			return time.Time{}, time.Time{}, errors.New("withings: notification date is not YYYY-MM-DD")
		}
	} else {
		// The delivery table also allows a unix time for date.
		u, err := strconv.ParseInt(d, 10, 64)
		if err != nil || u < 0 {
			return time.Time{}, time.Time{}, errors.New("withings: notification date is neither YYYY-MM-DD nor a unix time")
		}
		day = time.Unix(u, 0).UTC().Truncate(24 * time.Hour)
	}
	return day.Add(-dayWiden), day.AddDate(0, 0, 1).Add(dayWiden), nil
}

// notificationKey identifies a delivery by what Withings repeats on a retry: the documented
// idempotency key (userid, appli, startdate, enddate | date), plus action for profile events.
// Hashed, so that the key carries no user id into logs or job tables.
func notificationKey(form url.Values) string {
	h := sha256.New()
	for _, k := range []string{"userid", "appli", "startdate", "enddate", "date", "action"} {
		v := form.Get(k)
		// Length-prefixed: no two different forms hash the same fields.
		fmt.Fprintf(h, "%d:%s;", len(v), v)
	}
	return Name + ":" + hex.EncodeToString(h.Sum(nil)[:16])
}
