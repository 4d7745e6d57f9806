package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"

	"aitokens/pkg/token"
)

// Kinds of error that only the HTTP layer has.
const (
	kindMethodNotAllowed     token.Kind = "method_not_allowed"
	kindTooLarge             token.Kind = "too_large"
	kindUnsupportedMediaType token.Kind = "unsupported_media_type"
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
	case kindMethodNotAllowed:
		return http.StatusMethodNotAllowed
	case token.Conflict:
		return http.StatusConflict
	case kindTooLarge:
		return http.StatusRequestEntityTooLarge
	case kindUnsupportedMediaType:
		return http.StatusUnsupportedMediaType
	case token.Unavailable:
		return http.StatusServiceUnavailable
	case token.Dependency:
		return http.StatusBadGateway
	default:
		return http.StatusInternalServerError
	}
}

// Detail is one entry of ErrorMessage.details.
type Detail struct {
	Field   string `json:"field,omitempty"`
	Type    string `json:"type,omitempty"`
	Message string `json:"message,omitempty"`
}

// ErrorMessage is the spec's error body.
type ErrorMessage struct {
	ResourceID string   `json:"resourceId,omitempty"`
	Code       int      `json:"code"`
	Status     string   `json:"status"`
	Message    string   `json:"message"`
	Details    []Detail `json:"details,omitempty"`
	// RequestID is the request's id, as its X-Request-Id header and its log line have it (an
	// extra member: the contract's ErrorMessage allows it).
	RequestID string `json:"requestId,omitempty"`
}

// Fault is the spec's 401 body.
type Fault struct {
	Fault struct {
		FaultString string `json:"faultstring"`
		Detail      struct {
			ErrorCode string `json:"errorcode"`
		} `json:"detail"`
	} `json:"fault"`
	RequestID string `json:"requestId,omitempty"` // as in ErrorMessage
}

// maxUsageDetails bounds how many usages a 409 lists.
const maxUsageDetails = 50

const forbidden = "The access to the requested resource has been forbidden by the server."

