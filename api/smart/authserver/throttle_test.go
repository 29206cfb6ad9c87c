package authserver

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"golang.org/x/crypto/argon2"
)

// peerEnv is newEnv's authorization server behind a gin engine that trusts no proxy, as
// api.New must configure it, so that c.ClientIP() is the connection's peer. A test-only wrapper
// sets the peer from the X-Test-Peer header, so that one test can act from several addresses.
func peerEnv(t *testing.T) *env {
	t.Helper()
	e := newEnv(t)
	eng := gin.New()
	if err := eng.SetTrustedProxies(nil); err != nil {
		t.Fatal(err)
	}
	e.s.Register(eng)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p := r.Header.Get("X-Test-Peer"); p != "" {
			r.RemoteAddr = net.JoinHostPort(p, "40000")
		}
		eng.ServeHTTP(w, r)
	}))
	t.Cleanup(ts.Close)
	pe := *e
	pe.url = ts.URL
	return &pe
}

// headerTransport adds headers to every request.
type headerTransport map[string]string

func (h headerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	for k, v := range h {
		r.Header.Set(k, v)
	}
	return http.DefaultTransport.RoundTrip(r)
}

// signIn is a browser with an authorization in progress, at the login page.
type signIn struct {
	t *testing.T
	b *browser
}

// signInFrom starts an authorization in a new browser whose requests carry headers (X-Test-Peer
// for peerEnv).
func signInFrom(t *testing.T, e *env, headers map[string]string) *signIn {
	t.Helper()
	b := e.browser()
	b.c.Transport = headerTransport(headers)
	_, challenge := pkce()
	res, _ := b.do(http.MethodGet, "/auth/authorize?"+e.authorizeQuery("app", "patient/*.rs", challenge).Encode(), nil)
	if res.StatusCode != http.StatusSeeOther {
		t.Fatalf("authorize: %d", res.StatusCode)
	}
	return &signIn{t: t, b: b}
}

func from(t *testing.T, e *env, peer string) *signIn {
	t.Helper()
	return signInFrom(t, e, map[string]string{"X-Test-Peer": peer})
}

// try loads the login page and submits it.
func (s *signIn) try(username, pw string) (*http.Response, string) {
	s.t.Helper()
	_, page := s.b.do(http.MethodGet, "/auth/login", nil)
	return s.b.do(http.MethodPost, "/auth/login", url.Values{"csrf": {csrfOf(s.t, page)}, "username": {username}, "password": {pw}})
}

// addCheapUser stores a practitioner whose password hash has tiny argon2id parameters (64 KiB,
// t=1), which verifySecret honours: the throttle tests sign in dozens of times, and full-cost
// hashes take up to half a second each under the race detector. Production hashes keep the
// OWASP parameters (hashSecret).
func addCheapUser(t *testing.T, e *env, username, pw string) {
	t.Helper()
	salt := make([]byte, 16)
	rand.Read(salt)
	enc := base64.RawStdEncoding
	h := fmt.Sprintf("$argon2id$v=%d$m=64,t=1,p=1$%s$%s", argon2.Version, enc.EncodeToString(salt),
		enc.EncodeToString(argon2.IDKey([]byte(pw), salt, 1, 64, 1, 32)))
	u := User{Username: username, Role: RolePractitioner, FHIRUser: "Practitioner/" + username, PasswordHash: h}
	if err := e.s.putJSON(t.Context(), kindUser, username, u, time.Time{}); err != nil {
		t.Fatal(err)
	}
}

// setLimits changes a throttle's limits under its lock (the server reads them concurrently).
func setLimits(th *loginThrottle, account, addr int) {
	th.mu.Lock()
	defer th.mu.Unlock()
	th.accountLimit, th.addrLimit = account, addr
}

func wantStatus(t *testing.T, what string, res *http.Response, want int) {
	t.Helper()
	if res.StatusCode != want {
		t.Errorf("%s: got %d, want %d", what, res.StatusCode, want)
	}
}

// wantThrottled checks a 429 with Retry-After and the message on the re-rendered login page.
func wantThrottled(t *testing.T, what string, res *http.Response, page string) {
	t.Helper()
	wantStatus(t, what, res, http.StatusTooManyRequests)
	if s, err := strconv.Atoi(res.Header.Get("Retry-After")); err != nil || s < 1 || s > int(loginWindow/time.Second) {
		t.Errorf("%s: Retry-After %q, want 1..%d seconds", what, res.Header.Get("Retry-After"), int(loginWindow/time.Second))
	}
	if !strings.Contains(page, "Too many failed sign-ins. Try again in ") || !strings.Contains(page, `name="csrf"`) {
		t.Errorf("%s: want the login page with the throttling message, got:\n%s", what, page)
	}
}

