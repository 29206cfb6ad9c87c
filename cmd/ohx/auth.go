package main

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/openhealthexchange/ohx/api"
	"github.com/openhealthexchange/ohx/api/smart"
	"github.com/openhealthexchange/ohx/api/smart/authserver"
	"github.com/openhealthexchange/ohx/capability"
	"github.com/openhealthexchange/ohx/store"
)

// setupAuth configures token enforcement and discovery: the built-in authorization server by
// default, an external issuer when OHX_AUTH_ISSUER is set, nothing with OHX_AUTH=off.
func setupAuth(ctx context.Context, cfg Config, st store.Store, key []byte, log *slog.Logger, ac *api.Config) error {
	if cfg.Auth == "off" {
		return nil
	}
	var sm capability.SMART
	if cfg.AuthIssuer != "" {
		hc := &http.Client{Timeout: 15 * time.Second}
		md, err := smart.Discover(ctx, cfg.AuthIssuer, hc)
		if err != nil {
			return err
		}
		kf, err := smart.RemoteKeyfunc(ctx, md.JWKSURI, hc)
		if err != nil {
			return err
		}
		v, err := smart.NewVerifier(smart.VerifierConfig{Issuer: cfg.AuthIssuer, Audience: cfg.BaseURL, Audiences: []string{r4Base(cfg)},
			Keyfunc: kf, PatientClaim: cfg.AuthPatientClaim})
		if err != nil {
			return err
		}
		ac.Auth = v
		sm = capability.SMART{AuthorizeURL: md.AuthorizationEndpoint, TokenURL: md.TokenEndpoint, IntrospectURL: md.IntrospectionEndpoint,
			RevokeURL: md.RevocationEndpoint, JWKSURL: md.JWKSURI, Capabilities: md.Capabilities, GrantTypes: md.GrantTypes,
			AuthMethods: md.AuthMethods, AuthSigningAlgs: md.AuthSigningAlgs, Scopes: md.ScopesSupported}
		if len(sm.GrantTypes) == 0 {
			sm.GrantTypes = []string{"authorization_code"}
		}
		if sm.Capabilities == nil {
			sm.Capabilities = []string{}
		}
		log.Info("access tokens from an external issuer", "issuer", cfg.AuthIssuer)
	} else {
		asc, err := authConfig(cfg, key) // shared with the CLI: both must derive the same keys
		if err != nil {
			return err
		}
		as, err := authserver.NewServer(ctx, asc, st, log)
		if err != nil {
			return err
		}
		if cfg.MongoURI == "" {
			// Embedded mode: a demo backend client so that `ohx token` works out of the box.
			if err := ensureDemoClient(ctx, as, cfg.DataDir); err != nil {
				return err
			}
			// and the built-in app at /app/ (api/viewer) can sign in.
			if err := ensureViewerClient(ctx, as, strings.TrimSuffix(cfg.BaseURL, "/fhir")+"/app/"); err != nil {
				return err
			}
		}
		ep := as.Endpoints()
		v, err := smart.NewVerifier(smart.VerifierConfig{Issuer: ep.Issuer, Audience: cfg.BaseURL, Audiences: []string{r4Base(cfg)},
			Keyfunc: as.Keyfunc(), RequireTyp: true, Revoked: as.Revoked, RevokedCacheTTL: cfg.RevocationCache})
		if err != nil {
			return err
		}
		ac.Auth = v
		ac.Practitioners = as // fhirUser Practitioner/… of the practitioner users is readable
		ac.AuthRoutes = as.Register
		ac.CORSPaths = as.CORSPaths()
		sm = capability.BuiltInSMART(ep.Issuer, ep.Authorize, ep.Token, ep.Introspect, ep.Revoke, ep.JWKS)
	}
	doc, err := capability.SMARTConfiguration(sm)
	if err != nil {
		return err
	}
	ac.SMARTConfiguration = doc
	ac.Security = capability.Security(sm)
	return nil
}

// r4Base is the FHIR R4 base the API serves next to cfg.BaseURL: tokens for either are valid on
// both (authserver.Config.R4BaseURL).
func r4Base(cfg Config) string { return cfg.BaseURL + "/r4" }
