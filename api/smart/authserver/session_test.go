package authserver

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/openhealthexchange/ohx/api/smart"
)

// signIn runs authorize → login → consent → approve in browser b and returns the code; the
// browser keeps its sign-in afterwards, as a real one does.
func (b *browser) signIn(clientID, user, scope, challenge string) string {
	t := b.e.t
	t.Helper()
	res, _ := b.do(http.MethodGet, "/auth/authorize?"+b.e.authorizeQuery(clientID, scope, challenge).Encode(), nil)
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/auth/login" {
		t.Fatalf("authorize: %d → %q", res.StatusCode, res.Header.Get("Location"))
	}
	_, page := b.do(http.MethodGet, "/auth/login", nil)
	res, _ = b.do(http.MethodPost, "/auth/login", url.Values{"csrf": {csrfOf(t, page)}, "username": {user}, "password": {password}})
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/auth/consent" {
		t.Fatalf("login: %d → %q", res.StatusCode, res.Header.Get("Location"))
	}
	return b.approve()
}

// approve reads the consent page and allows; it fails the test on anything but a code.
func (b *browser) approve() string {
	t := b.e.t
	t.Helper()
	res, page := b.do(http.MethodGet, "/auth/consent", nil)
	if res.StatusCode != http.StatusOK || !strings.Contains(page, "Allow access?") {
		t.Fatalf("consent page: %d\n%s", res.StatusCode, page)
	}
	res, _ = b.do(http.MethodPost, "/auth/consent", url.Values{"csrf": {csrfOf(t, page)}, "action": {"approve"}})
	loc, err := url.Parse(res.Header.Get("Location"))
	if res.StatusCode != http.StatusFound || err != nil || loc.Query().Get("code") == "" {
		t.Fatalf("approve: %d → %q", res.StatusCode, res.Header.Get("Location"))
	}
	return loc.Query().Get("code")
}

// sessionID is the browser's authorization session cookie.
func (b *browser) sessionID() string {
	u, _ := url.Parse(b.e.url + "/auth/")
	for _, c := range b.c.Jar.Cookies(u) {
		if c.Name == sessionCookie {
			return c.Value
		}
	}
	b.e.t.Fatal("no session cookie")
	return ""
}

func (e *env) mintLaunch(patient string) string {
	e.t.Helper()
	r := e.post("/auth/launch", url.Values{"patient": {patient}, "app_client_id": {"app"}}, "conf", e.secret)
	if r.status != http.StatusOK {
		e.t.Fatalf("mint launch: %d %v", r.status, r.body)
	}
	return r.body["launch"].(string)
}

// TestReusedSignInRefusesOtherLaunch: a browser signed in as a patient user cannot take an EHR
// launch minted for another patient.
func TestReusedSignInRefusesOtherLaunch(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	_, challenge := pkce()
	b.signIn("app", "ann", "launch/patient patient/*.rs", challenge)

	// An EHR launch minted for another patient: refused at once, no consent page, no code.
	q := e.authorizeQuery("app", "launch patient/*.rs", challenge)
	q.Set("launch", e.mintLaunch("p2"))
	res, _ := b.do(http.MethodGet, "/auth/authorize?"+q.Encode(), nil)
	loc, _ := url.Parse(res.Header.Get("Location"))
	if res.StatusCode != http.StatusFound || loc == nil || !strings.HasPrefix(loc.String(), appRedirect) ||
		loc.Query().Get("error") != "access_denied" || loc.Query().Get("state") != "st-123" {
		t.Fatalf("launch for p2 in ann's browser: %d → %q, want access_denied at the app", res.StatusCode, res.Header.Get("Location"))
	}
	res, page := b.do(http.MethodGet, "/auth/consent", nil)
	if strings.Contains(page, "Bob Jones") || strings.Contains(page, "Allow access?") {
		t.Errorf("consent still offered after the refused launch: %d\n%s", res.StatusCode, page)
	}
	// Even a hand-made approval with a valid CSRF token for the browser's session gets no code.
	res, _ = b.do(http.MethodPost, "/auth/consent", url.Values{"csrf": {e.s.csrfToken(b.sessionID())}, "action": {"approve"}})
	if res.StatusCode == http.StatusFound || strings.Contains(res.Header.Get("Location"), "code=") {
		t.Errorf("approval after the refused launch: %d → %q", res.StatusCode, res.Header.Get("Location"))
	}

}

