// Package fitbittest is a happy-path fake of the legacy Fitbit Web API for end-to-end tests and the
// demo simulator: the whole connect-and-sync flow over the recorded payloads in testdata/fitbit.
//
// The fixtures hold one user, ownerId ABC123 (UserID), whose profile time zone is Europe/Berlin
// (UTC+01:00 in January). Their devices (devices.json) are a Charge 6 tracker "tracker-123",
// last synced 2024-01-15T12:00:58 local, and an Aria Air scale "scale-789". The data covers the
// local dates 2024-01-15 and 2024-01-16 (WindowStart, WindowEnd):
//   - 2024-01-15: 8500 steps, 6.12 km, 2112 kcal burned (BMR included), 0 floors, resting heart rate 68,
//     weight 70.2 kg with BMI 22.5 at 07:15:30 (Aria), body fat 21.4 %, SpO2 96.5 %, HRV 45.5 ms
//     (deep sleep 48.0), skin temperature variation −0.4 °C, an ECG at 10:00 (Normal Sinus Rhythm);
//   - 2024-01-16: zeros in every activity series (not the date of the last sync: no data), a sleep of
//     420 min from 2024-01-15 23:00 to 06:00, breathing rate 16.2, an ECG at 08:30 (Atrial
//     Fibrillation) on the second ECG page.
//
// A Fetch of the window [WindowStart, WindowEnd) (or of a Since on 2024-01-16, the adapter reading
// from the day before, with its clock on 2024-01-16 as Now) asks exactly the paths of Routes. The token endpoint answers
// the code exchange with AccessToken/RefreshToken and a refresh with RefreshedAccessToken/
// RefreshedRefreshToken. Subscriptions are created under the ids SubscriptionIDs when the adapter's
// Config.Rand is SubscriptionRand().
package fitbittest

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"io"
	"net/http"
	"time"

	"github.com/openhealthexchange/ohx/providers/providertest"
)

// Fixture facts.
const (
	// UserID is the Fitbit ownerId / user_id of every fixture.
	UserID = "ABC123"
	// ClientID is the client id the fake accepts (it checks none).
	ClientID = "23ABCD"
	// ClientSecret is the client secret of the signature worked example: notifications signed with
	// Sign(body, ClientSecret) verify against an adapter configured with it.
	ClientSecret = "fitbit_client_secret"
	// TimeZone is the profile's user.timezone.
	TimeZone = "Europe/Berlin"
	// TrackerID and ScaleID are the fixture devices.
	TrackerID = "tracker-123"
	ScaleID   = "scale-789"

	AccessToken           = "fitbit-access-1"
	RefreshToken          = "fitbit-refresh-1"
	RefreshedAccessToken  = "fitbit-access-2"
	RefreshedRefreshToken = "fitbit-refresh-2"
)

// cet is Europe/Berlin's winter offset; WindowStart and WindowEnd are local midnights in it.
var cet = time.FixedZone("CET", 3600)

// WindowStart and WindowEnd bound the fixtures: the local days 2024-01-15 and 2024-01-16 in
// Europe/Berlin, [WindowStart, WindowEnd).
var (
	WindowStart = time.Date(2024, 1, 15, 0, 0, 0, 0, cet)
	WindowEnd   = time.Date(2024, 1, 17, 0, 0, 0, 0, cet)
)

// Now is a clock for the adapter inside the window (the evening of its last day).
var Now = time.Date(2024, 1, 16, 20, 0, 0, 0, cet)

// SubscriptionIDs are the ids the adapter creates for activities, body, sleep and
// userRevokedAccess (in that order) when it subscribes every collection with Config.Rand =
// SubscriptionRand(): 16 bytes each, hex. (A subscription of fewer collections takes the ids in
// the same order: activities and userRevokedAccess alone get the first two.)
var SubscriptionIDs = map[string]string{
	"activities":        "000102030405060708090a0b0c0d0e0f",
	"body":              "101112131415161718191a1b1c1d1e1f",
	"sleep":             "202122232425262728292a2b2c2d2e2f",
	"userRevokedAccess": "303132333435363738393a3b3c3d3e3f",
}

// SubscriptionRand is a deterministic source for Config.Rand: the bytes 0x00, 0x01, … 0x3f, so
// the four subscription ids are SubscriptionIDs.
func SubscriptionRand() io.Reader {
	b := make([]byte, 64)
	for i := range b {
		b[i] = byte(i)
	}
	return bytes.NewReader(b)
}

// Sign is the X-Fitbit-Signature of body: Base64(HMAC-SHA1(key = clientSecret + "&", body))
// (https://dev.fitbit.com/build/reference/web-api/developer-guide/using-subscriptions/).
func Sign(body []byte, clientSecret string) string {
	m := hmac.New(sha1.New, []byte(clientSecret+"&"))
	m.Write(body)
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

func file(name string) providertest.Route { return providertest.Route{File: "fitbit/" + name} }

// Routes is the happy-path fake: token exchange and refresh, revoke, profile, devices, every data
// endpoint for the window's dates, both ECG pages, and subscriptions create, list and delete. Keys
// are in providertest's route syntax; pass them to providertest.NewServer.
func Routes() map[string]providertest.Route {
	const days = "2024-01-15/2024-01-16.json"
	r := map[string]providertest.Route{
		"POST /oauth2/token grant_type=authorization_code": file("token_exchange.json"),
		"POST /oauth2/token grant_type=refresh_token":      file("token_refresh.json"),
		"POST /oauth2/revoke":                              {Body: ""},
		"GET /1/user/-/profile.json":                       file("profile.json"),
		"GET /1/user/-/devices.json":                       file("devices.json"),

		"GET /1/user/-/activities/steps/date/" + days:    file("activities_steps.json"),
		"GET /1/user/-/activities/distance/date/" + days: file("activities_distance.json"),
		"GET /1/user/-/activities/calories/date/" + days: file("activities_calories.json"),
		"GET /1/user/-/activities/floors/date/" + days:   file("activities_floors.json"),
		"GET /1/user/-/activities/heart/date/" + days:    file("activities_heart.json"),
		"GET /1/user/-/body/log/weight/date/" + days:     file("body_weight.json"),
		"GET /1/user/-/body/log/fat/date/" + days:        file("body_fat.json"),
		"GET /1.2/user/-/sleep/date/" + days:             file("sleep.json"),
		"GET /1/user/-/spo2/date/" + days:                file("spo2.json"),
		"GET /1/user/-/hrv/date/" + days:                 file("hrv.json"),
		"GET /1/user/-/br/date/" + days:                  file("br.json"),
		"GET /1/user/-/temp/skin/date/" + days:           file("temp_skin.json"),
		"GET /1/user/-/ecg/list.json offset=0":           file("ecg_page1.json"),
		"GET /1/user/-/ecg/list.json offset=10":          file("ecg_page2.json"),

		"GET /1/user/-/apiSubscriptions.json": file("subscriptions_list.json"),
	}
	for col, id := range SubscriptionIDs {
		r["POST /1/user/-/"+col+"/apiSubscriptions/"+id+".json"] = providertest.Route{File: "fitbit/subscription_created.json", Status: http.StatusCreated}
		r["DELETE /1/user/-/"+col+"/apiSubscriptions/"+id+".json"] = providertest.Route{Status: http.StatusNoContent}
	}
	return r
}
