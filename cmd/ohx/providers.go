package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
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
	"github.com/openhealthexchange/ohx/providers/fitbit"
	"github.com/openhealthexchange/ohx/providers/googlehealth"
	"github.com/openhealthexchange/ohx/providers/pipeline"
	"github.com/openhealthexchange/ohx/providers/pipeline/publish"
	"github.com/openhealthexchange/ohx/providers/withings"
	"github.com/openhealthexchange/ohx/store"
	"github.com/openhealthexchange/ohx/store/seal"
)

// setupProviders registers the configured vendors (a vendor without credentials is simply not
// offered), the token vault, the job queue and the sync runner, and enables the connect and
// webhook endpoints. It returns nil when no vendor is configured.
func setupProviders(ctx context.Context, cfg Config, st store.Store, key []byte, log *slog.Logger, reg prometheus.Registerer, ac *api.Config) (*pipeline.Runner, error) {
	u, err := url.Parse(cfg.BaseURL)
	if err != nil {
		return nil, fmt.Errorf("config: OHX_BASE_URL: %w", err)
	}
	origin := u.Scheme + "://" + u.Host
	var ps []providers.Provider
	secrets := map[string]string{}
	hooks := map[string]providers.Webhooks{}
	add := func(p providers.Provider) {
		ps = append(ps, p)
		if h, ok := p.(providers.Webhooks); ok {
			hooks[p.Name()] = h
		}
	}
	redirect := func(set, provider string) string {
		if set != "" {
			return set
		}
		return origin + "/connect/" + provider + "/callback"
	}
	if cfg.WithingsClientID != "" {
		if cfg.WithingsClientSecret == "" {
			return nil, fmt.Errorf("config: OHX_WITHINGS_CLIENT_SECRET is required with OHX_WITHINGS_CLIENT_ID")
		}
		caller, err := providers.NewClient(providers.ClientConfig{
			Provider: withings.Name,
			// Withings allows 120 requests per minute per application (https://developer.withings.com/developer-guide/v3/data-api/keep-user-data-up-to-date/).
			AppRate:  providers.StrictLimit(cfg.WithingsRate, time.Minute, 10),
			AppBurst: 10,
			// Shared through the store: any number of instances together stay within it.
			AppQuota: providers.Quota{Limit: cfg.WithingsRate, Window: time.Minute},
			Budgets:  st,
		}, &http.Client{}, reg, log)
		if err != nil {
			return nil, err
		}
		secrets[withings.Name] = webhookSecret(key, withings.Name)
		w, err := withings.New(withings.Config{ClientID: cfg.WithingsClientID, ClientSecret: cfg.WithingsClientSecret,
			RedirectURL: redirect(cfg.WithingsRedirectURL, withings.Name), APIURL: cfg.WithingsAPIURL, AuthURL: cfg.WithingsAuthURL,
			Kinds: kindList(cfg.WithingsKinds), WebhookSecret: secrets[withings.Name]}, caller, log)
		if err != nil {
			return nil, err
		}
		add(w)
	}
	if cfg.GoogleHealthClientID != "" {
		if cfg.GoogleHealthClientSecret == "" {
			return nil, fmt.Errorf("config: OHX_GOOGLEHEALTH_CLIENT_SECRET is required with OHX_GOOGLEHEALTH_CLIENT_ID")
		}
		if cfg.GoogleHealthWebhookSecret == "" {
			log.Warn("OHX_GOOGLEHEALTH_WEBHOOK_SECRET is not set: Google Health notifications are refused, data arrives only through the periodic reconciliation")
		}
		gcc := googlehealth.ClientConfig()
		gcc.Budgets = st // its per-project and per-user quotas, shared by every instance
		caller, err := providers.NewClient(gcc, &http.Client{}, reg, log)
		if err != nil {
			return nil, err
		}
		g, err := googlehealth.New(googlehealth.Config{ClientID: cfg.GoogleHealthClientID, ClientSecret: cfg.GoogleHealthClientSecret,
			RedirectURL: redirect(cfg.GoogleHealthRedirectURL, googlehealth.Name), APIURL: cfg.GoogleHealthAPIURL,
			AuthURL: cfg.GoogleHealthAuthURL, TokenURL: cfg.GoogleHealthTokenURL, RevokeURL: cfg.GoogleHealthRevokeURL, Kinds: kindList(cfg.GoogleHealthKinds),
			WebhookSecret: cfg.GoogleHealthWebhookSecret}, caller, log)
		if err != nil {
			return nil, fmt.Errorf("config: Google Health: %w", err)
		}
		add(g)
	}
	if cfg.FitbitClientID != "" {
		if cfg.FitbitClientSecret == "" {
			return nil, fmt.Errorf("config: OHX_FITBIT_CLIENT_SECRET is required with OHX_FITBIT_CLIENT_ID")
		}
		fcc := fitbit.ClientConfig(cfg.FitbitRate)
		fcc.Budgets = st // its per-user quota, shared by every instance
		caller, err := providers.NewClient(fcc, &http.Client{}, reg, log)
		if err != nil {
			return nil, err
		}
		f, err := fitbit.New(fitbit.Config{ClientID: cfg.FitbitClientID, ClientSecret: cfg.FitbitClientSecret,
			RedirectURL: redirect(cfg.FitbitRedirectURL, fitbit.Name), APIURL: cfg.FitbitAPIURL, AuthURL: cfg.FitbitAuthURL,
			Kinds: kindList(cfg.FitbitKinds), VerificationCode: cfg.FitbitVerificationCode, SubscriberID: cfg.FitbitSubscriberID}, caller, log)
		if err != nil {
			return nil, fmt.Errorf("config: Fitbit: %w", err)
		}
		add(f)
	}
	if len(ps) == 0 {
		if cfg.PublishURL != "" {
			log.Warn("OHX_PUBLISH_URL is set but no vendor is configured: nothing is synced, so nothing is published")
		}
		return nil, nil
	}
	registry := providers.NewRegistry(ps...)
	vk := seal.Derive(key, "ohx vendor token vault")
	kid := keyID(vk)
	vault, err := providers.NewVault(st, map[string][]byte{kid: vk}, kid, log)
	if err != nil {
		return nil, err
	}
	conns, err := vault.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("list connections: %w", err)
	}
	if err := checkNamespace(ctx, st, cfg.IdentifierNamespace, len(conns) > 0); err != nil {
		return nil, err
	}
	pub, err := setupPublish(cfg, st, log, reg)
	if err != nil {
		return nil, err
	}
	runner := pipeline.NewRunner(pipeline.Config{
		Backfill: time.Duration(cfg.BackfillDays) * 24 * time.Hour,
		CallbackURL: func(provider string) string {
			// Withings signs nothing: its URL carries a secret. Fitbit signs its notifications
			// and Google sends a configured Authorization header; their subscriber endpoints
			// are registered once per application, not per subscription.
			if s := secrets[provider]; s != "" {
				return origin + "/webhooks/" + provider + "/" + s
			}
			return origin + "/webhooks/" + provider
		},
		Lease:       5 * time.Minute,
		MaxAttempts: 8,
		Metrics:     reg,
		Namespace:   cfg.IdentifierNamespace,
		Now:         cfg.pipelineClock,

		Reconcile:         offIfZero(cfg.ReconcileInterval),
		ReconcileWindow:   offIfZero(time.Duration(cfg.ReconcileDays) * 24 * time.Hour),
		DeviceSync:        offIfZero(cfg.DeviceSyncInterval),
		TokenRefreshAhead: offIfZero(cfg.TokenRefreshAhead),
		Upserted:          publishHook(pub),
	}, registry, vault, st, log)
	if pub != nil {
		runner.Handle(publish.JobType, pub.Handle)
	}
	var redirects []string
	for r := range strings.SplitSeq(cfg.ConnectRedirects, ",") {
		if r = strings.TrimSpace(r); r != "" {
			redirects = append(redirects, r)
		}
	}
	ac.Connect = &api.ConnectConfig{Providers: registry, Vault: vault, Sync: runner, Redirects: redirects}
	ac.Webhooks = &api.WebhookConfig{Sink: runner.Notifier(), Handlers: hooks}
	ac.Admin = &api.AdminConfig{Connections: vault, Sync: runner, Now: cfg.pipelineClock}
	if cfg.ReadThroughBudget > 0 {
		ac.ReadThrough = runner.ReadThrough(pipeline.ReadThroughConfig{Budget: cfg.ReadThroughBudget, Metrics: reg})
	}
	log.Info("vendors offered", "providers", registry.Names())
	return runner, nil
}

