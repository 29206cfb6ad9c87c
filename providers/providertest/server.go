// Package providertest fakes vendor APIs at the HTTP layer for adapter and client tests: a route
// table maps requests to recorded payloads under the module's testdata/ directory, inline bodies,
// sequences of answers or handler funcs; unexpected requests fail the test; every request is
// recorded so tests can assert "exactly one refresh call". RunAdapter is the adapter contract
// suite every adapter runs against such a fake.
package providertest

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// Route is one answer of the fake vendor. Exactly one of File, Body, Seq and Handler is
// normally set; an empty Route answers 200 with an empty body.
type Route struct {
	// File is a path under the module's testdata/ directory ("withings/getmeas_page1.json"),
	// served as the response body. A missing file fails the test.
	File string
	// Body is an inline response body.
	Body string
	// Status is the HTTP status (default 200).
	Status int
	// Header is added to the response. Content-Type defaults to application/json.
	Header http.Header
	// Delay holds the answer back (or until the client gives up), for timeout tests.
	Delay time.Duration
	// Seq answers repeated requests in turn: the first request gets Seq[0], the second Seq[1], …;
	// once exhausted the last element answers every further request. The other fields of a
	// Route with a Seq are ignored.
	Seq []Route
	// Handler answers the request itself (after it was recorded and matched). The request's
	// body can still be read, and r.Form is parsed.
	Handler http.HandlerFunc
}

// Recorded is one request the fake received.
type Recorded struct {
	Method string
	Path   string
	// Form holds the query and (for form-encoded bodies) the body parameters.
	Form url.Values
	// Header is the request header (Authorization included, so tests can check which token
	// was used).
	Header http.Header
	Body   []byte
	// Route is the key of the route that answered, "" when none matched.
	Route string
	At    time.Time
}

// Server is a fake vendor API. It is safe for concurrent use.
type Server struct {
	t   testing.TB
	srv *httptest.Server

	mu       sync.Mutex
	routes   map[string]*route
	requests []Recorded
}

type route struct {
	key    string
	method string
	path   string
	params url.Values // conditions: each key must have exactly this value
	r      Route
	hits   int
}

// NewServer starts a fake vendor. Route keys are "METHOD /path", optionally followed by
// space-separated name=value conditions on request parameters (query or form body), e.g.
// "POST /measure action=getmeas" or "POST /v2/oauth2 action=requesttoken grant_type=refresh_token".
// A request is answered by the matching route with the most conditions. The server is closed in
// t.Cleanup.
func NewServer(t testing.TB, routes map[string]Route) *Server {
	t.Helper()
	s := &Server{t: t, routes: map[string]*route{}}
	for k, r := range routes {
		s.Set(k, r)
	}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.srv.Close)
	return s
}

// URL is the server's base URL, e.g. "http://127.0.0.1:41234" (no trailing slash).
func (s *Server) URL() string { return s.srv.URL }

// Client returns an *http.Client for the server.
func (s *Server) Client() *http.Client { return s.srv.Client() }

// Set adds or replaces a route (and resets its hit count), e.g. after the test has learnt URL().
func (s *Server) Set(key string, r Route) {
	s.t.Helper()
	rt, err := parseKey(key)
	if err != nil {
		s.t.Fatalf("providertest: %v", err)
	}
	rt.r = r
	s.mu.Lock()
	defer s.mu.Unlock()
	s.routes[key] = rt
}

// Hits is how many requests the route with this key answered.
func (s *Server) Hits(key string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rt, ok := s.routes[key]; ok {
		return rt.hits
	}
	s.t.Errorf("providertest: Hits(%q): no such route", key)
	return 0
}

// Requests returns every request received so far, in arrival order.
func (s *Server) Requests() []Recorded {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Recorded(nil), s.requests...)
}

// Reset forgets the recorded requests and the hit counts (sequences start again).
func (s *Server) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = nil
	for _, rt := range s.routes {
		rt.hits = 0
	}
}

