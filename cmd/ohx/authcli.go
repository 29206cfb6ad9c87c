package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"

	"github.com/openhealthexchange/ohx/api/smart/authserver"
	"github.com/openhealthexchange/ohx/api/viewer"
	"github.com/openhealthexchange/ohx/store"
	"github.com/openhealthexchange/ohx/store/seal"
)

// demoClientID is the backend client created on first start in embedded mode, with its key in
// DataDir/demo-client.jwk, so that `ohx token` works out of the box.
const demoClientID = "ohx-demo"

// demoKeyFile is the demo client's private key (a JWK) inside DataDir.
const demoKeyFile = "demo-client.jwk"

// authConfig is the built-in authorization server's configuration, shared by serve and the
// CLI: the issuer is the origin of the FHIR base plus /auth.
func authConfig(cfg Config, key []byte) (authserver.Config, error) {
	u, err := url.Parse(cfg.BaseURL)
	if err != nil {
		return authserver.Config{}, fmt.Errorf("config: OHX_BASE_URL: %w", err)
	}
	return authserver.Config{
		Issuer:      u.Scheme + "://" + u.Host + "/auth",
		FHIRBaseURL: cfg.BaseURL,
		R4BaseURL:   r4Base(cfg),
		SecretKey:   seal.Derive(key, "ohx smart authorization server"),
	}, nil
}

// storeFlags are the configuration flags the auth commands pass through to parseConfig.
var storeFlags = []struct{ name, usage string }{
	{"data-dir", "directory of the embedded store and key files (OHX_DATA_DIR)"},
	{"mongodb-uri", "MongoDB connection URI (OHX_MONGODB_URI)"},
	{"mongodb-database", "MongoDB database name (OHX_MONGODB_DATABASE)"},
	{"base-url", "public FHIR base URL (OHX_BASE_URL)"},
	{"secret-key", "base64 key material (OHX_SECRET_KEY)"},
}

// authCommand parses a subcommand's flags (its own plus the store flags) and opens the
// authorization server on the configured store. Call the returned close when done.
type authCommand struct {
	name   string
	fs     *flag.FlagSet
	stored map[string]*string
}

func newAuthCommand(name string, stderr io.Writer) *authCommand {
	a := &authCommand{name: name, fs: flag.NewFlagSet(name, flag.ContinueOnError), stored: map[string]*string{}}
	a.fs.SetOutput(stderr)
	for _, f := range storeFlags {
		a.stored[f.name] = a.fs.String(f.name, "", f.usage)
	}
	return a
}

// config resolves the configuration exactly as serve does (env, then the store flags given).
func (a *authCommand) config(getenv func(string) string, stderr io.Writer) (Config, error) {
	var args []string
	a.fs.Visit(func(f *flag.Flag) {
		if p, ok := a.stored[f.Name]; ok {
			args = append(args, "-"+f.Name+"="+*p)
		}
	})
	return parseConfig(a.name, args, getenv, stderr)
}

func openAuth(ctx context.Context, cfg Config, stderr io.Writer) (*authserver.Server, store.Store, error) {
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	key, err := secretKey(cfg)
	if err != nil {
		return nil, nil, err
	}
	st, err := openStore(ctx, cfg, log)
	if err != nil {
		return nil, nil, err
	}
	ac, err := authConfig(cfg, key)
	if err != nil {
		st.Close()
		return nil, nil, err
	}
	s, err := authserver.NewServer(ctx, ac, st, log)
	if err != nil {
		st.Close()
		return nil, nil, err
	}
	return s, st, nil
}

// multiFlag collects a repeatable string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// runClients is `ohx clients add|list|remove`.
func runClients(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 || isHelp(args[0]) {
		return subcommandUsage(stderr, "clients", []string{"add", "list", "remove"}, first(args))
	}
	sub, args := args[0], args[1:]
	cmd := newAuthCommand("ohx clients "+sub, stderr)
	switch sub {
	case "add":
		return clientsAdd(ctx, cmd, args, getenv, stdout, stderr)
	case "list":
		return clientsList(ctx, cmd, args, getenv, stdout, stderr)
	case "remove":
		return clientsRemove(ctx, cmd, args, getenv, stdout, stderr)
	}
	return subcommandUsage(stderr, "clients", []string{"add", "list", "remove"}, sub)
}

// parse parses the subcommand's flags; it takes no positional arguments.
func (a *authCommand) parse(args []string) error {
	if err := parseFlags(a.fs, args); err != nil {
		return err
	}
	if a.fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", a.fs.Args())
	}
	return nil
}

