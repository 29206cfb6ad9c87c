package withings

import (
	"context"
	"net/url"
	"time"

	"golang.org/x/oauth2"

	"github.com/openhealthexchange/ohx/fhir"
)

// getdeviceBody is the body of /v2/user action=getdevice (providers.md §1.8).
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

// ecgModels are the model_ids of devices that record ECGs (providers.md §1.8: BPM Core, Move
// ECG, ScanWatch, ScanWatch 2; ScanWatch Light has no ECG).
var ecgModels = map[string]bool{"44": true, "91": true, "92": true, "93": true, "94": true}

// Devices lists the user's devices (POST /v2/user action=getdevice). Battery is the vendor's
// category (high > 75 %, medium > 30 %, low), never a made-up percentage; LastSync is
// last_session_date in the device's time zone. deviceid is decoded leniently (string or number),
// falling back to hash_deviceid. Errors are *providers.UpstreamError or ctx.Err().
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
			Model:        d.Model,
			ModelID:      string(d.ModelID),
			Manufacturer: "Withings",
			Firmware:     string(d.FW),
			Battery:      d.Battery,
			LastSync:     last,
			Timezone:     d.Timezone,
			ECG:          ecgModels[string(d.ModelID)],
		})
	}
	return out, nil
}
