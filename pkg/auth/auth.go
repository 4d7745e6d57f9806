// Package auth tells who calls: from a JWT verified here (local server) or from the claims that
// API Gateway's JWT authorizer already verified (Lambda). Either way the result is a Principal,
// and the same scope and tenant checks apply to it.
package auth

import (
	"net/http"
	"slices"
	"strings"

	"aitokens/pkg/token"
)

// Scopes the routes ask for.
const (
	ScopeRead   = "ai.agent_read"
	ScopeManage = "ai.agent_manage"
)

// DefaultTenantClaim is the claim that names the caller's tenant unless TENANT_CLAIM says otherwise.
const DefaultTenantClaim = "tenant"

// Principal is an authenticated caller.
type Principal struct {
	Subject string
	Tenant  string
	Scopes  []string
}

// Authenticator finds the caller of a request, or fails with a token.Unauthorized error.
type Authenticator interface {
	Authenticate(r *http.Request) (Principal, error)
}

// Authorize checks that p may use a route that needs scope on the given path tenant.
func (p Principal) Authorize(scope, tenant string) error {
	if !slices.Contains(p.Scopes, scope) {
		return &token.Error{Kind: token.Forbidden, Reason: token.MissingScope, Scope: scope}
	}
	// Exact comparison: a tenant that differs only in case or white space is another tenant.
	if p.Tenant == "" || p.Tenant != tenant {
		return &token.Error{Kind: token.Forbidden, Reason: token.OtherTenant}
	}
	return nil
}

// ErrInvalidToken is the 401 for a missing, malformed or unverifiable token.
func ErrInvalidToken() *token.Error {
	return &token.Error{Kind: token.Unauthorized, Reason: token.InvalidCredential}
}

// ErrExpiredToken is the 401 for an expired token.
func ErrExpiredToken() *token.Error {
	return &token.Error{Kind: token.Unauthorized, Reason: token.ExpiredCredential}
}

// ScopesFromClaims reads scopes from "scope" (space separated string) or "scp" (array of strings, or
// a space separated string). A claim of any other type makes the token invalid.
func ScopesFromClaims(claims map[string]any) ([]string, bool) {
	var scopes []string
	if v, ok := claims["scope"]; ok {
		s, ok := v.(string)
		if !ok {
			return nil, false
		}
		scopes = append(scopes, strings.Fields(s)...)
	}
	if v, ok := claims["scp"]; ok {
		switch s := v.(type) {
		case string:
			scopes = append(scopes, strings.Fields(s)...)
		case []any:
			for _, e := range s {
				str, ok := e.(string)
				if !ok {
					return nil, false
				}
				scopes = append(scopes, str)
			}
		default:
			return nil, false
		}
	}
	return scopes, true
}