// TestReusedSignInNeverPicks: a patient user's second launch/patient in the same browser goes
// to consent for their own record and never shows the practitioner picker.
func TestReusedSignInNeverPicks(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	_, challenge := pkce()
	b.signIn("app", "ann", "launch/patient patient/*.rs", challenge)
	verifier, challenge := pkce()
	res, _ := b.do(http.MethodGet, "/auth/authorize?"+e.authorizeQuery("app", "launch/patient patient/*.rs", challenge).Encode(), nil)
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/auth/consent" {
		t.Fatalf("second authorize: %d → %q", res.StatusCode, res.Header.Get("Location"))
	}
	for _, path := range []string{"/auth/consent", "/auth/consent?q=Jones", "/auth/consent?q="} {
		_, page := b.do(http.MethodGet, path, nil)
		if strings.Contains(page, "Choose a patient") || strings.Contains(page, "Bob Jones") || !strings.Contains(page, "Ann Smith") {
			t.Errorf("%s shows a patient user the picker or another patient:\n%s", path, page)
		}
	}
	// Picking is refused for a patient user even when posted by hand.
	_, page := b.do(http.MethodGet, "/auth/consent", nil)
	res, _ = b.do(http.MethodPost, "/auth/consent", url.Values{"csrf": {csrfOf(t, page)}, "action": {"pick"}, "patient": {"p2"}})
	if res.StatusCode != http.StatusBadRequest {
		t.Errorf("pick by a patient user: %d", res.StatusCode)
	}
	r := e.exchange("app", b.approve(), verifier)
	if r.status != http.StatusOK || r.body["patient"] != "p1" {
		t.Fatalf("token from the reused sign-in: %d %v", r.status, r.body)
	}
	if c := e.verify(r.body["access_token"].(string)); c.Patient != "p1" || c.FHIRUser != "Patient/p1" {
		t.Errorf("claims = %+v", c)
	}

	// An EHR launch for ann's own record in the same browser works.
	verifier, challenge = pkce()
	q := e.authorizeQuery("app", "launch patient/*.rs", challenge)
	q.Set("launch", e.mintLaunch("p1"))
	if res, _ := b.do(http.MethodGet, "/auth/authorize?"+q.Encode(), nil); res.Header.Get("Location") != "/auth/consent" {
		t.Fatalf("own launch: %d → %q", res.StatusCode, res.Header.Get("Location"))
	}
	if r := e.exchange("app", b.approve(), verifier); r.status != http.StatusOK || r.body["patient"] != "p1" {
		t.Errorf("own launch token: %d %v", r.status, r.body)
	}
}

// TestReusedSignInRemovedUser: a sign-in whose user was removed must sign in again.
func TestReusedSignInRemovedUser(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	_, challenge := pkce()
	b.signIn("app", "ann", "patient/*.rs", challenge)
	if err := e.s.RemoveUser(t.Context(), "ann"); err != nil {
		t.Fatal(err)
	}
	res, _ := b.do(http.MethodGet, "/auth/authorize?"+e.authorizeQuery("app", "patient/*.rs", challenge).Encode(), nil)
	if res.Header.Get("Location") != "/auth/login" {
		t.Errorf("removed user's sign-in reused: %d → %q", res.StatusCode, res.Header.Get("Location"))
	}
}

