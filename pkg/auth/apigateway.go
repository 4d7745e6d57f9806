package auth

import (
	"net/http"
	"strings"

	"github.com/awslabs/aws-lambda-go-api-proxy/core"
)

// APIGateway reads the caller from the claims that API Gateway's JWT authorizer verified and put
// in the HTTP API (payload 2.0) request context. The handler still checks scope and tenant
// itself (defence in depth), and with no claims in the context it fails closed with a 401.
type APIGateway struct {
	TenantClaim string
}

func (a APIGateway) Authenticate(r *http.Request) (Principal, error) {
	rc, ok := core.GetAPIGatewayV2ContextFromContext(r.Context())
	if !ok || rc.Authorizer == nil || rc.Authorizer.JWT == nil || len(rc.Authorizer.JWT.Claims) == 0 {
		return Principal{}, ErrInvalidToken()
	}
	jwtCtx := rc.Authorizer.JWT
	claim := a.TenantClaim
	if claim == "" {
		claim = DefaultTenantClaim
	}
	p := Principal{Tenant: jwtCtx.Claims[claim], Subject: jwtCtx.Claims["sub"]}
	// The authorizer lists the scopes it found separately; the claims map holds every claim as
	// a string, an array claim flattened as "[a b]".
	p.Scopes = append(p.Scopes, jwtCtx.Scopes...)
	p.Scopes = append(p.Scopes, strings.Fields(jwtCtx.Claims["scope"])...)
	p.Scopes = append(p.Scopes, strings.Fields(strings.Trim(jwtCtx.Claims["scp"], "[]"))...)
	return p, nil
}
