package authserver

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/MicahParks/jwkset"
	"golang.org/x/crypto/argon2"

	"github.com/openhealthexchange/ohx/api/smart"
	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/store"
)

// Client types.
const (
	// ClientPublic is a browser or native app without a secret: PKCE is its only proof.
	ClientPublic = "public"
	// ClientConfidential authenticates with client_secret_basic (or client_secret_post).
	ClientConfidential = "confidential"
	// ClientBackend is a SMART Backend Services client: client_credentials with private_key_jwt.
	ClientBackend = "backend"
)

// Client is a registered OAuth client.
type Client struct {
	ID   string `json:"id"`
	Name string `json:"name,omitempty"`
	// Type is ClientPublic, ClientConfidential or ClientBackend.
	Type string `json:"type"`
	// RedirectURIs must match the authorize request's redirect_uri exactly.
	RedirectURIs []string `json:"redirect_uris,omitempty"`
	// Scopes are the scopes the client may be granted; a resource scope here also allows the
	// narrower scopes it covers (patient/*.rs allows patient/Observation.rs?category=…).
	Scopes []string `json:"scopes"`
	// JWKS (by value) or JWKSURL holds the public keys of private_key_jwt clients.
	JWKS    json.RawMessage `json:"jwks,omitempty"`
	JWKSURL string          `json:"jwks_url,omitempty"`
	// LaunchMinter lets the client mint EHR launch values (an EHR integration).
	LaunchMinter bool      `json:"launch_minter,omitempty"`
	SecretHash   string    `json:"secret_hash,omitempty"`
	Created      time.Time `json:"created"`
}

// scriptSchemes are URL schemes that never name an app's redirect endpoint
// (https://www.rfc-editor.org/rfc/rfc9700#section-4.1.3).
var scriptSchemes = map[string]bool{"javascript": true, "data": true, "blob": true, "filesystem": true, "file": true, "about": true, "vbscript": true}

var clientIDRE = regexp.MustCompile(`^[A-Za-z0-9._~-]{1,128}$`)

// AddClient registers c (replacing a client with the same id). For a confidential client it
// generates the client secret and returns it: only its hash is stored, so it is shown once.
// A backend client needs JWKS or JWKSURL; public and confidential clients need a redirect URI.
func (s *Server) AddClient(ctx context.Context, c Client) (secret string, err error) {
	if !clientIDRE.MatchString(c.ID) {
		return "", fmt.Errorf("authserver: client id %q: use 1-128 of A-Z a-z 0-9 . _ ~ -", c.ID)
	}
	switch c.Type {
	case ClientPublic, ClientConfidential:
		if len(c.RedirectURIs) == 0 {
			return "", errors.New("authserver: a public or confidential client needs a redirect URI")
		}
		for _, r := range c.RedirectURIs {
			if u, err := url.Parse(r); err != nil || !u.IsAbs() || u.Fragment != "" {
				return "", fmt.Errorf("authserver: redirect URI %q must be absolute without fragment", r)
			} else if scriptSchemes[strings.ToLower(u.Scheme)] {
				// The code would be handed to script or a local document, not to the app.
				return "", fmt.Errorf("authserver: redirect URI %q: scheme %s cannot receive a code", r, u.Scheme)
			}
		}
	case ClientBackend:
		if (len(c.JWKS) == 0) == (c.JWKSURL == "") {
			return "", errors.New("authserver: a backend client needs exactly one of JWKS or a JWKS URL")
		}
		if len(c.JWKS) > 0 {
			keys, err := parseJWKS(c.JWKS)
			if err != nil {
				return "", fmt.Errorf("authserver: client JWKS: %w", err)
			}
			if len(keys) == 0 {
				return "", errors.New("authserver: client JWKS has no usable RS384/ES384 public key with a kid")
			}
		}
		if c.JWKSURL != "" {
			if err := checkJWKSURL(c.JWKSURL); err != nil {
				return "", fmt.Errorf("authserver: %w", err)
			}
		}
	default:
		return "", fmt.Errorf("authserver: client type %q: want public, confidential or backend", c.Type)
	}
	for _, sc := range c.Scopes {
		if strings.ContainsAny(sc, " \t\n") {
			return "", fmt.Errorf("authserver: scope %q contains white space", sc)
		}
	}
	c.SecretHash = ""
	if c.Type == ClientConfidential {
		secret = randomToken(32)
		if c.SecretHash, err = hashSecret(secret); err != nil {
			return "", err
		}
	}
	if c.Created.IsZero() {
		c.Created = s.now().UTC()
	}
	if err := s.putJSON(ctx, kindClient, c.ID, c, time.Time{}); err != nil {
		return "", fmt.Errorf("authserver: add client: %w", err)
	}
	return secret, nil
}

