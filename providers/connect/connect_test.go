package connect_test

import (
	"context"
	"errors"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/oauth2"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/providers"
	"github.com/openhealthexchange/ohx/providers/connect"
	"github.com/openhealthexchange/ohx/store"
	"github.com/openhealthexchange/ohx/store/sqlite"
)

// fakeVendor records the exchanges; Exchange links the vendor account "user-<code>", or fails
// for the code "refuse".
type fakeVendor struct {
	mu        sync.Mutex
	exchanges []exchange
	// forgetPredecessor makes "moved-" codes link the account without naming its predecessor
	// (user-moved-X all the same).
	forgetPredecessor bool
}

type exchange struct{ code, verifier string }

var _ providers.Provider = (*fakeVendor)(nil)

func (f *fakeVendor) Name() string             { return "vendor" }
func (f *fakeVendor) Kinds() []fhir.SampleKind { return []fhir.SampleKind{fhir.KindWeight} }

func (f *fakeVendor) AuthCodeURL(state, codeChallenge string) string {
	return "https://vendor.test/authorize?" + url.Values{"state": {state}, "code_challenge": {codeChallenge}}.Encode()
}

func (f *fakeVendor) Exchange(_ context.Context, code, verifier string) (*providers.Grant, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.exchanges = append(f.exchanges, exchange{code, verifier})
	if code == "refuse" {
		return nil, &providers.UpstreamError{Provider: "vendor", Kind: providers.KindPermanent, Status: 400, Err: errors.New("invalid_grant")}
	}
	g := &providers.Grant{Token: &oauth2.Token{AccessToken: "at-" + code, RefreshToken: "rt-" + code}, UserID: "user-" + code, Scopes: []string{"metrics"}}
	if old, ok := strings.CutPrefix(code, "moved-"); ok && !f.forgetPredecessor {
		// An account that continues the account old had at the "legacy" vendor.
		g.Predecessor = &providers.Account{Provider: "legacy", User: old}
	}
	return g, nil
}

func (f *fakeVendor) calls() []exchange {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.exchanges)
}

func (f *fakeVendor) Refresh(context.Context, *oauth2.Token) (*oauth2.Token, error) {
	return nil, errors.New("fakeVendor: Refresh not used")
}

func (f *fakeVendor) Devices(context.Context, string, oauth2.TokenSource) ([]fhir.DeviceInfo, error) {
	return nil, errors.New("fakeVendor: Devices not used")
}

func (f *fakeVendor) Fetch(context.Context, string, oauth2.TokenSource, providers.Query) (*providers.Page, error) {
	return nil, errors.New("fakeVendor: Fetch not used")
}

// fakeSyncer records the calls as "connected provider patient" and "disconnect provider patient".
type fakeSyncer struct {
	mu  sync.Mutex
	got []string
}

func (s *fakeSyncer) Connected(_ context.Context, provider, patient string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, "connected "+provider+" "+patient)
	return nil
}

func (s *fakeSyncer) Disconnect(_ context.Context, provider, patient string, purge bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	w := "disconnect " + provider + " " + patient
	if purge {
		w += " purge"
	}
	s.got = append(s.got, w)
	return nil
}

func (s *fakeSyncer) Retire(_ context.Context, provider, patient string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, "retire "+provider+" "+patient)
	return nil
}

func (s *fakeSyncer) calls() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.got)
}

const deepLink = "https://app.example/connected"

type env struct {
	t      *testing.T
	st     *sqlite.Store
	vendor *fakeVendor
	vault  *providers.Vault
	sync   *fakeSyncer
	now    time.Time // the service's clock: time.Now()+skew
	skew   time.Duration
	svc    *connect.Service
}

