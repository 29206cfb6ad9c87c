package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/openhealthexchange/ohx/api"
	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/providers"
	"github.com/openhealthexchange/ohx/providers/pipeline"
	"github.com/openhealthexchange/ohx/providers/withings"
	"github.com/openhealthexchange/ohx/store"
	"github.com/openhealthexchange/ohx/store/seal"
)

// setupProviders registers the configured vendors (a vendor without credentials is simply not
// offered), the token vault, the job queue and the sync runner, and enables the connect and
// webhook endpoints. It returns nil when no vendor is configured.
func setupProviders(cfg Config, st store.Store, key []byte, log *slog.Logger, reg prometheus.Registerer, ac *api.Config) (*pipeline.Runner, error) {
	u, err := url.Parse(cfg.BaseURL)
	if err != nil {
		return nil, fmt.Errorf("config: OHX_BASE_URL: %w", err)
	}
	origin := u.Scheme + "://" + u.Host
	var ps []providers.Provider
	secrets := map[string]string{}
	hooks := map[string]providers.Webhooks{}
	if cfg.WithingsClientID != "" {
		if cfg.WithingsClientSecret == "" {
			return nil, fmt.Errorf("config: OHX_WITHINGS_CLIENT_SECRET is required with OHX_WITHINGS_CLIENT_ID")
		}
		caller, err := providers.NewClient(providers.ClientConfig{
			Provider: withings.Name,
			// Withings allows 120 requests per minute per application (https://developer.withings.com/developer-guide/v3/data-api/keep-user-data-up-to-date/).
			AppRate:  providers.StrictLimit(cfg.WithingsRate, time.Minute, 10),
			AppBurst: 10,
		}, &http.Client{}, reg, log)
		if err != nil {
			return nil, err
		}
		redirect := cfg.WithingsRedirectURL
		if redirect == "" {
			redirect = origin + "/connect/withings/callback"
		}
		var kinds []fhir.SampleKind
		for k := range strings.SplitSeq(cfg.WithingsKinds, ",") {
			if k = strings.TrimSpace(k); k != "" {
				kinds = append(kinds, fhir.SampleKind(k))
			}
		}
		secrets[withings.Name] = webhookSecret(key, withings.Name)
		w, err := withings.New(withings.Config{ClientID: cfg.WithingsClientID, ClientSecret: cfg.WithingsClientSecret,
			RedirectURL: redirect, APIURL: cfg.WithingsAPIURL, AuthURL: cfg.WithingsAuthURL, Kinds: kinds,
			WebhookSecret: secrets[withings.Name]}, caller, log)
		if err != nil {
			return nil, err
		}
		ps = append(ps, w)
		hooks[withings.Name] = w
	}
	if len(ps) == 0 {
		return nil, nil
	}
	registry := providers.NewRegistry(ps...)
	vk := seal.Derive(key, "ohx vendor token vault")
	kid := keyID(vk)
	vault, err := providers.NewVault(st, map[string][]byte{kid: vk}, kid, log)
	if err != nil {
		return nil, err
	}
	runner := pipeline.NewRunner(pipeline.Config{
		Backfill: time.Duration(cfg.BackfillDays) * 24 * time.Hour,
		CallbackURL: func(provider string) string {
			return origin + "/webhooks/" + provider + "/" + secrets[provider]
		},
		Lease:       5 * time.Minute,
		MaxAttempts: 8,
		Metrics:     reg,
	}, registry, vault, st, log)
	var redirects []string
	for r := range strings.SplitSeq(cfg.ConnectRedirects, ",") {
		if r = strings.TrimSpace(r); r != "" {
			redirects = append(redirects, r)
		}
	}
	ac.Connect = &api.ConnectConfig{Providers: registry, Vault: vault, Sync: runner, Redirects: redirects}
	ac.Webhooks = &api.WebhookConfig{Sink: runner.Notifier(), Handlers: hooks}
	log.Info("vendors offered", "providers", registry.Names())
	return runner, nil
}

// webhookSecret is the unguessable path segment of a provider's callback URL (Withings signs
// nothing, so the URL itself is the credential).
func webhookSecret(key []byte, provider string) string {
	return hex.EncodeToString(seal.Derive(key, "ohx webhook "+provider)[:16])
}

// keyID names a key without revealing it, so that ciphertexts record which key sealed them.
func keyID(k []byte) string {
	sum := sha256.Sum256(k)
	return hex.EncodeToString(sum[:4])
}

// runPipeline runs the sync runner until ctx ends.
func runPipeline(ctx context.Context, r *pipeline.Runner) {
	if r != nil {
		r.Run(ctx)
	}
}