// open resolves the configuration and opens the authorization server (see openAuth).
func (a *authCommand) open(ctx context.Context, getenv func(string) string, stderr io.Writer) (*authserver.Server, store.Store, error) {
	cfg, err := a.config(getenv, stderr)
	if err != nil {
		return nil, nil, err
	}
	return openAuth(ctx, cfg, stderr)
}

// clientsAdd is `ohx clients add`: it registers a client and prints a confidential client's
// secret, which is shown only this once.
func clientsAdd(ctx context.Context, cmd *authCommand, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := cmd.fs
	var (
		id, name, typ, scope, jwksFile, jwksURL string
		launchMinter                            bool
		redirects                               multiFlag
	)
	fs.StringVar(&id, "id", "", "client id (required)")
	fs.StringVar(&name, "name", "", "display name shown on the consent page")
	fs.StringVar(&typ, "type", "", "public, confidential or backend (required)")
	fs.Var(&redirects, "redirect-uri", "registered redirect URI (repeatable; public and confidential clients)")
	fs.StringVar(&scope, "scope", "", "allowed scopes, space separated (default: launch/patient offline_access patient/*.rs user/*.rs, or system/*.rs for backend)")
	fs.StringVar(&jwksFile, "jwks", "", "file holding the backend client's JWKS (public keys)")
	fs.StringVar(&jwksURL, "jwks-url", "", "URL of the backend client's JWKS")
	fs.BoolVar(&launchMinter, "launch-minter", false, "the client (an EHR) may mint EHR launch contexts")
	if err := cmd.parse(args); err != nil {
		return err
	}
	cfg, err := cmd.config(getenv, stderr)
	if err != nil {
		return err
	}
	if id == "" || typ == "" {
		return errors.New("clients add: -id and -type are required")
	}
	c := authserver.Client{ID: id, Name: name, Type: typ, RedirectURIs: redirects, JWKSURL: jwksURL, LaunchMinter: launchMinter}
	if scope == "" {
		scope = "launch launch/patient openid fhirUser offline_access online_access patient/*.rs user/*.rs"
		if typ == authserver.ClientBackend {
			scope = "system/*.rs"
		}
	}
	c.Scopes = strings.Fields(scope)
	if jwksFile != "" {
		b, err := os.ReadFile(jwksFile)
		if err != nil {
			return fmt.Errorf("read JWKS: %w", err)
		}
		if c.JWKS, err = publicJWKS(b); err != nil {
			return err
		}
	}
	s, st, err := openAuth(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	defer st.Close()
	secret, err := s.AddClient(ctx, c)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "client %s (%s) registered\n", c.ID, c.Type)
	if secret != "" {
		fmt.Fprintf(stdout, "client secret (shown once, store it now): %s\n", secret)
	}
	return nil
}

// clientsList is `ohx clients list`: one line per client with its scopes and its redirect URIs
// or keys.
func clientsList(ctx context.Context, cmd *authCommand, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if err := cmd.parse(args); err != nil {
		return err
	}
	s, st, err := cmd.open(ctx, getenv, stderr)
	if err != nil {
		return err
	}
	defer st.Close()
	list, err := s.ListClients(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTYPE\tSCOPES\tREDIRECT URIS / KEYS")
	for _, c := range list {
		where := strings.Join(c.RedirectURIs, " ")
		switch {
		case c.JWKSURL != "":
			where = "jwks " + c.JWKSURL
		case len(c.JWKS) > 0:
			where = "jwks (by value)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", c.ID, c.Type, strings.Join(c.Scopes, " "), where)
	}
	return tw.Flush()
}

// clientsRemove is `ohx clients remove -id ID` (or `ohx clients remove ID`).
func clientsRemove(ctx context.Context, cmd *authCommand, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := cmd.fs
	var id string
	fs.StringVar(&id, "id", "", "client id (required)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if id == "" && fs.NArg() == 1 {
		id = fs.Arg(0)
	} else if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	s, st, err := cmd.open(ctx, getenv, stderr)
	if err != nil {
		return err
	}
	defer st.Close()
	if id == "" {
		return errors.New("clients remove: -id is required")
	}
	if err := s.RemoveClient(ctx, id); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "client %s removed\n", id)
	return nil
}