// TestLoginThrottlePerAccount: the sixth failure in a row for one username is refused with 429
// and Retry-After whatever the password and wherever it comes from, without hashing; other
// accounts are unaffected, and a success before the limit starts the count again.
func TestLoginThrottlePerAccount(t *testing.T) {
	e := peerEnv(t)
	for _, u := range []string{"eve", "bob", "joe"} {
		addCheapUser(t, e, u, password)
	}
	a := from(t, e, "192.0.2.1")
	for i := range loginAccountLimit {
		res, _ := a.try("EVE", "wrong password") // usernames are counted lower-cased
		wantStatus(t, fmt.Sprintf("failure %d", i+1), res, http.StatusUnauthorized)
	}
	runs := argonGauge.runs.Load()
	res, page := a.try("eve", "wrong password")
	wantThrottled(t, "failure 6", res, page)
	if !strings.Contains(page, "Try again in 15 minutes.") {
		t.Errorf("want the wait in minutes on the page:\n%s", page)
	}
	res, page = a.try("eve", password)
	wantThrottled(t, "right password while limited", res, page)
	res, page = from(t, e, "198.51.100.7").try("eve", password)
	wantThrottled(t, "right password from another address while limited", res, page)
	if got := argonGauge.runs.Load() - runs; got != 0 {
		t.Errorf("%d password hashes computed while limited, want 0", got)
	}

	res, _ = from(t, e, "198.51.100.8").try("bob", password)
	wantStatus(t, "another account from another address", res, http.StatusSeeOther)
	res, _ = a.try("bob", password)
	wantStatus(t, "another account from the same address", res, http.StatusSeeOther)

	c := from(t, e, "203.0.113.9")
	for range loginAccountLimit - 1 {
		c.try("joe", "wrong password")
	}
	res, _ = c.try("joe", password)
	wantStatus(t, "success just below the limit", res, http.StatusSeeOther)
	for i := range loginAccountLimit {
		res, _ := c.try("joe", "wrong password")
		wantStatus(t, fmt.Sprintf("failure %d after the success", i+1), res, http.StatusUnauthorized)
	}
	res, page = c.try("joe", "wrong password")
	wantThrottled(t, "limit reached again", res, page)
}

// TestLoginThrottlePerAddress: one address trying many usernames is refused after
// loginAddrLimit failures, for every username; X-Forwarded-For does not give it a new address;
// the usernames it was refused for are not counted against their owners.
func TestLoginThrottlePerAddress(t *testing.T) {
	e := peerEnv(t)
	addCheapUser(t, e, "bob", password)
	for i := range loginAddrLimit {
		addCheapUser(t, e, fmt.Sprintf("u%02d", i), password)
	}
	a := from(t, e, "192.0.2.1")
	for i := range loginAddrLimit {
		res, _ := a.try(fmt.Sprintf("u%02d", i), "wrong password")
		wantStatus(t, fmt.Sprintf("failure %d", i+1), res, http.StatusUnauthorized)
	}
	res, page := a.try("nobody-yet", "wrong password")
	wantThrottled(t, "a new username", res, page)
	res, page = a.try("bob", password)
	wantThrottled(t, "another account's right password", res, page)
	spoof := signInFrom(t, e, map[string]string{"X-Test-Peer": "192.0.2.1", "X-Forwarded-For": "10.1.2.3", "X-Real-IP": "10.1.2.4"})
	res, page = spoof.try("bob", password)
	wantThrottled(t, "with X-Forwarded-For", res, page)
	res, _ = from(t, e, "198.51.100.7").try("bob", password)
	wantStatus(t, "bob from another address", res, http.StatusSeeOther)
	// An IPv6 client is counted per /64.
	for i := range loginAddrLimit {
		res, _ := from(t, e, fmt.Sprintf("2001:db8:1:2::%x", i+1)).try(fmt.Sprintf("u%02d", i), "wrong password")
		wantStatus(t, fmt.Sprintf("IPv6 failure %d", i+1), res, http.StatusUnauthorized)
	}
	res, page = from(t, e, "2001:db8:1:2:ffff::1").try("bob", password)
	wantThrottled(t, "another address in the same IPv6 /64", res, page)
	res, _ = from(t, e, "2001:db8:1:3::1").try("bob", password)
	wantStatus(t, "the next /64", res, http.StatusSeeOther)
}