// Client returns a registered client, or an error wrapping store.ErrNotFound.
func (s *Server) Client(ctx context.Context, id string) (Client, error) {
	var c Client
	if err := s.getJSON(ctx, kindClient, id, &c); err != nil {
		return Client{}, fmt.Errorf("authserver: client %q: %w", id, err)
	}
	return c, nil
}

// ListClients returns the registered clients ordered by id.
func (s *Server) ListClients(ctx context.Context) ([]Client, error) {
	recs, err := s.st.ListRecords(ctx, kindClient)
	if err != nil {
		return nil, fmt.Errorf("authserver: list clients: %w", err)
	}
	out := make([]Client, 0, len(recs))
	for _, r := range recs {
		var c Client
		if err := json.Unmarshal(r.Doc, &c); err != nil {
			return nil, fmt.Errorf("authserver: decode client %s: %w", r.ID, err)
		}
		out = append(out, c)
	}
	return out, nil
}

// RemoveClient deletes a client; it returns an error wrapping store.ErrNotFound if there is none.
// Tokens already issued to it stay valid until they expire; refresh fails at once.
func (s *Server) RemoveClient(ctx context.Context, id string) error {
	if _, err := s.Client(ctx, id); err != nil {
		return err
	}
	if err := s.st.DeleteRecord(ctx, kindClient, id); err != nil {
		return fmt.Errorf("authserver: remove client: %w", err)
	}
	return nil
}

// User roles.
const (
	// RolePatient is a person bound to their own Patient resource.
	RolePatient = "patient"
	// RolePractitioner picks the patient at standalone launch.
	RolePractitioner = "practitioner"
)

// User is a person who can sign in at the login page.
type User struct {
	Username string `json:"username"`
	Name     string `json:"name,omitempty"`
	// Role is RolePatient or RolePractitioner.
	Role string `json:"role"`
	// Patient is the Patient id of a patient user.
	Patient string `json:"patient,omitempty"`
	// FHIRUser is the user's FHIR reference ("Patient/1", "Practitioner/7"), if any.
	FHIRUser     string    `json:"fhirUser,omitempty"`
	PasswordHash string    `json:"password_hash"`
	Created      time.Time `json:"created"`
}

var usernameRE = regexp.MustCompile(`^[a-z0-9._@+-]{1,128}$`)

// AddUser stores u with the password hashed by argon2id (replacing a user with the same
// username). A patient user needs Patient; its FHIRUser defaults to Patient/{Patient}.
func (s *Server) AddUser(ctx context.Context, u User, password string) error {
	u.Username = strings.ToLower(u.Username)
	if !usernameRE.MatchString(u.Username) {
		return fmt.Errorf("authserver: username %q: use 1-128 of a-z 0-9 . _ @ + -", u.Username)
	}
	if len(password) < 8 {
		return errors.New("authserver: the password must have at least 8 characters")
	}
	// The resource server confines user/ scopes by the token's fhirUser
	// (smart.Claims.Compartment), so every user has one and it says truthfully what the user is.
	switch u.Role {
	case RolePatient:
		if !fhir.ValidID(u.Patient) {
			return errors.New("authserver: a patient user needs a valid Patient id")
		}
		if u.FHIRUser == "" {
			u.FHIRUser = "Patient/" + u.Patient
		}
		if u.FHIRUser != "Patient/"+u.Patient {
			return fmt.Errorf("authserver: a patient user's fhirUser is Patient/%s", u.Patient)
		}
	case RolePractitioner:
		if u.Patient != "" {
			return errors.New("authserver: a practitioner is not bound to a patient")
		}
		if tu := (&smart.Claims{FHIRUser: u.FHIRUser}).User(); u.FHIRUser != tu.Type+"/"+tu.ID || (tu.Type != "Practitioner" && tu.Type != "PractitionerRole") {
			return errors.New("authserver: a practitioner needs a fhirUser Practitioner/ID or PractitionerRole/ID (user/ scopes are enforced from it)")
		}
	default:
		return fmt.Errorf("authserver: role %q: want patient or practitioner", u.Role)
	}
	var err error
	if u.PasswordHash, err = hashSecret(password); err != nil {
		return err
	}
	if u.Created.IsZero() {
		u.Created = s.now().UTC()
	}
	if err := s.putJSON(ctx, kindUser, u.Username, u, time.Time{}); err != nil {
		return fmt.Errorf("authserver: add user: %w", err)
	}
	return nil
}

