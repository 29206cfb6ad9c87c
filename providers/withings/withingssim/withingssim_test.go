package withingssim

import (
	"bytes"
	"errors"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/oauth2"

	"github.com/openhealthexchange/ohx/fhir"
	"github.com/openhealthexchange/ohx/providers"
	"github.com/openhealthexchange/ohx/providers/sim"
	"github.com/openhealthexchange/ohx/providers/withings"
)

func TestConnect(t *testing.T) {
	h := newHarness(t, 7)
	for _, p := range h.w.People {
		g := h.connect(t, p)
		if g.UserID != userID(p) {
			t.Errorf("%s: connected user %q, want %q", p.Key, g.UserID, userID(p))
		}
		if g.Token.RefreshToken == "" || time.Until(g.Token.Expiry) < 2*time.Hour {
			t.Errorf("%s: token without refresh token or 3 h expiry: %v", p.Key, g.Token.Expiry)
		}
	}
}

// worldCounts are the samples the adapter should make of a person's history, counted from the
// world directly.
func worldCounts(w *sim.World, p *sim.Person) map[fhir.SampleKind]int {
	c := map[fhir.SampleKind]int{fhir.KindHeight: 1}
	for _, d := range w.DaysOf(p) {
		if _, ok := w.Weight(p, d); ok {
			c[fhir.KindWeight]++
			c[fhir.KindFatRatio]++
			c[fhir.KindFatMass]++
			c[fhir.KindFatFreeMass]++
		}
		if _, ok := w.BloodPressure(p, d); ok {
			c[fhir.KindBloodPressure]++
			c[fhir.KindHeartRate]++
		}
		if _, ok := w.Sleep(p, d); ok {
			c[fhir.KindSleep]++
		}
		if _, ok := w.SpO2(p, d); ok {
			c[fhir.KindSpO2]++
		}
		if w.Activity(p, d).Steps > 0 {
			for _, k := range []fhir.SampleKind{fhir.KindSteps, fhir.KindDistance, fhir.KindElevation, fhir.KindCalories} {
				c[k]++
			}
		}
	}
	c[fhir.KindECG] = len(w.ECGs(p))
	return c
}

func TestFetchHistory(t *testing.T) {
	h := newHarness(t, 7)
	for _, p := range h.w.People {
		t.Run(p.Key, func(t *testing.T) {
			g := h.connect(t, p)
			ts := oauth2.StaticTokenSource(g.Token)
			samples := fetchAll(t, h.ad, g.UserID, ts, providers.Query{Start: h.w.Start(p), End: h.w.Epoch.Add(48 * time.Hour)})
			got := map[fhir.SampleKind]int{}
			for _, s := range samples {
				got[s.Kind]++
			}
			if diff := cmp.Diff(h.s.Served(p), got); diff != "" {
				t.Errorf("fetched vs Served (-served +fetched):\n%s", diff)
			}
			if diff := cmp.Diff(worldCounts(h.w, p), got); diff != "" {
				t.Errorf("fetched vs world (-world +fetched):\n%s", diff)
			}
			checkValues(t, h, p, samples)
			// Incremental (lastupdate=0, heart list by recording time) reads the same.
			inc := fetchAll(t, h.ad, g.UserID, ts, providers.Query{})
			if len(inc) != len(samples) {
				t.Errorf("incremental read %d samples, the window %d", len(inc), len(samples))
			}
			devs, err := h.ad.Devices(t.Context(), g.UserID, ts)
			if err != nil || len(devs) != 3 {
				t.Fatalf("devices: %v %+v", err, devs)
			}
			for _, d := range devs {
				if d.Battery != batteryLevel(h.w.Battery(p, map[string]string{"Body+": devScale, "BPM Connect": devCuff, "ScanWatch": devWatch}[d.Model], h.clk.Now())) ||
					d.Timezone != p.Zone.String() || d.LastSync.IsZero() {
					t.Errorf("device %+v", d)
				}
				if d.ECG != (d.Model == "ScanWatch") {
					t.Errorf("%s: ECG %v", d.Model, d.ECG)
				}
			}
		})
	}
}