// namespaceKind and namespaceID name the store record that holds the identifier namespace of
// the store's synced resources.
const namespaceKind, namespaceID = "ohx-settings", "identifier-namespace"

// legacyNamespace is the namespace of stores synced before OHX_IDENTIFIER_NAMESPACE existed.
const legacyNamespace = "https://ohx.example"

// checkNamespace records ns as the store's identifier namespace when the store has none yet, and
// refuses to sync under another one: resource ids derive from the identifiers, so a changed
// OHX_IDENTIFIER_NAMESPACE would write every synced resource again under a new id next to the
// old one. The record is created atomically, so instances starting together agree.
func checkNamespace(ctx context.Context, st store.Records, ns fhir.Namespace, connected bool) error {
	if _, err := st.GetRecord(ctx, namespaceKind, namespaceID); errors.Is(err, store.ErrNotFound) && connected && ns == fhir.DefaultNamespace {
		// Connections but no namespace: the store was synced before the setting existed, under
		// the old fixed namespace. Recording the new default would sync every resource again
		// under new ids beside the old ones.
		return fmt.Errorf("config: this store was synced before OHX_IDENTIFIER_NAMESPACE existed, under %q: "+
			"set OHX_IDENTIFIER_NAMESPACE=%s to keep its identifiers (or to another value to re-identify every synced resource)",
			legacyNamespace, legacyNamespace)
	}
	switch err := st.CreateRecord(ctx, namespaceKind, namespaceID, []byte(ns), time.Time{}); {
	case err == nil:
		return nil
	case !errors.Is(err, store.ErrDuplicate):
		return fmt.Errorf("record the identifier namespace: %w", err)
	}
	got, err := st.GetRecord(ctx, namespaceKind, namespaceID)
	if err != nil {
		return fmt.Errorf("read the identifier namespace: %w", err)
	}
	if fhir.Namespace(got) != ns {
		return fmt.Errorf("config: OHX_IDENTIFIER_NAMESPACE is %q but this store's resources were synced under %q: "+
			"changing it would re-identify every synced resource; set it back to %q", ns, got, got)
	}
	return nil
}

// kindList parses a comma-separated list of data kinds ("" → nil: the adapter's default).
func kindList(s string) []fhir.SampleKind {
	var kinds []fhir.SampleKind
	for _, k := range commaList(s) {
		kinds = append(kinds, fhir.SampleKind(k))
	}
	return kinds
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

// offIfZero maps a setting's 0 (off) to pipeline.Config's negative (never; its zero is the
// default).
func offIfZero(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

// runPipeline runs the sync runner until ctx ends.
func runPipeline(ctx context.Context, r *pipeline.Runner) {
	if r != nil {
		r.Run(ctx)
	}
}
