package fitbitsim

import (
	"net/http"
	"strings"
	"time"

	"github.com/openhealthexchange/ohx/providers/sim"
)

// Handler serves the API, the OAuth endpoints and the consent page (all on one origin, as the
// adapter's APIURL and AuthURL both point here).
func (s *Simulator) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+authorizePath, s.handleAuthorize)
	mux.HandleFunc("POST "+authorizePath, s.handleConsent)
	mux.HandleFunc("POST /oauth2/token", s.handleToken)
	mux.HandleFunc("POST /oauth2/revoke", s.handleRevoke)

	mux.HandleFunc("GET /1/user/{user}/profile.json", s.api("profile", s.serveProfile))
	mux.HandleFunc("GET /1/user/{user}/devices.json", s.api("settings", s.serveDevices))
	// Maximum ranges as documented per endpoint (see providers/fitbit/endpoints.go for the pages).
	mux.HandleFunc("GET /1/user/{user}/activities/{resource}/date/{start}/{end}", s.api("activity", s.dated(1095, s.serveSeries)))
	mux.HandleFunc("GET /1/user/{user}/activities/heart/date/{start}/{end}", s.api("heartrate", s.dated(365, s.serveHeart)))
	mux.HandleFunc("GET /1/user/{user}/body/log/weight/date/{start}/{end}", s.api("weight", s.dated(31, s.serveWeight)))
	mux.HandleFunc("GET /1/user/{user}/body/log/fat/date/{start}/{end}", s.api("weight", s.dated(31, s.serveFat)))
	mux.HandleFunc("GET /1.2/user/{user}/sleep/date/{start}/{end}", s.api("sleep", s.dated(100, s.serveSleep)))
	mux.HandleFunc("GET /1/user/{user}/spo2/date/{start}/{end}", s.api("oxygen_saturation", s.dated(30, s.serveSpO2)))
	mux.HandleFunc("GET /1/user/{user}/hrv/date/{start}/{end}", s.api("heartrate", s.dated(30, s.serveHRV)))
	mux.HandleFunc("GET /1/user/{user}/hrv/date/{start}/{end}/all.json", s.api("heartrate", s.serveIntraday))
	mux.HandleFunc("GET /1/user/{user}/br/date/{start}/{end}", s.api("respiratory_rate", s.dated(30, s.serveBreathing)))
	mux.HandleFunc("GET /1/user/{user}/temp/skin/date/{start}/{end}", s.api("temperature", s.dated(30, s.serveSkinTemp)))
	mux.HandleFunc("GET /1/user/{user}/ecg/list.json", s.api("electrocardiogram", s.serveECG))

	mux.HandleFunc("POST /1/user/{user}/{collection}/apiSubscriptions/{id}", s.api("", s.createSubscription))
	mux.HandleFunc("POST /1/user/{user}/apiSubscriptions/{id}", s.api("", s.createSubscription))
	mux.HandleFunc("GET /1/user/{user}/{collection}/apiSubscriptions.json", s.api("", s.listSubscriptions))
	mux.HandleFunc("GET /1/user/{user}/apiSubscriptions.json", s.api("", s.listSubscriptions))
	mux.HandleFunc("DELETE /1/user/{user}/{collection}/apiSubscriptions/{id}", s.api("", s.deleteSubscription))
	mux.HandleFunc("DELETE /1/user/{user}/apiSubscriptions/{id}", s.api("", s.deleteSubscription))
	mux.HandleFunc("/", notFound)
	return mux
}

// call is an authenticated API request.
type call struct {
	user   string // Fitbit user id
	scopes []string
	p      *sim.Person
}

// api wraps an API handler: the bearer token (401), the user's hourly quota (429), the user in
// the path ("-" is the token's user; another user's data is refused) and the scope the endpoint
// needs (403 insufficient_scope).
func (s *Simulator) api(scope string, h func(http.ResponseWriter, *http.Request, call)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		user, scopes, ok := s.bearer(w, r)
		if !ok || !s.spend(w, user) {
			return
		}
		if u := r.PathValue("user"); u != "-" && u != user {
			fail(w, http.StatusForbidden, "insufficient_permissions", "n/a", "The caller is not authorized to view the requested resource.")
			return
		}
		if !hasScope(scopes, scope) {
			fail(w, http.StatusForbidden, "insufficient_scope", "n/a",
				"This application does not have permission to access "+scope+" data. Visit https://dev.fitbit.com/docs/oauth2 for more information on the Fitbit Web API authorization process.")
			return
		}
		h(w, r, call{user: user, scopes: scopes, p: s.byUser[user]})
	}
}

// dated wraps a date-range handler: {start} and {end} are yyyy-MM-dd (or "today", the user's
// local date), start ≤ end, at most maxDays dates.
func (s *Simulator) dated(maxDays int, h func(http.ResponseWriter, *http.Request, *view, []time.Time)) func(http.ResponseWriter, *http.Request, call) {
	return func(w http.ResponseWriter, r *http.Request, c call) {
		v := s.view(c.p)
		parse := func(field, raw string) (time.Time, bool) {
			raw = strings.TrimSuffix(raw, ".json")
			if raw == "today" {
				raw = s.now().In(c.p.Zone).Format(layoutDate)
			}
			t, err := v.localDay(raw)
			if err != nil {
				validation(w, field, "Invalid date:"+raw+". Use the format yyyy-MM-dd.")
				return time.Time{}, false
			}
			return t, true
		}
		from, ok := parse("startDate", r.PathValue("start"))
		if !ok {
			return
		}
		to, ok := parse("endDate", r.PathValue("end"))
		if !ok {
			return
		}
		if to.Before(from) {
			validation(w, "endDate", "The end date is before the start date.")
			return
		}
		days := v.days(from, to)
		if len(days) > maxDays {
			validation(w, "endDate", "The date range exceeds the maximum of "+itoa(maxDays)+" days.")
			return
		}
		h(w, r, v, days)
	}
}

// serveIntraday refuses the intraday HRV series: other users' intraday data needs Fitbit's
// approval of the application (https://dev.fitbit.com/build/reference/web-api/intraday/), which
// the simulated application does not have.
func (s *Simulator) serveIntraday(w http.ResponseWriter, _ *http.Request, _ call) {
	fail(w, http.StatusForbidden, "insufficient_permissions", "n/a", "Intraday data requires the application's approval by Fitbit.")
}
