package fitbit

import (
	"context"
	"errors"
	"net/http"
	"time"

	"golang.org/x/oauth2"

	"github.com/openhealthexchange/ohx/providers"
)

// profileAnswer is the part of GET /1/user/-/profile.json we read
// (https://dev.fitbit.com/build/reference/web-api/user/get-profile/): the user's IANA time zone, in
// which Fitbit writes every date and time without an offset.
type profileAnswer struct {
	User *struct {
		EncodedID string `json:"encodedId"`
		Timezone  string `json:"timezone"`
	} `json:"user"`
}

// zone returns the user's time zone, read from the profile and cached for zoneTTL. A profile
// without a zone Go knows is a permanent error: guessing UTC (or a fixed offset, wrong across DST)
// would shift every value.
func (c *Client) zone(ctx context.Context, user string, ts oauth2.TokenSource) (*time.Location, error) {
	if v, ok := c.zones.Get(user); ok {
		return v.(*time.Location), nil
	}
	a, err := c.do(ctx, request{user: user, endpoint: "user/profile", path: "/1/user/-/profile.json", ts: ts, cacheable: true})
	if err != nil {
		return nil, err
	}
	var p profileAnswer
	if err := decode(a.body, &p, "profile"); err != nil {
		return nil, err
	}
	if p.User == nil || p.User.Timezone == "" {
		return nil, upstream(providers.KindPermanent, http.StatusOK, errors.New("profile without user.timezone"))
	}
	loc, err := time.LoadLocation(p.User.Timezone)
	if err != nil {
		return nil, upstream(providers.KindPermanent, http.StatusOK, errors.New("profile time zone is unknown"))
	}
	c.zones.SetDefault(user, loc)
	return loc, nil
}

// Local wall-time layouts Fitbit uses: dates, log times, and the datetimes of sleep, ECG, HRV and
// devices (with or without milliseconds).
const (
	layoutDate     = "2006-01-02"
	layoutDateTime = "2006-01-02T15:04:05"
)

// localDay is local midnight of a yyyy-MM-dd date in loc.
func localDay(date string, loc *time.Location) (time.Time, error) {
	t, err := time.ParseInLocation(layoutDate, date, loc)
	if err != nil {
		return time.Time{}, errors.New("date is not yyyy-MM-dd")
	}
	return t, nil
}

// localTime reads a wall time "2024-01-15T10:00:00.000" in loc (Go accepts the fractional
// seconds after the seconds field when parsing). In a DST gap Go moves the time forward; in an
// overlap it takes the first (earlier) instant.
func localTime(s string, loc *time.Location) (time.Time, error) {
	t, err := time.ParseInLocation(layoutDateTime, s, loc)
	if err != nil {
		return time.Time{}, errors.New("local time is not yyyy-MM-ddTHH:mm:ss[.SSS]")
	}
	return t, nil
}
