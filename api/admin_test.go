package api_test

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/openhealthexchange/ohx/store"
)

// TestAdminScopes sends every operator route every kind of token: only a backend token with the
// admin scope or unconstrained system scopes on every permission gets in; patient/, user/,
// narrower system/ scopes, a user's or a launch's session holding the admin scope, and no token
// are refused before anything runs.
func TestAdminScopes(t *testing.T) {
	e := newAuthEnv(t)
	routes := []struct{ method, path string }{
		{"GET", "/admin/connections"},
		{"POST", "/admin/sync"},
		{"GET", "/admin/queue"},
		{"GET", "/admin/jobs/dead"},
		{"GET", "/admin/jobs/dead/x"},
		{"POST", "/admin/jobs/dead/x/retry"},
		{"DELETE", "/admin/jobs/dead/x"},
	}
	refused := map[string]string{
		"no token":              "",
		"patient v1":            e.mint("patient/*.*", "p1"),
		"patient v2":            e.mint("patient/*.cruds", "p1"),
		"user v1":               e.mint("user/*.*", "", withUser("Practitioner/1")),
		"user v2":               e.mint("user/*.cruds", "", withUser("Practitioner/1")),
		"system read v1":        e.mint("system/*.read", ""),
		"system rs v2":          e.mint("system/*.rs", ""),
		"system one type":       e.mint("system/Observation.cruds", ""),
		"system with a query":   e.mint("system/*.cruds?category=x", ""),
		"admin in a launch":     e.mint("admin patient/*.rs", "p1"),
		"admin for a user":      e.mint("admin user/*.rs", "", withUser("Practitioner/1")),
		"openid only":           e.mint("openid fhirUser", ""),
		"admin-like scope name": e.mint("administrator", ""),
	}
	allowed := map[string]string{
		"admin":                e.mint("admin", ""),
		"system v1":            e.mint("system/*.*", ""),
		"system v2":            e.mint("system/*.cruds", ""),
		"system read+write v1": e.mint("system/*.read system/*.write", ""),
	}
	for _, r := range routes {
		for name, tok := range refused {
			var res response
			if tok == "" {
				res = e.do(r.method, r.path, "{}")
			} else {
				res = e.do(r.method, r.path, "{}", "Authorization", "Bearer "+tok)
			}
			if res.status != http.StatusUnauthorized && res.status != http.StatusForbidden {
				t.Errorf("%s %s with %s: status %d, want 401 or 403: %s", r.method, r.path, name, res.status, res.body)
			}
			if res.status == http.StatusForbidden {
				if oo := res.outcome(t); len(oo.Issue) == 0 {
					t.Errorf("%s %s with %s: 403 without an OperationOutcome issue", r.method, r.path, name)
				}
			}
		}
		for name, tok := range allowed {
			res := e.do(r.method, r.path, "{}", "Authorization", "Bearer "+tok)
			if res.status == http.StatusUnauthorized || res.status == http.StatusForbidden {
				t.Errorf("%s %s with %s: refused (%d): %s", r.method, r.path, name, res.status, res.body)
			}
		}
	}
}

// TestAdminDeadLetters makes a dead letter on the store's queue, then lists, retries and
// discards dead letters through the operator API, and reads the queue's figures.
func TestAdminDeadLetters(t *testing.T) {
	e := newAuthEnv(t)
	tok := "Bearer " + e.mint("admin", "")
	ctx := t.Context()
	now := time.Now()
	dead := func(key string) string {
		t.Helper()
		if _, _, err := e.store.EnqueueJob(ctx, store.Job{Type: "fetch", Key: key}, now); err != nil {
			t.Fatal(err)
		}
		js, err := e.store.ClaimJobs(ctx, "w1", 1, time.Minute, now.Add(time.Second))
		if err != nil || len(js) != 1 {
			t.Fatalf("claim: %v %v", js, err)
		}
		if err := e.store.FailJob(ctx, js[0].ID, "w1", store.JobFailure{Error: "vendor permanent error (status 400)", Dead: true, At: now}); err != nil {
			t.Fatal(err)
		}
		return js[0].ID
	}
	a, b := dead("k-a"), dead("k-b")

	res := e.do("GET", "/admin/jobs/dead", "", "Authorization", tok)
	if res.status != http.StatusOK {
		t.Fatalf("list: %d %s", res.status, res.body)
	}
	var list struct {
		Jobs []struct {
			ID, LastError string
		} `json:"jobs"`
	}
	if err := json.Unmarshal(res.body, &list); err != nil || len(list.Jobs) != 2 {
		t.Fatalf("list: %s (%v)", res.body, err)
	}
	if list.Jobs[0].LastError == "" {
		t.Errorf("dead letter without its error: %s", res.body)
	}

	if res := e.do("POST", "/admin/jobs/dead/"+a+"/retry", "", "Authorization", tok); res.status >= 300 {
		t.Fatalf("retry: %d %s", res.status, res.body)
	}
	if j, err := e.store.GetJob(ctx, a); err != nil || j.Dead {
		t.Fatalf("retried job: %+v %v", j, err)
	}
	if res := e.do("DELETE", "/admin/jobs/dead/"+b, "", "Authorization", tok); res.status >= 300 {
		t.Fatalf("discard: %d %s", res.status, res.body)
	}
	if _, err := e.store.GetJob(ctx, b); err == nil {
		t.Fatal("discarded dead letter still stored")
	}
	// A pending job is no dead letter: neither discarded nor retried.
	if res := e.do("DELETE", "/admin/jobs/dead/"+a, "", "Authorization", tok); res.status != http.StatusNotFound {
		t.Errorf("discarding a pending job: %d, want 404: %s", res.status, res.body)
	}
	if _, err := e.store.GetJob(ctx, a); err != nil {
		t.Errorf("the pending job went: %v", err)
	}
	res = e.do("GET", "/admin/queue", "", "Authorization", tok)
	if res.status != http.StatusOK {
		t.Fatalf("queue: %d %s", res.status, res.body)
	}
	var q map[string]any
	if err := json.Unmarshal(res.body, &q); err != nil {
		t.Fatal(err)
	}
	t.Logf("queue: %s", res.body)
	if w, ok := q["waiting"].(float64); !ok || w != 1 {
		t.Errorf("queue waiting = %v, want 1: %s", q["waiting"], res.body)
	}
}
