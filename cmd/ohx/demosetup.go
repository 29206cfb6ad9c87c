package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// setup registers the demo's patients as an EHR would (conditional create by MRN), adds the
// patient sign-in user, connects every simulated account through the real connect flow and
// waits until the backfill is stored.
func (d *demo) setup(ctx context.Context) error {
	for _, p := range d.patients {
		id, err := d.createPatient(ctx, p)
		if err != nil {
			return err
		}
		p.id = id
	}
	// The last patient signs in (SMART standalone launch, the viewer) and connects their own
	// Withings account in a browser.
	me := d.patients[len(d.patients)-1]
	b := make([]byte, 12)
	rand.Read(b)
	d.login.username, d.login.password = "demo", base64.RawURLEncoding.EncodeToString(b)
	var errOut bytes.Buffer
	if err := run(ctx, []string{"users", "add", "-data-dir", d.dir, "-username", d.login.username,
		"-name", me.person.Given + " " + me.person.Family, "-role", "patient", "-patient", me.id, "-password-stdin"},
		d.getenv, strings.NewReader(d.login.password+"\n"), io.Discard, &errOut); err != nil {
		return fmt.Errorf("demo patient user: %w %s", err, strings.TrimSpace(errOut.String()))
	}
	for _, p := range d.patients {
		if p.vendor == nil {
			continue
		}
		if err := d.connect(ctx, p); err != nil {
			return fmt.Errorf("connect %s to %s: %w", p.mrn, p.vendor.display, err)
		}
	}
	return d.awaitBackfill(ctx)
}

// token is a Backend Services access token of the demo client, from the running server's token
// endpoint as any EHR gets one (renewed for every use: they last 5 minutes).
func (d *demo) token(ctx context.Context) (string, error) {
	var out, errOut bytes.Buffer
	if err := run(ctx, []string{"token", "-data-dir", d.dir, "-token-url", d.origin + "/auth/token"},
		d.getenv, nil, &out, &errOut); err != nil {
		return "", fmt.Errorf("demo token: %w %s", err, strings.TrimSpace(errOut.String()))
	}
	return strings.TrimSpace(out.String()), nil
}

// call sends a FHIR or connect API request with a fresh token and decodes a JSON answer.
func (d *demo) call(ctx context.Context, method, path string, header map[string]string, body, out any) (int, error) {
	tok, err := d.token(ctx)
	if err != nil {
		return 0, err
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, d.origin+path, rd)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Accept", "application/fhir+json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res, err := d.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 8<<20))
	if err != nil {
		return res.StatusCode, err
	}
	if res.StatusCode >= 300 {
		return res.StatusCode, fmt.Errorf("%s %s: %s: %s", method, path, res.Status, strings.TrimSpace(string(b)))
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return res.StatusCode, fmt.Errorf("%s %s: %w", method, path, err)
		}
	}
	return res.StatusCode, nil
}

// createPatient registers a patient by MRN (If-None-Exist: the same Patient on a rerun).
func (d *demo) createPatient(ctx context.Context, p *demoPatient) (string, error) {
	pt := map[string]any{
		"resourceType": "Patient",
		"identifier":   []map[string]string{{"system": demoMRNSystem, "value": p.mrn}},
		"name":         []map[string]any{{"family": p.person.Family, "given": []string{p.person.Given}}},
		"gender":       p.person.Gender,
		"birthDate":    p.person.BirthDate,
	}
	var got struct{ ID string }
	if _, err := d.call(ctx, http.MethodPost, "/fhir/Patient", map[string]string{"Content-Type": "application/fhir+json",
		"If-None-Exist": "identifier=" + demoMRNSystem + "|" + p.mrn}, pt, &got); err != nil {
		return "", fmt.Errorf("register patient %s: %w", p.mrn, err)
	}
	if got.ID == "" {
		return "", fmt.Errorf("register patient %s: no id in the answer", p.mrn)
	}
	return got.ID, nil
}

// link asks ohx for a one-time connect link of a patient, as the EHR would.
func (d *demo) link(ctx context.Context, patientID, provider string) (string, error) {
	var l struct{ URL string }
	if _, err := d.call(ctx, http.MethodPost, "/connect/links", nil, map[string]string{"patient": patientID, "provider": provider}, &l); err != nil {
		return "", err
	}
	return l.URL, nil
}