// publicJWKS accepts a JWKS or a single JWK and returns a JWKS of public keys only, so a
// private key file given by mistake is never stored.
func publicJWKS(b []byte) (json.RawMessage, error) {
	var probe struct {
		Keys json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(b, &probe); err != nil {
		return nil, fmt.Errorf("decode JWKS: %w", err)
	}
	var set jwkset.JWKSMarshal
	if probe.Keys == nil {
		var one jwkset.JWKMarshal
		if err := json.Unmarshal(b, &one); err != nil {
			return nil, fmt.Errorf("decode JWK: %w", err)
		}
		set.Keys = []jwkset.JWKMarshal{one}
	} else if err := json.Unmarshal(b, &set); err != nil {
		return nil, fmt.Errorf("decode JWKS: %w", err)
	}
	var out jwkset.JWKSMarshal
	for _, m := range set.Keys {
		j, err := jwkset.NewJWKFromMarshal(m, jwkset.JWKMarshalOptions{}, jwkset.JWKValidateOptions{})
		if err != nil {
			return nil, fmt.Errorf("JWK %q: %w", m.KID, err)
		}
		out.Keys = append(out.Keys, j.Marshal())
	}
	return json.Marshal(out)
}

// runUsers is `ohx users add|list|remove`. The password comes from -password or, with
// -password-stdin, from the first line of stdin.
func runUsers(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 || isHelp(args[0]) {
		return subcommandUsage(stderr, "users", []string{"add", "list", "remove"}, first(args))
	}
	sub, args := args[0], args[1:]
	cmd := newAuthCommand("ohx users "+sub, stderr)
	switch sub {
	case "add":
		return usersAdd(ctx, cmd, args, getenv, stdin, stdout, stderr)
	case "list":
		return usersList(ctx, cmd, args, getenv, stdout, stderr)
	case "remove":
		return usersRemove(ctx, cmd, args, getenv, stdout, stderr)
	}
	return subcommandUsage(stderr, "users", []string{"add", "list", "remove"}, sub)
}

// usersAdd is `ohx users add`.
func usersAdd(ctx context.Context, cmd *authCommand, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := cmd.fs
	var (
		username, name, role, patient, practitioner, password string
		passwordStdin                                         bool
	)
	fs.StringVar(&username, "username", "", "sign-in name (required)")
	fs.StringVar(&name, "name", "", "display name")
	fs.StringVar(&role, "role", "", "patient or practitioner (required)")
	fs.StringVar(&patient, "patient", "", "the Patient id of a patient user")
	fs.StringVar(&practitioner, "practitioner", "", "the Practitioner id of a practitioner (required for practitioners; becomes fhirUser)")
	fs.StringVar(&password, "password", "", "password (visible in the process list; prefer -password-stdin)")
	fs.BoolVar(&passwordStdin, "password-stdin", false, "read the password from the first line of stdin")
	if err := cmd.parse(args); err != nil {
		return err
	}
	if username == "" || role == "" {
		return errors.New("users add: -username and -role are required")
	}
	if passwordStdin == (password != "") {
		return errors.New("users add: give exactly one of -password and -password-stdin")
	}
	if passwordStdin {
		line, err := bufio.NewReader(stdin).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("read password: %w", err)
		}
		password = strings.TrimRight(line, "\r\n")
	}
	s, st, err := cmd.open(ctx, getenv, stderr)
	if err != nil {
		return err
	}
	defer st.Close()
	u := authserver.User{Username: username, Name: name, Role: role, Patient: patient}
	if practitioner != "" {
		u.FHIRUser = "Practitioner/" + practitioner
	}
	if err := s.AddUser(ctx, u, password); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "user %s (%s) added\n", strings.ToLower(username), role)
	return nil
}

// usersList is `ohx users list`.
func usersList(ctx context.Context, cmd *authCommand, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if err := cmd.parse(args); err != nil {
		return err
	}
	s, st, err := cmd.open(ctx, getenv, stderr)
	if err != nil {
		return err
	}
	defer st.Close()
	users, err := s.ListUsers(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "USERNAME\tROLE\tPATIENT\tFHIRUSER")
	for _, u := range users {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", u.Username, u.Role, u.Patient, u.FHIRUser)
	}
	return tw.Flush()
}

// usersRemove is `ohx users remove -username NAME`.
func usersRemove(ctx context.Context, cmd *authCommand, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var username string
	cmd.fs.StringVar(&username, "username", "", "sign-in name (required)")
	if err := cmd.parse(args); err != nil {
		return err
	}
	s, st, err := cmd.open(ctx, getenv, stderr)
	if err != nil {
		return err
	}
	defer st.Close()
	if username == "" {
		return errors.New("users remove: -username is required")
	}
	if err := s.RemoveUser(ctx, username); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "user %s removed\n", username)
	return nil
}

