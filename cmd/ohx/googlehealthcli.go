package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/jwt"

	"github.com/openhealthexchange/ohx/providers"
	"github.com/openhealthexchange/ohx/providers/googlehealth"
)

// cloudPlatformScope is the scope a Google Cloud identity needs to manage Google Health API
// subscribers (https://developers.google.com/health/webhooks).
const cloudPlatformScope = "https://www.googleapis.com/auth/cloud-platform"

// googleHealthCommand holds the flags every `ohx googlehealth` subcommand shares.
type googleHealthCommand struct {
	*authCommand
	project, credentials string
}

func newGoogleHealthCommand(name string, stderr io.Writer) *googleHealthCommand {
	g := &googleHealthCommand{authCommand: newAuthCommand(name, stderr)}
	g.fs.StringVar(&g.project, "project", "", "Google Cloud project id or number that owns the subscriber (required)")
	g.fs.StringVar(&g.credentials, "credentials", "", "service-account key file (JSON) of a Google Cloud identity with a Google Health API role; default: the access token in OHX_GOOGLE_ACCESS_TOKEN (e.g. from `gcloud auth print-access-token`)")
	return g
}

// admin returns the project's subscriber administration over the configured API URL.
func (g *googleHealthCommand) admin(ctx context.Context, cfg Config, getenv func(string) string, stderr io.Writer) (*googlehealth.Admin, error) {
	if g.project == "" {
		return nil, errors.New("-project is required")
	}
	ts, err := cloudTokenSource(ctx, g.credentials, getenv)
	if err != nil {
		return nil, err
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	cc := googlehealth.ClientConfig()
	cc.Provider = googlehealth.Name + "-admin" // its own metrics and breaker, apart from patients' calls
	caller, err := providers.NewClient(cc, &http.Client{}, nil, log)
	if err != nil {
		return nil, err
	}
	return googlehealth.NewAdmin(googlehealth.AdminConfig{APIURL: cfg.GoogleHealthAPIURL, Project: g.project, TokenSource: ts}, caller)
}

// open parses the subcommand's flags, resolves the configuration as serve does and returns the
// subscriber administration.
func (g *googleHealthCommand) open(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) (Config, *googlehealth.Admin, error) {
	if err := g.parse(args); err != nil {
		return Config{}, nil, err
	}
	cfg, err := g.config(getenv, stderr)
	if err != nil {
		return Config{}, nil, err
	}
	a, err := g.admin(ctx, cfg, getenv, stderr)
	return cfg, a, err
}

// cloudTokenSource is the Google Cloud identity: a service-account key (the JWT bearer grant,
// https://developers.google.com/identity/protocols/oauth2/service-account#httprest) or an access
// token obtained elsewhere.
func cloudTokenSource(ctx context.Context, keyFile string, getenv func(string) string) (oauth2.TokenSource, error) {
	if keyFile == "" {
		tok := strings.TrimSpace(getenv("OHX_GOOGLE_ACCESS_TOKEN"))
		if tok == "" {
			return nil, errors.New("no Google Cloud identity: pass -credentials KEY.json or set OHX_GOOGLE_ACCESS_TOKEN")
		}
		return oauth2.StaticTokenSource(&oauth2.Token{AccessToken: tok, TokenType: "Bearer"}), nil
	}
	b, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("read -credentials: %w", err)
	}
	var key struct {
		Type         string `json:"type"`
		ClientEmail  string `json:"client_email"`
		PrivateKey   string `json:"private_key"`
		PrivateKeyID string `json:"private_key_id"`
		TokenURI     string `json:"token_uri"`
	}
	if err := json.Unmarshal(b, &key); err != nil || key.Type != "service_account" || key.ClientEmail == "" || key.PrivateKey == "" {
		return nil, errors.New("-credentials: not a Google service-account key file")
	}
	if key.TokenURI == "" {
		key.TokenURI = googlehealth.DefaultTokenURL
	}
	c := &jwt.Config{Email: key.ClientEmail, PrivateKey: []byte(key.PrivateKey), PrivateKeyID: key.PrivateKeyID,
		Scopes: []string{cloudPlatformScope}, TokenURL: key.TokenURI}
	return c.TokenSource(ctx), nil
}