// Render is the one wording of every error, for the HTTP API and the resolve function alike:
// its status and body. Only what a client may see is in it: the cause of an internal error
// stays in the log, and no error carries a value.
func Render(err error) (int, ErrorMessage) {
	e := token.As(err)
	status := StatusOf(e.Kind)
	body := ErrorMessage{ResourceID: e.ResourceID, Code: status, Status: http.StatusText(status), Message: e.Message}
	for _, d := range e.Details {
		body.Details = append(body.Details, Detail(d))
	}
	switch e.Reason {
	case token.AlreadyExists:
		body.Message = "Conflict - a resource with given code or id has already exist."
	case token.VersionMismatch:
		body.Message = "Optimistic locking failed: metadata.version " + strconv.Itoa(e.Version) + " is not the stored version; read the token again and retry."
	case token.ConcurrentChange:
		body.Message = "The token is being changed concurrently; retry the request."
	case token.UsagesKeepMoving:
		body.Message = "The token's usages keep changing; retry the delete."
	case token.InUse:
		body.Message = fmt.Sprintf("The token %s is used by %d agents, MCP servers, tools or OAuth clients; delete with force=true to remove it and unassign it from them.", e.ResourceID, len(e.Usages))
		body.Details = usageDetails(e.Usages)
	case token.TooManyToRead:
		body.Message = fmt.Sprintf("The query reads the listing of the tokens it may match, here of the tenant's %d tokens, and cannot within the request's time; narrow it to ids (q=id:(a,b)), an exact name or a name prefix (q=name:~^Prefix), which read only their own.", e.Limit)
		body.Details = []Detail{{Field: "q", Type: "limit", Message: fmt.Sprintf("%d tokens to read, more than the request's time allows", e.Limit)}}
	case token.TooDeepToPage:
		body.Details = []Detail{{Field: "pageNumber", Message: fmt.Sprintf("only the %d newest events of a token can be paged through", e.Limit)}}
	case token.TimedOut:
		body.Message = "The request was cancelled or timed out."
	case token.StoreUnavailable:
		body.Message = "The token store is unavailable; try again later."
	case token.KeysUnavailable:
		body.Message = "The key service is unavailable; try again later."
	case token.KeysRefused:
		body.Message = "The key service refused the request (" + e.Code + "); an operator must check the KMS key and its policy."
	case token.MissingScope:
		body.Message = forbidden
		body.Details = []Detail{{Type: "scope", Message: "the access token lacks the scope " + e.Scope}}
	case token.Expired:
		body.Message = "The token " + e.ResourceID + " has expired."
	case token.ConsumerRefused:
		body.Message = "The token " + e.ResourceID + " is restricted to its registered usages, and this consumer is not one of them."
	case token.Replaced:
		body.Message = "The token " + e.ResourceID + " was replaced by " + e.Successor + " and has retired; resolve " + e.Successor + "."
		body.Details = []Detail{{Field: "replacedBy", Type: "replaced", Message: e.Successor}}
	case token.AlreadyReplaced:
		body.Message = "The token " + e.ResourceID + " has been replaced already, by " + e.Successor + "; replace that one instead."
		body.Details = []Detail{{Field: "replaces", Type: "already_replaced", Message: e.ResourceID + " is replaced by " + e.Successor}}
	case token.RetirementFinal:
		retires := token.FormatTime(e.RetiresAt)
		body.Message = "The token " + e.ResourceID + " was replaced by " + e.Successor + " and retires at " + retires +
			"; a retirement only moves earlier: expiresAt can be set to " + retires + " or before, not later nor removed."
		body.Details = []Detail{{Field: "expiresAt", Type: "retirement_final", Message: e.ResourceID + " is replaced by " + e.Successor + " and retires at " + retires}}
	case token.TooManyUsages:
		body.Message = fmt.Sprintf("The token %s has more usages than one replacement carries (%d); unregister some, or create the new token and move them yourself.", e.ResourceID, e.Limit)
		body.Details = []Detail{{Field: "replaces", Type: "limit", Message: fmt.Sprintf("at most %d usages", e.Limit)}}
	case token.UsageLimit:
		body.Message = fmt.Sprintf("The token %s has the most usages a token may have (%d); unregister one first.", e.ResourceID, e.Limit)
		body.Details = []Detail{{Field: "usages", Type: "limit", Message: fmt.Sprintf("at most %d usages", e.Limit)}}
	case token.OtherTenant:
		body.Message = forbidden
		body.Details = []Detail{{Type: "tenant", Message: "the access token is not for this tenant"}}
	}
	switch {
	case e.Kind == token.Internal:
		body.Message, body.Details = "internal error", nil
	case e.Kind == token.NotFound && e.ResourceID != "":
		body.Message = "The resource with id " + e.ResourceID + " has not been found."
	case e.Kind == token.Invalid && body.Message == "":
		body.Message = "Validation problem with request."
	}
	return status, body
}

func usageDetails(usages []token.Usage) []Detail {
	var details []Detail
	for i, u := range usages {
		if i == maxUsageDetails {
			details = append(details, Detail{Field: "usages", Type: "more", Message: fmt.Sprintf("and %d more", len(usages)-i)})
			break
		}
		details = append(details, Detail{Field: "usages", Type: u.Kind, Message: u.Kind + " " + u.RefID + " uses this token"})
	}
	return append(details, Detail{Field: "force", Type: "force", Message: "Repeat the delete with force=true to remove the token and its usages."})
}

// fault is the 401 body of the spec for err.
func fault(e *token.Error) Fault {
	var f Fault
	if e.Reason == token.ExpiredCredential {
		f.Fault.FaultString, f.Fault.Detail.ErrorCode = "Access Token expired", "keymanagement.service.access_token_expired"
	} else {
		f.Fault.FaultString, f.Fault.Detail.ErrorCode = "Invalid access token", "oauth.v2.InvalidAccessToken"
	}
	return f
}

// retryAfterSeconds is the pause a 503 asks for.
const retryAfterSeconds = "2"

// writeError renders err as the response of request rid.
func writeError(w http.ResponseWriter, err error, rid string) {
	status, body := Render(err)
	body.RequestID = rid
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		f := fault(token.As(err))
		f.RequestID = rid
		writeJSON(w, status, f)
		return
	}
	if status == http.StatusServiceUnavailable {
		// A dependency was busy, stalled or out of reach: worth a retry after a short pause.
		w.Header().Set("Retry-After", retryAfterSeconds)
	}
	writeJSON(w, status, body)
}

func writeJSON(w http.ResponseWriter, status int, body any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(body)
}