// runToken is `ohx token`: it signs a client assertion with the backend client's private key
// (a JWK file) and prints a Backend Services access token. With -token-url it asks that token
// endpoint over HTTP; otherwise it runs the grant in process against the configured store.
func runToken(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cmd := newAuthCommand("ohx token", stderr)
	fs := cmd.fs
	var clientID, keyFile, scope, tokenURL string
	fs.StringVar(&clientID, "client", demoClientID, "backend client id")
	fs.StringVar(&keyFile, "key", "", "the client's private key as a JWK file (default DATA_DIR/"+demoKeyFile+")")
	fs.StringVar(&scope, "scope", "", "requested scopes (default: all the client may have)")
	fs.StringVar(&tokenURL, "token-url", "", "token endpoint of a running server (default: issue in process)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	cfg, err := cmd.config(getenv, stderr)
	if err != nil {
		return err
	}
	demo := keyFile == ""
	if demo {
		keyFile = filepath.Join(cfg.DataDir, demoKeyFile)
	}
	key, err := loadPrivateJWK(keyFile)
	if demo && errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("no demo client key at %s yet: start the server once (make run, or ohx serve, with the same OHX_DATA_DIR) to create the demo client, or pass -client and -key", keyFile)
	}
	if err != nil {
		return err
	}
	if tokenURL != "" {
		assertion, err := clientAssertion(key, clientID, tokenURL)
		if err != nil {
			return err
		}
		tok, err := requestToken(ctx, tokenURL, assertion, scope)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, tok)
		return nil
	}
	s, st, err := openAuth(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	defer st.Close()
	assertion, err := clientAssertion(key, clientID, s.Endpoints().Token)
	if err != nil {
		return err
	}
	resp, err := s.IssueBackendToken(ctx, assertion, scope)
	if err != nil {
		return fmt.Errorf("token: %w", err)
	}
	fmt.Fprintln(stdout, resp.AccessToken)
	return nil
}

func requestToken(ctx context.Context, tokenURL, assertion, scope string) (string, error) {
	form := url.Values{"grant_type": {"client_credentials"}, "client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
		"client_assertion": {assertion}}
	if scope != "" {
		form.Set("scope", scope)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, tokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return "", fmt.Errorf("token request: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	res, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return "", fmt.Errorf("token request: %w", err)
	}
	defer res.Body.Close()
	var body struct {
		AccessToken string `json:"access_token"`
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	if err := json.NewDecoder(io.LimitReader(res.Body, 1<<20)).Decode(&body); err != nil {
		return "", fmt.Errorf("token response (status %d): %w", res.StatusCode, err)
	}
	if res.StatusCode != http.StatusOK || body.AccessToken == "" {
		return "", fmt.Errorf("token endpoint: status %d: %s %s", res.StatusCode, body.Error, body.Description)
	}
	return body.AccessToken, nil
}

// clientAssertion signs an RFC 7523 client assertion as SMART Backend Services wants it.
func clientAssertion(key jwkset.JWK, clientID, tokenURL string) (string, error) {
	m := key.Marshal()
	var method jwt.SigningMethod
	switch key.Key().(type) {
	case *ecdsa.PrivateKey:
		method = jwt.SigningMethodES384
	case *rsa.PrivateKey:
		method = jwt.SigningMethodRS384
	default:
		return "", errors.New("the key must be an EC P-384 or RSA private key")
	}
	now := time.Now()
	t := jwt.NewWithClaims(method, jwt.RegisteredClaims{
		Issuer: clientID, Subject: clientID, Audience: jwt.ClaimStrings{tokenURL},
		IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(4 * time.Minute)), ID: rand.Text(),
	})
	t.Header["kid"] = m.KID
	s, err := t.SignedString(key.Key())
	if err != nil {
		return "", fmt.Errorf("sign client assertion: %w", err)
	}
	return s, nil
}

func loadPrivateJWK(path string) (jwkset.JWK, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return jwkset.JWK{}, fmt.Errorf("read key: %w", err)
	}
	j, err := jwkset.NewJWKFromRawJSON(b, jwkset.JWKMarshalOptions{Private: true}, jwkset.JWKValidateOptions{})
	if err != nil {
		return jwkset.JWK{}, fmt.Errorf("key %s: %w", path, err)
	}
	if j.Marshal().KID == "" {
		return jwkset.JWK{}, fmt.Errorf("key %s has no kid", path)
	}
	return j, nil
}