// runGoogleHealth is `ohx googlehealth subscriber create|update|list|delete` and
// `ohx googlehealth subscriptions sync|list`: the project-level webhook set-up of the Google
// Health API, which needs a Google Cloud identity rather than a patient's token.
func runGoogleHealth(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	const usage = "usage: ohx googlehealth subscriber create|update|list|delete | subscriptions sync|list [flags]"
	if len(args) < 2 || isHelp(args[1]) {
		if len(args) > 0 && isHelp(args[len(args)-1]) {
			fmt.Fprintln(stderr, usage)
			return flag.ErrHelp
		}
		return errors.New(usage)
	}
	what, sub, args := args[0], args[1], args[2:]
	g := newGoogleHealthCommand("ohx googlehealth "+what+" "+sub, stderr)
	switch what + " " + sub {
	case "subscriber create", "subscriber update":
		return subscriberPut(ctx, g, sub == "create", args, getenv, stdout, stderr)
	case "subscriber list":
		return subscriberList(ctx, g, args, getenv, stdout, stderr)
	case "subscriber delete":
		return subscriberDelete(ctx, g, args, getenv, stdout, stderr)
	case "subscriptions sync":
		return subscriptionsSync(ctx, g, args, getenv, stdout, stderr)
	case "subscriptions list":
		return subscriptionsList(ctx, g, args, getenv, stdout, stderr)
	}
	return errors.New(usage)
}

// subscriberPut creates or updates the subscriber for the enabled kinds, with ohx's webhook URL
// and OHX_GOOGLEHEALTH_WEBHOOK_SECRET as the Authorization header Google will send. Google
// verifies the endpoint during the call, so ohx serve must be running and reachable.
func subscriberPut(ctx context.Context, g *googleHealthCommand, create bool, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var id, endpoint, policy string
	g.fs.StringVar(&id, "id", "", "subscriber id: 4-36 characters, a-z, 0-9 and -, starting with a letter (required)")
	g.fs.StringVar(&endpoint, "endpoint", "", "public HTTPS URL of the webhook (default: ORIGIN/webhooks/googlehealth of OHX_BASE_URL)")
	g.fs.StringVar(&policy, "policy", "automatic", "automatic (every consenting user) or manual (subscriptions per user, see `subscriptions sync`)")
	if err := g.parse(args); err != nil {
		return err
	}
	cfg, err := g.config(getenv, stderr)
	if err != nil {
		return err
	}
	if cfg.GoogleHealthWebhookSecret == "" {
		return errors.New("OHX_GOOGLEHEALTH_WEBHOOK_SECRET is not set: it is the Authorization header value Google sends and ohx checks")
	}
	if endpoint == "" {
		u, _ := url.Parse(cfg.BaseURL) // validated by parseConfig
		endpoint = u.Scheme + "://" + u.Host + "/webhooks/" + googlehealth.Name
	}
	p := strings.ToUpper(policy)
	if p != googlehealth.PolicyAutomatic && p != googlehealth.PolicyManual {
		return fmt.Errorf("-policy %q: want automatic or manual", policy)
	}
	a, err := g.admin(ctx, cfg, getenv, stderr)
	if err != nil {
		return err
	}
	spec := googlehealth.SubscriberSpec{ID: id, EndpointURI: endpoint, DataTypes: googlehealth.DataTypes(kindList(cfg.GoogleHealthKinds)),
		Policy: p, Secret: cfg.GoogleHealthWebhookSecret}
	put, verb := a.UpdateSubscriber, "updated"
	if create {
		put, verb = a.CreateSubscriber, "created"
	}
	op, err := put(ctx, spec)
	if err != nil {
		return err
	}
	state := "done"
	if !op.Done {
		state = "in progress (" + op.Name + ")"
	}
	fmt.Fprintf(stdout, "subscriber %s %s: %s, %s policy, data types %s; %s\n", id, verb, endpoint, strings.ToLower(p), strings.Join(spec.DataTypes, ","), state)
	return nil
}