// newEnv is a service over SQLite, the real vault and fakeVendor. Patients p1, p2 exist.
func newEnv(t *testing.T) *env {
	t.Helper()
	st, err := sqlite.Open(t.Context(), t.TempDir(), sqlite.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	vault, err := providers.NewVault(st, map[string][]byte{"k": make([]byte, 32)}, "k", nil)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, st: st, vendor: &fakeVendor{}, vault: vault, sync: &fakeSyncer{}}
	e.svc, err = connect.New(connect.Config{Providers: providers.NewRegistry(e.vendor), Vault: vault, Sync: e.sync, Store: st,
		Redirects: []string{deepLink}, Now: func() time.Time { return time.Now().Add(e.skew) }})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"p1", "p2"} {
		if _, err := st.Create(t.Context(), &fhir.Patient{Base: fhir.Base{ResourceType: "Patient", ID: id}}); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

func (e *env) link(patient, redirect string) string {
	e.t.Helper()
	l, err := e.svc.CreateLink(e.t.Context(), patient, "vendor", redirect)
	if err != nil {
		e.t.Fatal(err)
	}
	return l.Token
}

// start opens the link in the browser of binding and returns the consent URL's state and
// code challenge.
func (e *env) start(link, binding string) (state, challenge string) {
	e.t.Helper()
	u, err := e.svc.Start(e.t.Context(), "vendor", link, binding)
	if err != nil {
		e.t.Fatalf("Start: %v", err)
	}
	p, err := url.Parse(u)
	if err != nil || p.Host != "vendor.test" {
		e.t.Fatalf("consent URL %q", u)
	}
	return p.Query().Get("state"), p.Query().Get("code_challenge")
}

func (e *env) finish(state, code, binding string) (connect.Flow, error) {
	return e.svc.Finish(e.t.Context(), "vendor", connect.Callback{State: state, Code: code, Bindings: []string{binding}})
}

func (e *env) connection(patient string) *providers.Connection {
	c, err := e.vault.Get(e.t.Context(), "vendor", patient)
	if errors.Is(err, providers.ErrNotConnected) {
		return nil
	}
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

func TestConnectFlow(t *testing.T) {
	e := newEnv(t)
	b := connect.NewBinding()
	state, _ := e.start(e.link("p1", deepLink), b)
	f, err := e.finish(state, "abc", b)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(connect.Flow{Patient: "p1", Provider: "vendor", Redirect: deepLink}, f); diff != "" {
		t.Errorf("Flow (-want +got):\n%s", diff)
	}
	c := e.connection("p1")
	if c == nil || c.VendorUserID != "user-abc" || c.Status != providers.StatusActive || c.Token.AccessToken != "at-abc" || !slices.Equal(c.Scopes, []string{"metrics"}) {
		t.Fatalf("p1's connection: %v", c)
	}
	if diff := cmp.Diff([]string{"connected vendor p1"}, e.sync.calls()); diff != "" {
		t.Errorf("syncer calls (-want +got):\n%s", diff)
	}
	conns, err := e.svc.Connections(t.Context(), "p1")
	if err != nil || len(conns) != 1 || conns[0].ID != c.ID || conns[0].Token != nil {
		t.Errorf("Connections: %v %v, want p1's connection without its token", conns, err)
	}
	if err := e.svc.Disconnect(t.Context(), "vendor", "p1", true); err != nil {
		t.Fatal(err)
	}
	if got := e.sync.calls(); got[len(got)-1] != "disconnect vendor p1 purge" {
		t.Errorf("syncer calls %v, want a purging disconnect last", got)
	}
	if err := e.svc.Disconnect(t.Context(), "nobody", "p1", false); !errors.Is(err, connect.ErrUnknownProvider) {
		t.Errorf("Disconnect of an unknown provider: got %v, want ErrUnknownProvider", err)
	}
}

func TestCreateLinkValidates(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		name, patient, provider, redirect string
		want                              error
	}{
		{"unknown provider", "p1", "nobody", "", connect.ErrUnknownProvider},
		{"redirect not allowed", "p1", "vendor", "https://evil.example/", connect.ErrRedirectNotAllowed},
		{"unknown patient", "p9", "vendor", "", connect.ErrUnknownPatient},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := e.svc.CreateLink(t.Context(), tc.patient, tc.provider, tc.redirect); !errors.Is(err, tc.want) {
				t.Errorf("got %v, want %v", err, tc.want)
			}
		})
	}
}

