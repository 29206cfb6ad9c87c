package googlehealth

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/providers"
)

// pairedDevice is PairedDevice (https://developers.google.com/health/reference/rest/v4/users.pairedDevices).
type pairedDevice struct {
	Name          string   `json:"name"`       // users/{user}/pairedDevices/{id}
	DeviceType    string   `json:"deviceType"` // TRACKER | SCALE
	BatteryStatus string   `json:"batteryStatus"`
	BatteryLevel  *int     `json:"batteryLevel"`
	LastSyncTime  string   `json:"lastSyncTime"`
	DeviceVersion string   `json:"deviceVersion"` // the product name ("Charge 6", "Pixel Watch 3")
	Features      []string `json:"features"`
}

type pairedDevicesAnswer struct {
	PairedDevices []pairedDevice `json:"pairedDevices"`
	NextPageToken string         `json:"nextPageToken"`
}

// deviceKinds maps PairedDevice.deviceType to the neutral device kind.
var deviceKinds = map[string]fhir.DeviceKind{
	"TRACKER": fhir.DeviceKindActivityTracker,
	"SCALE":   fhir.DeviceKindScale,
}

// ecgModels are the models (deviceVersion, lower case) with an ECG app: the Fitbit ECG app's
// wrist-worn products (Sense, Sense 2, Charge 5, Charge 6; "What is the Fitbit ECG app?",
// https://support.google.com/fitbit/answer/14236718) and the Pixel Watch series (Google's Pixel
// Watch product pages ⚠ not checked against a reference page for this list). A model not listed
// is not flagged: PairedDevice.features has no ECG feature to ask instead.
var ecgModels = map[string]bool{
	"sense": true, "sense 2": true, "charge 5": true, "charge 6": true,
	"pixel watch": true, "pixel watch 2": true, "pixel watch 3": true, "pixel watch 4": true,
}

// manufacturer is the device maker: Google makes the Pixel Watch, Fitbit (a Google company, but
// the brand on the device) everything else the API pairs (trackers and Aria scales). This is our
// rule from the product names, not a field of the API.
func manufacturer(model string) string {
	if strings.HasPrefix(strings.ToLower(strings.TrimSpace(model)), "pixel") {
		return "Google"
	}
	return "Fitbit"
}

// maxDevicePages bounds the paired-device listing (the page size is at most 100 devices).
const maxDevicePages = 10

// Devices lists the user's paired devices (GET /v4/users/me/pairedDevices, scope
// settings.readonly). ID is the paired device's resource name, which is unique across users and
// stable; Type the deviceType, Kind its neutral kind, Model the product name, Manufacturer by
// the rule of manufacturer, Battery the level in % when Google gives one, else the status in
// lower case ("high"), LastSync lastSyncTime, ECG from ecgModels. Errors are
// *providers.UpstreamError or ctx.Err().
func (c *Client) Devices(ctx context.Context, user string, ts oauth2.TokenSource) ([]fhir.DeviceInfo, error) {
	var out []fhir.DeviceInfo
	token := ""
	for range maxDevicePages {
		q := url.Values{"pageSize": {"100"}}
		if token != "" {
			q.Set("pageToken", token)
		}
		body, err := c.do(ctx, apiRequest{user: user, endpoint: "pairedDevices/list", path: "/v4/users/me/pairedDevices", query: q, ts: ts, cacheable: true})
		if err != nil {
			return nil, err
		}
		var a pairedDevicesAnswer
		if err := decode(body, &a, "pairedDevices"); err != nil {
			return nil, err
		}
		for _, d := range a.PairedDevices {
			info, err := c.deviceInfo(user, d)
			if err != nil {
				return nil, upstream(providers.KindPermanent, 200, err)
			}
			out = append(out, info)
		}
		if a.NextPageToken == "" || a.NextPageToken == token {
			return out, nil
		}
		token = a.NextPageToken
	}
	return nil, upstream(providers.KindPermanent, 200, fmt.Errorf("pairedDevices listing exceeds %d pages", maxDevicePages))
}

func (c *Client) deviceInfo(user string, d pairedDevice) (fhir.DeviceInfo, error) {
	if !strings.HasPrefix(d.Name, "users/") || !strings.Contains(d.Name, "/pairedDevices/") {
		return fhir.DeviceInfo{}, fmt.Errorf("paired device without a resource name")
	}
	// "users/me/…" names the caller: make the id the user's own, so that ids never collide.
	id := d.Name
	if rest, ok := strings.CutPrefix(id, "users/me/"); ok {
		id = "users/" + user + "/" + rest
	}
	info := fhir.DeviceInfo{
		Provider:     Name,
		UserID:       user,
		ID:           id,
		Type:         d.DeviceType,
		Kind:         deviceKinds[d.DeviceType],
		Model:        d.DeviceVersion,
		Manufacturer: manufacturer(d.DeviceVersion),
		ECG:          ecgModels[strings.ToLower(strings.TrimSpace(d.DeviceVersion))],
	}
	switch {
	case d.BatteryLevel != nil && *d.BatteryLevel >= 0 && *d.BatteryLevel <= 100:
		info.Battery = strconv.Itoa(*d.BatteryLevel)
	case d.BatteryStatus != "":
		info.Battery = strings.ToLower(d.BatteryStatus)
	}
	if d.LastSyncTime != "" {
		t, err := time.Parse(time.RFC3339Nano, d.LastSyncTime)
		if err != nil {
			return fhir.DeviceInfo{}, fmt.Errorf("paired device lastSyncTime is not RFC 3339")
		}
		info.LastSync = t.UTC()
	}
	return info, nil
}
