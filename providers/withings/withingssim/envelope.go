package withingssim

import (
	"encoding/json"
	"net/http"
	"strings"
)

// Withings status codes the simulator answers with (response_status in
// https://developer.withings.com/api-reference; the recorded answers in testdata/withings).
const (
	statusInvalidToken  = 401  // "invalid_token: The access token provided is invalid"
	statusInvalidParams = 503  // "Invalid Params: …", also an unknown code or refresh token
	statusUnknownAction = 2554 // "Not implemented": an action the service does not have
	// Older codes of the notify and signature services, as Withings client libraries list them.
	statusBadUserID        = 247 // "The userid provided is absent, or incorrect"
	statusNoSubscription   = 286 // "No such subscription was found"
	statusBadCallback      = 293 // "The callback URL is either absent or incorrect"
	statusNothingToDelete  = 294 // "No such subscription could be deleted"
	statusInvalidSignature = 342 // "The signature is invalid, or the nonce is invalid/expired"
)

// apiError is a failed call: the envelope status and its error text.
type apiError struct {
	Status int
	Text   string
}

func invalidParams(what string) *apiError {
	return &apiError{Status: statusInvalidParams, Text: "Invalid Params: " + what}
}

// apiFunc answers one action with the envelope body, or an error status.
type apiFunc func(r *http.Request, a *account) (any, *apiError)

// api wraps an action table: Withings answers every call with HTTP 200 and the envelope
// {"status": N, "body": {…}, "error": "…"} whatever the outcome. Parameters come from the form
// body or the query (both are accepted by Withings).
func (s *Simulator) api(h func(r *http.Request, action string) (any, *apiError)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost && r.Method != http.MethodGet {
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		if err := r.ParseForm(); err != nil {
			writeEnvelope(w, nil, invalidParams("malformed form"))
			return
		}
		body, aerr := h(r, r.Form.Get("action"))
		writeEnvelope(w, body, aerr)
	}
}

func writeEnvelope(w http.ResponseWriter, body any, aerr *apiError) {
	env := struct {
		Status int    `json:"status"`
		Body   any    `json:"body"`
		Error  string `json:"error,omitempty"`
	}{Body: body}
	if aerr != nil {
		env.Status, env.Error, env.Body = aerr.Status, aerr.Text, struct{}{}
	}
	if env.Body == nil {
		env.Body = struct{}{}
	}
	b, err := json.Marshal(env)
	if err != nil {
		b = []byte(`{"status":2554,"body":{}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

// authed resolves the Bearer access token to its account before dispatching the action. A
// missing, unknown or expired token is status 401, as Withings answers it.
func (s *Simulator) authed(actions map[string]apiFunc) func(r *http.Request, action string) (any, *apiError) {
	return s.authedChecked(actions, nil)
}

// authedChecked is authed with checks that run once the token is known and before the state is
// locked (they may call out, as the callback check of subscribe does).
func (s *Simulator) authedChecked(actions map[string]apiFunc, checks map[string]func(*http.Request) *apiError) func(r *http.Request, action string) (any, *apiError) {
	return func(r *http.Request, action string) (any, *apiError) {
		f, ok := actions[action]
		if !ok {
			return nil, &apiError{Status: statusUnknownAction}
		}
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok {
			tok = r.Form.Get("access_token") // the legacy form parameter
		}
		a := s.accountFor(strings.TrimSpace(tok))
		if a == nil {
			return nil, &apiError{Status: statusInvalidToken, Text: "XRequestID: Not provided invalid_token: The access token provided is invalid"}
		}
		if check := checks[action]; check != nil {
			if aerr := check(r); aerr != nil {
				return nil, aerr
			}
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		return f(r, a)
	}
}