func subscriberList(ctx context.Context, g *googleHealthCommand, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	_, a, err := g.open(ctx, args, getenv, stderr)
	if err != nil {
		return err
	}
	subs, err := a.ListSubscribers(ctx)
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "SUBSCRIBER\tSTATE\tENDPOINT\tPOLICY\tDATA TYPES")
	for _, s := range subs {
		for i, c := range s.Configs {
			name := s.Name
			if i > 0 {
				name = ""
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", name, s.State, s.EndpointURI, c.Policy, strings.Join(c.DataTypes, ","))
		}
		if len(s.Configs) == 0 {
			fmt.Fprintf(w, "%s\t%s\t%s\t-\t-\n", s.Name, s.State, s.EndpointURI)
		}
	}
	return w.Flush()
}

func subscriberDelete(ctx context.Context, g *googleHealthCommand, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var id string
	var force bool
	g.fs.StringVar(&id, "id", "", "subscriber id (required)")
	g.fs.BoolVar(&force, "force", false, "also delete the subscriber's subscriptions")
	_, a, err := g.open(ctx, args, getenv, stderr)
	if err != nil {
		return err
	}
	if id == "" {
		return errors.New("-id is required")
	}
	if _, err := a.DeleteSubscriber(ctx, id, force); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "subscriber %s deleted\n", id)
	return nil
}

// subscriptionsSync gives every active Google Health connection a subscription of a MANUAL
// subscriber to the enabled data types, and is safe to run again (users already subscribed are
// left alone).
func subscriptionsSync(ctx context.Context, g *googleHealthCommand, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var subscriber string
	g.fs.StringVar(&subscriber, "subscriber", "", "id of the MANUAL subscriber (required)")
	cfg, a, err := g.open(ctx, args, getenv, stderr)
	if err != nil {
		return err
	}
	if subscriber == "" {
		return errors.New("-subscriber is required")
	}
	vault, st, err := openVault(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	defer st.Close()
	conns, err := vault.List(ctx)
	if err != nil {
		return err
	}
	types := googlehealth.DataTypes(kindList(cfg.GoogleHealthKinds))
	var created, kept int
	for _, c := range conns {
		if c.Provider != googlehealth.Name || c.Status != providers.StatusActive {
			continue
		}
		have, err := a.ListSubscriptions(ctx, subscriber, c.VendorUserID)
		if err != nil {
			return fmt.Errorf("list the subscriptions of patient %s: %w", c.PatientID, err)
		}
		if len(have) > 0 {
			kept++
			continue
		}
		if _, err := a.CreateSubscription(ctx, subscriber, c.VendorUserID, types); err != nil {
			return fmt.Errorf("subscribe patient %s: %w", c.PatientID, err)
		}
		created++
	}
	fmt.Fprintf(stdout, "subscriptions: %d created, %d already present\n", created, kept)
	return nil
}

func subscriptionsList(ctx context.Context, g *googleHealthCommand, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var subscriber string
	g.fs.StringVar(&subscriber, "subscriber", "", "subscriber id (required)")
	_, a, err := g.open(ctx, args, getenv, stderr)
	if err != nil {
		return err
	}
	if subscriber == "" {
		return errors.New("-subscriber is required")
	}
	subs, err := a.ListSubscriptions(ctx, subscriber, "")
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "SUBSCRIPTION\tUSER\tDATA TYPES")
	for _, s := range subs {
		fmt.Fprintf(w, "%s\t%s\t%s\n", s.Name, s.User, strings.Join(s.DataTypes, ","))
	}
	return w.Flush()
}
