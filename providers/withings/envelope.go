package withings

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/oauth2"

	"github.com/openhealthexchange/ohx/providers"
)

// envelope is every Withings answer: HTTP 200 with {"status": <int>, "body": {…}, "error": "…"}
// (response_status in the API reference, https://developer.withings.com/api-reference). Only status 0 is success.
type envelope struct {
	Status flexInt         `json:"status"`
	Body   json.RawMessage `json:"body"`
	Error  string          `json:"error"`
}

// Withings status codes with a meaning of their own (https://developer.withings.com/api-reference; the response_status
// section of the Withings API reference).
const (
	statusOK              = 0
	statusInvalidParams   = 503 // "Invalid Params"; also the answer to an invalid refresh token
	statusTimeout         = 522
	statusTooManyRequests = 601
	statusNotImplemented  = 2554
)

// authStatuses are "authentication failed" (100, 101, 102, 200, 401) and "unauthorized" as seen
// in practice (214, 277): the caller refreshes once, then asks the patient to reconnect.
var authStatuses = map[int]bool{100: true, 101: true, 102: true, 200: true, 401: true, 214: true, 277: true}

// statusKind classifies a non-zero envelope status.
func statusKind(status int) providers.ErrorKind {
	switch {
	case authStatuses[status]:
		return providers.KindAuth
	case status == statusTooManyRequests:
		// 601: the per-application limit (120/min). Never refresh, never trip a breaker.
		return providers.KindThrottled
	case status == statusTimeout:
		// 522 "timeout" in the Withings status table: the vendor gave up, a retry may succeed.
		return providers.KindTransient
	default:
		// 2554 (not implemented), invalid parameters (2xx–5xx ranges) and codes we do not know:
		// retrying cannot help.
		return providers.KindPermanent
	}
}

// knownStatus reports codes the table above names, so that unknown ones are logged once.
func knownStatus(status int) bool {
	return authStatuses[status] || status == statusTooManyRequests || status == statusTimeout ||
		status == statusNotImplemented || status == statusInvalidParams || (status >= 201 && status <= 600)
}

// statusError is the error inside an *UpstreamError for a failed envelope: the Withings status and
// its error text (which names the problem, e.g. "Invalid Params: invalid refresh_token", and is
// cut short: it is vendor text, never tokens).
type statusError struct {
	Status int
	Text   string
}

func (e *statusError) Error() string {
	if e.Text == "" {
		return fmt.Sprintf("withings status %d", e.Status)
	}
	return fmt.Sprintf("withings status %d: %s", e.Status, e.Text)
}

// vendorText trims vendor error text to something safe to log: one line, at most 120 bytes.
func vendorText(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) <= 120 {
		return s
	}
	cut := 120
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

func (c *Client) upstream(kind providers.ErrorKind, status int, err error) *providers.UpstreamError {
	return &providers.UpstreamError{Provider: Name, Kind: kind, Status: status, Err: err}
}

// classify is the Call.Classify of every Withings service: nil for an envelope with status 0,
// otherwise an *UpstreamError of the status's kind. A body that is not an envelope is transient
// (a truncated answer or an HTML error page from a proxy).
func (c *Client) classify(status int, header http.Header, body []byte) error {
	// Withings answers HTTP 200 even for failures: another status comes from a proxy or an outage
	// and is classified by HTTP status alone (5xx transient, 429 throttled, …).
	if err := providers.ClassifyHTTP(Name, status, header); err != nil {
		return err
	}
	env, err := decodeEnvelope(body)
	if err != nil {
		return c.upstream(providers.KindTransient, status, err)
	}
	if env.Status.Int() == statusOK {
		return nil
	}
	return c.statusErr(int(env.Status.Int()), env.Error)
}

func (c *Client) statusErr(status int, text string) *providers.UpstreamError {
	if !knownStatus(status) {
		if _, seen := c.seenStatuses.LoadOrStore(status, true); !seen {
			c.log.Warn("unknown Withings status, treated as permanent", "status", status)
		}
	}
	return c.upstream(statusKind(status), status, &statusError{Status: status, Text: vendorText(text)})
}

func decodeEnvelope(body []byte) (*envelope, error) {
	var env envelope
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&env); err != nil {
		return nil, fmt.Errorf("malformed withings answer: %w", err)
	}
	if !env.Status.set {
		return nil, errors.New("malformed withings answer: no status")
	}
	return &env, nil
}

