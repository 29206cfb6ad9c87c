package withingssim

import "net/http"

// batteryLevel is the Getdevice battery category
// (https://developer.withings.com/api-reference/#tag/user/operation/userv2-getdevice): "high"
// above 75 %, "medium" above 30 %, "low" otherwise.
func batteryLevel(pct int) string {
	switch {
	case pct > 75:
		return "high"
	case pct > 30:
		return "medium"
	}
	return "low"
}

type deviceJSON struct {
	Type             string `json:"type"`
	Model            string `json:"model"`
	ModelID          int    `json:"model_id"`
	Battery          string `json:"battery"`
	DeviceID         string `json:"deviceid"`
	HashDeviceID     string `json:"hash_deviceid"`
	Timezone         string `json:"timezone"`
	LastSessionDate  int64  `json:"last_session_date"`
	FirstSessionDate int64  `json:"first_session_date"`
}

// getdevice is /v2/user action=getdevice: the Body+ scale, the BPM Connect cuff and the
// ScanWatch, with their battery at the simulator's clock and the last time each synced (its
// latest measurement, live ones included).
func (s *Simulator) getdevice(_ *http.Request, a *account) (any, *apiError) {
	w := s.cfg.World
	now := s.now()
	first := w.Start(a.p).Unix()
	last := map[string]int64{devScale: first, devCuff: first, devWatch: first}
	for _, g := range a.groups {
		if g.Device != "" {
			last[g.Device] = max(last[g.Device], g.Modified)
		}
	}
	for _, d := range a.days {
		last[devWatch] = max(last[devWatch], d.Modified)
	}
	for _, n := range a.nights {
		last[devWatch] = max(last[devWatch], n.Modified)
	}
	out := []deviceJSON{}
	for _, d := range deviceOrder {
		m := deviceModels[d]
		id := a.devices[d]
		out = append(out, deviceJSON{Type: m.Type, Model: m.Model, ModelID: m.ModelID,
			Battery: batteryLevel(w.Battery(a.p, d, now)), DeviceID: id, HashDeviceID: id, Timezone: a.zone,
			LastSessionDate: last[d], FirstSessionDate: first})
	}
	return struct {
		Devices []deviceJSON `json:"devices"`
	}{out}, nil
}
