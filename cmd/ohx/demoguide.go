package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/openhealthexchange/ohx/fhir"
)

// demoManifest is what the demo set up, written to DATA_DIR/demo.json (and -manifest): the
// guided start's facts for scripts, and the expectations of the e2e suite (e2e/).
type demoManifest struct {
	Seed         int64               `json:"seed"`
	FHIRBase     string              `json:"fhir_base"`
	TokenURL     string              `json:"token_url"`
	TokenCommand []string            `json:"token_command"`
	DataDir      string              `json:"data_dir"`
	PushURL      string              `json:"push_url"`   // POST: push now
	ServedURL    string              `json:"served_url"` // GET: what the simulators serve now
	MRNSystem    string              `json:"mrn_system"`
	Vendors      map[string]string   `json:"vendors"` // provider → simulator URL
	Patients     []demoManifestEntry `json:"patients"`
	Login        struct {
		Username string `json:"username"`
		Password string `json:"password"`
		Patient  string `json:"patient"`
	} `json:"login"`
	ConnectLink string `json:"connect_link,omitempty"`
}

// demoManifestEntry is one patient.
type demoManifestEntry struct {
	ID       string `json:"id"`
	MRN      string `json:"mrn"`
	Given    string `json:"given"`
	Family   string `json:"family"`
	Provider string `json:"provider,omitempty"` // "" when not connected
	// Account is the simulated vendor account (sim.Person.Key) of the patient; the one not
	// connected yet holds it at Withings.
	Account string `json:"account"`
	// Served counts, per sample kind, what the simulator served at the end of the set-up.
	Served       map[fhir.SampleKind]int `json:"served,omitempty"`
	Observations int                     `json:"observations"`
}

// manifest collects the demo's facts.
func (d *demo) manifest(ctx context.Context, base, controlURL string) demoManifest {
	m := demoManifest{Seed: d.o.seed, FHIRBase: base, TokenURL: d.origin + "/auth/token", DataDir: d.dir,
		PushURL: controlURL + "/push", ServedURL: controlURL + "/served",
		MRNSystem: demoMRNSystem, Vendors: map[string]string{}}
	m.TokenCommand = []string{ohxCommand(), "token", "-data-dir", d.dir, "-token-url", m.TokenURL}
	for _, v := range d.vendors {
		m.Vendors[v.provider] = v.url
	}
	for _, p := range d.patients {
		e := demoManifestEntry{ID: p.id, MRN: p.mrn, Given: p.person.Given, Family: p.person.Family, Account: p.person.Key,
			Observations: p.observed}
		if p.vendor != nil {
			e.Provider, e.Served = p.vendor.provider, p.vendor.sim.Served(p.person)
		} else {
			// Not connected yet: what their Withings account holds, for when they connect it.
			e.Served = d.vendors[0].sim.Served(p.person)
		}
		m.Patients = append(m.Patients, e)
	}
	me := d.patients[len(d.patients)-1]
	m.Login.Username, m.Login.Password, m.Login.Patient = d.login.username, d.login.password, me.id
	if l, err := d.link(ctx, me.id, "withings"); err == nil {
		m.ConnectLink = l
	} else {
		d.log.Warn("demo: no connect link", "err", err)
	}
	return m
}

// ohxCommand is this binary's absolute path: the printed commands work from any directory.
func ohxCommand() string {
	exe, err := os.Executable()
	if err != nil {
		return "ohx"
	}
	return exe
}

// shellQuote quotes a word for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:=@") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// printGuide prints the guided start: every command in it works when pasted while the demo runs.
func (d *demo) printGuide(w io.Writer, m demoManifest) {
	var quoted []string
	for _, a := range m.TokenCommand {
		quoted = append(quoted, shellQuote(a))
	}
	first := m.Patients[0]
	me := m.Patients[len(m.Patients)-1]
	fmt.Fprintf(w, "\nohx demo is running: seed %d, %d simulated people with %d days of history", m.Seed, len(m.Patients), d.o.days)
	if d.o.pushEvery > 0 {
		fmt.Fprintf(w, ", new measurements pushed every %s", d.o.pushEvery)
	}
	fmt.Fprintf(w, ".\n\n  FHIR base     %s\n  data          %s (server log: ohx.log; facts: demo.json)\n", m.FHIRBase, m.DataDir)
	for _, v := range d.vendors {
		fmt.Fprintf(w, "  %-13s %s (simulated)\n", v.provider, v.url)
	}
	fmt.Fprintf(w, "\nPatients (identifier system %s):\n", m.MRNSystem)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for i, p := range m.Patients {
		vendor := "not connected yet"
		if d.patients[i].vendor != nil {
			vendor = d.patients[i].vendor.display
		}
		fmt.Fprintf(tw, "  %s\t%s %s\tPatient/%s\t%s\t%d Observations\n", p.MRN, p.Given, p.Family, p.ID, vendor, p.Observations)
	}
	tw.Flush()
	obs := m.FHIRBase + "/Observation?patient=" + first.ID + "&code=http://loinc.org|29463-7&_sort=-date&_count=5"
	fmt.Fprintf(w, `
1. Get an access token (SMART Backend Services, valid 5 minutes):

   TOKEN=$(%s)

2. Read %s's latest weights, as an EHR would:

   curl -s -H "Authorization: Bearer $TOKEN" '%s'

   and by MRN instead of our id:

   curl -s -H "Authorization: Bearer $TOKEN" '%s/Observation?patient.identifier=%s|%s&_count=5'

`, strings.Join(quoted, " "), first.Given, obs, m.FHIRBase, m.MRNSystem, first.MRN)
	if m.ConnectLink != "" {
		fmt.Fprintf(w, `3. Connect %s %s's Withings account: open this link in a browser (once, within 15 minutes),
   choose %s on the simulated consent page and Allow:

   %s

   A new link:

   curl -s -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
        -d '{"patient":"%s","provider":"withings"}' %s/connect/links

`, me.Given, me.Family, me.Given, m.ConnectLink, me.ID, d.origin)
	}
	fmt.Fprintf(w, `4. The simulated vendors push a webhook for every connected account`)
	if d.o.pushEvery > 0 {
		fmt.Fprintf(w, " every %s", d.o.pushEvery)
	}
	fmt.Fprintf(w, `; push one now and search again:

   curl -s -X POST %s

5. See %s %s's record in the built-in SMART app: open %s/app/ and sign in with
   username %s, password %s
   (the same sign-in works for any SMART app's standalone launch, issuer %s)

Stop with Ctrl-C.
`, m.PushURL, me.Given, me.Family, d.origin, m.Login.Username, m.Login.Password, m.FHIRBase)
}