func parseKey(key string) (*route, error) {
	f := strings.Fields(key)
	if len(f) < 2 || !strings.HasPrefix(f[1], "/") {
		return nil, fmt.Errorf("route key %q: want \"METHOD /path [name=value …]\"", key)
	}
	rt := &route{key: key, method: strings.ToUpper(f[0]), path: f[1], params: url.Values{}}
	for _, c := range f[2:] {
		name, value, ok := strings.Cut(c, "=")
		if !ok || name == "" {
			return nil, fmt.Errorf("route key %q: condition %q is not name=value", key, c)
		}
		rt.params.Set(name, value)
	}
	return rt, nil
}

func (rt *route) matches(method, path string, form url.Values) bool {
	if rt.method != method || rt.path != path {
		return false
	}
	for name := range rt.params {
		if form.Get(name) != rt.params.Get(name) {
			return false
		}
	}
	return true
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, "read body", http.StatusBadRequest)
		return
	}
	// Parse the form from a copy, then give the handler a fresh body.
	r.Body = io.NopCloser(bytes.NewReader(body))
	if err := r.ParseForm(); err != nil {
		s.t.Errorf("providertest: %s %s: parse form: %v", r.Method, r.URL.Path, err)
	}
	r.Body = io.NopCloser(bytes.NewReader(body))

	rec := Recorded{
		Method: r.Method, Path: r.URL.Path, Form: cloneValues(r.Form),
		Header: r.Header.Clone(), Body: body, At: time.Now(),
	}
	s.mu.Lock()
	var best *route
	for _, rt := range s.routes {
		if rt.matches(r.Method, r.URL.Path, r.Form) && (best == nil || len(rt.params) > len(best.params) ||
			len(rt.params) == len(best.params) && rt.key < best.key) {
			best = rt
		}
	}
	var answer Route
	if best != nil {
		rec.Route = best.key
		answer = best.r
		if len(answer.Seq) > 0 {
			answer = answer.Seq[min(best.hits, len(answer.Seq)-1)]
		}
		best.hits++
	}
	s.requests = append(s.requests, rec)
	s.mu.Unlock()

	if best == nil {
		s.t.Errorf("providertest: unexpected request %s %s (params %s)", r.Method, r.URL.Path, paramNames(r.Form))
		http.NotFound(w, r)
		return
	}
	s.answer(w, r, answer)
}

func (s *Server) answer(w http.ResponseWriter, r *http.Request, a Route) {
	if a.Delay > 0 {
		select {
		case <-time.After(a.Delay):
		case <-r.Context().Done():
			return
		}
	}
	if a.Handler != nil {
		a.Handler(w, r)
		return
	}
	body := []byte(a.Body)
	if a.File != "" {
		b, err := os.ReadFile(TestdataPath(s.t, a.File))
		if err != nil {
			s.t.Errorf("providertest: %v", err)
			http.Error(w, "missing fixture", http.StatusInternalServerError)
			return
		}
		body = b
	}
	for k, vs := range a.Header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	if w.Header().Get("Content-Type") == "" {
		w.Header().Set("Content-Type", "application/json")
	}
	status := a.Status
	if status == 0 {
		status = http.StatusOK
	}
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// paramNames lists parameter names (not values: they may hold tokens) for failure messages,
// except action, which names the vendor operation.
func paramNames(form url.Values) string {
	var names []string
	for k := range form {
		if k == "action" {
			names = append(names, "action="+form.Get(k))
			continue
		}
		names = append(names, k)
	}
	sort.Strings(names)
	return strings.Join(names, ",")
}

func cloneValues(v url.Values) url.Values {
	out := make(url.Values, len(v))
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}

var (
	rootOnce sync.Once
	rootDir  string
	rootErr  error
)

// ModuleRoot is the directory holding the module's go.mod, found by walking up from the
// working directory (go test runs in the package directory).
func ModuleRoot(t testing.TB) string {
	t.Helper()
	rootOnce.Do(func() {
		dir, err := os.Getwd()
		if err != nil {
			rootErr = err
			return
		}
		for {
			if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
				rootDir = dir
				return
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				rootErr = fmt.Errorf("no go.mod above the working directory")
				return
			}
			dir = parent
		}
	})
	if rootErr != nil {
		t.Fatalf("providertest: module root: %v", rootErr)
	}
	return rootDir
}

// TestdataPath resolves a path under the module's testdata/ directory.
func TestdataPath(t testing.TB, rel string) string {
	t.Helper()
	return filepath.Join(ModuleRoot(t), "testdata", filepath.FromSlash(rel))
}