// checkValues spot-checks samples against the world: a weight, a day's steps, a night's sleep
// and every ECG's rhythm.
func checkValues(t *testing.T, h *harness, p *sim.Person, samples []fhir.Sample) {
	t.Helper()
	a := h.s.byKey[p.Key]
	by := map[fhir.SampleKind]map[int64]fhir.Sample{}
	for _, s := range samples {
		if by[s.Kind] == nil {
			by[s.Kind] = map[int64]fhir.Sample{}
		}
		by[s.Kind][s.Start.Unix()] = s
	}
	var weights, days, nights int
	for _, d := range h.w.DaysOf(p) {
		if wt, ok := h.w.Weight(p, d); ok {
			weights++
			s, ok := by[fhir.KindWeight][wt.At.Unix()]
			if !ok || math.Abs(num(t, s.Value)-wt.Kg) > 1e-9 || s.Unit != "kg" || s.DeviceID != a.devices[devScale] ||
				s.Start.Location().String() != p.Zone.String() {
				t.Errorf("weight at %v: %+v, want %v kg from the scale", wt.At, s, wt.Kg)
			}
			if f := by[fhir.KindFatRatio][wt.At.Unix()]; math.Abs(num(t, f.Value)-wt.FatPct) > 1e-9 || f.Unit != "%" {
				t.Errorf("fat ratio at %v: %+v, want %v %%", wt.At, f, wt.FatPct)
			}
		}
		if act := h.w.Activity(p, d); act.Steps > 0 {
			days++
			s, ok := by[fhir.KindSteps][d.Unix()]
			if !ok || num(t, s.Value) != float64(act.Steps) || s.Unit != "/d" {
				t.Errorf("steps of %s: %+v, want %d", d.Format(time.DateOnly), s, act.Steps)
			}
		}
		if sl, ok := h.w.Sleep(p, d); ok {
			nights++
			s, ok := by[fhir.KindSleep][sl.Start.Unix()]
			want := sl.Minutes(sim.StageLight) + sl.Minutes(sim.StageDeep) + sl.Minutes(sim.StageREM)
			if !ok || num(t, s.Value) != float64(want) || s.Unit != "min" || !s.End.Equal(sl.End) {
				t.Errorf("sleep of %s: %+v, want %d min", d.Format(time.DateOnly), s, want)
			}
		}
	}
	if weights == 0 || days == 0 || nights == 0 {
		t.Errorf("a history without weights, days or nights: %d %d %d", weights, days, nights)
	}
	rhythm := map[string]string{sim.RhythmNormal: fhir.RhythmAFibNotDetected, sim.RhythmAFib: fhir.RhythmAFibDetected,
		sim.RhythmInconclusive: fhir.RhythmInconclusive}
	for _, e := range h.w.ECGs(p) {
		s, ok := by[fhir.KindECG][e.At.Unix()]
		if !ok || s.Code != rhythm[e.Rhythm] || s.Waveform == nil || len(s.Waveform.Samples) != e.Seconds*ecgHz {
			t.Errorf("ECG at %v (%s): %+v", e.At, e.Rhythm, s.Code)
		}
	}
}

