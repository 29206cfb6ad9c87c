package main

import (
	"io"
	"strings"
	"testing"
	"time"
)

// TestUpkeepSettings: the upkeep cadences default to 6 h, 7 days, 24 h and 15 min, are read
// from the environment and the flags of the same names (flags win), map 0 to "off" for the
// pipeline, and bad values are errors naming what the user set.
func TestUpkeepSettings(t *testing.T) {
	parse := func(args []string, env map[string]string) (Config, error) {
		return parseConfig("ohx serve", args, func(k string) string { return env[k] }, io.Discard)
	}
	cfg, err := parse(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ReconcileInterval != 6*time.Hour || cfg.ReconcileDays != 7 || cfg.DeviceSyncInterval != 24*time.Hour || cfg.TokenRefreshAhead != 15*time.Minute {
		t.Errorf("defaults: %v %d %v %v", cfg.ReconcileInterval, cfg.ReconcileDays, cfg.DeviceSyncInterval, cfg.TokenRefreshAhead)
	}
	cfg, err = parse([]string{"-reconcile-days", "3"}, map[string]string{
		"OHX_RECONCILE_INTERVAL": "1h", "OHX_RECONCILE_DAYS": "14", "OHX_DEVICE_SYNC_INTERVAL": "0", "OHX_TOKEN_REFRESH_AHEAD": "30m",
	})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ReconcileInterval != time.Hour || cfg.ReconcileDays != 3 || cfg.DeviceSyncInterval != 0 || cfg.TokenRefreshAhead != 30*time.Minute {
		t.Errorf("set: %v %d %v %v, want 1h, 3 (the flag wins), 0, 30m", cfg.ReconcileInterval, cfg.ReconcileDays, cfg.DeviceSyncInterval, cfg.TokenRefreshAhead)
	}
	if offIfZero(cfg.DeviceSyncInterval) >= 0 || offIfZero(time.Duration(0)) >= 0 || offIfZero(time.Hour) != time.Hour {
		t.Errorf("0 must reach the pipeline as negative (never), other values unchanged")
	}
	for _, c := range []struct {
		env, value, name string
	}{
		{"OHX_RECONCILE_INTERVAL", "30s", "OHX_RECONCILE_INTERVAL"},
		{"OHX_RECONCILE_INTERVAL", "-1h", "OHX_RECONCILE_INTERVAL"},
		{"OHX_RECONCILE_INTERVAL", "six hours", "OHX_RECONCILE_INTERVAL"},
		{"OHX_RECONCILE_DAYS", "-1", "OHX_RECONCILE_DAYS"},
		{"OHX_RECONCILE_DAYS", "a week", "OHX_RECONCILE_DAYS"},
		{"OHX_DEVICE_SYNC_INTERVAL", "10s", "OHX_DEVICE_SYNC_INTERVAL"},
		{"OHX_TOKEN_REFRESH_AHEAD", "5m", "OHX_TOKEN_REFRESH_AHEAD"},
	} {
		if _, err := parse(nil, map[string]string{c.env: c.value}); err == nil || !strings.Contains(err.Error(), c.name) {
			t.Errorf("%s=%q: got %v, want an error naming %s", c.env, c.value, err, c.name)
		}
	}
	if _, err := parse([]string{"-token-refresh-ahead", "1m"}, nil); err == nil || !strings.Contains(err.Error(), "-token-refresh-ahead") {
		t.Errorf("-token-refresh-ahead 1m: got %v, want an error naming the flag", err)
	}
}
