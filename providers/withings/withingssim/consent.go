package withingssim

import (
	"bytes"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/openhealthexchange/ohx/providers/sim/simweb"
)

// consent is an authorize2 request the consent page was shown for, keyed by the page's nonce.
type consent struct {
	clientID, redirectURI, state, scope string
	expires                             time.Time
}

var consentPage = template.Must(template.New("consent").Parse(`<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>Withings</title></head>
<body>
<h1>Withings</h1>
<p>An application asks to access your health data ({{.Scope}}). Choose your account:</p>
<form method="post">
<input type="hidden" name="nonce" value="{{.Nonce}}">
{{range $i, $a := .Accounts}}<p><label><input type="radio" name="account" value="{{$a.Key}}"{{if eq $i 0}} checked{{end}}> {{$a.Name}} (user {{$a.UserID}})</label></p>
{{end}}<p><button type="submit" name="action" value="allow">Allow</button>
<button type="submit" name="action" value="deny">Deny</button></p>
</form>
</body>
</html>
`))

var errorPage = template.Must(template.New("error").Parse(`<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>Withings</title></head>
<body>
<h1>Withings</h1>
<p>This authorization request cannot be completed: {{.}}.</p>
</body>
</html>
`))

func renderHTML(w http.ResponseWriter, status int, t *template.Template, data any) {
	var b bytes.Buffer
	if err := t.Execute(&b, data); err != nil {
		http.Error(w, "template error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}

// serveAuthorize is the authorize2 consent page
// (https://developer.withings.com/api-reference/#tag/oauth2/operation/oauth2-authorize): GET
// validates response_type=code, client_id, an absolute http(s) redirect_uri (one of
// Config.RedirectURIs when they are set) and state and shows
// the accounts; the form's POST answers 303 to redirect_uri with code and state (Allow) or
// error=access_denied and state (Deny). An invalid request is a 400 page, never a redirect.
func (s *Simulator) serveAuthorize(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		s.showConsent(w, r)
	case http.MethodPost:
		s.decideConsent(w, r)
	default:
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

func (s *Simulator) showConsent(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var problem string
	switch {
	case q.Get("response_type") != "code":
		problem = "response_type must be code"
	case q.Get("client_id") != s.cfg.ClientID:
		problem = "unknown client_id"
	case !simweb.AbsoluteHTTP(q.Get("redirect_uri")):
		problem = "redirect_uri must be an absolute http(s) URL"
	case !simweb.Redirects(s.cfg.RedirectURIs).Allow(q.Get("redirect_uri")):
		problem = "redirect_uri is not registered for this application"
	case q.Get("state") == "":
		problem = "state is required"
	}
	if problem != "" {
		renderHTML(w, http.StatusBadRequest, errorPage, problem)
		return
	}
	nonce := randomToken()
	s.mu.Lock()
	now := s.now()
	s.sweep(now)
	s.consents[nonce] = &consent{clientID: q.Get("client_id"), redirectURI: q.Get("redirect_uri"),
		state: q.Get("state"), scope: q.Get("scope"), expires: now.Add(consentLifetime)}
	s.mu.Unlock()
	type acct struct{ Key, Name, UserID string }
	data := struct {
		Nonce, Scope string
		Accounts     []acct
	}{Nonce: nonce, Scope: q.Get("scope")}
	for _, a := range s.accounts {
		data.Accounts = append(data.Accounts, acct{a.p.Key, a.p.Given + " " + a.p.Family, a.userID})
	}
	renderHTML(w, http.StatusOK, consentPage, data)
}

func (s *Simulator) decideConsent(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		renderHTML(w, http.StatusBadRequest, errorPage, "malformed form")
		return
	}
	s.mu.Lock()
	c, ok := s.consents[r.PostForm.Get("nonce")]
	delete(s.consents, r.PostForm.Get("nonce")) // one-time
	if !ok || !s.now().Before(c.expires) {
		s.mu.Unlock()
		renderHTML(w, http.StatusBadRequest, errorPage, "the page expired or was already used")
		return
	}
	target, _ := url.Parse(c.redirectURI) // validated when the page was shown
	q := target.Query()
	q.Set("state", c.state)
	switch r.PostForm.Get("action") {
	case "allow":
		a := s.byKey[r.PostForm.Get("account")]
		if a == nil {
			s.mu.Unlock()
			renderHTML(w, http.StatusBadRequest, errorPage, "no such account")
			return
		}
		code := randomToken()
		s.codes[code] = &authCode{acct: a, clientID: c.clientID, redirectURI: c.redirectURI, scope: c.scope,
			expires: s.now().Add(codeLifetime)}
		q.Set("code", code)
		s.log.Info("consent given", "userid", a.userID)
	case "deny":
		// The OAuth 2.0 error response (RFC 6749 §4.1.2.1), as Withings redirects a refusal.
		q.Set("error", "access_denied")
	default:
		s.mu.Unlock()
		renderHTML(w, http.StatusBadRequest, errorPage, "choose Allow or Deny")
		return
	}
	s.mu.Unlock()
	target.RawQuery = strings.ReplaceAll(q.Encode(), "+", "%20")
	http.Redirect(w, r, target.String(), http.StatusSeeOther)
}
