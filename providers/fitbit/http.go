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

// answer is a successful response. It is always in metric units: Classify refuses any other
// unit system, so neither the response cache nor a shared in-flight answer can ever hand a
// decoder pounds or miles.
type answer struct {
	body []byte
}

// do performs r through the caller. A user whose hourly quota Fitbit reported as spent (its
// Fitbit-Rate-Limit-Remaining header reached 0,
// https://dev.fitbit.com/build/reference/web-api/developer-guide/application-design/#Rate-Limits)
// gets a throttled error with RetryAfter and no request is sent.
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
		classify = c.classifyData
	}
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
			// Only metric answers are accepted (and so cached or shared): ohx never sends
			// Accept-Language, so another unit system means a misconfigured proxy or account,
			// and mapping it could label pounds as kilograms.
			if err := metricOnly(header); err != nil {
				return upstream(providers.KindPermanent, status, err)
			}
			return nil
		},
		Cacheable: r.cacheable,
	}
	body, err := c.caller.Call(ctx, call)
	if err != nil {
		return answer{}, err
	}
	return answer{body: body}, nil
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

// errScopeDenied marks a 403 on a data request whose errorType says the token lacks the scope
// of that data (insufficient_scope, insufficient_permissions,
// https://dev.fitbit.com/build/reference/web-api/troubleshooting-guide/error-messages/#403-forbidden).
// Fitbit's consent screen lets the user untick single scopes
// (https://dev.fitbit.com/build/reference/web-api/developer-guide/application-design/#Scopes),
// and neither a refresh nor a new consent the user answers the same way grants it: it is not an
// auth error, and Fetch skips that endpoint.
var errScopeDenied = errors.New("the user did not grant the scope of this data")

// fitbitErrors is Fitbit's error body {"errors":[{"errorType":"…","message":"…"}]}; only the
// error types are read (the message may echo request data).
type fitbitErrors struct {
	Errors []struct {
		ErrorType string `json:"errorType"`
	} `json:"errors"`
}

// classifyData is the Classify of every API request but the token endpoint's: classifyHTTP,
// except that a 403 for a missing scope (a body naming insufficient_scope or
// insufficient_permissions, or no error body at all) is a permanent error wrapping
// errScopeDenied instead of an auth error.
func (c *Client) classifyData(status int, header http.Header, body []byte) error {
	if status == http.StatusForbidden && scopeDenied(body) {
		return upstream(providers.KindPermanent, status, fmt.Errorf("%w (http status %d)", errScopeDenied, status))
	}
	return c.classifyHTTP(status, header, body)
}

// scopeDenied reads a 403 body: true only when Fitbit says insufficient_scope (the user did not
// grant the data's scope) or insufficient_permissions (the app lacks access to it, e.g. intraday
// data without Fitbit's approval), https://dev.fitbit.com/build/reference/web-api/troubleshooting-guide/error-messages/.
// Any other 403 (no body, not Fitbit's JSON) stays an auth failure: skipping quietly would leave a
// dead connection answering empty pages forever.
func scopeDenied(body []byte) bool {
	var fe fitbitErrors
	if json.Unmarshal(body, &fe) != nil {
		return false
	}
	for _, e := range fe.Errors {
		switch e.ErrorType {
		case "insufficient_scope", "insufficient_permissions":
			return true
		}
	}
	return false
}

// decode decodes a successful body; a shape we do not understand is a permanent error (a schema
// change does not heal by retrying), never "no data".
func decode(body []byte, v any, what string) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return upstream(providers.KindPermanent, http.StatusOK, fmt.Errorf("unexpected %s answer: %w", what, shapeError(err)))
	}
	return nil
}

// errNotMetric is the cause of an answer refused because it is not in metric units.
var errNotMetric = errors.New("answer not in metric units")

// metricOnly refuses an answer in another unit system than metric. Fitbit writes answers in the
// unit system of the request's Accept-Language (en_US → US units, en_GB → UK units, none →
// metric,
// https://dev.fitbit.com/build/reference/web-api/developer-guide/application-design/#Unit-Systems);
// ohx never sends one. Fitbit documents no marker in the answer: a Content-Language header other
// than a metric locale is taken as that marker.
func metricOnly(h http.Header) error {
	v := strings.ReplaceAll(strings.TrimSpace(h.Get("Content-Language")), "-", "_")
	if strings.EqualFold(v, "en_US") || strings.EqualFold(v, "en_GB") {
		return fmt.Errorf("%w (Content-Language %s)", errNotMetric, v)
	}
	return nil
}