// TestLinkSingleUse: a link starts one flow only, expires, and belongs to its provider; asking
// for an unknown provider does not use it up.
func TestLinkSingleUse(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	b := connect.NewBinding()
	l := e.link("p1", "")
	if _, err := e.svc.Start(ctx, "nobody", l, b); !errors.Is(err, connect.ErrUnknownProvider) {
		t.Errorf("Start with an unknown provider: got %v, want ErrUnknownProvider", err)
	}
	e.start(l, b)
	if _, err := e.svc.Start(ctx, "vendor", l, b); !errors.Is(err, connect.ErrLinkExpired) {
		t.Errorf("a link used twice: got %v, want ErrLinkExpired", err)
	}
	if _, err := e.svc.Start(ctx, "vendor", "unknown", b); !errors.Is(err, connect.ErrLinkExpired) {
		t.Errorf("an unknown link: got %v, want ErrLinkExpired", err)
	}
	e.skew = -16 * time.Minute // made 16 minutes ago: expired a minute ago
	old := e.link("p1", "")
	e.skew = 0
	if _, err := e.svc.Start(ctx, "vendor", old, b); !errors.Is(err, connect.ErrLinkExpired) {
		t.Errorf("an expired link: got %v, want ErrLinkExpired", err)
	}
	if _, err := e.svc.Start(ctx, "vendor", e.link("p1", ""), "not a binding"); err == nil {
		t.Error("Start with a malformed binding: want an error")
	}
}

// TestStateSingleUse: a state completes one callback only, within StateTTL, and belongs to its
// provider; asking for an unknown provider does not use it up.
func TestStateSingleUse(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	b := connect.NewBinding()
	state, _ := e.start(e.link("p1", ""), b)
	if _, err := e.svc.Finish(ctx, "nobody", connect.Callback{State: state, Code: "abc", Bindings: []string{b}}); !errors.Is(err, connect.ErrUnknownProvider) {
		t.Errorf("Finish with an unknown provider: got %v, want ErrUnknownProvider", err)
	}
	if _, err := e.finish(state, "abc", b); err != nil {
		t.Fatal(err)
	}
	if f, err := e.finish(state, "abc", b); !errors.Is(err, connect.ErrStateExpired) || f != (connect.Flow{}) {
		t.Errorf("a state used twice: got %+v %v, want no flow and ErrStateExpired", f, err)
	}
	if _, err := e.finish("unknown", "abc", b); !errors.Is(err, connect.ErrStateExpired) {
		t.Errorf("an unknown state: got %v, want ErrStateExpired", err)
	}

	link := e.link("p2", "")
	e.skew = -connect.StateTTL - time.Minute // started StateTTL and a minute ago
	old, _ := e.start(link, b)
	e.skew = 0
	if _, err := e.finish(old, "def", b); !errors.Is(err, connect.ErrStateExpired) {
		t.Errorf("an expired state: got %v, want ErrStateExpired", err)
	}
	if got := e.vendor.calls(); len(got) != 1 {
		t.Errorf("exchanges %v, want only the first callback's", got)
	}
}

// TestStateBoundToBrowser: only the browser that opened the link completes the flow; from any
// other the state is used up and the vendor's token endpoint is never called.
func TestStateBoundToBrowser(t *testing.T) {
	e := newEnv(t)
	own := connect.NewBinding()
	for _, tc := range []struct {
		name     string
		bindings []string
	}{
		{"no binding", nil},
		{"another browser's binding", []string{connect.NewBinding()}},
		{"a malformed binding", []string{"x"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			state, _ := e.start(e.link("p1", deepLink), own)
			f, err := e.svc.Finish(t.Context(), "vendor", connect.Callback{State: state, Code: "mallory", Bindings: tc.bindings})
			if !errors.Is(err, connect.ErrWrongBrowser) || f != (connect.Flow{}) {
				t.Errorf("got %+v %v, want no flow and ErrWrongBrowser", f, err)
			}
			if _, err := e.finish(state, "abc", own); !errors.Is(err, connect.ErrStateExpired) {
				t.Errorf("the state after a wrong browser: got %v, want ErrStateExpired", err)
			}
		})
	}
	// Among several cookies, the right one is enough.
	state, _ := e.start(e.link("p1", ""), own)
	if _, err := e.svc.Finish(t.Context(), "vendor", connect.Callback{State: state, Code: "abc", Bindings: []string{"x", connect.NewBinding(), own}}); err != nil {
		t.Errorf("with the own binding among others: %v", err)
	}
	if got := e.vendor.calls(); len(got) != 1 || got[0].code != "abc" {
		t.Errorf("exchanges %v, want only the own browser's", got)
	}
	if c := e.connection("p1"); c == nil || c.VendorUserID != "user-abc" {
		t.Errorf("p1's connection: %v", c)
	}
}

