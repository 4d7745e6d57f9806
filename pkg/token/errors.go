// Package token holds the domain of the service: what a token is, what makes one valid, and the
// typed errors that every other package returns. It knows nothing of HTTP or AWS.
package token

import (
	"errors"
	"fmt"
)

// Kind classifies an error; pkg/api maps each kind to exactly one HTTP status.
type Kind string

const (
	Invalid              Kind = "invalid"
	NotFound             Kind = "not_found"
	Conflict             Kind = "conflict"
	Unauthorized         Kind = "unauthorized"
	Forbidden            Kind = "forbidden"
	TooLarge             Kind = "too_large"
	UnsupportedMediaType Kind = "unsupported_media_type"
	MethodNotAllowed     Kind = "method_not_allowed"
	Unavailable          Kind = "unavailable"
	Dependency           Kind = "dependency" // a service we depend on refused (e.g. KMS access denied)
	Internal             Kind = "internal"
)

// Detail is one entry of the error body's details list.
type Detail struct {
	Field   string `json:"field,omitempty"`
	Type    string `json:"type,omitempty"`
	Message string `json:"message,omitempty"`
}

// Error is the one error type of the service. Message is shown to the client; Cause is only
// logged (it may name internal parts) and never rendered.
type Error struct {
	Kind       Kind
	Message    string
	Details    []Detail
	ResourceID string
	// Code is a machine-readable error code, used by the 401 fault body's errorcode.
	Code  string
	Cause error
}

func (e *Error) Error() string {
	if e.Cause != nil {
		return fmt.Sprintf("%s: %s: %v", e.Kind, e.Message, e.Cause)
	}
	return fmt.Sprintf("%s: %s", e.Kind, e.Message)
}

func (e *Error) Unwrap() error { return e.Cause }

// Errorf builds an Error of the given kind with a formatted client-facing message.
func Errorf(kind Kind, format string, args ...any) *Error {
	return &Error{Kind: kind, Message: fmt.Sprintf(format, args...)}
}

// InvalidField is a 400 that names the field at fault.
func InvalidField(field, message string) *Error {
	return &Error{Kind: Invalid, Message: "Validation problem with request.", Details: []Detail{{Field: field, Message: message}}}
}

// ErrNotFound is the not-found error for one token id.
func ErrNotFound(id string) *Error {
	return &Error{Kind: NotFound, Message: fmt.Sprintf("The resource with id %s has not been found.", id), ResourceID: id}
}

// Internal wraps an unexpected failure; the client sees only "internal error".
func InternalError(cause error) *Error {
	return &Error{Kind: Internal, Message: "internal error", Cause: cause}
}

// KindOf returns the kind of err, Internal for an error that is not an *Error.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return Internal
}

// As returns err as an *Error, wrapping anything else as an internal error.
func As(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return InternalError(err)
}
