package fitbitsim

import (
	"net/http"
	"strconv"
	"time"
)

// hourlyLimit is Fitbit's quota: 150 API requests per user per hour, the window resetting at the
// top of each clock hour, reported in the Fitbit-Rate-Limit-* headers of every answer
// (https://dev.fitbit.com/build/reference/web-api/developer-guide/application-design/#Rate-Limits).
const hourlyLimit = 150

type quotaState struct {
	hour  time.Time // the window's start
	count int
}

// spend counts one request of user against the hour's quota, writes the rate-limit headers and
// reports whether the request may be served. Over quota the answer is 429 with Retry-After.
func (s *Simulator) spend(w http.ResponseWriter, user string) bool {
	now := s.now()
	hour := now.Truncate(time.Hour)
	s.mu.Lock()
	q := s.quota[user]
	if q == nil || !q.hour.Equal(hour) {
		q = &quotaState{hour: hour}
		s.quota[user] = q
	}
	q.count++
	count := q.count
	s.mu.Unlock()
	reset := int(hour.Add(time.Hour).Sub(now).Seconds() + 0.999)
	limit := s.cfg.HourlyLimit
	h := w.Header()
	h.Set("Fitbit-Rate-Limit-Limit", strconv.Itoa(limit))
	h.Set("Fitbit-Rate-Limit-Remaining", strconv.Itoa(max(0, limit-count)))
	h.Set("Fitbit-Rate-Limit-Reset", strconv.Itoa(reset))
	if count > limit {
		h.Set("Retry-After", strconv.Itoa(reset))
		fail(w, http.StatusTooManyRequests, "request", "n/a", "Too Many Requests")
		return false
	}
	return true
}
