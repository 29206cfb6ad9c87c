package simweb

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
)

func TestRedirects(t *testing.T) {
	if _, err := NewRedirects("x", []string{"/relative"}); err == nil || !strings.Contains(err.Error(), "x: registered redirect URI") {
		t.Errorf("a relative registered URI: %v", err)
	}
	r, err := NewRedirects("x", []string{"http://127.0.0.1:8080/connect/withings/callback"})
	if err != nil {
		t.Fatal(err)
	}
	for uri, want := range map[string]bool{
		"http://127.0.0.1:8080/connect/withings/callback":      true,
		"http://127.0.0.1:8080/connect/withings/callback/":     false,
		"http://127.0.0.1:8080/connect/withings/callback?x=1":  false,
		"https://attacker.example/connect/withings/callback":   false,
		"http://127.0.0.1:8080/connect/withings/callback#frag": false,
	} {
		if got := r.Allow(uri); got != want {
			t.Errorf("Allow(%q) = %v", uri, got)
		}
	}
	var any Redirects
	if !any.Allow("https://app.example/cb") || any.Allow("javascript:alert(1)") || any.Allow("//host/cb") {
		t.Error("with none registered: any absolute http(s) URI, nothing else")
	}
}

func TestRedactURL(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://127.0.0.1:1/webhook?verify=s3cret", nil)
	_, err := http.DefaultClient.Do(req)
	if err == nil || !strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("the client error should name the URL: %v", err)
	}
	red := RedactURL(err)
	if strings.Contains(red.Error(), "s3cret") || strings.Contains(red.Error(), "127.0.0.1") || !errors.Is(red, context.Canceled) {
		t.Errorf("redacted: %v", red)
	}
	plain := errors.New("plain")
	if RedactURL(plain) != plain {
		t.Error("an error without a URL changed")
	}
}
