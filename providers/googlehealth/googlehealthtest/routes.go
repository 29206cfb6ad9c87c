// Package googlehealthtest is the happy-path fake of the Google Health API for tests and the demo
// simulator: Routes programs a providertest.Server with the recorded payloads under
// testdata/googlehealth for the whole connect-and-sync flow.
//
// The fixtures hold one user, healthUserId HealthUserID ("hu-7f3a9c"), migrated from the legacy
// Fitbit account LegacyUserID ("ABC123"), whose account time zone is TimeZone
// (America/Los_Angeles). Their data lies on the civil days 2026-03-07 to 2026-03-09 — across the
// daylight-saving change of 2026-03-08 (PST −08:00 → PDT −07:00, a 23-hour day) — inside
// [WindowStart, WindowEnd): two weights (scale and manual), a body-fat reading, three heart-rate
// samples over two pages, daily resting heart rate, HRV, SpO2, respiratory rate and sleep
// temperature for 2026-03-08, daily steps (2026-03-07 and -08), distance, floors and total
// calories, one sleep session crossing the clock change, and two ECGs (one without UTC offsets,
// as historical ECGs are, one inconclusive at 300 Hz). Paired devices: a Pixel Watch 3 (TRACKER,
// battery 64 %) and an Aria Air scale (SCALE, battery "High"). The fake answers the same rollup
// for any requested range.
package googlehealthtest

import (
	"time"

	"github.com/openhealthexchange/ohx/providers/googlehealth"
	"github.com/openhealthexchange/ohx/providers/providertest"
)

// The fixtures' user.
const (
	HealthUserID = "hu-7f3a9c"
	LegacyUserID = "ABC123"
	TimeZone     = "America/Los_Angeles"
)

// Paths of the OAuth endpoints on the fake (Google's live ones are on other hosts): point
// Config.TokenURL and Config.RevokeURL at server URL + these.
const (
	TokenPath  = "/token"
	RevokePath = "/revoke"
)

// The window [WindowStart, WindowEnd) covers every fixture: 2026-03-07 00:00 PST to
// 2026-03-10 00:00 PDT.
var (
	WindowStart = time.Date(2026, 3, 7, 8, 0, 0, 0, time.UTC)
	WindowEnd   = time.Date(2026, 3, 10, 7, 0, 0, 0, time.UTC)
)

func file(name string) providertest.Route { return providertest.Route{File: "googlehealth/" + name} }

// Config returns an adapter configuration pointing every endpoint at the fake's base URL.
func Config(baseURL, redirectURL, webhookSecret string) googlehealth.Config {
	return googlehealth.Config{
		ClientID:      "fixture-client.apps.googleusercontent.com",
		ClientSecret:  "fixture-client-secret",
		RedirectURL:   redirectURL,
		APIURL:        baseURL,
		AuthURL:       "https://accounts.google.com/o/oauth2/v2/auth",
		TokenURL:      baseURL + TokenPath,
		RevokeURL:     baseURL + RevokePath,
		WebhookSecret: webhookSecret,
	}
}

// dataPoints is the list route of a data type.
func dataPoints(dataType string) string {
	return "GET /v4/users/me/dataTypes/" + dataType + "/dataPoints"
}

// rollup is the dailyRollUp route of a data type.
func rollup(dataType string) string {
	return "POST /v4/users/me/dataTypes/" + dataType + "/dataPoints:dailyRollUp"
}

// Routes is the happy path, keyed in providertest's route syntax: token exchange and refresh,
// revoke, identity, settings (time zone), paired devices, every data type the adapter reads
// (heart-rate in two pages) and the daily rollups.
func Routes() map[string]providertest.Route {
	return map[string]providertest.Route{
		"POST " + TokenPath + " grant_type=authorization_code": file("token_exchange.json"),
		"POST " + TokenPath + " grant_type=refresh_token":      file("token_refresh.json"),
		"POST " + RevokePath:             file("revoke_ok.json"),
		"GET /v4/users/me/identity":      file("identity.json"),
		"GET /v4/users/me/settings":      file("settings.json"),
		"GET /v4/users/me/pairedDevices": file("paired_devices.json"),

		dataPoints("weight"):                              file("weight.json"),
		dataPoints("body-fat"):                            file("body_fat.json"),
		dataPoints("heart-rate"):                          file("heart_rate_page1.json"),
		dataPoints("heart-rate") + " pageToken=hr-page-2": file("heart_rate_page2.json"),
		dataPoints("daily-resting-heart-rate"):            file("daily_resting_heart_rate.json"),
		dataPoints("daily-heart-rate-variability"):        file("daily_heart_rate_variability.json"),
		dataPoints("daily-oxygen-saturation"):             file("daily_oxygen_saturation.json"),
		dataPoints("daily-respiratory-rate"):              file("daily_respiratory_rate.json"),
		dataPoints("daily-sleep-temperature-derivations"): file("daily_sleep_temperature_derivations.json"),
		dataPoints("sleep"):                               file("sleep.json"),
		dataPoints("electrocardiogram"):                   file("electrocardiogram.json"),

		rollup("steps"):          file("rollup_steps.json"),
		rollup("distance"):       file("rollup_distance.json"),
		rollup("floors"):         file("rollup_floors.json"),
		rollup("total-calories"): file("rollup_total_calories.json"),
	}
}

// Subset returns the routes whose keys are listed (for tests that must fail on any other
// request).
func Subset(keys ...string) map[string]providertest.Route {
	all := Routes()
	out := make(map[string]providertest.Route, len(keys))
	for _, k := range keys {
		if r, ok := all[k]; ok {
			out[k] = r
		}
	}
	return out
}

// Route keys for Subset.
const (
	KeyExchange = "POST " + TokenPath + " grant_type=authorization_code"
	KeyRefresh  = "POST " + TokenPath + " grant_type=refresh_token"
	KeyRevoke   = "POST " + RevokePath
	KeyIdentity = "GET /v4/users/me/identity"
	KeySettings = "GET /v4/users/me/settings"
	KeyDevices  = "GET /v4/users/me/pairedDevices"
)

// DataPointsKey and RollupKey are the route keys of a data type's list and dailyRollUp.
func DataPointsKey(dataType string) string { return dataPoints(dataType) }

// RollupKey is the route key of a data type's dailyRollUp.
func RollupKey(dataType string) string { return rollup(dataType) }
