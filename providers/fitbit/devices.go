package fitbit

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/providers"
)

// deviceAnswer is one entry of GET /1/user/-/devices.json
// (https://dev.fitbit.com/build/reference/web-api/devices/get-devices/). id and batteryLevel are
// decoded leniently (string or number).
type deviceAnswer struct {
	Battery       string     `json:"battery"`
	BatteryLevel  flexString `json:"batteryLevel"`
	DeviceVersion string     `json:"deviceVersion"`
	ID            flexString `json:"id"`
	LastSyncTime  string     `json:"lastSyncTime"`
	Type          string     `json:"type"`
}

// manufacturer is Device.manufacturer of every device this adapter lists.
const manufacturer = "Fitbit"

// ecgModels are the Fitbit models with the ECG app (deviceVersion, lower case): Sense (the first,
// 2020) and Sense 2, Charge 5 and Charge 6
// (https://www.fitbit.com/global/us/technology/ecg, https://store.google.com/product/fitbit_charge_6;
// ⚠ the first page was not reachable from here, the list is corroborated by third-party reviews).
// Versa 4 and Inspire have no ECG.
var ecgModels = map[string]bool{"sense": true, "sense 2": true, "charge 5": true, "charge 6": true}

// deviceKinds maps devices.json type to the provider-neutral kind.
var deviceKinds = map[string]fhir.DeviceKind{"TRACKER": fhir.DeviceKindActivityTracker, "SCALE": fhir.DeviceKindScale}

// Devices lists the user's devices, read now (and cached for Fetch's device attribution). Battery is
// batteryLevel as a percentage when Fitbit sends it, else the battery word as delivered ("High");
// LastSync is lastSyncTime in the user's zone from the profile. Errors are *providers.UpstreamError.
func (c *Client) Devices(ctx context.Context, user string, ts oauth2.TokenSource) ([]fhir.DeviceInfo, error) {
	ds, err := c.readDevices(ctx, user, ts, true)
	if err != nil {
		return nil, err
	}
	return ds.infos, nil
}

// deviceSet is a user's devices, as cached per connection.
type deviceSet struct {
	infos []fhir.DeviceInfo
}

// readDevices returns the user's devices, from the cache unless fresh.
func (c *Client) readDevices(ctx context.Context, user string, ts oauth2.TokenSource, fresh bool) (*deviceSet, error) {
	if !fresh {
		if v, ok := c.devices.Get(user); ok {
			return v.(*deviceSet), nil
		}
	}
	loc, err := c.zone(ctx, user, ts)
	if err != nil {
		return nil, err
	}
	a, err := c.do(ctx, request{user: user, endpoint: "devices", path: "/1/user/-/devices.json", ts: ts, cacheable: !fresh})
	if err != nil {
		return nil, err
	}
	var raw []deviceAnswer
	if err := decode(a.body, &raw, "devices"); err != nil {
		return nil, err
	}
	ds := &deviceSet{infos: make([]fhir.DeviceInfo, 0, len(raw))}
	for _, d := range raw {
		if d.ID == "" {
			return nil, upstream(providers.KindPermanent, http.StatusOK, fmt.Errorf("device without id"))
		}
		info := fhir.DeviceInfo{
			Provider: Name, UserID: user, ID: string(d.ID), Type: d.Type, Kind: deviceKinds[strings.ToUpper(d.Type)],
			Model: d.DeviceVersion, Manufacturer: manufacturer, Timezone: loc.String(),
			ECG: ecgModels[strings.ToLower(strings.TrimSpace(d.DeviceVersion))],
		}
		switch {
		case d.BatteryLevel != "":
			info.Battery = string(d.BatteryLevel)
		default:
			info.Battery = strings.TrimSpace(d.Battery)
		}
		if d.LastSyncTime != "" {
			t, err := localTime(d.LastSyncTime, loc)
			if err != nil {
				return nil, upstream(providers.KindPermanent, http.StatusOK, fmt.Errorf("device lastSyncTime: %w", err))
			}
			info.LastSync = t
		}
		ds.infos = append(ds.infos, info)
	}
	c.devices.SetDefault(user, ds)
	return ds, nil
}

// only returns the id of the user's single device of kind k, "" when there is none or more than one
// (Fitbit data carries no device id: attribution is only safe when it cannot be wrong).
func (ds *deviceSet) only(k fhir.DeviceKind) string {
	id := ""
	for _, d := range ds.infos {
		if d.Kind != k {
			continue
		}
		if id != "" {
			return ""
		}
		id = d.ID
	}
	return id
}

// tracker is the device of wrist-worn data (activity, heart rate, sleep, HRV, SpO2, breathing rate):
// the single tracker, else none.
func (ds *deviceSet) tracker() string { return ds.only(fhir.DeviceKindActivityTracker) }

// named is the tracker that recorded an ECG: the single device whose model is deviceName, else the
// single tracker.
func (ds *deviceSet) named(deviceName string) string {
	id := ""
	n := 0
	for _, d := range ds.infos {
		if deviceName != "" && strings.EqualFold(d.Model, deviceName) {
			id, n = d.ID, n+1
		}
	}
	if n == 1 {
		return id
	}
	return ds.tracker()
}

// scale is the device of weight logs with an Aria source: the single scale, else none.
func (ds *deviceSet) scale() string { return ds.only(fhir.DeviceKindScale) }

// lastTrackerSync is the latest lastSyncTime of the user's trackers, zero when none has synced.
func (ds *deviceSet) lastTrackerSync() time.Time {
	var last time.Time
	for _, d := range ds.infos {
		if d.Kind == fhir.DeviceKindActivityTracker && d.LastSync.After(last) {
			last = d.LastSync
		}
	}
	return last
}

// flexString decodes a JSON string or number as a string; null is "".
type flexString string

func (f *flexString) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case string(b) == "null":
		*f = ""
	case len(b) > 0 && b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*f = flexString(strings.TrimSpace(s))
	default:
		var n json.Number
		if err := json.Unmarshal(b, &n); err != nil {
			return fmt.Errorf("neither string nor number: %s", b)
		}
		*f = flexString(n.String())
	}
	return nil
}
