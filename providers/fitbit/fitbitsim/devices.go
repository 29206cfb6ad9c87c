package fitbitsim

import (
	"math"
	"net/http"
	"time"

	"github.com/openhealthexchange/ohx/providers/sim"
)

// scaleModel is the person's Wi-Fi scale.
const scaleModel = "Aria Air"

// device is an entry of GET /1/user/-/devices.json
// (https://dev.fitbit.com/build/reference/web-api/devices/get-devices/).
type device struct {
	Battery       string   `json:"battery"`
	BatteryLevel  int      `json:"batteryLevel"`
	DeviceVersion string   `json:"deviceVersion"`
	Features      []string `json:"features"`
	ID            string   `json:"id"`
	LastSyncTime  string   `json:"lastSyncTime"`
	Mac           string   `json:"mac"`
	Type          string   `json:"type"`
}

// batteryWord is the battery field Fitbit sends beside batteryLevel (High, Medium, Low, Empty).
// ⚠ Fitbit documents the words, not the thresholds; these are a plausible split.
func batteryWord(level int) string {
	switch {
	case level >= 60:
		return "High"
	case level >= 25:
		return "Medium"
	case level >= 10:
		return "Low"
	}
	return "Empty"
}

// devices are the person's Charge 6 tracker, last synced at the view's sync time, and Aria scale,
// last synced just after the latest weigh-in; batteries are the world's at those times.
func (s *Simulator) devices(v *view) []device {
	z := v.p.Zone
	lvl := s.w.Battery(v.p, "tracker", v.sync)
	out := []device{{
		Battery: batteryWord(lvl), BatteryLevel: lvl, DeviceVersion: trackerModel, Features: []string{},
		ID: s.deviceID(v.p, "tracker"), LastSyncTime: v.sync.In(z).Format(layoutDateTime), Mac: s.deviceMAC(v.p, "tracker"), Type: "TRACKER",
	}}
	if wt, ok := v.lastWeighIn(); ok {
		at := wt.At.Add(32 * time.Second) // the scale uploads the weigh-in over Wi-Fi right after it
		lvl := s.w.Battery(v.p, "scale", at)
		out = append(out, device{
			Battery: batteryWord(lvl), BatteryLevel: lvl, DeviceVersion: scaleModel, Features: []string{},
			ID: s.deviceID(v.p, "scale"), LastSyncTime: at.In(z).Format(layoutDateTime), Mac: s.deviceMAC(v.p, "scale"), Type: "SCALE",
		})
	}
	return out
}

func (s *Simulator) serveDevices(w http.ResponseWriter, _ *http.Request, c call) {
	writeJSON(w, http.StatusOK, s.devices(s.view(c.p)))
}

// profile is the part of GET /1/user/-/profile.json Fitbit fills for a metric user
// (https://dev.fitbit.com/build/reference/web-api/user/get-profile/).
type profile struct {
	Age                 int     `json:"age"`
	Avatar              string  `json:"avatar"`
	DateOfBirth         string  `json:"dateOfBirth"`
	DisplayName         string  `json:"displayName"`
	DistanceUnit        string  `json:"distanceUnit"`
	EncodedID           string  `json:"encodedId"`
	FirstName           string  `json:"firstName"`
	FullName            string  `json:"fullName"`
	Gender              string  `json:"gender"`
	Height              float64 `json:"height"`
	HeightUnit          string  `json:"heightUnit"`
	LastName            string  `json:"lastName"`
	Locale              string  `json:"locale"`
	MemberSince         string  `json:"memberSince"`
	OffsetFromUTCMillis int64   `json:"offsetFromUTCMillis"`
	StartDayOfWeek      string  `json:"startDayOfWeek"`
	Timezone            string  `json:"timezone"`
	Weight              float64 `json:"weight"`
	WeightUnit          string  `json:"weightUnit"`
}

// locales maps the world's zones to a profile locale (it only names the user's language: the
// adapter never sends Accept-Language, so answers stay metric).
var locales = map[string]string{"Europe/Paris": "fr_FR", "America/New_York": "en_US", "Europe/Berlin": "de_DE",
	"America/Los_Angeles": "en_US", "Europe/London": "en_GB"}

// serveProfile answers the profile: the IANA zone in which every date and time is written, and
// its current offset.
func (s *Simulator) serveProfile(w http.ResponseWriter, _ *http.Request, c call) {
	p, v := c.p, s.view(c.p)
	now := s.now().In(p.Zone)
	_, off := now.Zone()
	pr := profile{
		Age: age(p.BirthDate, now), Avatar: "https://static0.fitbit.com/images/profile/defaultProfile_100.png",
		DateOfBirth: p.BirthDate, DisplayName: p.Given + " " + p.Family[:1] + ".", DistanceUnit: "METRIC",
		EncodedID: c.user, FirstName: p.Given, FullName: p.Given + " " + p.Family, Gender: gender(p),
		Height: round(p.HeightM*100, 1), HeightUnit: "METRIC", LastName: p.Family, Locale: locales[p.Zone.String()],
		MemberSince: s.w.Start(p).Format(layoutDate), OffsetFromUTCMillis: int64(off) * 1000, StartDayOfWeek: "MONDAY",
		Timezone: p.Zone.String(), WeightUnit: "METRIC",
	}
	if pr.Locale == "" {
		pr.Locale = "en_US"
	}
	if wt, ok := v.lastWeighIn(); ok {
		pr.Weight = math.Round(wt.Kg*10) / 10
	}
	writeJSON(w, http.StatusOK, map[string]profile{"user": pr})
}

func gender(p *sim.Person) string {
	switch p.Gender {
	case "female":
		return "FEMALE"
	case "male":
		return "MALE"
	}
	return "NA"
}
