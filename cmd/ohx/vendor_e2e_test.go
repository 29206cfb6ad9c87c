package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
	"time"
)

// ehrToken is a system token of the demo backend client, as `ohx token` prints it.
func ehrToken(t *testing.T, origin string, env map[string]string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	if err := run(t.Context(), []string{"token", "-token-url", origin + "/auth/token"}, func(k string) string { return env[k] }, nil, &out, &errOut); err != nil {
		t.Fatalf("ohx token: %v %s", err, errOut.String())
	}
	return strings.TrimSpace(out.String())
}

// connectInBrowser runs the connect flow of patient to provider as a browser would: the EHR's
// link, the redirect to the vendor's consent page (which must start with consentPrefix and ask
// for PKCE), and the vendor's redirect back with code. It returns the consent URL and the
// callback's status.
func connectInBrowser(t *testing.T, origin, token, provider, patient, consentPrefix, code string) (*url.URL, int) {
	t.Helper()
	res, link := postJSON(t, origin+"/connect/links", token, map[string]string{"patient": patient, "provider": provider})
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("create %s link: %d %v", provider, res.StatusCode, link)
	}
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	r, err := browser.Get(link["url"].(string))
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	consent, err := url.Parse(r.Header.Get("Location"))
	if r.StatusCode != http.StatusFound || err != nil || !strings.HasPrefix(consent.String(), consentPrefix) {
		t.Fatalf("%s link → %d %q, want a redirect to %s", provider, r.StatusCode, r.Header.Get("Location"), consentPrefix)
	}
	q := consent.Query()
	if q.Get("redirect_uri") != origin+"/connect/"+provider+"/callback" || q.Get("state") == "" {
		t.Fatalf("%s consent URL without our callback or a state: %s", provider, consent)
	}
	if q.Get("code_challenge") == "" || q.Get("code_challenge_method") != "S256" {
		t.Errorf("%s consent URL without a PKCE S256 challenge: %s", provider, consent)
	}
	r, err = browser.Get(origin + "/connect/" + provider + "/callback?code=" + url.QueryEscape(code) + "&state=" + url.QueryEscape(q.Get("state")))
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	return consent, r.StatusCode
}

// observation is what the vendor end-to-end tests read of a stored Observation.
type observation struct {
	ID   string `json:"id"`
	Meta struct {
		VersionID string `json:"versionId"`
		Source    string `json:"source"`
	} `json:"meta"`
	Identifier []struct{ System, Value string } `json:"identifier"`
	Code       struct {
		Coding []struct{ System, Code string } `json:"coding"`
	} `json:"code"`
	EffectiveDateTime string `json:"effectiveDateTime"`
	EffectivePeriod   *struct {
		Start, End string
	} `json:"effectivePeriod"`
	ValueQuantity *struct {
		Value json.Number `json:"value"`
		Code  string      `json:"code"`
	} `json:"valueQuantity"`
	Device *struct{ Reference string } `json:"device"`
}

// observations reads every Observation of the patient (at most 1000).
func observations(t *testing.T, origin, token, patient string) []observation {
	t.Helper()
	var b struct {
		Entry []struct{ Resource observation }
	}
	if code := getJSON(t, origin+"/fhir/Observation?patient="+patient+"&_count=1000", token, &b); code != http.StatusOK {
		t.Fatalf("search Observations of %s: %d", patient, code)
	}
	out := make([]observation, len(b.Entry))
	for i, e := range b.Entry {
		out[i] = e.Resource
	}
	return out
}

// waitFor polls cond until it holds or 30 s have passed.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// hasIdentifierUnder reports whether o has an identifier whose system starts with prefix.
func (o observation) hasIdentifierUnder(prefix string) bool {
	for _, id := range o.Identifier {
		if strings.HasPrefix(id.System, prefix) {
			return true
		}
	}
	return false
}
