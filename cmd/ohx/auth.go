package main

import (
	"context"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/openhealthexchange/ohx/api"
	"github.com/openhealthexchange/ohx/api/smart"
	"github.com/openhealthexchange/ohx/api/smart/authserver"
	"github.com/openhealthexchange/ohx/api/viewer"
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
		}
		// The built-in app (api/viewer) signs in as a public client of the built-in server, on
		// either store; it is served only then (serve mounts it when this URL exists).
		if u, ok := viewerURL(cfg.BaseURL); ok {
			if err := ensureViewerClient(ctx, as, u, log); err != nil {
				return err
			}
			app, err := viewer.New("/app/")
			if err != nil {
				return err
			}
			ac.App = app
		} else {
			log.Warn("the built-in app is not served: OHX_BASE_URL does not end in /fhir, so /app/ has no address next to it", "base_url", cfg.BaseURL)
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

// viewerURL is the public address of the built-in app, /app/ next to the FHIR base
// (https://fhir.example.org/fhir → https://fhir.example.org/app/), and whether there is one: the
// app finds its FHIR server at ../fhir from where it is served.
func viewerURL(base string) (string, bool) {
	u, err := url.Parse(base)
	if err != nil || !strings.HasSuffix(u.Path, "/fhir") {
		return "", false
	}
	u.Path = strings.TrimSuffix(u.Path, "/fhir") + "/app/"
	u.RawQuery, u.Fragment = "", ""
	return u.String(), true
}

// r4Base is the FHIR R4 base the API serves next to cfg.BaseURL: tokens for either are valid on
// both (authserver.Config.R4BaseURL).
func r4Base(cfg Config) string { return cfg.BaseURL + "/r4" }