// TestPKCE: the verifier sent with the code is the one whose S256 challenge went to the consent
// page (https://www.rfc-editor.org/rfc/rfc7636#section-4.6), and every flow has its own.
func TestPKCE(t *testing.T) {
	e := newEnv(t)
	b := connect.NewBinding()
	s1, c1 := e.start(e.link("p1", ""), b)
	s2, c2 := e.start(e.link("p2", ""), b)
	if c1 == c2 {
		t.Errorf("two flows share the code challenge %q", c1)
	}
	for _, s := range []string{s1, s2} {
		if _, err := e.finish(s, "code-"+s[:4], b); err != nil {
			t.Fatal(err)
		}
	}
	got := e.vendor.calls()
	for i, want := range []string{c1, c2} {
		v := got[i].verifier
		if len(v) < 43 || len(v) > 128 {
			t.Errorf("verifier %q: %d characters, want 43 to 128", v, len(v))
		}
		if connect.Challenge(v) != want {
			t.Errorf("exchange %d: S256(verifier) = %q, want the challenge %q", i, connect.Challenge(v), want)
		}
	}
	// The S256 example of RFC 7636 Appendix B.
	if got := connect.Challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"); got != "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM" {
		t.Errorf("Challenge of the RFC 7636 example: %q", got)
	}
}

// TestAccountLinkedToAnotherPatient: a vendor account connected to p1 is not moved to p2; the
// flow reports the vault's ErrVendorUserLinked with its deep link, and p2 stays unconnected.
func TestAccountLinkedToAnotherPatient(t *testing.T) {
	e := newEnv(t)
	b := connect.NewBinding()
	s1, _ := e.start(e.link("p1", ""), b)
	if _, err := e.finish(s1, "abc", b); err != nil {
		t.Fatal(err)
	}
	s2, _ := e.start(e.link("p2", deepLink), b)
	f, err := e.finish(s2, "abc", b)
	if !errors.Is(err, providers.ErrVendorUserLinked) {
		t.Fatalf("linking p1's account to p2: got %v, want ErrVendorUserLinked", err)
	}
	if diff := cmp.Diff(connect.Flow{Patient: "p2", Provider: "vendor", Redirect: deepLink}, f); diff != "" {
		t.Errorf("Flow (-want +got):\n%s", diff)
	}
	if c := e.connection("p2"); c != nil {
		t.Errorf("p2 got connected: %v", c)
	}
	if c := e.connection("p1"); c == nil || c.VendorUserID != "user-abc" {
		t.Errorf("p1's connection: %v", c)
	}
	if diff := cmp.Diff([]string{"connected vendor p1"}, e.sync.calls()); diff != "" {
		t.Errorf("syncer calls (-want +got):\n%s", diff)
	}
}