func TestPush(t *testing.T) {
	h := newHarness(t, 11)
	p := h.w.People[1]
	now := testEpoch.Add(26 * time.Hour).Add(17 * time.Second)
	h.clk.Set(now)
	g := h.connect(t, p)
	ts := oauth2.StaticTokenSource(g.Token)

	type received struct {
		method, path string
		header       http.Header
		body         []byte
	}
	got := make(chan received, 10)
	var heads atomic.Int32
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodHead { // Withings' check of the callback URL
			heads.Add(1)
			return
		}
		b, _ := io.ReadAll(r.Body)
		got <- received{r.Method, r.URL.Path, r.Header.Clone(), b}
	}))
	defer target.Close()
	callback := target.URL + "/webhooks/withings/" + testHookSecret
	if n, err := h.s.Push(t.Context()); n != 0 || err != nil {
		t.Fatalf("push before any subscription: %d %v", n, err)
	}
	if err := h.ad.Subscribe(t.Context(), g.UserID, ts, callback, nil); err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	if heads.Load() == 0 {
		t.Error("subscribe did not check the callback URL")
	}
	// A callback URL that does not answer is refused (status 293).
	var ue *providers.UpstreamError
	if err := h.ad.Subscribe(t.Context(), g.UserID, ts, "http://127.0.0.1:1/webhooks/withings/x", nil); !errors.As(err, &ue) || ue.Status != statusBadCallback {
		t.Errorf("unreachable callback: %v", err)
	}
	before := h.s.Served(p)
	n, err := h.s.Push(t.Context())
	if n != 2 || err != nil {
		t.Fatalf("first push: %d accepted, %v; want weight and blood pressure", n, err)
	}
	after := h.s.Served(p)
	for _, k := range []fhir.SampleKind{fhir.KindWeight, fhir.KindBloodPressure, fhir.KindHeartRate, fhir.KindFatMass} {
		if after[k] != before[k]+1 {
			t.Errorf("Served[%s] %d → %d", k, before[k], after[k])
		}
	}
	wantKinds := map[int64]fhir.SampleKind{1: fhir.KindWeight, 4: fhir.KindBloodPressure}
	for range n {
		r := <-got
		if r.method != http.MethodPost || r.header.Get("Content-Type") != "application/x-www-form-urlencoded" {
			t.Fatalf("delivery %s %s", r.method, r.header.Get("Content-Type"))
		}
		res, err := h.ad.HandleWebhook(t.Context(), providers.WebhookRequest{Method: r.method, Header: r.header, Body: r.body,
			Secret: strings.TrimPrefix(r.path, "/webhooks/withings/"), Received: now})
		if err != nil || res.Status != http.StatusOK || len(res.Notifications) != 1 {
			t.Fatalf("webhook %s: %v %+v", r.body, err, res)
		}
		nt := res.Notifications[0]
		form, _ := url.ParseQuery(string(r.body))
		var appli int64
		switch form.Get("appli") {
		case "1":
			appli = 1
		case "4":
			appli = 4
		}
		if nt.VendorUser != g.UserID || nt.Event != providers.EventData || now.Before(nt.Start) || !now.Before(nt.End) {
			t.Errorf("notification %+v for a measure at %v", nt, now)
		}
		live := fetchAll(t, h.ad, g.UserID, ts, providers.Query{Kinds: nt.Kinds, Start: nt.Start, End: nt.End, Fresh: true})
		var found bool
		for _, s := range live {
			if s.Kind != wantKinds[appli] || !s.Start.Equal(now) {
				continue
			}
			found = true
			switch s.Kind {
			case fhir.KindWeight:
				if want := h.w.LiveWeight(p, now).Kg; math.Abs(num(t, s.Value)-want) > 1e-9 {
					t.Errorf("live weight %s, want %v", s.Value, want)
				}
			case fhir.KindBloodPressure:
				want := h.w.LiveBloodPressure(p, now)
				if len(s.Components) != 2 || num(t, s.Components[0].Value) != float64(want.Systolic) || num(t, s.Components[1].Value) != float64(want.Diastolic) {
					t.Errorf("live blood pressure %+v, want %+v", s.Components, want)
				}
			}
		}
		if !found {
			t.Errorf("appli %d: the window %v–%v holds no live %s: %d samples", appli, nt.Start, nt.End, wantKinds[appli], len(live))
		}
	}
	// The second push records a weight only.
	h.clk.Set(now.Add(30 * time.Second))
	if n, err := h.s.Push(t.Context()); n != 1 || err != nil {
		t.Fatalf("second push: %d %v", n, err)
	}
	if r := <-got; !strings.Contains(string(r.body), "appli=1") {
		t.Errorf("second push delivered %s", r.body)
	}
	// A callback that refuses counts as not accepted and is reported.
	refuse := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodHead {
			w.WriteHeader(http.StatusInternalServerError)
		}
	}))
	defer refuse.Close()
	if err := h.ad.Subscribe(t.Context(), g.UserID, ts, refuse.URL+"/webhooks/withings/x", nil); err != nil {
		t.Fatal(err)
	}
	n, err = h.s.Push(t.Context())
	if n != 2 || err == nil {
		t.Errorf("push with a refusing callback: %d accepted, %v", n, err)
	}
	for range 2 {
		<-got
	}
}

