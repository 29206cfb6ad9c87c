package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestFHIRClientFlowEndToEnd does what python fhirclient does against the R4 base of the running
// server: a practitioner's standalone launch with aud …/fhir/r4, user.read() of the fhirUser, an
// R4 search paged through its next links, and a refresh without client_id.
func TestFHIRClientFlowEndToEnd(t *testing.T) {
	origin, env := authServer(t)
	getenv := func(k string) string { return env[k] }
	const redirect = "https://app.example/cb"
	var out, errOut bytes.Buffer
	if err := run(t.Context(), []string{"clients", "add", "-id", "app", "-type", "public", "-redirect-uri", redirect}, getenv, nil, &out, &errOut); err != nil {
		t.Fatalf("clients add: %v %s", err, errOut.String())
	}
	if err := run(t.Context(), []string{"users", "add", "-username", "doc", "-name", "Dr Doc", "-role", "practitioner", "-practitioner", "d1", "-password-stdin"},
		getenv, strings.NewReader("correct horse battery\n"), &out, &errOut); err != nil {
		t.Fatalf("users add: %v %s", err, errOut.String())
	}
	r4 := origin + "/fhir/r4"
	l := newLaunchClient(t, origin, redirect)
	verifier := "fhirclient-verifier-with-enough-entropy-0123456789abcdef"
	sum := sha256.Sum256([]byte(verifier))
	q := url.Values{"response_type": {"code"}, "client_id": {"app"}, "redirect_uri": {redirect}, "state": {"s1"}, "aud": {r4},
		"scope": {"openid fhirUser user/*.rs offline_access"}, "code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])},
		"code_challenge_method": {"S256"}}
	res, _ := l.do(http.MethodGet, "/auth/authorize?"+q.Encode(), nil)
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/auth/login" {
		t.Fatalf("authorize with aud %s: %d → %q", r4, res.StatusCode, res.Header.Get("Location"))
	}
	_, page := l.do(http.MethodGet, "/auth/login", nil)
	res, _ = l.do(http.MethodPost, "/auth/login", url.Values{"csrf": {l.csrf(page)}, "username": {"doc"}, "password": {"correct horse battery"}})
	_, consent := l.do(http.MethodGet, res.Header.Get("Location"), nil)
	res, _ = l.do(http.MethodPost, "/auth/consent", url.Values{"csrf": {l.csrf(consent)}, "action": {"approve"}})
	loc, _ := url.Parse(res.Header.Get("Location"))
	if loc.Query().Get("code") == "" {
		t.Fatalf("approve: %d → %q", res.StatusCode, loc)
	}
	var tok struct {
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
	}
	token := func(form url.Values) int {
		t.Helper()
		r, err := http.PostForm(origin+"/auth/token", form)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Body.Close()
		tok.AccessToken, tok.RefreshToken = "", ""
		json.NewDecoder(r.Body).Decode(&tok)
		return r.StatusCode
	}
	if st := token(url.Values{"grant_type": {"authorization_code"}, "code": {loc.Query().Get("code")}, "redirect_uri": {redirect},
		"code_verifier": {verifier}, "client_id": {"app"}}); st != 200 || tok.RefreshToken == "" {
		t.Fatalf("token: %d, refresh token %v", st, tok.RefreshToken != "")
	}
	// user.read(): the fhirUser, on both bases.
	for _, base := range []string{r4, origin + "/fhir"} {
		var p struct {
			ResourceType string
			ID           string
			Name         []struct{ Text string }
		}
		if st := getJSON(t, base+"/Practitioner/d1", tok.AccessToken, &p); st != 200 || p.ID != "d1" || len(p.Name) != 1 || p.Name[0].Text != "Dr Doc" {
			t.Errorf("%s/Practitioner/d1: %d %+v", base, st, p)
		}
	}
	// A paged R4 search, followed without any header.
	var ids []string
	for next := r4 + "/Patient?_count=1"; next != ""; {
		var b struct {
			Total *int
			Link  []struct{ Relation, URL string }
			Entry []struct{ FullURL string }
		}
		if st := getJSON(t, next, tok.AccessToken, &b); st != 200 {
			t.Fatalf("GET %s: %d", next, st)
		}
		if b.Total == nil || *b.Total != 2 {
			t.Errorf("GET %s: total %v, want 2", next, b.Total)
		}
		next = ""
		for _, l := range b.Link {
			if l.Relation == "next" {
				next = l.URL
			}
		}
		for _, e := range b.Entry {
			ids = append(ids, e.FullURL)
		}
	}
	if len(ids) != 2 || !strings.HasPrefix(ids[0], r4+"/Patient/") {
		t.Errorf("paged fullUrls %v, want two under %s", ids, r4)
	}
	// The refresh fhirclient sends: no client_id, no authentication.
	if st := token(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}}); st != 200 || tok.AccessToken == "" {
		t.Fatalf("refresh without client_id: %d", st)
	}
	if st := getJSON(t, r4+"/Practitioner/d1", tok.AccessToken, nil); st != 200 {
		t.Errorf("Practitioner/d1 with the refreshed token: %d", st)
	}
}
