package googlehealthsim

import (
	"encoding/json"
	"net/http"
)

// errorBody is Google's JSON error model (https://cloud.google.com/apis/design/errors#http_mapping),
// as in testdata/googlehealth/error_*.json.
type errorBody struct {
	Error errorStatus `json:"error"`
}

type errorStatus struct {
	Code    int           `json:"code"`
	Message string        `json:"message"`
	Status  string        `json:"status"`
	Details []errorDetail `json:"details,omitempty"`
}

type errorDetail struct {
	Type   string `json:"@type"`
	Reason string `json:"reason"`
	Domain string `json:"domain"`
}

// googleError writes an API error; reason, when set, becomes a google.rpc.ErrorInfo detail.
func googleError(w http.ResponseWriter, code int, status, message, reason string) {
	b := errorBody{Error: errorStatus{Code: code, Message: message, Status: status}}
	if reason != "" {
		domain := "health.googleapis.com"
		if reason == "ACCESS_TOKEN_SCOPE_INSUFFICIENT" {
			domain = "googleapis.com"
		}
		b.Error.Details = []errorDetail{{Type: "type.googleapis.com/google.rpc.ErrorInfo", Reason: reason, Domain: domain}}
	}
	if code == http.StatusUnauthorized {
		// Google's APIs answer a missing or bad bearer token with a challenge (RFC 6750 §3).
		w.Header().Set("WWW-Authenticate", `Bearer realm="https://accounts.google.com/", error="invalid_token"`)
	}
	writeJSON(w, code, b)
}

// invalidArgument is a 400 INVALID_ARGUMENT.
func invalidArgument(w http.ResponseWriter, message, reason string) {
	googleError(w, http.StatusBadRequest, "INVALID_ARGUMENT", message, reason)
}

// oauthError writes an OAuth endpoint error (RFC 6749 §5.2), as Google's token endpoint words it
// (testdata/googlehealth/token_invalid_grant.json).
func oauthError(w http.ResponseWriter, code int, errCode, description string) {
	writeJSON(w, code, map[string]string{"error": errCode, "error_description": description})
}

// writeJSON writes v as the answer. Encoding our own structs cannot fail.
func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}
