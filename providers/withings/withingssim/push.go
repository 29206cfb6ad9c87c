package withingssim

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/openhealthexchange/ohx/providers/sim/simweb"
)

// delivery is one notification to send.
type delivery struct {
	userID, callbackURL string
	form                url.Values
}

// Push records, for every connected account, a live weigh-in (appli 1) and, on every other
// Push that reaches it (its 1st, 3rd, …), a blood-pressure reading (appli 4) at Config.Now — each only when the
// account has a subscription for its category — and posts the Withings notification to every
// subscribed callback URL: an application/x-www-form-urlencoded form with userid, appli and
// startdate/enddate in unix seconds bounding the new measure
// (https://developer.withings.com/developer-guide/v3/data-api/keep-user-data-up-to-date/). It
// returns how many deliveries were answered 2xx and the first error.
func (s *Simulator) Push(ctx context.Context) (int, error) {
	var out []delivery
	s.mu.Lock()
	now := s.now()
	w := s.cfg.World
	for _, a := range s.accounts {
		if !s.connected(a) {
			continue
		}
		var added []group
		withBP := a.pushes%2 == 0
		if a.subscribed(appliWeight) || a.subscribed(appliCirculatory) {
			a.pushes++
		}
		if a.subscribed(appliWeight) {
			added = append(added, weightGroup(w.LiveWeight(a.p, now)))
		}
		if withBP && a.subscribed(appliCirculatory) {
			added = append(added, bpGroup(w.LiveBloodPressure(a.p, now)))
		}
		for _, g := range added {
			g.ID = a.nextGrp
			a.nextGrp++
			a.groups = append(a.groups, g)
			appli := appliWeight
			if g.Device == devCuff {
				appli = appliCirculatory
			}
			for _, sub := range a.subs {
				if sub.Appli != appli {
					continue
				}
				out = append(out, delivery{userID: a.userID, callbackURL: sub.CallbackURL, form: url.Values{
					"userid":    {a.userID},
					"appli":     {strconv.Itoa(appli)},
					"startdate": {strconv.FormatInt(g.Date, 10)},
					"enddate":   {strconv.FormatInt(g.Date+1, 10)},
				}})
			}
		}
	}
	s.mu.Unlock()
	var accepted int
	var first error
	for _, d := range out {
		if err := s.deliver(ctx, d); err != nil {
			s.log.Warn("notification not accepted", "userid", d.userID, "appli", d.form.Get("appli"), "error", err)
			if first == nil {
				first = err
			}
			continue
		}
		accepted++
	}
	return accepted, first
}

func (a *account) subscribed(appli int) bool {
	for _, sub := range a.subs {
		if sub.Appli == appli {
			return true
		}
	}
	return false
}

func (s *Simulator) deliver(ctx context.Context, d delivery) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.callbackURL, strings.NewReader(d.form.Encode()))
	if err != nil {
		return fmt.Errorf("withings notification: %w", simweb.RedactURL(err))
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	res, err := s.http.Do(req)
	if err != nil {
		return fmt.Errorf("withings notification: %w", simweb.RedactURL(err))
	}
	defer res.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 64<<10))
	if res.StatusCode < 200 || res.StatusCode > 299 {
		return fmt.Errorf("withings notification: callback answered %d", res.StatusCode)
	}
	return nil
}
