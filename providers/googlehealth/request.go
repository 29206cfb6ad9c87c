package googlehealth

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"golang.org/x/oauth2"

	"github.com/openhealthexchange/ohx/providers"
)

// apiRequest describes one Google Health API call.
type apiRequest struct {
	user     string // vendor user id (rate-limit bucket, cache key)
	endpoint string // metrics and cache name, e.g. "dataPoints/list"
	method   string // GET (default) or POST
	path     string // "/v4/users/me/dataTypes/weight/dataPoints"
	query    url.Values
	body     any // JSON request body (POST)
	ts       oauth2.TokenSource
	// cacheable allows the caller's response cache (never for Fresh queries).
	cacheable bool
}

// do performs r through the caller with the user's bearer token and returns the answer's body.
// Errors are *providers.UpstreamError or ctx.Err().
func (c *Client) do(ctx context.Context, r apiRequest) ([]byte, error) {
	target := *c.api
	target.Path = strings.TrimRight(target.Path, "/") + r.path
	target.RawQuery = r.query.Encode()
	method := r.method
	if method == "" {
		method = http.MethodGet
	}
	var payload []byte
	if r.body != nil {
		var err error
		if payload, err = json.Marshal(r.body); err != nil {
			return nil, upstream(providers.KindPermanent, 0, fmt.Errorf("encode %s request: %w", r.endpoint, err))
		}
	}
	params := callParams(r.path, r.query, payload)
	return c.caller.Call(ctx, providers.Call{
		User:     r.user,
		Endpoint: r.endpoint,
		Params:   params,
		NewRequest: func(ctx context.Context) (*http.Request, error) {
			var rd *bytes.Reader
			if payload != nil {
				rd = bytes.NewReader(payload)
			}
			var req *http.Request
			var err error
			if rd != nil {
				req, err = http.NewRequestWithContext(ctx, method, target.String(), rd)
			} else {
				req, err = http.NewRequestWithContext(ctx, method, target.String(), nil)
			}
			if err != nil {
				return nil, err
			}
			req.Header.Set("Accept", "application/json")
			if payload != nil {
				req.Header.Set("Content-Type", "application/json")
			}
			if r.ts != nil {
				tok, err := r.ts.Token()
				if err != nil {
					return nil, err
				}
				req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
			}
			return req, nil
		},
		Classify:  classify,
		Cacheable: r.cacheable,
	})
}

// callParams is a call's cache key: the path (data type), the query and, for a body, its
// SHA-256 digest in hex. The body itself never goes into the params: an admin subscriber body
// carries endpointAuthorization.secret, and params are kept by the cache and may be logged.
func callParams(path string, query url.Values, payload []byte) url.Values {
	params := url.Values{"path": {path}}
	for k, vs := range query {
		params[k] = vs
	}
	if payload != nil {
		sum := sha256.Sum256(payload)
		params.Set("body_sha256", hex.EncodeToString(sum[:]))
	}
	return params
}

// decode unmarshals a successful body; a shape we do not understand is a permanent error (a
// schema change does not heal by retrying), never "no data".
func decode(body []byte, v any, what string) error {
	if err := json.Unmarshal(body, v); err != nil {
		return upstream(providers.KindPermanent, http.StatusOK, fmt.Errorf("unexpected %s answer: %w", what, err))
	}
	return nil
}