// ensureDemoClient makes sure the demo backend client exists with the key kept in
// dataDir/demo-client.jwk (created with mode 0600 when absent). It is idempotent: an existing
// key file is reused, and the client is (re)registered only when it is missing or lacks the key.
func ensureDemoClient(ctx context.Context, s *authserver.Server, dataDir string) error {
	path := filepath.Join(dataDir, demoKeyFile)
	key, err := loadPrivateJWK(path)
	if errors.Is(err, os.ErrNotExist) {
		key, err = writeDemoKey(path)
	}
	if err != nil {
		return fmt.Errorf("demo client: %w", err)
	}
	pub, err := jwkset.NewJWKFromKey(key.Key().(*ecdsa.PrivateKey).Public(), jwkset.JWKOptions{
		Metadata: jwkset.JWKMetadataOptions{KID: key.Marshal().KID, ALG: jwkset.AlgES384, USE: jwkset.UseSig}})
	if err != nil {
		return fmt.Errorf("demo client: %w", err)
	}
	jwks, err := json.Marshal(jwkset.JWKSMarshal{Keys: []jwkset.JWKMarshal{pub.Marshal()}})
	if err != nil {
		return fmt.Errorf("demo client: %w", err)
	}
	c, err := s.Client(ctx, demoClientID)
	if err == nil && slices.Equal(c.JWKS, jwks) && slices.Equal(c.Scopes, demoScopes) {
		return nil
	}
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("demo client: %w", err)
	}
	_, err = s.AddClient(ctx, authserver.Client{ID: demoClientID, Name: "ohx demo backend client", Type: authserver.ClientBackend,
		Scopes: demoScopes, JWKS: jwks})
	return err
}

// ensureViewerClient registers the built-in app (api/viewer) as a public client whose redirect
// URI is its address, redirectURI, unless it is registered so already: a browser app keeps no
// secret, so PKCE is its proof (https://hl7.org/fhir/smart-app-launch/app-launch.html#step-1-register).
// A registration an operator changed is put back, and the log says so.
func ensureViewerClient(ctx context.Context, s *authserver.Server, redirectURI string, log *slog.Logger) error {
	scopes := viewer.Scopes()
	c, err := s.Client(ctx, viewer.ClientID)
	if err == nil && c.Type == authserver.ClientPublic && slices.Equal(c.RedirectURIs, []string{redirectURI}) && slices.Equal(c.Scopes, scopes) {
		return nil
	}
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("viewer client: %w", err)
	}
	if err == nil {
		log.Info("the built-in app's client registration is put back", "client", viewer.ClientID, "redirect_uri", redirectURI)
	}
	if _, err := s.AddClient(ctx, authserver.Client{ID: viewer.ClientID, Name: "ohx viewer", Type: authserver.ClientPublic,
		RedirectURIs: []string{redirectURI}, Scopes: scopes}); err != nil {
		return fmt.Errorf("viewer client: %w", err)
	}
	return nil
}

// demoScopes let the local demo read everything and register patients (the README's example).
var demoScopes = []string{"system/*.rs", "system/Patient.cu"}

func writeDemoKey(path string) (jwkset.JWK, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		return jwkset.JWK{}, err
	}
	j, err := jwkset.NewJWKFromKey(priv, jwkset.JWKOptions{
		Marshal:  jwkset.JWKMarshalOptions{Private: true},
		Metadata: jwkset.JWKMetadataOptions{KID: "ohx-demo-" + rand.Text()[:8], ALG: jwkset.AlgES384, USE: jwkset.UseSig},
	})
	if err != nil {
		return jwkset.JWK{}, err
	}
	b, err := json.MarshalIndent(j.Marshal(), "", "  ")
	if err != nil {
		return jwkset.JWK{}, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return jwkset.JWK{}, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return jwkset.JWK{}, fmt.Errorf("create key file: %w", err)
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return jwkset.JWK{}, fmt.Errorf("write key file: %w", err)
	}
	if err := f.Close(); err != nil {
		return jwkset.JWK{}, err
	}
	return loadPrivateJWK(path)
}

// runKeys implements `ohx keys rotate`: a new access-token signing key becomes current; the
// previous ones keep verifying for the longest token lifetime. A running server verifies tokens
// of the new key at once (it reloads on an unknown kid) and signs with it after a restart.
func runKeys(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "rotate" {
		return subcommandUsage(stderr, "keys", []string{"rotate"}, first(args))
	}
	cmd := newAuthCommand("ohx keys rotate", stderr)
	if err := parseFlags(cmd.fs, args[1:]); err != nil {
		return err
	}
	cfg, err := cmd.config(getenv, stderr)
	if err != nil {
		return err
	}
	s, st, err := openAuth(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	defer st.Close()
	if err := s.RotateKeys(ctx); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "rotated the access-token signing key; restart ohx serve to sign with it")
	return nil
}
