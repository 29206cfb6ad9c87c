package providers

import (
	"context"
	"net/http"
	"net/url"
)

// Call is one logical vendor request made through a Caller (the resilient client): the caller
// applies the per-app and per-user rate limits, the short-TTL response cache, the per-request
// timeout, retries with backoff for transient and throttled failures, and the vendor's circuit
// breaker. Adapters describe the request and how to classify the answer; they never retry.
type Call struct {
	// User is the vendor user id: the per-user rate-limit bucket and part of the cache key.
	User string
	// Endpoint names the operation for metrics and the cache key, e.g. "measure/getmeas".
	Endpoint string
	// Params are the request parameters that identify the answer (cache key). Never tokens.
	Params url.Values
	// NewRequest builds the HTTP request; it is called again for each retry (so it can fetch a
	// fresh token from the TokenSource).
	NewRequest func(ctx context.Context) (*http.Request, error)
	// Classify inspects a response: nil for success, else an *UpstreamError (Withings answers
	// HTTP 200 with a failure status inside its envelope, so only the adapter can tell).
	Classify func(status int, header http.Header, body []byte) error
	// Cacheable allows serving an identical recent call from the cache.
	Cacheable bool
}

// Caller performs Calls. *Client is the implementation; it is an interface so that adapters
// depend only on the contract.
type Caller interface {
	// Call performs c and returns the response body of the successful attempt. Errors are
	// *UpstreamError (after retries), or ctx.Err(), or an *UpstreamError of kind transient
	// wrapping ErrBreakerOpen when the vendor's breaker is open.
	Call(ctx context.Context, c Call) ([]byte, error)
}
