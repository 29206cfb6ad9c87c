package fitbitsim

import (
	"bytes"
	"encoding/json"
	"net/http"
)

// Fitbit's error body (https://dev.fitbit.com/build/reference/web-api/troubleshooting-guide/error-messages/):
// {"errors":[{"errorType":"…","fieldName":"…","message":"…"}],"success":false}.
type apiError struct {
	ErrorType string `json:"errorType"`
	FieldName string `json:"fieldName,omitempty"`
	Message   string `json:"message"`
}

type errorBody struct {
	Errors  []apiError `json:"errors"`
	Success bool       `json:"success"`
}

// fail writes a Fitbit error answer. Messages never echo tokens or codes.
func fail(w http.ResponseWriter, status int, errorType, field, message string) {
	writeJSON(w, status, errorBody{Errors: []apiError{{ErrorType: errorType, FieldName: field, Message: message}}})
}

// validation is Fitbit's 400 for a bad parameter.
func validation(w http.ResponseWriter, field, message string) {
	fail(w, http.StatusBadRequest, "validation", field, message)
}

// writeJSON writes v as JSON without HTML escaping (Fitbit's answers contain "&" in URLs).
// Struct fields keep their declared order and maps are sorted, so a value always encodes to the
// same bytes.
func writeJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	w.WriteHeader(status)
	w.Write(bytes.TrimRight(buf.Bytes(), "\n"))
}

// notFound is Fitbit's answer for a path it does not serve.
func notFound(w http.ResponseWriter, _ *http.Request) {
	fail(w, http.StatusNotFound, "not_found", "n/a", "The API you are requesting could not be found.")
}
