package googlehealthsim

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/openhealthexchange/ohx/providers/sim"
)

// identity is GET /v4/users/me/identity
// (https://developers.google.com/health/reference/rest/v4/users/getIdentity). The simulated
// accounts were created on Google, not migrated from the legacy Fitbit API, so there is no
// legacyUserId (ohx then records no predecessor account).
func (s *Simulator) identity(w http.ResponseWriter, _ *http.Request, c caller) {
	writeJSON(w, http.StatusOK, struct {
		Name         string `json:"name"`
		HealthUserID string `json:"healthUserId"`
	}{"users/me/identity", s.ids[c.p.Key]})
}

// settings is GET /v4/users/me/settings
// (https://developers.google.com/health/reference/rest/v4/users/getSettings): the account's time
// zone, which the adapter reads to place daily values on local days.
func (s *Simulator) settings(w http.ResponseWriter, _ *http.Request, c caller) {
	p := c.p
	distance, weight, locale := "KILOMETERS", "KILOGRAMS", "en_GB"
	if strings.HasPrefix(p.Zone.String(), "America/") {
		distance, weight, locale = "MILES", "POUNDS", "en_US"
	}
	writeJSON(w, http.StatusOK, struct {
		Name           string `json:"name"`
		TimeZone       string `json:"timeZone"`
		UTCOffset      string `json:"utcOffset"`
		DistanceUnit   string `json:"distanceUnit"`
		WeightUnit     string `json:"weightUnit"`
		LanguageLocale string `json:"languageLocale"`
	}{"users/" + s.ids[p.Key] + "/settings", p.Zone.String(), offset(s.now(), p.Zone), distance, weight, locale})
}

// pairedDevice is PairedDevice (https://developers.google.com/health/reference/rest/v4/users.pairedDevices).
type pairedDevice struct {
	Name          string   `json:"name"`
	DeviceType    string   `json:"deviceType"`
	BatteryStatus string   `json:"batteryStatus"`
	BatteryLevel  *int     `json:"batteryLevel,omitempty"`
	LastSyncTime  string   `json:"lastSyncTime,omitempty"`
	DeviceVersion string   `json:"deviceVersion"`
	MACAddress    string   `json:"macAddress"`
	Features      []string `json:"features"`
}

// batteryStatus is the coarse level Fitbit devices report ("High", "Medium", "Low", "Empty").
func batteryStatus(pct int) string {
	switch {
	case pct >= 60:
		return "High"
	case pct >= 25:
		return "Medium"
	case pct >= 10:
		return "Low"
	}
	return "Empty"
}

// devicesOf are the person's paired devices: the wrist tracker (battery in %, last synced when
// activity was last recorded) and the Aria scale (battery status only, as Aria scales report;
// last synced at the last weigh-in).
func (s *Simulator) devicesOf(p *sim.Person) []pairedDevice {
	now := s.now()
	l := s.liveOf(p)
	batt, wrist := tracker(p)
	level := s.world.Battery(p, batt, now)
	mac := func(device string) string {
		v := s.digest("mac", p.Key, device)
		return fmt.Sprintf("%02X:%02X:%02X:%02X:%02X:%02X", byte(v>>40), byte(v>>32), byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
	}
	trk := pairedDevice{Name: s.deviceName(p, batt), DeviceType: "TRACKER", BatteryStatus: batteryStatus(level), BatteryLevel: &level,
		LastSyncTime: physical(s.activityUntil(l)), DeviceVersion: wrist.DisplayName, MACAddress: mac(batt),
		Features: []string{"HEART_RATE", "SPO2", "SMART_SLEEP", "STEPS"}}
	sc := pairedDevice{Name: s.deviceName(p, "scale"), DeviceType: "SCALE", BatteryStatus: batteryStatus(s.world.Battery(p, "scale", now)),
		DeviceVersion: scale.DisplayName, MACAddress: mac("scale"), Features: []string{}}
	if ws := s.weighIns(p, l); len(ws) > 0 {
		sc.LastSyncTime = physical(ws[len(ws)-1].At)
	}
	return []pairedDevice{trk, sc}
}

// pairedDevices is GET /v4/users/me/pairedDevices with pageSize and pageToken.
func (s *Simulator) pairedDevices(w http.ResponseWriter, r *http.Request, c caller) {
	q := r.URL.Query()
	size, ok := pageSizeOf(q.Get("pageSize"), 100, 100)
	if !ok {
		invalidArgument(w, "Invalid value for pageSize: "+q.Get("pageSize"), "")
		return
	}
	offset, ok := s.decodeToken(q.Get("pageToken"), "devices", c.p.Key)
	if !ok {
		invalidArgument(w, "Invalid page token.", "")
		return
	}
	all := s.devicesOf(c.p)
	var a struct {
		PairedDevices []pairedDevice `json:"pairedDevices,omitempty"`
		NextPageToken string         `json:"nextPageToken,omitempty"`
	}
	for i := offset; i < len(all) && i < offset+size; i++ {
		a.PairedDevices = append(a.PairedDevices, all[i])
	}
	if offset+size < len(all) {
		a.NextPageToken = s.encodeToken(offset+size, "devices", c.p.Key)
	}
	writeJSON(w, http.StatusOK, a)
}
