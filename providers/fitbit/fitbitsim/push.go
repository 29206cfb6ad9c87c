package fitbitsim

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/openhealthexchange/ohx/providers/sim/simweb"
)

// notification is one item of a subscriber delivery
// (https://dev.fitbit.com/build/reference/web-api/developer-guide/using-subscriptions/): the
// date is the user's local date of the changed data.
type notification struct {
	CollectionType string `json:"collectionType"`
	Date           string `json:"date"`
	OwnerID        string `json:"ownerId"`
	OwnerType      string `json:"ownerType"`
	SubscriptionID string `json:"subscriptionId"`
}

// sign is the X-Fitbit-Signature of a notification body: Base64(HMAC-SHA1(key = client secret +
// "&", body)), the OAuth 1.0 signing key with an empty token secret
// (https://dev.fitbit.com/build/reference/web-api/developer-guide/using-subscriptions/).
func sign(body []byte, clientSecret string) string {
	m := hmac.New(sha1.New, []byte(clientSecret+"&"))
	m.Write(body)
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// delivery is one POST to the subscriber.
type delivery struct {
	items []notification
}

// Push records live data for every connected person with an activities subscription and
// delivers their notifications. Each push moves the tracker's sync to Config.Now, which grows
// today's step total (and the day's distance, calories and floors); every other push (the first,
// third, …) also records a weigh-in on the Aria scale when the person has a body subscription.
// The person's items (activities, and body when weighed) go in one signed POST to
// SubscriberURL. Before the first delivery the subscriber is verified as Fitbit does it (GET
// ?verify=code must answer 204, a wrong code 404); until it passes nothing is recorded or
// delivered. It returns the number of notification items of the deliveries the subscriber
// accepted (2xx) and the first error.
func (s *Simulator) Push(ctx context.Context) (int, error) {
	if s.cfg.SubscriberURL == "" {
		return 0, nil
	}
	if err := s.verify(ctx); err != nil {
		return 0, err
	}
	var out []delivery
	now := s.now().Truncate(time.Second)
	s.mu.Lock()
	for _, p := range s.people {
		user := s.userOf[p.Key]
		actID, ok := s.subscribedLocked(user, "activities")
		if !ok || !s.connectedLocked(user) {
			continue
		}
		l := s.live[p.Key]
		if now.After(l.synced) && now.After(s.w.Epoch) {
			l.synced = now
		}
		l.pushes++
		date := now.In(p.Zone).Format(layoutDate)
		d := delivery{items: []notification{{CollectionType: "activities", Date: date, OwnerID: user, OwnerType: "user", SubscriptionID: actID}}}
		if bodyID, ok := s.subscribedLocked(user, "body"); ok && l.pushes%2 == 1 && now.After(s.w.Epoch) &&
			(len(l.weights) == 0 || now.After(l.weights[len(l.weights)-1].At)) {
			l.weights = append(l.weights, s.w.LiveWeight(p, now))
			d.items = append(d.items, notification{CollectionType: "body", Date: date, OwnerID: user, OwnerType: "user", SubscriptionID: bodyID})
		}
		out = append(out, d)
	}
	s.mu.Unlock()
	var n int
	var first error
	for _, d := range out {
		err := s.deliver(ctx, d)
		if err == nil {
			n += len(d.items)
		} else if first == nil {
			first = err
		}
	}
	return n, first
}

// deliver posts one signed notification body.
func (s *Simulator) deliver(ctx context.Context, d delivery) error {
	body, err := json.Marshal(d.items)
	if err != nil {
		return fmt.Errorf("fitbitsim: notification: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.cfg.SubscriberURL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("fitbitsim: notification: %w", simweb.RedactURL(err))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Fitbit-Signature", sign(body, s.cfg.ClientSecret))
	res, err := s.hc.Do(req)
	if err != nil {
		return fmt.Errorf("fitbitsim: notification: %w", simweb.RedactURL(err))
	}
	io.Copy(io.Discard, io.LimitReader(res.Body, 1<<16))
	res.Body.Close()
	if res.StatusCode/100 != 2 {
		return fmt.Errorf("fitbitsim: the subscriber answered a notification with status %d", res.StatusCode)
	}
	s.log.Info("notification delivered", "items", len(d.items), "status", res.StatusCode)
	return nil
}

// verify checks the subscriber once, as Fitbit does before it sends notifications: GET
// {SubscriberURL}?verify={code} must answer 204 and GET ?verify={a wrong code} 404
// (https://dev.fitbit.com/build/reference/web-api/developer-guide/using-subscriptions/#Verify-a-Subscriber).
// A failure is returned and retried at the next push.
func (s *Simulator) verify(ctx context.Context) error {
	s.mu.Lock()
	done := s.verified
	s.mu.Unlock()
	if done {
		return nil
	}
	if s.cfg.VerificationCode == "" {
		return errors.New("fitbitsim: no verification code: the subscriber cannot be verified")
	}
	for _, c := range []struct {
		code string
		want int
	}{{s.cfg.VerificationCode, http.StatusNoContent}, {"wrong-" + s.cfg.VerificationCode, http.StatusNotFound}} {
		got, err := s.probe(ctx, c.code)
		if err != nil {
			return err
		}
		if got != c.want {
			return fmt.Errorf("fitbitsim: subscriber verification failed: status %d, want %d", got, c.want)
		}
	}
	s.mu.Lock()
	s.verified = true
	s.mu.Unlock()
	s.log.Info("subscriber verified")
	return nil
}

// probe GETs {SubscriberURL}?verify={code} and returns the answer's status. Its errors carry no
// URL: the query holds the verification code.
func (s *Simulator) probe(ctx context.Context, code string) (int, error) {
	u, _ := url.Parse(s.cfg.SubscriberURL) // validated in New
	q := u.Query()
	q.Set("verify", code)
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return 0, fmt.Errorf("fitbitsim: verification: %w", simweb.RedactURL(err))
	}
	res, err := s.hc.Do(req)
	if err != nil {
		return 0, fmt.Errorf("fitbitsim: verification: %w", simweb.RedactURL(err))
	}
	io.Copy(io.Discard, io.LimitReader(res.Body, 1<<16))
	res.Body.Close()
	return res.StatusCode, nil
}
