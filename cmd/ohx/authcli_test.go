package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/openhealthexchange/ohx/api/smart"
)

func TestAuthCLI(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	env := map[string]string{"OHX_DATA_DIR": dir, "OHX_BASE_URL": "http://ohx.test/fhir"}
	getenv := func(k string) string { return env[k] }

	// The demo client is created once, idempotently.
	cfg, err := parseConfig("test", nil, getenv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	s, st, err := openAuth(ctx, cfg, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if err := ensureDemoClient(ctx, s, dir); err != nil {
		t.Fatal(err)
	}
	keyPath := filepath.Join(dir, demoKeyFile)
	first, err := os.ReadFile(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(keyPath); fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", fi.Mode().Perm())
	}
	if err := ensureDemoClient(ctx, s, dir); err != nil {
		t.Fatal(err)
	}
	if again, _ := os.ReadFile(keyPath); !bytes.Equal(first, again) {
		t.Error("ensureDemoClient replaced an existing key")
	}
	keyfunc := s.Keyfunc()
	st.Close()

	// ohx token prints a backend token that verifies with the server's keys.
	var out, errb bytes.Buffer
	if err := runToken(ctx, nil, getenv, &out, &errb); err != nil {
		t.Fatalf("token: %v (%s)", err, errb.String())
	}
	var c smart.Claims
	tok, err := jwt.ParseWithClaims(strings.TrimSpace(out.String()), &c, keyfunc, jwt.WithValidMethods(smart.AllowedAlgs),
		jwt.WithAudience("http://ohx.test/fhir"), jwt.WithIssuer("http://ohx.test/auth"))
	if err != nil {
		t.Fatalf("token does not verify: %v", err)
	}
	if tok.Header["typ"] != smart.TokenType || c.ClientID != demoClientID || c.Scope != strings.Join(demoScopes, " ") {
		t.Errorf("token = %v %+v", tok.Header, c)
	}

	// clients add / list / remove.
	run := func(f func() error) string {
		t.Helper()
		out.Reset()
		errb.Reset()
		if err := f(); err != nil {
			t.Fatalf("%v (%s)", err, errb.String())
		}
		return out.String()
	}
	got := run(func() error {
		return runClients(ctx, []string{"add", "-id", "web", "-type", "confidential", "-redirect-uri", "https://app.example/cb"}, getenv, &out, &errb)
	})
	if !strings.Contains(got, "client secret (shown once") {
		t.Errorf("add confidential: %q", got)
	}
	run(func() error {
		return runClients(ctx, []string{"add", "-id", "svc", "-type", "backend", "-jwks", keyPath}, getenv, &out, &errb)
	})
	got = run(func() error { return runClients(ctx, []string{"list"}, getenv, &out, &errb) })
	for _, want := range []string{"ohx-demo", "web", "svc", "https://app.example/cb", "system/*.rs"} {
		if !strings.Contains(got, want) {
			t.Errorf("list lacks %q:\n%s", want, got)
		}
	}
	run(func() error { return runClients(ctx, []string{"remove", "web"}, getenv, &out, &errb) })
	got = run(func() error { return runClients(ctx, []string{"list"}, getenv, &out, &errb) })
	if strings.Contains(got, "web") {
		t.Errorf("removed client still listed:\n%s", got)
	}
	// The svc client registered the public half of the demo key only.
	got = run(func() error {
		return runToken(ctx, []string{"-client", "svc", "-key", keyPath, "-scope", "system/Observation.rs"}, getenv, &out, &errb)
	})
	if strings.Count(got, ".") != 2 {
		t.Errorf("token for svc: %q", got)
	}

	// users add with the password on stdin, then list.
	if err := runUsers(ctx, []string{"add", "-username", "Ann", "-role", "patient", "-patient", "p1", "-password-stdin"}, getenv,
		strings.NewReader("a long password\n"), &out, &errb); err != nil {
		t.Fatalf("users add: %v (%s)", err, errb.String())
	}
	got = run(func() error { return runUsers(ctx, []string{"list"}, getenv, nil, &out, &errb) })
	if !strings.Contains(got, "ann") || !strings.Contains(got, "Patient/p1") {
		t.Errorf("users list:\n%s", got)
	}
	if err := runUsers(ctx, []string{"add", "-username", "x", "-role", "patient", "-patient", "p1"}, getenv, nil, &out, &errb); err == nil {
		t.Error("users add without a password succeeded")
	}
}

func TestKeysRotate(t *testing.T) {
	dir := t.TempDir()
	getenv := func(k string) string {
		return map[string]string{"OHX_DATA_DIR": dir, "OHX_BASE_URL": "http://ohx.test/fhir"}[k]
	}
	var out, errOut bytes.Buffer
	if err := run(t.Context(), []string{"keys", "rotate"}, getenv, nil, &out, &errOut); err != nil {
		t.Fatalf("keys rotate: %v %s", err, errOut.String())
	}
	cfg, err := parseConfig("ohx", nil, getenv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	_, st, err := openAuth(t.Context(), cfg, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	recs, err := st.ListRecords(t.Context(), "smart.key")
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) < 2 {
		t.Errorf("after a rotation on a fresh store: %d signing keys stored, want 2 (first and rotated)", len(recs))
	}
}