// request describes one Withings call.
type request struct {
	user     string // vendor user id ("" for app-level calls such as the code exchange)
	endpoint string // metrics and cache name, e.g. "measure/getmeas"
	path     string // "/measure", "/v2/oauth2", …
	form     url.Values
	// params are the cache-key parameters; nil means form (which must then hold no secrets).
	params    url.Values
	ts        oauth2.TokenSource // nil for services authenticated by client secret or signature
	cacheable bool
	classify  func(status int, header http.Header, body []byte) error // nil: c.classify
}

// do performs r through the caller and returns the envelope's body.
func (c *Client) do(ctx context.Context, r request) (json.RawMessage, error) {
	target := c.api.JoinPath(r.path).String()
	encoded := r.form.Encode()
	params := r.params
	if params == nil {
		params = r.form
	}
	classify := r.classify
	if classify == nil {
		classify = c.classify
	}
	call := providers.Call{
		User:     r.user,
		Endpoint: r.endpoint,
		Params:   params,
		NewRequest: func(ctx context.Context) (*http.Request, error) {
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, strings.NewReader(encoded))
			if err != nil {
				return nil, err
			}
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("Accept", "application/json")
			if r.ts != nil {
				tok, err := r.ts.Token()
				if err != nil {
					return nil, err
				}
				// Withings wants "Bearer" whatever token_type the token was stored with.
				req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
			}
			return req, nil
		},
		Classify:  classify,
		Cacheable: r.cacheable,
	}
	body, err := c.caller.Call(ctx, call)
	if err != nil {
		return nil, err
	}
	env, err := decodeEnvelope(body)
	if err != nil {
		// The caller accepted it, so Classify did too; only a cache holding something else gets here.
		return nil, c.upstream(providers.KindTransient, http.StatusOK, err)
	}
	if env.Status.Int() != statusOK {
		return nil, c.statusErr(int(env.Status.Int()), env.Error)
	}
	return env.Body, nil
}

// decodeBody decodes a successful body; a shape we do not understand is a permanent error (a
// schema change does not heal by retrying) and never "no data".
func (c *Client) decodeBody(body json.RawMessage, v any, what string) error {
	if len(body) == 0 || string(body) == "null" {
		body = json.RawMessage("{}")
	}
	if err := json.Unmarshal(body, v); err != nil {
		return c.upstream(providers.KindPermanent, http.StatusOK, fmt.Errorf("unexpected %s body: %w", what, err))
	}
	return nil
}

// flexInt decodes a JSON number or a numeric string (Withings is not consistent); null leaves it
// unset.
type flexInt struct {
	v   int64
	set bool
}

func (f *flexInt) UnmarshalJSON(b []byte) error {
	s := strings.TrimSpace(string(b))
	if s == "null" {
		return nil
	}
	s = strings.Trim(s, `"`)
	if s == "" {
		return nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		// Accept integral floats ("1.0", 1e3).
		fl, ferr := strconv.ParseFloat(s, 64)
		if ferr != nil || fl != float64(int64(fl)) {
			return fmt.Errorf("not an integer: %s", s)
		}
		n = int64(fl)
	}
	f.v, f.set = n, true
	return nil
}

// Int returns the value (0 when unset).
func (f flexInt) Int() int64 { return f.v }

// flexString decodes a JSON string or number as a string (Withings sends userid and deviceid as
// either); null is "".
type flexString string

func (f *flexString) UnmarshalJSON(b []byte) error {
	s := strings.TrimSpace(string(b))
	switch {
	case s == "null":
		*f = ""
	case strings.HasPrefix(s, `"`):
		var v string
		if err := json.Unmarshal(b, &v); err != nil {
			return err
		}
		*f = flexString(v)
	default:
		var n json.Number
		if err := json.Unmarshal(b, &n); err != nil {
			return fmt.Errorf("neither string nor number: %s", s)
		}
		*f = flexString(n.String())
	}
	return nil
}

// flexBool decodes true/false, 0/1 and their string forms (getmeas sends "more": 0|1, the v2
// services "more": false|true).
type flexBool bool

func (f *flexBool) UnmarshalJSON(b []byte) error {
	switch strings.Trim(strings.TrimSpace(string(b)), `"`) {
	case "true", "1":
		*f = true
	case "false", "0", "null", "":
		*f = false
	default:
		return fmt.Errorf("not a boolean: %s", b)
	}
	return nil
}