// TestPractitionerReusedSignInPicks: a practitioner's reused sign-in still gets the picker and
// keeps an EHR launch's patient.
func TestPractitionerReusedSignInPicks(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	_, challenge := pkce()
	b.signIn("app", "doc", "user/*.rs", challenge)
	res, _ := b.do(http.MethodGet, "/auth/authorize?"+e.authorizeQuery("app", "launch/patient patient/*.rs", challenge).Encode(), nil)
	if res.Header.Get("Location") != "/auth/consent" {
		t.Fatalf("practitioner's second authorize: %q", res.Header.Get("Location"))
	}
	if _, page := b.do(http.MethodGet, "/auth/consent?q=Jones", nil); !strings.Contains(page, "Choose a patient") || !strings.Contains(page, "Bob Jones") {
		t.Errorf("practitioner's picker:\n%s", page)
	}
	verifier, challenge := pkce()
	q := e.authorizeQuery("app", "launch patient/*.rs", challenge)
	q.Set("launch", e.mintLaunch("p2"))
	b.do(http.MethodGet, "/auth/authorize?"+q.Encode(), nil)
	if r := e.exchange("app", b.approve(), verifier); r.status != http.StatusOK || r.body["patient"] != "p2" {
		t.Errorf("practitioner's EHR launch: %d %v", r.status, r.body)
	}
}

// TestPatientUserScopes: a patient user granted user/ scopes gets a token that names them, so the
// resource server confines it (api's scope matrix), and the consent page says "your".
func TestPatientUserScopes(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	verifier, challenge := pkce()
	res, _ := b.do(http.MethodGet, "/auth/authorize?"+e.authorizeQuery("app", "user/*.rs", challenge).Encode(), nil)
	if res.Header.Get("Location") != "/auth/login" {
		t.Fatalf("authorize: %q", res.Header.Get("Location"))
	}
	_, page := b.do(http.MethodGet, "/auth/login", nil)
	b.do(http.MethodPost, "/auth/login", url.Values{"csrf": {csrfOf(t, page)}, "username": {"ann"}, "password": {password}})
	_, page = b.do(http.MethodGet, "/auth/consent", nil)
	if !strings.Contains(page, "Read and search your health records") || strings.Contains(page, "every patient") {
		t.Errorf("consent page for a patient user's user/ scope:\n%s", page)
	}
	r := e.exchange("app", b.approve(), verifier)
	if r.status != http.StatusOK {
		t.Fatalf("token: %d %v", r.status, r.body)
	}
	c := e.verify(r.body["access_token"].(string))
	if c.FHIRUser != "Patient/p1" {
		t.Fatalf("claims = %+v", c)
	}
	if p, err := c.Compartment(smart.ParseScopes(c.Scope).Allows("Patient", 's')); err != nil || p != "p1" {
		t.Errorf("compartment of a patient user's user/ token: %q %v", p, err)
	}
}

// TestAddUserIdentity: every user has a fhirUser that says truthfully what they are.
func TestAddUserIdentity(t *testing.T) {
	e := newEnv(t)
	for _, u := range []User{
		{Username: "x1", Role: RolePatient, Patient: "p1", FHIRUser: "Practitioner/d1"},
		{Username: "x2", Role: RolePatient, Patient: "p1", FHIRUser: "Patient/p2"},
		{Username: "x3", Role: RolePractitioner},
		{Username: "x4", Role: RolePractitioner, FHIRUser: "Patient/p1"},
		{Username: "x5", Role: RolePatient, Patient: "p 1"},
	} {
		if err := e.s.AddUser(t.Context(), u, password); err == nil {
			t.Errorf("AddUser(%+v) accepted", u)
		}
	}
}

// TestAddClientRedirectSchemes: a redirect URI must be one an app can receive a code at.
func TestAddClientRedirectSchemes(t *testing.T) {
	e := newEnv(t)
	for _, r := range []string{"javascript:alert(1)", "data:text/html,x", "JavaScript://x/%0aalert(1)", "file:///etc/passwd", "about:blank"} {
		if _, err := e.s.AddClient(t.Context(), Client{ID: "bad", Type: ClientPublic, RedirectURIs: []string{r}, Scopes: []string{"patient/*.rs"}}); err == nil {
			t.Errorf("redirect URI %q accepted", r)
		}
	}
	if _, err := e.s.AddClient(t.Context(), Client{ID: "native", Type: ClientPublic, RedirectURIs: []string{"com.example.app:/cb"}, Scopes: []string{"patient/*.rs"}}); err != nil {
		t.Errorf("native app redirect refused: %v", err)
	}
}
