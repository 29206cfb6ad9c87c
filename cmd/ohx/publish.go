package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/openhealthexchange/ohx/providers/pipeline"
	"github.com/openhealthexchange/ohx/providers/pipeline/publish"
	"github.com/openhealthexchange/ohx/store"
)

// publishFlags declares the settings of publishing to an EHR (parseConfig's str and secret).
func publishFlags(cfg *Config, str, secret func(p *string, flagName, env, usage string)) {
	str(&cfg.PublishURL, "publish-url", "OHX_PUBLISH_URL", "FHIR base URL of an EHR that receives every synced resource as transaction Bundles (default: off)")
	str(&cfg.PublishFHIRVersion, "publish-fhir-version", "OHX_PUBLISH_FHIR_VERSION", "FHIR version of the EHR: R4 (default) or R5")
	str(&cfg.PublishPatientSystem, "publish-patient-system", "OHX_PUBLISH_PATIENT_SYSTEM", "identifier system (an MRN system, say) by which the EHR knows its patients (default: each Patient's first identifier)")
	str(&cfg.PublishTokenURL, "publish-token-url", "OHX_PUBLISH_TOKEN_URL", "token endpoint of the EHR's authorization server (client credentials grant; default: the token_endpoint of OHX_PUBLISH_URL/.well-known/smart-configuration)")
	str(&cfg.PublishClientID, "publish-client-id", "OHX_PUBLISH_CLIENT_ID", "client id ohx is registered under with the EHR")
	secret(&cfg.PublishClientSecret, "publish-client-secret", "OHX_PUBLISH_CLIENT_SECRET", "client secret (client_secret_basic); or use -publish-key-file")
	str(&cfg.PublishKeyFile, "publish-key-file", "OHX_PUBLISH_KEY_FILE", "PEM private key (RSA of at least 2048 bits: RS384, or EC P-384: ES384) signing SMART Backend Services client assertions")
	str(&cfg.PublishKeyID, "publish-key-id", "OHX_PUBLISH_KEY_ID", "kid of the client assertions (default: the key's RFC 7638 JWK thumbprint)")
	str(&cfg.PublishScope, "publish-scope", "OHX_PUBLISH_SCOPE", "space-separated scopes requested from the EHR (default: SMART v2 system scopes for the published types)")
}

// checkPublish validates the publishing settings; errors name the setting as the user gave it.
func checkPublish(cfg *Config, setting func(env string) string) error {
	if cfg.PublishURL == "" {
		for env, v := range map[string]string{"OHX_PUBLISH_FHIR_VERSION": cfg.PublishFHIRVersion, "OHX_PUBLISH_PATIENT_SYSTEM": cfg.PublishPatientSystem,
			"OHX_PUBLISH_TOKEN_URL": cfg.PublishTokenURL, "OHX_PUBLISH_CLIENT_ID": cfg.PublishClientID, "OHX_PUBLISH_CLIENT_SECRET": cfg.PublishClientSecret,
			"OHX_PUBLISH_KEY_FILE": cfg.PublishKeyFile, "OHX_PUBLISH_KEY_ID": cfg.PublishKeyID, "OHX_PUBLISH_SCOPE": cfg.PublishScope} {
			if v != "" {
				return fmt.Errorf("config: %s is set but %s is not: publishing is off", setting(env), setting("OHX_PUBLISH_URL"))
			}
		}
		return nil
	}
	if _, err := publish.ParseURL(cfg.PublishURL); err != nil {
		return fmt.Errorf("config: %s: %w", setting("OHX_PUBLISH_URL"), err)
	}
	switch v := strings.ToUpper(cfg.PublishFHIRVersion); v {
	case "":
		cfg.PublishFHIRVersion = string(publish.R4)
	case "R4", "R5":
		cfg.PublishFHIRVersion = v
	default:
		return fmt.Errorf("config: %s is %q: want R4 or R5", setting("OHX_PUBLISH_FHIR_VERSION"), cfg.PublishFHIRVersion)
	}
	if cfg.PublishClientID == "" {
		for _, env := range []string{"OHX_PUBLISH_TOKEN_URL", "OHX_PUBLISH_CLIENT_SECRET", "OHX_PUBLISH_KEY_FILE", "OHX_PUBLISH_KEY_ID", "OHX_PUBLISH_SCOPE"} {
			if publishSetting(cfg, env) != "" {
				return fmt.Errorf("config: %s needs %s", setting(env), setting("OHX_PUBLISH_CLIENT_ID"))
			}
		}
		return nil
	}
	if (cfg.PublishClientSecret == "") == (cfg.PublishKeyFile == "") {
		return fmt.Errorf("config: %s needs exactly one of %s and %s", setting("OHX_PUBLISH_CLIENT_ID"), setting("OHX_PUBLISH_CLIENT_SECRET"), setting("OHX_PUBLISH_KEY_FILE"))
	}
	if cfg.PublishKeyID != "" && cfg.PublishKeyFile == "" {
		return fmt.Errorf("config: %s needs %s", setting("OHX_PUBLISH_KEY_ID"), setting("OHX_PUBLISH_KEY_FILE"))
	}
	return nil
}