// TestVendorRefusesOrPatientDenies: without tokens from the vendor nothing is connected, and
// the flow still names its deep link.
func TestVendorRefusesOrPatientDenies(t *testing.T) {
	e := newEnv(t)
	b := connect.NewBinding()
	s1, _ := e.start(e.link("p1", deepLink), b)
	f, err := e.finish(s1, "refuse", b)
	var ue *providers.UpstreamError
	if !errors.Is(err, connect.ErrVendorRefused) || !errors.As(err, &ue) || f.Redirect != deepLink {
		t.Errorf("a refused exchange: got %+v %v, want ErrVendorRefused wrapping the *UpstreamError, with the deep link", f, err)
	}
	s2, _ := e.start(e.link("p1", deepLink), b)
	f, err = e.svc.Finish(t.Context(), "vendor", connect.Callback{State: s2, Error: "access_denied", Bindings: []string{b}})
	if !errors.Is(err, connect.ErrDenied) || f.Redirect != deepLink {
		t.Errorf("a denial: got %+v %v, want ErrDenied with the deep link", f, err)
	}
	if got := e.vendor.calls(); len(got) != 1 {
		t.Errorf("exchanges %v, want only the refused one (a denial exchanges nothing)", got)
	}
	if c := e.connection("p1"); c != nil {
		t.Errorf("p1 got connected: %v", c)
	}
	if got := e.sync.calls(); len(got) != 0 {
		t.Errorf("syncer calls %v, want none", got)
	}
}

