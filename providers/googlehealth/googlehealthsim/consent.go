package googlehealthsim

import (
	"html/template"
	"net/http"
)

// consentPage is the simulated Google consent screen: pick an account, Allow or Deny. Plain
// HTML without JavaScript; html/template escapes every value.
var consentPage = template.Must(template.New("consent").Parse(`<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Google Health API (simulated) – Sign in</title></head>
<body>
<h1>Google Health API (simulated)</h1>
<p>An application (client <code>{{.ClientID}}</code>) wants to read your Fitbit data through the Google Health API and will be sent back to <code>{{.Redirect}}</code>.</p>
<form method="post" action="{{.Action}}">
<input type="hidden" name="nonce" value="{{.Nonce}}">
<fieldset>
<legend>Choose an account</legend>
{{range $i, $a := .Accounts}}<p><label><input type="radio" name="account" value="{{$a.Key}}"{{if eq $i 0}} checked{{end}}> {{$a.Name}} ({{$a.ID}})</label></p>
{{end}}</fieldset>
<p>It asks for:</p>
<ul>
{{range .Scopes}}<li><code>{{.}}</code></li>
{{end}}</ul>
<p><button type="submit" name="action" value="allow">Allow</button> <button type="submit" name="action" value="deny">Deny</button></p>
</form>
</body>
</html>
`))

// errorPage is Google's "Access blocked" page for a request it will not redirect (a bad client,
// a bad redirect_uri): shown to the user, never sent to the redirect URI.
var errorPage = template.Must(template.New("error").Parse(`<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Google Health API (simulated) – Error</title></head>
<body>
<h1>Access blocked: this request is invalid</h1>
<p>Error 400: {{.Code}}</p>
<p>{{.Message}}</p>
</body>
</html>
`))

type consentAccount struct{ Key, Name, ID string }

type consentView struct {
	ClientID, Redirect, Action, Nonce string
	Accounts                          []consentAccount
	Scopes                            []string
}

// htmlError answers an authorize request that cannot be redirected: status 400 and a page.
func htmlError(w http.ResponseWriter, code, message string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusBadRequest)
	_ = errorPage.Execute(w, struct{ Code, Message string }{code, message})
}