func TestDeterminism(t *testing.T) {
	a, b, other := newHarness(t, 42), newHarness(t, 42), newHarness(t, 43)
	p := a.w.People[2]
	ta := a.connect(t, p).Token.AccessToken
	tb := b.connect(t, b.w.People[2]).Token.AccessToken
	to := other.connect(t, other.w.People[2]).Token.AccessToken
	reqs := []struct {
		path string
		form url.Values
	}{
		{"/measure", url.Values{"action": {"getmeas"}, "meastypes": {"1,4,5,6,8,9,10,11,54"}, "category": {"1"}, "lastupdate": {"0"}}},
		{"/measure", url.Values{"action": {"getmeas"}, "meastypes": {"1"}, "startdate": {"0"}, "enddate": {"1999999999"}, "offset": {"20"}}},
		{"/v2/measure", url.Values{"action": {"getactivity"}, "data_fields": {"steps,distance,elevation,calories"}, "lastupdate": {"0"}}},
		{"/v2/sleep", url.Values{"action": {"getsummary"}, "startdateymd": {"2026-01-01"}, "enddateymd": {"2026-03-31"}}},
		{"/v2/heart", url.Values{"action": {"list"}, "startdate": {"0"}, "enddate": {"1999999999"}}},
		{"/v2/user", url.Values{"action": {"getdevice"}}},
	}
	for _, r := range reqs {
		ba, bb := post(t, a.srv.URL, r.path, ta, r.form), post(t, b.srv.URL, r.path, tb, r.form)
		if !bytes.Equal(ba, bb) {
			t.Errorf("%s %s: two simulators on one seed differ", r.path, r.form.Get("action"))
		}
		if !bytes.HasPrefix(ba, []byte(`{"status":0,`)) {
			t.Errorf("%s %s: %.200s", r.path, r.form.Get("action"), ba)
		}
		if r.form.Get("action") != "getdevice" && bytes.Equal(ba, post(t, other.srv.URL, r.path, to, r.form)) {
			t.Errorf("%s %s: another seed serves the same", r.path, r.form.Get("action"))
		}
	}
	// One heart get, by the first signal of the listing.
	sig := a.s.byKey[p.Key].ecgs[0].SignalID
	f := url.Values{"action": {"get"}, "signalid": {strconv.FormatInt(sig, 10)}}
	if !bytes.Equal(post(t, a.srv.URL, "/v2/heart", ta, f), post(t, b.srv.URL, "/v2/heart", tb, f)) {
		t.Error("heart get differs")
	}
}

func TestConsentRefusals(t *testing.T) {
	h := newHarness(t, 5)
	p := h.w.People[0]
	authURL := h.ad.AuthCodeURL("st", "")

	t.Run("deny", func(t *testing.T) {
		_, _, nonce := getConsent(t, authURL)
		res := decide(t, authURL, nonce, p.Key, "deny")
		loc, _ := url.Parse(res.Header.Get("Location"))
		if res.StatusCode != http.StatusSeeOther || loc.Query().Get("error") != "access_denied" || loc.Query().Get("state") != "st" || loc.Query().Has("code") {
			t.Errorf("deny: %d %s", res.StatusCode, loc)
		}
		// The nonce was single use.
		if res := decide(t, authURL, nonce, p.Key, "allow"); res.StatusCode != http.StatusBadRequest {
			t.Errorf("reused nonce: %d", res.StatusCode)
		}
	})
	t.Run("bad request", func(t *testing.T) {
		u, _ := url.Parse(authURL)
		for name, mod := range map[string]func(q url.Values){
			"client_id":        func(q url.Values) { q.Set("client_id", "evil") },
			"relative":         func(q url.Values) { q.Set("redirect_uri", "/callback") },
			"javascript":       func(q url.Values) { q.Set("redirect_uri", "javascript:alert(1)") },
			"no response_type": func(q url.Values) { q.Del("response_type") },
		} {
			q := u.Query()
			mod(q)
			v := *u
			v.RawQuery = q.Encode()
			res, err := noRedirect.Get(v.String())
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode != http.StatusBadRequest || res.Header.Get("Location") != "" || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") {
				t.Errorf("%s: %d %q", name, res.StatusCode, res.Header.Get("Location"))
			}
		}
	})
	t.Run("reused code", func(t *testing.T) {
		code := h.code(t, h.ad, p.Key)
		if _, err := h.ad.Exchange(t.Context(), code, ""); err != nil {
			t.Fatal(err)
		}
		_, err := h.ad.Exchange(t.Context(), code, "")
		var ue *providers.UpstreamError
		if !errors.As(err, &ue) || ue.Kind != providers.KindPermanent || ue.Status != statusInvalidParams {
			t.Errorf("reused code: %v", err)
		}
	})
	t.Run("wrong redirect_uri", func(t *testing.T) {
		code := h.code(t, h.ad, p.Key)
		other := h.adapter(t, "https://elsewhere.example/callback")
		if _, err := other.Exchange(t.Context(), code, ""); err == nil {
			t.Error("a code exchanged with another redirect_uri")
		}
	})
	t.Run("wrong client secret", func(t *testing.T) {
		code := h.code(t, h.ad, p.Key)
		pc, _ := providers.NewClient(providers.ClientConfig{Provider: withings.Name, MaxRetries: -1, CacheTTL: -1}, h.srv.Client(), nil, nil)
		bad, _ := withings.New(withings.Config{ClientID: testClientID, ClientSecret: "nope", RedirectURL: testRedirect, APIURL: h.srv.URL}, pc, nil)
		if _, err := bad.Exchange(t.Context(), code, ""); err == nil {
			t.Error("exchange with a wrong client secret")
		}
	})
}

