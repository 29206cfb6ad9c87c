package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"text/tabwriter"
	"time"

	"github.com/openhealthexchange/ohx/providers"
	"github.com/openhealthexchange/ohx/store"
	"github.com/openhealthexchange/ohx/store/seal"
)

// openVault opens the configured store and the connection vault over it, as serve does. Call
// the returned store's Close when done.
func openVault(ctx context.Context, cfg Config, stderr io.Writer) (*providers.Vault, store.Store, error) {
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	key, err := secretKey(cfg)
	if err != nil {
		return nil, nil, err
	}
	st, err := openStore(ctx, cfg, log)
	if err != nil {
		return nil, nil, err
	}
	vk := seal.Derive(key, "ohx vendor token vault")
	kid := keyID(vk)
	vault, err := providers.NewVault(st, map[string][]byte{kid: vk}, kid, log)
	if err != nil {
		st.Close()
		return nil, nil, err
	}
	return vault, st, nil
}

// runConnections is `ohx connections [-provider NAME]`: one line per patient connection (never
// its tokens), for example to find the patients still connected through the legacy Fitbit Web
// API, who need to connect their Google account.
func runConnections(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cmd := newAuthCommand("ohx connections", stderr)
	var provider string
	cmd.fs.StringVar(&provider, "provider", "", "list only the connections to this provider (withings, googlehealth, fitbit)")
	if err := cmd.parse(args); err != nil {
		return err
	}
	cfg, err := cmd.config(getenv, stderr)
	if err != nil {
		return err
	}
	vault, st, err := openVault(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	defer st.Close()
	conns, err := vault.List(ctx)
	if err != nil {
		return fmt.Errorf("connections: %w", err)
	}
	w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "PROVIDER\tPATIENT\tSTATUS\tCONNECTED\tLAST SYNC\tCONTINUES\tLAST ERROR")
	for _, c := range conns {
		if provider != "" && c.Provider != provider {
			continue
		}
		continues := "-"
		if p := c.Predecessor; p != nil {
			continues = p.Provider + " " + p.User + " (until " + p.Until.UTC().Format(time.RFC3339) + ")"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", c.Provider, c.PatientID, c.Status, stamp(c.Created), stamp(c.LastSync), continues, dash(c.LastError))
	}
	return w.Flush()
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
