package withings

import (
	"context"
	"net/url"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/openhealthexchange/ohx/fhir"
)

// getdeviceBody is the body of /v2/user action=getdevice (User v2 - Getdevice,
// https://developer.withings.com/api-reference/#tag/user/operation/userv2-getdevice).
type getdeviceBody struct {
	Devices []struct {
		Type            string     `json:"type"`
		Model           string     `json:"model"`
		ModelID         flexString `json:"model_id"`
		Battery         string     `json:"battery"`
		DeviceID        flexString `json:"deviceid"`
		HashDeviceID    flexString `json:"hash_deviceid"`
		Timezone        string     `json:"timezone"`
		LastSessionDate flexInt    `json:"last_session_date"`
		FW              flexString `json:"fw"` // advanced partners only
	} `json:"devices"`
}

// manufacturer is Device.manufacturer of every device this adapter lists.
const manufacturer = "Withings"

// ecgModelIDs are the model_ids of devices that record ECGs (Getdevice: 44 BPM Core, 91/92 Move
// ECG, 93 ScanWatch, 94 ScanWatch 2; 95 ScanWatch Light has no ECG).
var ecgModelIDs = map[string]bool{"44": true, "91": true, "92": true, "93": true, "94": true}

// ecgModelNames are the same devices by model name (lower case), plus the ScanWatch Horizon, for
// responses whose model_id is missing or new.
var ecgModelNames = map[string]bool{"bpm core": true, "move ecg": true, "scanwatch": true, "scanwatch 2": true, "scanwatch horizon": true}

// deviceKinds maps the Getdevice type (lower case) to the provider-neutral device kind; other
// types ("Gateway", "Babyphone", …) have none.
var deviceKinds = map[string]fhir.DeviceKind{
	"scale":                       fhir.DeviceKindScale,
	"blood pressure monitor":      fhir.DeviceKindBloodPressureMonitor,
	"pulse oximeter":              fhir.DeviceKindPulseOximeter,
	"activity tracker":            fhir.DeviceKindActivityTracker,
	"tracker":                     fhir.DeviceKindActivityTracker,
	"sleep monitor":               fhir.DeviceKindSleepMonitor,
	"smart connected thermometer": fhir.DeviceKindThermometer,
}

// recordsECG reports whether a Getdevice entry is a model that records ECGs.
func recordsECG(modelID, model string) bool {
	return ecgModelIDs[modelID] || ecgModelNames[strings.ToLower(strings.TrimSpace(model))]
}

// Devices lists the user's devices (POST /v2/user action=getdevice). Battery is the vendor's
// category (high > 75 %, medium > 30 %, low), never a made-up percentage; LastSync is
// last_session_date in the device's time zone. deviceid is decoded leniently (string or number),
// falling back to hash_deviceid. Each device carries the Withings rules the FHIR mapping does not
// know: its manufacturer, its neutral kind and whether its model records ECGs. Errors are *providers.UpstreamError or ctx.Err().
func (c *Client) Devices(ctx context.Context, user string, ts oauth2.TokenSource) ([]fhir.DeviceInfo, error) {
	body, err := c.do(ctx, request{
		user:      user,
		endpoint:  "user/getdevice",
		path:      "/v2/user",
		form:      url.Values{"action": {"getdevice"}},
		ts:        ts,
		cacheable: true,
	})
	if err != nil {
		return nil, err
	}
	var b getdeviceBody
	if err := c.decodeBody(body, &b, "getdevice"); err != nil {
		return nil, err
	}
	out := make([]fhir.DeviceInfo, 0, len(b.Devices))
	for _, d := range b.Devices {
		id := string(d.DeviceID)
		if id == "" {
			id = string(d.HashDeviceID)
		}
		if id == "" {
			continue // nothing to identify it by
		}
		var last time.Time
		if d.LastSessionDate.Int() > 0 {
			last = c.instant(d.LastSessionDate.Int(), d.Timezone)
		}
		out = append(out, fhir.DeviceInfo{
			Provider:     Name,
			UserID:       user,
			ID:           id,
			Type:         d.Type,
			Kind:         deviceKinds[strings.ToLower(strings.TrimSpace(d.Type))],
			Model:        d.Model,
			ModelID:      string(d.ModelID),
			Manufacturer: manufacturer,
			Firmware:     string(d.FW),
			Battery:      d.Battery,
			LastSync:     last,
			Timezone:     d.Timezone,
			ECG:          recordsECG(string(d.ModelID), d.Model),
		})
	}
	return out, nil
}