func publishSetting(cfg *Config, env string) string {
	switch env {
	case "OHX_PUBLISH_TOKEN_URL":
		return cfg.PublishTokenURL
	case "OHX_PUBLISH_CLIENT_SECRET":
		return cfg.PublishClientSecret
	case "OHX_PUBLISH_KEY_FILE":
		return cfg.PublishKeyFile
	case "OHX_PUBLISH_KEY_ID":
		return cfg.PublishKeyID
	case "OHX_PUBLISH_SCOPE":
		return cfg.PublishScope
	}
	return ""
}

// defaultPublishScopes are the SMART v2 system scopes publishing uses: conditional updates
// (create, update and the search that finds the match) of what it sends, and the search that
// resolves the patients' conditional references
// (https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html).
func defaultPublishScopes(v publish.Version) []string {
	s := []string{"system/Patient.rs", "system/Device.cus", "system/Observation.cus"}
	if v == publish.R5 {
		s = append(s, "system/DeviceAssociation.cus")
	}
	return s
}

// setupPublish returns the publisher of the configuration, nil when publishing is off.
func setupPublish(cfg Config, st store.Store, log *slog.Logger, reg prometheus.Registerer) (*publish.Publisher, error) {
	if cfg.PublishURL == "" {
		return nil, nil
	}
	v := publish.Version(cfg.PublishFHIRVersion)
	auth := publish.Auth{TokenURL: cfg.PublishTokenURL, FHIRBase: cfg.PublishURL, ClientID: cfg.PublishClientID, ClientSecret: cfg.PublishClientSecret,
		KeyID: cfg.PublishKeyID, Scopes: strings.Fields(cfg.PublishScope)}
	if len(auth.Scopes) == 0 {
		auth.Scopes = defaultPublishScopes(v)
	}
	if cfg.PublishKeyFile != "" {
		b, err := os.ReadFile(cfg.PublishKeyFile)
		if err != nil {
			return nil, fmt.Errorf("config: OHX_PUBLISH_KEY_FILE: %w", err)
		}
		if auth.Key, err = publish.ParseKey(b); err != nil {
			return nil, fmt.Errorf("config: OHX_PUBLISH_KEY_FILE %s: %w", cfg.PublishKeyFile, err)
		}
	}
	hc, err := auth.Client(&http.Client{Timeout: 2 * time.Minute})
	if err != nil {
		return nil, fmt.Errorf("config: publishing: %w", err)
	}
	if !auth.Enabled() {
		log.Warn("OHX_PUBLISH_URL is set without OHX_PUBLISH_CLIENT_ID: resources are sent to the EHR without an access token")
	}
	p, err := publish.New(publish.Config{URL: cfg.PublishURL, Version: v, PatientSystem: cfg.PublishPatientSystem,
		Namespace: cfg.IdentifierNamespace, Now: cfg.pipelineClock, Metrics: reg}, st, hc, log)
	if err != nil {
		return nil, fmt.Errorf("config: OHX_PUBLISH_URL: %w", err)
	}
	log.Info("publishing to an EHR", "url", cfg.PublishURL, "fhir_version", v, "client_auth", authKind(auth))
	return p, nil
}

func authKind(a publish.Auth) string {
	switch {
	case a.Key != nil:
		return "private_key_jwt"
	case a.ClientSecret != "":
		return "client_secret_basic"
	}
	return "none"
}

// publishHook is the pipeline's hook into p (nil when publishing is off).
func publishHook(p *publish.Publisher) pipeline.UpsertedFunc {
	if p == nil {
		return nil
	}
	return p.Upserted
}

// runPublishJWKS prints the public JWKS of the publishing key (OHX_PUBLISH_KEY_FILE, with
// OHX_PUBLISH_KEY_ID as its kid when set): what the EHR needs to verify ohx's client assertions.
func runPublishJWKS(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("ohx publish-jwks", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file, kid := getenv("OHX_PUBLISH_KEY_FILE"), getenv("OHX_PUBLISH_KEY_ID")
	fs.StringVar(&file, "publish-key-file", file, "PEM private key signing the client assertions (OHX_PUBLISH_KEY_FILE)")
	fs.StringVar(&kid, "publish-key-id", kid, "kid of the key (OHX_PUBLISH_KEY_ID; default its JWK thumbprint)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if file == "" {
		return errors.New("publish-jwks: set OHX_PUBLISH_KEY_FILE or -publish-key-file")
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("publish-jwks: %w", err)
	}
	key, err := publish.ParseKey(b)
	if err != nil {
		return fmt.Errorf("publish-jwks: %s: %w", file, err)
	}
	jwk, err := publish.PublicJWK(key, kid)
	if err != nil {
		return fmt.Errorf("publish-jwks: %w", err)
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(map[string]any{"keys": []any{jwk}})
}