func TestTokens(t *testing.T) {
	h := newHarness(t, 5)
	p := h.w.People[0]
	g := h.connect(t, p)
	ctx := t.Context()
	// An unknown token is status 401: an auth error.
	_, err := h.ad.Devices(ctx, g.UserID, oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "nope"}))
	var ue *providers.UpstreamError
	if !errors.As(err, &ue) || ue.Kind != providers.KindAuth {
		t.Errorf("unknown token: %v", err)
	}
	// Refresh rotates; the old refresh token dies when the new access token is used.
	nt, err := h.ad.Refresh(ctx, g.Token)
	if err != nil || nt.AccessToken == g.Token.AccessToken || nt.RefreshToken == g.Token.RefreshToken {
		t.Fatalf("refresh: %v", err)
	}
	if _, err := h.ad.Devices(ctx, g.UserID, oauth2.StaticTokenSource(nt)); err != nil {
		t.Fatal(err)
	}
	if _, err := h.ad.Refresh(ctx, g.Token); !errors.Is(err, providers.ErrConsentRevoked) {
		t.Errorf("superseded refresh token: %v", err)
	}
	// An expired access token is refused.
	h.clk.Set(h.clk.Now().Add(3*time.Hour + time.Second))
	if _, err := h.ad.Devices(ctx, g.UserID, oauth2.StaticTokenSource(nt)); !errors.As(err, &ue) || ue.Kind != providers.KindAuth {
		t.Errorf("expired token: %v", err)
	}
	nt, err = h.ad.Refresh(ctx, nt)
	if err != nil {
		t.Fatal(err)
	}
	// Revoke (signed, with a nonce) ends access.
	if err := h.ad.Revoke(ctx, g.UserID, nt); err != nil {
		t.Fatalf("revoke: %v", err)
	}
	if _, err := h.ad.Devices(ctx, g.UserID, oauth2.StaticTokenSource(nt)); !errors.As(err, &ue) || ue.Kind != providers.KindAuth {
		t.Errorf("revoked token: %v", err)
	}
	if n, err := h.s.Push(ctx); n != 0 || err != nil {
		t.Errorf("push after revoke: %d %v", n, err)
	}
}

func TestEnv(t *testing.T) {
	h := newHarness(t, 1)
	want := map[string]string{
		"OHX_WITHINGS_CLIENT_ID": testClientID, "OHX_WITHINGS_CLIENT_SECRET": testClientSecret,
		"OHX_WITHINGS_API_URL": "http://127.0.0.1:9", "OHX_WITHINGS_AUTH_URL": "http://127.0.0.1:9/oauth2_user/authorize2",
	}
	if diff := cmp.Diff(want, h.s.Env("http://127.0.0.1:9")); diff != "" {
		t.Errorf("Env (-want +got):\n%s", diff)
	}
}
