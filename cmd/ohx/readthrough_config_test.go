package main

import (
	"io"
	"strings"
	"testing"
	"time"
)

// TestReadThroughBudgetSetting: OHX_READTHROUGH_BUDGET defaults to 3 s, is read from the
// environment or -readthrough-budget (the flag wins), 0 turns read-through off, and a negative
// budget or one as long as the request timeout is an error naming what the user set.
func TestReadThroughBudgetSetting(t *testing.T) {
	parse := func(args []string, env map[string]string) (Config, error) {
		return parseConfig("ohx serve", args, func(k string) string { return env[k] }, io.Discard)
	}
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want time.Duration
	}{
		{"default", nil, nil, 3 * time.Second},
		{"environment", nil, map[string]string{"OHX_READTHROUGH_BUDGET": "1500ms"}, 1500 * time.Millisecond},
		{"flag wins", []string{"-readthrough-budget", "5s"}, map[string]string{"OHX_READTHROUGH_BUDGET": "1s"}, 5 * time.Second},
		{"off", nil, map[string]string{"OHX_READTHROUGH_BUDGET": "0"}, 0},
	} {
		cfg, err := parse(tc.args, tc.env)
		if err != nil || cfg.ReadThroughBudget != tc.want {
			t.Errorf("%s: got %v, %v; want %v", tc.name, cfg.ReadThroughBudget, err, tc.want)
		}
	}
	for _, tc := range []struct {
		name, named string
		args        []string
		env         map[string]string
	}{
		{"negative", "OHX_READTHROUGH_BUDGET", nil, map[string]string{"OHX_READTHROUGH_BUDGET": "-1s"}},
		{"as long as the request", "OHX_READTHROUGH_BUDGET", nil, map[string]string{"OHX_READTHROUGH_BUDGET": "30s"}},
		{"longer than the request, flag", "-readthrough-budget", []string{"-readthrough-budget", "10s"}, map[string]string{"OHX_REQUEST_TIMEOUT": "5s"}},
		{"not a duration", "OHX_READTHROUGH_BUDGET", nil, map[string]string{"OHX_READTHROUGH_BUDGET": "soon"}},
	} {
		if _, err := parse(tc.args, tc.env); err == nil || !strings.Contains(err.Error(), tc.named) {
			t.Errorf("%s: got %v, want an error naming %s", tc.name, err, tc.named)
		}
	}
}
