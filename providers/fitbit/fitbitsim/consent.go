package fitbitsim

import (
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/openhealthexchange/ohx/providers/sim/simweb"
)

// authorizePath is the consent page, as at www.fitbit.com/oauth2/authorize
// (https://dev.fitbit.com/build/reference/web-api/authorization/authorize/).
const authorizePath = "/oauth2/authorize"

// knownScopes are the scopes Fitbit defines
// (https://dev.fitbit.com/build/reference/web-api/developer-guide/application-design/#Scopes).
var knownScopes = []string{"activity", "cardio_fitness", "electrocardiogram", "heartrate", "irregular_rhythm_notifications",
	"location", "nutrition", "oxygen_saturation", "profile", "respiratory_rate", "settings", "sleep", "social",
	"temperature", "weight"}

// pending is an authorize request shown on the consent page, waiting for the user's answer.
type pending struct {
	clientID, redirectURI, state, challenge string
	scopes                                  []string
	expires                                 time.Time
}

// authorizeRequest validates the authorize parameters: response_type=code, our client_id, an
// absolute http(s) redirect_uri (one of Config.RedirectURIs when they are set), known scopes,
// and the PKCE S256 challenge Fitbit requires. The string is the reason shown when it is invalid.
func (s *Simulator) authorizeRequest(q url.Values) (*pending, string) {
	p := &pending{clientID: q.Get("client_id"), redirectURI: q.Get("redirect_uri"), state: q.Get("state"),
		challenge: q.Get("code_challenge")}
	if p.clientID != s.cfg.ClientID {
		return nil, "The client id is invalid."
	}
	if !simweb.AbsoluteHTTP(p.redirectURI) {
		return nil, "The redirect_uri is not an absolute http or https URL."
	}
	if !simweb.Redirects(s.cfg.RedirectURIs).Allow(p.redirectURI) {
		// Compared exactly, as Fitbit compares it with the application's callback URLs.
		return nil, "The redirect_uri does not match a callback URL registered for the application."
	}
	if q.Get("response_type") != "code" {
		return nil, "The response_type must be code."
	}
	if p.challenge == "" || q.Get("code_challenge_method") != "S256" {
		return nil, "The code_challenge and code_challenge_method S256 are required."
	}
	for _, sc := range strings.Fields(q.Get("scope")) {
		if !slices.Contains(knownScopes, sc) {
			return nil, "The scope " + sc + " is invalid."
		}
		if !slices.Contains(p.scopes, sc) {
			p.scopes = append(p.scopes, sc)
		}
	}
	if len(p.scopes) == 0 {
		return nil, "At least one scope is required."
	}
	slices.Sort(p.scopes)
	return p, ""
}

type account struct{ Key, Name, UserID string }

type consentPage struct {
	Nonce    string
	Accounts []account
	Scopes   []string
}

var consentTmpl = template.Must(template.New("consent").Parse(`<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>Fitbit</title></head>
<body>
<h1>Fitbit</h1>
<p>An application asks to access your Fitbit data: {{range $i, $s := .Scopes}}{{if $i}}, {{end}}{{$s}}{{end}}.</p>
<form method="post">
<input type="hidden" name="nonce" value="{{.Nonce}}">
<fieldset><legend>Sign in as</legend>
{{range $i, $a := .Accounts}}<label><input type="radio" name="account" value="{{$a.Key}}"{{if not $i}} checked{{end}}> {{$a.Name}} ({{$a.UserID}})</label><br>
{{end}}</fieldset>
<button type="submit" name="action" value="allow">Allow</button>
<button type="submit" name="action" value="deny">Deny</button>
</form>
</body>
</html>
`))

var errorTmpl = template.Must(template.New("error").Parse(`<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>Fitbit</title></head>
<body><h1>Fitbit</h1><p>The application's request is invalid: {{.}}</p></body>
</html>
`))

func errorPage(w http.ResponseWriter, reason string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(http.StatusBadRequest)
	errorTmpl.Execute(w, reason)
}

// handleAuthorize is GET /oauth2/authorize: the consent page with the simulator's accounts and a
// one-time nonce bound to the request's parameters. An invalid request gets an error page (400),
// never a redirect: the redirect URI of an invalid request is not to be trusted.
func (s *Simulator) handleAuthorize(w http.ResponseWriter, r *http.Request) {
	p, reason := s.authorizeRequest(r.URL.Query())
	if p == nil {
		errorPage(w, reason)
		return
	}
	now := s.now()
	p.expires = now.Add(codeTTL)
	nonce := secret()
	s.mu.Lock()
	s.sweepLocked(now)
	s.pending[nonce] = p
	s.mu.Unlock()
	page := consentPage{Nonce: nonce, Scopes: p.scopes}
	for _, pp := range s.people {
		page.Accounts = append(page.Accounts, account{Key: pp.Key, Name: pp.Given + " " + pp.Family, UserID: s.userOf[pp.Key]})
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	consentTmpl.Execute(w, page)
}

// handleConsent is POST /oauth2/authorize: the user's answer. Allow redirects (303) to the
// redirect URI with code and state; Deny with error=access_denied. Fitbit appends the fragment
// "#_=_" to its redirects (https://dev.fitbit.com/build/reference/web-api/authorization/authorize/).
func (s *Simulator) handleConsent(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		errorPage(w, "The form is malformed.")
		return
	}
	nonce := r.PostForm.Get("nonce")
	now := s.now()
	s.mu.Lock()
	p, ok := s.pending[nonce]
	delete(s.pending, nonce)
	s.mu.Unlock()
	if !ok || !now.Before(p.expires) {
		errorPage(w, "The consent request is unknown, used or expired.")
		return
	}
	q := url.Values{}
	switch r.PostForm.Get("action") {
	case "allow":
		user, ok := "", false
		for _, pp := range s.people {
			if pp.Key == r.PostForm.Get("account") {
				user, ok = s.userOf[pp.Key], true
			}
		}
		if !ok {
			errorPage(w, "No account was chosen.")
			return
		}
		code := secret()
		s.mu.Lock()
		s.sweepLocked(now)
		s.codes[code] = &authCode{user: user, clientID: p.clientID, redirectURI: p.redirectURI, challenge: p.challenge,
			scopes: p.scopes, expires: now.Add(codeTTL)}
		s.mu.Unlock()
		q.Set("code", code)
	case "deny":
		q.Set("error", "access_denied")
		q.Set("error_description", "The user denied the request.")
	default:
		errorPage(w, "The answer is neither allow nor deny.")
		return
	}
	if p.state != "" {
		q.Set("state", p.state)
	}
	u, _ := url.Parse(p.redirectURI) // validated at the authorize request
	v := u.Query()
	for k, vs := range q {
		v[k] = vs
	}
	u.RawQuery = v.Encode()
	u.Fragment = "_=_"
	http.Redirect(w, r, u.String(), http.StatusSeeOther)
}