// TestReconnect: connecting again keeps the connection and its sync positions for the same
// vendor account, and syncs another account from scratch.
func TestReconnect(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	b := connect.NewBinding()
	connectWith := func(code string) *providers.Connection {
		t.Helper()
		s, _ := e.start(e.link("p1", ""), b)
		if _, err := e.finish(s, code, b); err != nil {
			t.Fatal(err)
		}
		return e.connection("p1")
	}
	first := connectWith("abc")
	cursor := map[string]time.Time{"all": time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)}
	first.SyncCursors = cursor
	if err := e.vault.Save(ctx, first); err != nil {
		t.Fatal(err)
	}
	covered := func() int {
		t.Helper()
		cs, err := e.st.Coverage(ctx, "vendor", "p1")
		if err != nil {
			t.Fatal(err)
		}
		return len(cs)
	}
	if _, err := e.st.UpdateCoverage(ctx, store.CoverageKey{Provider: "vendor", Patient: "p1", Kind: "weight"}, time.Now(), func(c *store.Coverage) error {
		c.Add(time.Now().Add(-time.Hour), time.Now())
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	again := connectWith("abc")
	if covered() != 1 {
		t.Error("reconnecting the same account dropped its sync coverage")
	}
	if again.ID != first.ID || !again.Created.Equal(first.Created) || !again.SyncCursors["all"].Equal(cursor["all"]) {
		t.Errorf("same account again: %v cursors %v, want id %s, created %v, cursors %v", again, again.SyncCursors, first.ID, first.Created, cursor)
	}
	other := connectWith("xyz")
	if other.ID != first.ID || other.VendorUserID != "user-xyz" || len(other.SyncCursors) != 0 {
		t.Errorf("another account: %v cursors %v, want id %s, vendor user user-xyz, no cursors", other, other.SyncCursors, first.ID)
	}
	if covered() != 0 {
		t.Error("another account inherited the previous account's sync coverage")
	}
}

func TestNewValidates(t *testing.T) {
	st, err := sqlite.Open(t.Context(), t.TempDir(), sqlite.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	reg := providers.NewRegistry(&fakeVendor{})
	for name, cfg := range map[string]connect.Config{
		"no registry": {Store: st},
		"no store":    {Providers: providers.NewRegistry()},
		"no vault":    {Providers: reg, Store: st, Sync: &fakeSyncer{}},
		"no syncer":   {Providers: reg, Store: st},
	} {
		if _, err := connect.New(cfg); err == nil {
			t.Errorf("%s: want an error", name)
		}
	}
	if _, err := connect.New(connect.Config{Providers: providers.NewRegistry(), Store: st}); err != nil {
		t.Errorf("no providers, no vault: %v", err)
	}
}

// TestPredecessorAccount: an account that continues a legacy account of the same patient records
// the move on the connection and retires the legacy connection (its Observations stay); one that
// continues another patient's legacy account is refused like an account linked to another
// patient; a renewed consent keeps the moment of the move.
func TestPredecessorAccount(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	legacy := &providers.Connection{Provider: "legacy", PatientID: "p1", VendorUserID: "ABC123", Status: providers.StatusActive,
		Token: &oauth2.Token{AccessToken: "old-at", RefreshToken: "old-rt"}}
	if err := e.vault.Save(ctx, legacy); err != nil {
		t.Fatal(err)
	}
	b := connect.NewBinding()

	// p2 presents a Google account that continues p1's legacy account.
	s2, _ := e.start(e.link("p2", ""), b)
	if _, err := e.finish(s2, "moved-ABC123", b); !errors.Is(err, providers.ErrVendorUserLinked) {
		t.Fatalf("p2 continuing p1's legacy account: got %v, want ErrVendorUserLinked", err)
	}
	if c := e.connection("p2"); c != nil {
		t.Fatalf("p2 got connected: %v", c)
	}
	if got := e.sync.calls(); len(got) != 0 {
		t.Fatalf("syncer calls %v, want none", got)
	}

	before := time.Now().UTC()
	s1, _ := e.start(e.link("p1", ""), b)
	if _, err := e.finish(s1, "moved-ABC123", b); err != nil {
		t.Fatal(err)
	}
	c := e.connection("p1")
	if c == nil || c.Predecessor == nil || c.Predecessor.Account != (providers.Account{Provider: "legacy", User: "ABC123"}) {
		t.Fatalf("p1's connection %v, predecessor %+v: want legacy/ABC123", c, c.Predecessor)
	}
	until := c.Predecessor.Until
	if until.Before(before) || until.After(time.Now().UTC()) {
		t.Errorf("Predecessor.Until %v, want the time of the move (after %v)", until, before)
	}
	if diff := cmp.Diff([]string{"retire legacy p1", "connected vendor p1"}, e.sync.calls()); diff != "" {
		t.Errorf("syncer calls (-want +got):\n%s", diff)
	}

	// A renewed consent a day later keeps the moment of the move.
	e.skew = 24 * time.Hour
	s3, _ := e.start(e.link("p1", ""), b)
	if _, err := e.finish(s3, "moved-ABC123", b); err != nil {
		t.Fatal(err)
	}
	if c := e.connection("p1"); c.Predecessor == nil || !c.Predecessor.Until.Equal(until) {
		t.Errorf("after a renewed consent Predecessor %+v, want Until %v kept", c.Predecessor, until)
	}
	// So does a renewed consent of the same account whose identity names no predecessor.
	e.vendor.forgetPredecessor = true
	s4, _ := e.start(e.link("p1", ""), b)
	if _, err := e.finish(s4, "moved-ABC123", b); err != nil {
		t.Fatal(err)
	}
	if c := e.connection("p1"); c.Predecessor == nil || c.Predecessor.User != "ABC123" || !c.Predecessor.Until.Equal(until) {
		t.Errorf("after a consent without a predecessor: %+v, want the recorded one kept", c.Predecessor)
	}
}

// TestPredecessorRevoked: a revoked legacy connection of another patient does not block the
// new account, and nothing is retired.
func TestPredecessorRevoked(t *testing.T) {
	e := newEnv(t)
	legacy := &providers.Connection{Provider: "legacy", PatientID: "p1", VendorUserID: "ABC123", Status: providers.StatusRevoked,
		Token: &oauth2.Token{AccessToken: "old-at"}}
	if err := e.vault.Save(t.Context(), legacy); err != nil {
		t.Fatal(err)
	}
	b := connect.NewBinding()
	s2, _ := e.start(e.link("p2", ""), b)
	if _, err := e.finish(s2, "moved-ABC123", b); err != nil {
		t.Fatalf("p2 continuing a revoked legacy account: %v", err)
	}
	if c := e.connection("p2"); c == nil || c.Predecessor == nil || c.Predecessor.User != "ABC123" {
		t.Fatalf("p2's connection %v: want the predecessor recorded", c)
	}
	if diff := cmp.Diff([]string{"connected vendor p2"}, e.sync.calls()); diff != "" {
		t.Errorf("syncer calls (-want +got):\n%s", diff)
	}
}