// ListUsers returns the users ordered by username (password hashes cleared).
func (s *Server) ListUsers(ctx context.Context) ([]User, error) {
	recs, err := s.st.ListRecords(ctx, kindUser)
	if err != nil {
		return nil, fmt.Errorf("authserver: list users: %w", err)
	}
	out := make([]User, 0, len(recs))
	for _, r := range recs {
		var u User
		if err := json.Unmarshal(r.Doc, &u); err != nil {
			return nil, fmt.Errorf("authserver: decode user %s: %w", r.ID, err)
		}
		u.PasswordHash = ""
		out = append(out, u)
	}
	return out, nil
}

// RemoveUser deletes a user; an error wrapping store.ErrNotFound if there is none.
func (s *Server) RemoveUser(ctx context.Context, username string) error {
	username = strings.ToLower(username)
	if _, err := s.st.GetRecord(ctx, kindUser, username); err != nil {
		return fmt.Errorf("authserver: user %q: %w", username, err)
	}
	if err := s.st.DeleteRecord(ctx, kindUser, username); err != nil {
		return fmt.Errorf("authserver: remove user: %w", err)
	}
	return nil
}

// dummyHash is verified against when the user does not exist, so that response time does not
// reveal which usernames exist.
var dummyHash = sync.OnceValue(func() string {
	h, _ := hashSecret("no such user: constant work")
	return h
})

// authenticate checks a username and password; ok is false for any mismatch. The verification
// runs in an argon2 slot (checkSecret): an error wrapping errBusy means none came free in time.
func (s *Server) authenticate(ctx context.Context, username, password string) (User, bool, error) {
	var u User
	err := s.getJSON(ctx, kindUser, strings.ToLower(username), &u)
	if errors.Is(err, store.ErrNotFound) {
		_, err := checkSecret(ctx, "", password) // the same work as for a real user
		return User{}, false, err
	}
	if err != nil {
		return User{}, false, err
	}
	ok, err := checkSecret(ctx, u.PasswordHash, password)
	return u, ok, err
}

// argon2id parameters: the OWASP password storage recommendation (19 MiB, t=2, p=1).
const (
	argonTime    = 2
	argonMemory  = 19 * 1024
	argonThreads = 1
	argonKeyLen  = 32
)

// hashSecret hashes a password or client secret with argon2id and a random 16-byte salt, in the
// PHC string format.
func hashSecret(secret string) (string, error) {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("authserver: salt: %w", err)
	}
	h := argonKey([]byte(secret), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	enc := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime, argonThreads,
		enc.EncodeToString(salt), enc.EncodeToString(h)), nil
}

// verifySecret compares in constant time; a malformed hash never verifies.
func verifySecret(encoded, secret string) bool {
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false
	}
	var v int
	var m uint32
	var t uint32
	var p uint8
	if _, err := fmt.Sscanf(parts[2], "v=%d", &v); err != nil || v != argon2.Version {
		return false
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil || m > 64*1024 || t > 10 || p == 0 {
		return false
	}
	salt, err1 := base64.RawStdEncoding.DecodeString(parts[4])
	want, err2 := base64.RawStdEncoding.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(want) == 0 {
		return false
	}
	got := argonKey([]byte(secret), salt, t, m, p, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1
}

// parseJWKS returns the usable client-assertion keys of a JWKS: public RSA or P-384 EC keys
// with a kid (SMART: RS384 or ES384, kid required).
func parseJWKS(raw []byte) ([]jwkset.JWK, error) {
	var set jwkset.JWKSMarshal
	if err := json.Unmarshal(raw, &set); err != nil {
		return nil, fmt.Errorf("decode JWKS: %w", err)
	}
	var out []jwkset.JWK
	for _, m := range set.Keys {
		if m.KID == "" || (m.KTY != jwkset.KtyRSA && !(m.KTY == jwkset.KtyEC && m.CRV == jwkset.CrvP384)) {
			continue
		}
		if m.USE != "" && m.USE != jwkset.UseSig {
			continue
		}
		j, err := jwkset.NewJWKFromMarshal(m, jwkset.JWKMarshalOptions{}, jwkset.JWKValidateOptions{})
		if err != nil {
			continue
		}
		out = append(out, j)
	}
	return out, nil
}

func checkJWKSURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return fmt.Errorf("JWKS URL %q is not an absolute URL", raw)
	}
	if u.Scheme == "https" {
		return nil
	}
	if u.Scheme == "http" && slices.Contains([]string{"localhost", "127.0.0.1", "::1"}, u.Hostname()) {
		return nil // local development only
	}
	return fmt.Errorf("JWKS URL %q must be https", raw)
}
