package providertest_test

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/openhealthexchange/ohx/providers/providertest"
)

func post(t *testing.T, s *providertest.Server, path string, form url.Values) (int, string) {
	t.Helper()
	res, err := s.Client().PostForm(s.URL()+path, form)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, string(b)
}

func TestRoutes(t *testing.T) {
	s := providertest.NewServer(t, map[string]providertest.Route{
		"POST /measure action=getmeas":        {File: "providertest/hello.json"},
		"POST /v2/oauth2 action=requesttoken": {Body: `{"status":0}`},
		"POST /v2/oauth2 action=requesttoken grant_type=refresh_token": {Seq: []providertest.Route{
			{Body: `{"status":601}`, Header: http.Header{"Retry-After": {"1"}}},
			{Body: `{"status":0}`},
		}},
		"POST /v2/user": {Status: http.StatusTeapot, Body: "short and stout"},
		"POST /handler": {Handler: func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			io.WriteString(w, r.FormValue("x")+"|"+string(b))
		}},
	})

	tests := []struct {
		path       string
		form       url.Values
		wantStatus int
		wantBody   string
	}{
		{"/measure", url.Values{"action": {"getmeas"}}, 200, "{\"status\":0,\"body\":{\"hello\":\"fixture\"}}\n"},
		{"/v2/oauth2", url.Values{"action": {"requesttoken"}, "grant_type": {"authorization_code"}}, 200, `{"status":0}`},
		{"/v2/oauth2", url.Values{"action": {"requesttoken"}, "grant_type": {"refresh_token"}}, 200, `{"status":601}`},
		{"/v2/oauth2", url.Values{"action": {"requesttoken"}, "grant_type": {"refresh_token"}}, 200, `{"status":0}`},
		{"/v2/oauth2", url.Values{"action": {"requesttoken"}, "grant_type": {"refresh_token"}}, 200, `{"status":0}`},
		{"/v2/user", url.Values{"action": {"getdevice"}}, http.StatusTeapot, "short and stout"},
		{"/handler", url.Values{"x": {"1"}}, 200, "1|x=1"},
	}
	for _, tt := range tests {
		status, body := post(t, s, tt.path, tt.form)
		if status != tt.wantStatus || body != tt.wantBody {
			t.Errorf("POST %s %v: got %d %q, want %d %q", tt.path, tt.form, status, body, tt.wantStatus, tt.wantBody)
		}
	}

	if got := s.Hits("POST /v2/oauth2 action=requesttoken grant_type=refresh_token"); got != 3 {
		t.Errorf("refresh hits: got %d, want 3", got)
	}
	if got := s.Hits("POST /v2/oauth2 action=requesttoken"); got != 1 {
		t.Errorf("requesttoken hits: got %d, want 1", got)
	}
	reqs := s.Requests()
	if len(reqs) != len(tests) {
		t.Fatalf("got %d recorded requests, want %d", len(reqs), len(tests))
	}
	if diff := cmp.Diff(url.Values{"action": {"getmeas"}}, reqs[0].Form); diff != "" {
		t.Errorf("recorded form (-want +got):\n%s", diff)
	}
	if reqs[0].Route != "POST /measure action=getmeas" || reqs[0].Method != "POST" || reqs[0].Path != "/measure" {
		t.Errorf("recorded request: got %+v", reqs[0])
	}

	s.Reset()
	if got := len(s.Requests()); got != 0 {
		t.Errorf("after Reset: %d requests", got)
	}
}

func TestQueryParameters(t *testing.T) {
	s := providertest.NewServer(t, map[string]providertest.Route{
		"GET /1/user/-/devices.json": {Body: "[]"},
	})
	res, err := s.Client().Get(s.URL() + "/1/user/-/devices.json?a=b")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if got := s.Requests()[0].Form.Get("a"); got != "b" {
		t.Errorf("query parameter: got %q, want %q", got, "b")
	}
	if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("content type: got %q", ct)
	}
}

// fakeTB records failures instead of failing the test, to test that unexpected requests fail.
type fakeTB struct {
	testing.TB
	failed []string
}

func (f *fakeTB) Errorf(format string, args ...any) { f.failed = append(f.failed, format) }
func (f *fakeTB) Helper()                           {}

func TestUnexpectedRequestFails(t *testing.T) {
	ftb := &fakeTB{TB: t}
	s := providertest.NewServer(ftb, map[string]providertest.Route{
		"POST /measure action=getmeas": {Body: "{}"},
	})
	status, _ := post(t, s, "/measure", url.Values{"action": {"getactivity"}})
	if status != http.StatusNotFound {
		t.Errorf("status: got %d, want 404", status)
	}
	if len(ftb.failed) != 1 {
		t.Errorf("got %d failures, want 1", len(ftb.failed))
	}
	if got := s.Requests()[0].Route; got != "" {
		t.Errorf("unmatched request route: got %q, want empty", got)
	}
}
