package api

import (
	"encoding/json"
	"net/http"

	"aitokens/pkg/token"
)

// StatusOf is the one place where an error kind becomes an HTTP status.
func StatusOf(kind token.Kind) int {
	switch kind {
	case token.Invalid:
		return http.StatusBadRequest
	case token.Unauthorized:
		return http.StatusUnauthorized
	case token.Forbidden:
		return http.StatusForbidden
	case token.NotFound:
		return http.StatusNotFound
	case token.MethodNotAllowed:
		return http.StatusMethodNotAllowed
	case token.Conflict:
		return http.StatusConflict
	case token.TooLarge:
		return http.StatusRequestEntityTooLarge
	case token.UnsupportedMediaType:
		return http.StatusUnsupportedMediaType
	case token.Unavailable:
		return http.StatusServiceUnavailable
	case token.Dependency:
		return http.StatusBadGateway
	default:
		return http.StatusInternalServerError
	}
}

// ErrorMessage is the spec's error body.
type ErrorMessage struct {
	ResourceID string         `json:"resourceId,omitempty"`
	Code       int            `json:"code"`
	Status     string         `json:"status"`
	Message    string         `json:"message"`
	Details    []token.Detail `json:"details,omitempty"`
}

// Fault is the spec's 401 body.
type Fault struct {
	Fault struct {
		FaultString string `json:"faultstring"`
		Detail      struct {
			ErrorCode string `json:"errorcode"`
		} `json:"detail"`
	} `json:"fault"`
}

// retryAfterSeconds is the pause a 503 asks for.
const retryAfterSeconds = "2"

// writeError renders err. Only the client-facing message of a *token.Error is shown; the cause
// of an internal error stays in the log.
func writeError(w http.ResponseWriter, err error) int {
	e := token.As(err)
	status := StatusOf(e.Kind)
	if status == http.StatusUnauthorized {
		var f Fault
		f.Fault.FaultString = e.Message
		f.Fault.Detail.ErrorCode = e.Code
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		writeJSON(w, status, f)
		return status
	}
	msg := e.Message
	if e.Kind == token.Internal {
		msg = "internal error"
	}
	if status == http.StatusServiceUnavailable {
		// A dependency was busy, stalled or out of reach: worth a retry after a short pause.
		w.Header().Set("Retry-After", retryAfterSeconds)
	}
	writeJSON(w, status, ErrorMessage{ResourceID: e.ResourceID, Code: status, Status: http.StatusText(status), Message: msg, Details: e.Details})
	return status
}

func writeJSON(w http.ResponseWriter, status int, body any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(body)
}