var (
	formAction = regexp.MustCompile(`(?is)<form[^>]*\baction="([^"]*)"`)
	formNonce  = regexp.MustCompile(`(?is)<input[^>]*name="nonce"[^>]*value="([^"]*)"`)
)

// connect walks the connect flow as the patient's browser would: the link, the simulated
// vendor's consent page (the account chosen, Allow), the callback on ohx.
func (d *demo) connect(ctx context.Context, p *demoPatient) error {
	link, err := d.link(ctx, p.id, p.vendor.provider)
	if err != nil {
		return err
	}
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(u string) (*http.Response, []byte, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return nil, nil, err
		}
		res, err := browser.Do(req)
		if err != nil {
			return nil, nil, err
		}
		defer res.Body.Close()
		b, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
		return res, b, err
	}
	res, _, err := get(link)
	if err != nil {
		return err
	}
	consent := res.Header.Get("Location")
	if res.StatusCode != http.StatusFound || !strings.HasPrefix(consent, p.vendor.url) {
		return fmt.Errorf("the link answered %s → %q, not the vendor's consent page", res.Status, withoutQuery(consent))
	}
	res, page, err := get(consent)
	if err != nil {
		return err
	}
	nonce := formNonce.FindSubmatch(page)
	if res.StatusCode != http.StatusOK || nonce == nil {
		return fmt.Errorf("the consent page answered %s without a form", res.Status)
	}
	action := consent
	if m := formAction.FindSubmatch(page); m != nil && len(m[1]) > 0 {
		base, _ := url.Parse(consent)
		ref, err := url.Parse(html.UnescapeString(string(m[1])))
		if err != nil {
			return fmt.Errorf("consent form action: %w", err)
		}
		action = base.ResolveReference(ref).String()
	}
	form := url.Values{"nonce": {html.UnescapeString(string(nonce[1]))}, "account": {p.person.Key}, "action": {"allow"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, action, strings.NewReader(form.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	res, err = browser.Do(req)
	if err != nil {
		return err
	}
	res.Body.Close()
	callback := res.Header.Get("Location")
	if res.StatusCode != http.StatusSeeOther || !strings.HasPrefix(callback, d.origin+"/connect/") {
		return fmt.Errorf("allowing on the consent page answered %s → %q", res.Status, withoutQuery(callback))
	}
	res, body, err := get(callback)
	if err != nil {
		return err
	}
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("the callback answered %s: %s", res.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

// withoutQuery is a URL for an error message: its query and fragment carry one-time link
// tokens, OAuth state and authorization codes.
func withoutQuery(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "(unparsable URL)"
	}
	p.RawQuery, p.Fragment, p.RawFragment = "", "", ""
	return p.String()
}

// expected is the number of Observations the simulator's data for a patient maps to: one per
// sample.
func (d *demo) expected(p *demoPatient) int {
	var n int
	for _, c := range p.vendor.sim.Served(p.person) {
		n += c
	}
	return n
}

// awaitBackfill waits until every connected patient's Observations are stored (their count
// reaches what the simulator served), at most two minutes plus a second per day of history.
func (d *demo) awaitBackfill(ctx context.Context) error {
	limit := 2*time.Minute + time.Duration(d.o.days)*time.Second
	deadline := time.Now().Add(limit)
	for {
		pending := 0
		for _, p := range d.patients {
			if p.vendor == nil {
				continue
			}
			n, err := d.count(ctx, p.id)
			if err != nil {
				return err
			}
			p.observed = n
			if n < d.expected(p) {
				pending++
			}
		}
		if pending == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			var s []string
			for _, p := range d.patients {
				if p.vendor != nil && p.observed < d.expected(p) {
					s = append(s, fmt.Sprintf("%s %d of %d", p.mrn, p.observed, d.expected(p)))
				}
			}
			return fmt.Errorf("the backfill did not finish in %s (%s); see %s/ohx.log", limit, strings.Join(s, ", "), d.dir)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// count is the number of a patient's Observations.
func (d *demo) count(ctx context.Context, patientID string) (int, error) {
	var b struct{ Total int }
	_, err := d.call(ctx, http.MethodGet, "/fhir/Observation?_summary=count&patient="+url.QueryEscape(patientID), nil, nil, &b)
	return b.Total, err
}
