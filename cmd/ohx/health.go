package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// runHealth implements `ohx health`: it asks a running server's /healthz and succeeds on 200.
// Container images without a shell or curl (distroless, scratch) run it as their HEALTHCHECK.
func runHealth(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("ohx health", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := getenv("OHX_ADDR")
	if addr == "" {
		addr = ":8080"
	}
	var u string
	var timeout time.Duration
	fs.StringVar(&u, "url", "", "the URL to check (default http://127.0.0.1:PORT/healthz, PORT from OHX_ADDR)")
	fs.DurationVar(&timeout, "timeout", 3*time.Second, "how long to wait for the answer")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q (see ohx health -h)", fs.Args())
	}
	if u == "" {
		_, port, err := net.SplitHostPort(addr)
		if err != nil {
			return fmt.Errorf("OHX_ADDR %q: %w", addr, err)
		}
		u = "http://" + net.JoinHostPort("127.0.0.1", port) + "/healthz"
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("-url: %w", err)
	}
	// A health check follows no redirect: a 3xx is not healthy.
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("health: %w", err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("health: %s answered %s", u, res.Status)
	}
	fmt.Fprintln(stdout, "ok")
	return nil
}
