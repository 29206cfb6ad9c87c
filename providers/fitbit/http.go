package fitbit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"golang.org/x/oauth2"

	"github.com/openhealthexchange/ohx/providers"
)

// request describes one Fitbit call.
type request struct {
	user     string // vendor user id ("" for the code exchange and refresh)
	endpoint string // metrics and cache name, e.g. "body/weight"
	method   string // default GET
	path     string // "/1/user/-/profile.json"
	query    url.Values
	form     url.Values // form body (POST)
	// params are the cache-key parameters; nil means the path and query (never secrets).
	params    url.Values
	ts        oauth2.TokenSource // bearer token; nil for client-authenticated calls
	basic     bool               // HTTP Basic client authentication (token and revoke endpoints)
	header    http.Header
	cacheable bool
	// classify replaces classifyHTTP (the token endpoint turns invalid_grant into a revoked consent).
	classify func(status int, header http.Header, body []byte) error
}

// answer is a successful response: its body and the unit system it was written in.
type answer struct {
	body  []byte
	units unitSystem
}

// do performs r through the caller. A user whose hourly quota Fitbit reported as spent gets a
// throttled error with RetryAfter and no request is sent (prior-art vector F15).
func (c *Client) do(ctx context.Context, r request) (answer, error) {
	if err := c.limits.check(r.user, c.now()); err != nil {
		return answer{}, err
	}
	method := r.method
	if method == "" {
		method = http.MethodGet
	}
	target := c.api.JoinPath(r.path)
	target.RawQuery = r.query.Encode()
	params := r.params
	if params == nil {
		params = url.Values{"path": {r.path}}
		for k, v := range r.query {
			params[k] = v
		}
	}
	var encoded string
	if r.form != nil {
		encoded = r.form.Encode()
	}
	classify := r.classify
	if classify == nil {
		classify = c.classifyHTTP
	}
	// The unit system is read from the answer Classify accepted; a cached answer was accepted
	// (and its units checked) when it was first read, and we never ask for anything but metric.
	var mu sync.Mutex
	units := unitsMetric
	call := providers.Call{
		User:     r.user,
		Endpoint: r.endpoint,
		Params:   params,
		NewRequest: func(ctx context.Context) (*http.Request, error) {
			var body *strings.Reader
			if r.form != nil {
				body = strings.NewReader(encoded)
			} else {
				body = strings.NewReader("")
			}
			req, err := http.NewRequestWithContext(ctx, method, target.String(), body)
			if err != nil {
				return nil, err
			}
			if r.form != nil {
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			}
			req.Header.Set("Accept", "application/json")
			// No Accept-Language, ever: without it Fitbit answers in metric units
			// (https://dev.fitbit.com/build/reference/web-api/developer-guide/application-design/#Localization).
			for k, vs := range r.header {
				for _, v := range vs {
					req.Header.Add(k, v)
				}
			}
			if r.basic {
				// Authorization: Basic base64(client_id:client_secret)
				// (https://dev.fitbit.com/build/reference/web-api/authorization/oauth2-token/).
				req.SetBasicAuth(c.cfg.ClientID, c.cfg.ClientSecret)
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
		Classify: func(status int, header http.Header, body []byte) error {
			c.limits.observe(r.user, header, c.now())
			if err := classify(status, header, body); err != nil {
				var ue *providers.UpstreamError
				if errors.As(err, &ue) && ue.Kind == providers.KindThrottled {
					c.limits.block(r.user, ue.RetryAfter, c.now())
				}
				return err
			}
			u, err := unitsOf(header)
			if err != nil {
				return upstream(providers.KindPermanent, status, err)
			}
			mu.Lock()
			units = u
			mu.Unlock()
			return nil
		},
		Cacheable: r.cacheable,
	}
	body, err := c.caller.Call(ctx, call)
	if err != nil {
		return answer{}, err
	}
	mu.Lock()
	defer mu.Unlock()
	return answer{body: body, units: units}, nil
}

// classifyHTTP classifies by HTTP status (Fitbit's statuses are meaningful,
// https://dev.fitbit.com/build/reference/web-api/troubleshooting-guide/error-handling/): 401 and
// 403 are auth errors, 429 is throttling until Fitbit-Rate-Limit-Reset (or Retry-After), 5xx
// transient, other 4xx permanent.
func (c *Client) classifyHTTP(status int, header http.Header, _ []byte) error {
	err := providers.ClassifyHTTP(Name, status, header)
	if err == nil {
		return nil
	}
	ue := err.(*providers.UpstreamError)
	if ue.Kind == providers.KindThrottled {
		if d := resetAfter(header); d > 0 {
			ue.RetryAfter = d
		}
	}
	return ue
}

// decode decodes a successful body; a shape we do not understand is a permanent error (a schema
// change does not heal by retrying), never "no data".
func decode(body []byte, v any, what string) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return upstream(providers.KindPermanent, http.StatusOK, fmt.Errorf("unexpected %s answer: %w", what, err))
	}
	return nil
}

// unitSystem is the unit system of an answer
// (https://dev.fitbit.com/build/reference/web-api/developer-guide/application-design/#Localization:
// en_US → US units, en_GB → UK units, anything else → metric).
type unitSystem string

const (
	unitsMetric unitSystem = "METRIC"
	unitsUS     unitSystem = "en_US"
)

// unitsOf reads the unit system of an answer. ⚠ Fitbit documents the unit system as following the
// request's Accept-Language, which we never send; it documents no marker in the answer. A
// Content-Language header, when present, is taken as that marker: en_US means pounds and miles;
// en_GB (stone) is refused rather than mislabelled.
func unitsOf(h http.Header) (unitSystem, error) {
	switch v := strings.ReplaceAll(strings.TrimSpace(h.Get("Content-Language")), "-", "_"); {
	case strings.EqualFold(v, "en_US"):
		return unitsUS, nil
	case strings.EqualFold(v, "en_GB"):
		return "", fmt.Errorf("answer in UK units (%s), which ohx does not convert", v)
	default:
		return unitsMetric, nil
	}
}
