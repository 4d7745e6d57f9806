// Package token holds the domain of the service: what a token is, what makes one valid, and the
// typed errors that every other package returns. It knows nothing of HTTP or AWS: an error
// says what happened (a kind, a reason and its facts); pkg/api words it for the client.
package token

import (
	"errors"
	"fmt"
	"time"
)

// Kind classifies an error; pkg/api maps each kind to exactly one HTTP status.
type Kind string

const (
	Invalid      Kind = "invalid"
	NotFound     Kind = "not_found"
	Conflict     Kind = "conflict"
	Unauthorized Kind = "unauthorized"
	Forbidden    Kind = "forbidden"
	Unavailable  Kind = "unavailable"
	Dependency   Kind = "dependency" // a service we depend on refused (e.g. KMS access denied)
	Internal     Kind = "internal"
)

// Reason says what happened within a kind; the facts it needs are fields of Error.
type Reason string

const (
	AlreadyExists     Reason = "already_exists"       // ResourceID
	VersionMismatch   Reason = "version_mismatch"     // ResourceID, Version (the one expected)
	ConcurrentChange  Reason = "concurrent_change"    // a concurrent transaction won, retry
	UsagesKeepMoving  Reason = "usages_keep_changing" // ResourceID
	InUse             Reason = "in_use"               // ResourceID, Usages
	TooManyToRead     Reason = "too_many_to_read"     // Limit
	TooDeepToPage     Reason = "too_deep_to_page"     // Limit: only the Limit newest events of a token can be paged through
	TimedOut          Reason = "timed_out"            // the request's deadline passed or it was cancelled
	StoreUnavailable  Reason = "store_unavailable"
	KeysUnavailable   Reason = "key_service_unavailable"
	KeysRefused       Reason = "key_service_refused" // Code: the key service's error code
	MissingScope      Reason = "missing_scope"       // Scope
	OtherTenant       Reason = "other_tenant"
	InvalidCredential Reason = "invalid_access_token"
	Expired           Reason = "expired"              // ResourceID: resolve refused an expired token
	ConsumerRefused   Reason = "consumer_not_allowed" // ResourceID: a restricted token, another consumer
	ExpiredCredential Reason = "expired_access_token"
	Replaced          Reason = "replaced"         // ResourceID, Successor: resolve refused a retired, replaced token
	AlreadyReplaced   Reason = "already_replaced" // ResourceID (the old token), Successor
	TooManyUsages     Reason = "too_many_usages"  // ResourceID, Limit: more usages than one replacement carries
	UsageLimit        Reason = "usage_limit"      // ResourceID, Limit: a registration past the most usages a token may have
	// ResourceID, Successor, RetiresAt: a change that would let a replaced token resolve after its
	// retirement (remove its expiry or move it later)
	RetirementFinal Reason = "retirement_final"
)

// Detail is one entry of the error's details: which field, what kind of problem, the rule.
type Detail struct {
	Field   string
	Type    string
	Message string
}

// Error is the one error type of the service. Cause is only logged (it may name internal
// parts) and never shown. Message holds the rule a validation error broke (domain wording of
// the rule, e.g. "name must be at most 256 characters"); every other error says what happened
// through Reason and its facts.
type Error struct {
	Kind       Kind
	Reason     Reason
	Message    string
	Details    []Detail
	ResourceID string
	Version    int       // VersionMismatch: the version the caller expected
	Limit      int       // TooManyToRead: the bound
	Scope      string    // MissingScope
	Code       string    // KeysRefused: the key service's error code
	Usages     []Usage   // InUse: who uses the token
	Successor  string    // Replaced, AlreadyReplaced, RetirementFinal: the token that replaces ResourceID
	RetiresAt  time.Time // RetirementFinal: when ResourceID retires
	Cause      error
}

func (e *Error) Error() string {
	what := string(e.Kind)
	if e.Reason != "" {
		what += " (" + string(e.Reason) + ")"
	}
	if e.Message != "" {
		what += ": " + e.Message
	}
	if e.Cause != nil {
		return fmt.Sprintf("%s: %v", what, e.Cause)
	}
	return what
}

func (e *Error) Unwrap() error { return e.Cause }

// InvalidField is a 400 that names the field at fault and the rule it broke.
func InvalidField(field, rule string) *Error {
	return &Error{Kind: Invalid, Details: []Detail{{Field: field, Message: rule}}}
}

// ErrNotFound is the not-found error for one token id.
func ErrNotFound(id string) *Error {
	return &Error{Kind: NotFound, ResourceID: id}
}

// InternalError wraps an unexpected failure; the client sees only "internal error".
func InternalError(cause error) *Error {
	return &Error{Kind: Internal, Cause: cause}
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
