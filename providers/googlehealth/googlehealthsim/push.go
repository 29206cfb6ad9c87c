package googlehealthsim

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/openhealthexchange/ohx/providers/sim"
	"github.com/openhealthexchange/ohx/providers/sim/simweb"
)

// notification is one delivery to the subscriber's endpoint, in the shape the adapter decodes
// (testdata/googlehealth/webhook_steps.json). ⚠ Google's webhook page
// (https://developers.google.com/health/webhooks) does not show the body; the shape follows the
// adapter, which takes it from public client implementations.
type notification struct {
	Data notificationData `json:"data"`
}

type notificationData struct {
	HealthUserID string         `json:"healthUserId"`
	DataType     string         `json:"dataType"`
	Operation    string         `json:"operation"`
	Intervals    []notifyWindow `json:"intervals"`
}

type notifyWindow struct {
	Physical struct {
		StartTime string `json:"startTime"`
		EndTime   string `json:"endTime"`
	} `json:"physicalTimeInterval"`
}

func newNotification(user, dataType string, start, end time.Time) notification {
	var w notifyWindow
	w.Physical.StartTime, w.Physical.EndTime = physical(start), physical(end)
	return notification{Data: notificationData{HealthUserID: user, DataType: dataType, Operation: "UPSERT", Intervals: []notifyWindow{w}}}
}

// activityTypes are the data types a tracker's day totals grow in.
var activityTypes = []string{"steps", "distance", "floors", "total-calories"}

// Push records live data for every connected person and delivers Google's notifications to
// Config.WebhookURL with the Authorization header Config.WebhookAuthorization: the day's
// activity up to Config.Now (a notification per activity data type whose total changed, with the
// interval since the last push), and on every other push (the first, third, …) a weigh-in at Now
// (weight and body-fat notifications). Google subscribers are per project (the subscriber's
// endpointUri), so a person is notified once they have consented. It returns how many
// deliveries were answered 2xx, and the first failure; the data stays recorded either way, as
// Google keeps data whose notification failed.
func (s *Simulator) Push(ctx context.Context) (int, error) {
	if s.cfg.WebhookURL == "" {
		return 0, nil
	}
	now := s.now().Truncate(time.Second)
	people := s.connected()
	var out []notification
	s.mu.Lock()
	s.pushes++
	weigh := s.pushes%2 == 1
	for _, p := range people {
		out = append(out, s.recordLocked(p, now, weigh)...)
	}
	s.mu.Unlock()

	accepted := 0
	var first error
	for _, n := range out {
		if err := ctx.Err(); err != nil {
			if first == nil {
				first = err
			}
			break
		}
		if err := s.deliver(ctx, n); err != nil {
			if first == nil {
				first = err
			}
			continue
		}
		accepted++
	}
	return accepted, first
}

// recordLocked adds one person's live data at now and returns the notifications for it. s.mu is
// held.
func (s *Simulator) recordLocked(p *sim.Person, now time.Time, weigh bool) []notification {
	l := s.live[p.Key]
	user := s.ids[p.Key]
	var out []notification
	prev := s.activityUntil(*l)
	if now.After(prev) {
		l.until = now
		for _, name := range activityTypes {
			d, _ := typeByName(name)
			changed := false
			// Every local day between the two instants may have grown (a push after midnight
			// finishes yesterday's total and starts today's).
			for day := midnightIn(prev, p.Zone); day.Before(now); day = day.AddDate(0, 0, 1) {
				a, okA := s.dayTotal(p, d, day, prev)
				b, okB := s.dayTotal(p, d, day, now)
				if okA != okB || a != b {
					changed = true
				}
			}
			if changed {
				out = append(out, newNotification(user, name, prev, now))
			}
		}
	}
	if weigh && now.After(s.world.Epoch) && (len(l.weights) == 0 || now.After(l.weights[len(l.weights)-1].At)) {
		wt := s.world.LiveWeight(p, now)
		l.weights = append(l.weights, wt)
		out = append(out, newNotification(user, "weight", wt.At, wt.At), newNotification(user, "body-fat", wt.At, wt.At))
	}
	return out
}

func midnightIn(t time.Time, zone *time.Location) time.Time {
	y, m, d := t.In(zone).Date()
	return time.Date(y, m, d, 0, 0, 0, 0, zone)
}

// deliver POSTs one notification as Google does: JSON with the subscriber's Authorization header.
func (s *Simulator) deliver(ctx context.Context, n notification) error {
	body, err := json.Marshal(n)
	if err != nil {
		return fmt.Errorf("googlehealthsim: encode notification: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.cfg.WebhookURL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("googlehealthsim: notification request: %w", simweb.RedactURL(err))
	}
	req.Header.Set("Content-Type", "application/json")
	if s.cfg.WebhookAuthorization != "" {
		req.Header.Set("Authorization", s.cfg.WebhookAuthorization)
	}
	res, err := s.hc.Do(req)
	if err != nil {
		return fmt.Errorf("googlehealthsim: deliver %s notification: %w", n.Data.DataType, simweb.RedactURL(err))
	}
	defer res.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 1<<16))
	if res.StatusCode < 200 || res.StatusCode > 299 {
		return fmt.Errorf("googlehealthsim: %s notification answered %d", n.Data.DataType, res.StatusCode)
	}
	s.log.Debug("notification delivered", "data_type", n.Data.DataType, "status", res.StatusCode)
	return nil
}