// TestArgonSlotsBoundConcurrentLogins: 60 concurrent sign-ins never run more than
// argonConcurrency password verifications at once. Each verification is held for 20 ms so that,
// unbounded, they would overlap.
func TestArgonSlotsBoundConcurrentLogins(t *testing.T) {
	e := newEnv(t)
	setLimits(e.s.throttle, 1000, 1000) // the subject here is the semaphore, not the throttle
	addCheapUser(t, e, "eve", password)
	const n = 60
	type pending struct {
		s    *signIn
		csrf string
	}
	var ps []pending
	for range n {
		s := signInFrom(t, e, nil)
		_, page := s.b.do(http.MethodGet, "/auth/login", nil)
		ps = append(ps, pending{s, csrfOf(t, page)})
	}
	hold := func() { time.Sleep(20 * time.Millisecond) }
	argonGauge.during.Store(&hold)
	t.Cleanup(func() { argonGauge.during.Store(nil) })
	argonGauge.maxInFlight.Store(0)
	runs := argonGauge.runs.Load()

	start := make(chan struct{})
	statuses := make([]int, n)
	var wg sync.WaitGroup
	for i, p := range ps {
		wg.Go(func() {
			<-start
			pw := password
			if i%2 == 1 {
				pw = "wrong password"
			}
			form := url.Values{"csrf": {p.csrf}, "username": {"eve"}, "password": {pw}}
			req, _ := http.NewRequest(http.MethodPost, e.url+"/auth/login", strings.NewReader(form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			res, err := p.s.b.c.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			res.Body.Close()
			statuses[i] = res.StatusCode
		})
	}
	close(start)
	wg.Wait()
	for i, st := range statuses {
		want := http.StatusSeeOther
		if i%2 == 1 {
			want = http.StatusUnauthorized
		}
		if st != want {
			t.Errorf("login %d: got %d, want %d", i, st, want)
		}
	}
	if got := argonGauge.runs.Load() - runs; got != n {
		t.Errorf("%d verifications, want %d", got, n)
	}
	if got := argonGauge.maxInFlight.Load(); got < 1 || got > argonConcurrency {
		t.Errorf("at most %d verifications ran at once, want 1..%d", got, argonConcurrency)
	}
}

// TestArgonBusy: with every slot taken, a sign-in or a client_secret_basic request whose
// context ends while it waits answers 503 with Retry-After instead of queueing, and a sign-in
// that never compared the password is not counted as a failure.
func TestArgonBusy(t *testing.T) {
	e := newEnv(t)
	s := signInFrom(t, e, nil)
	_, page := s.b.do(http.MethodGet, "/auth/login", nil)
	csrf := csrfOf(t, page)
	if err := argonSlots.Acquire(t.Context(), argonConcurrency); err != nil {
		t.Fatal(err)
	}
	defer argonSlots.Release(argonConcurrency)
	eng := gin.New()
	e.s.Register(eng)
	serve := func(req *http.Request) *httptest.ResponseRecorder {
		ctx, cancel := context.WithTimeout(req.Context(), 100*time.Millisecond)
		defer cancel()
		rec := httptest.NewRecorder()
		eng.ServeHTTP(rec, req.WithContext(ctx))
		return rec
	}

	req := httptest.NewRequest(http.MethodPost, "/auth/login",
		strings.NewReader(url.Values{"csrf": {csrf}, "username": {"ann"}, "password": {password}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	u, _ := url.Parse(e.url + "/auth/")
	for _, ck := range s.b.c.Jar.Cookies(u) {
		req.AddCookie(ck)
	}
	rec := serve(req)
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" || !strings.Contains(rec.Body.String(), "busy") {
		t.Errorf("login: got %d Retry-After %q, want 503 with Retry-After and a busy message:\n%s", rec.Code, rec.Header().Get("Retry-After"), rec.Body.String())
	}
	e.s.throttle.mu.Lock()
	_, counted := e.s.throttle.accounts.byKey["ann"]
	e.s.throttle.mu.Unlock()
	if counted {
		t.Error("a sign-in that never compared the password was counted as a failure")
	}

	req = httptest.NewRequest(http.MethodPost, "/auth/token",
		strings.NewReader(url.Values{"grant_type": {"authorization_code"}, "code": {"x"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("conf", e.secret)
	rec = serve(req)
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" || !strings.Contains(rec.Body.String(), "temporarily_unavailable") {
		t.Errorf("token: got %d Retry-After %q %s, want 503 temporarily_unavailable with Retry-After", rec.Code, rec.Header().Get("Retry-After"), rec.Body.String())
	}
}

// TestLoginThrottleWindow checks the counting rules on a fake clock.
func TestLoginThrottleWindow(t *testing.T) {
	now := time.Unix(1_000_000_000, 0)
	th := newLoginThrottle(func() time.Time { return now })
	for i := range loginAccountLimit {
		if w := th.begin("ann", "a1"); w != 0 {
			t.Fatalf("attempt %d: limited for %v", i+1, w)
		}
	}
	if w := th.begin("ann", "a2"); w != loginWindow {
		t.Errorf("over the limit: wait %v, want %v", w, loginWindow)
	}
	now = now.Add(10 * time.Minute)
	if w := th.begin("ann", "a2"); w != 5*time.Minute {
		t.Errorf("10 minutes later: wait %v, want 5m", w)
	}
	now = now.Add(5 * time.Minute)
	if w := th.begin("ann", "a2"); w != 0 {
		t.Errorf("after the window: wait %v, want 0", w)
	}

	// A success clears the account and refunds its address's failure; an undecided attempt
	// refunds both.
	for range loginAddrLimit - 1 {
		th.begin("", "a3")
	}
	th.begin("bob", "a3")
	th.succeeded("bob", "a3")
	if w := th.begin("", "a3"); w != 0 {
		t.Errorf("the address's 20th failure: wait %v, want 0", w)
	}
	if w := th.begin("", "a3"); w == 0 {
		t.Error("the address's 21st attempt was not limited")
	}
	for range loginAccountLimit - 1 {
		th.begin("joe", "a4")
	}
	th.begin("joe", "a4")
	th.undecided("joe", "a4")
	if w := th.begin("joe", "a4"); w != 0 {
		t.Errorf("after an undecided attempt: wait %v, want 0", w)
	}
	if w := th.begin("joe", "a4"); w == 0 {
		t.Error("the account's sixth attempt was not limited")
	}
}

// TestLoginThrottleBounded: cycling 100 000 usernames and addresses keeps each table at its
// capacity, and the most recent keys are the ones kept.
func TestLoginThrottleBounded(t *testing.T) {
	th := newLoginThrottle(time.Now)
	const n = 100_000
	for i := range n {
		if w := th.begin(fmt.Sprintf("user%d", i), fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)); w != 0 {
			t.Fatalf("attempt %d limited for %v", i, w)
		}
	}
	accounts, addrs := th.len()
	if accounts > loginThrottleEntries || addrs > loginThrottleEntries {
		t.Errorf("%d accounts and %d addresses held, want at most %d each", accounts, addrs, loginThrottleEntries)
	}
	th.mu.Lock()
	defer th.mu.Unlock()
	if len(th.accounts.byKey) != accounts || len(th.addrs.byKey) != addrs {
		t.Errorf("index and order disagree: %d/%d, %d/%d", len(th.accounts.byKey), accounts, len(th.addrs.byKey), addrs)
	}
	if _, ok := th.accounts.byKey[fmt.Sprintf("user%d", n-1)]; !ok {
		t.Error("the most recent username was evicted")
	}
	if _, ok := th.accounts.byKey["user0"]; ok {
		t.Error("the oldest username was kept")
	}
}

func TestThrottleKeys(t *testing.T) {
	for _, tt := range []struct{ username, ip, account, addr string }{
		{"Ann", "192.0.2.1", "ann", "192.0.2.1"},
		{"ann", "::ffff:192.0.2.1", "ann", "192.0.2.1"},
		{"ann", "2001:db8:1:2:3:4:5:6", "ann", "2001:db8:1:2::/64"},
		{"no spaces allowed", "192.0.2.1", "", "192.0.2.1"},
		{strings.Repeat("a", 129), "192.0.2.1", "", "192.0.2.1"},
		{"ann", "", "ann", ""},
	} {
		account, addr := throttleKeys(tt.username, tt.ip)
		if account != tt.account || addr != tt.addr {
			t.Errorf("throttleKeys(%.20q, %q) = %q, %q, want %q, %q", tt.username, tt.ip, account, addr, tt.account, tt.addr)
		}
	}
}

func TestRetryAfter(t *testing.T) {
	for _, tt := range []struct {
		wait           time.Duration
		seconds, words string
	}{
		{15 * time.Minute, "900", "15 minutes"},
		{61 * time.Second, "61", "2 minutes"},
		{time.Minute, "60", "1 minute"},
		{300 * time.Millisecond, "1", "1 minute"},
	} {
		if s, w := retryAfter(tt.wait); s != tt.seconds || w != tt.words {
			t.Errorf("retryAfter(%v) = %q, %q, want %q, %q", tt.wait, s, w, tt.seconds, tt.words)
		}
	}
}
