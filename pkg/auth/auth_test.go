package auth_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/aws/aws-lambda-go/events"
	"github.com/awslabs/aws-lambda-go-api-proxy/core"

	"aitokens/pkg/auth"
	"aitokens/pkg/token"
)

// denial is what a refusal must be: its kind, reason and (for a missing scope) the scope.
type denial struct {
	kind   token.Kind
	reason token.Reason
	scope  string
}

func check(t *testing.T, err error, want *denial) {
	t.Helper()
	if want == nil {
		if err != nil {
			t.Fatalf("refused: %v", err)
		}
		return
	}
	var e *token.Error
	if !errors.As(err, &e) || e.Kind != want.kind || e.Reason != want.reason || e.Scope != want.scope {
		t.Fatalf("%v, want %s (%s) scope %q", err, want.kind, want.reason, want.scope)
	}
}

func TestAuthorize(t *testing.T) {
	t.Parallel()
	readAcme := auth.Principal{Subject: "u", Tenant: "acme", Scopes: []string{auth.ScopeRead}}
	both := auth.Principal{Subject: "u", Tenant: "acme", Scopes: []string{auth.ScopeRead, auth.ScopeManage}}
	missing := func(scope string) *denial { return &denial{token.Forbidden, token.MissingScope, scope} }
	other := &denial{token.Forbidden, token.OtherTenant, ""}
	cases := []struct {
		name          string
		p             auth.Principal
		scope, tenant string
		want          *denial
	}{
		{"its scope on its tenant", readAcme, auth.ScopeRead, "acme", nil},
		{"both scopes, manage", both, auth.ScopeManage, "acme", nil},
		{"read does not imply manage", readAcme, auth.ScopeManage, "acme", missing(auth.ScopeManage)},
		{"manage does not imply read", auth.Principal{Tenant: "acme", Scopes: []string{auth.ScopeManage}}, auth.ScopeRead, "acme", missing(auth.ScopeRead)},
		{"no scopes", auth.Principal{Tenant: "acme"}, auth.ScopeRead, "acme", missing(auth.ScopeRead)},
		{"a longer scope is another scope", auth.Principal{Tenant: "acme", Scopes: []string{auth.ScopeRead + "s"}}, auth.ScopeRead, "acme", missing(auth.ScopeRead)},
		{"a scope's prefix is another scope", auth.Principal{Tenant: "acme", Scopes: []string{"ai.agent"}}, auth.ScopeRead, "acme", missing(auth.ScopeRead)},
		{"another tenant", readAcme, auth.ScopeRead, "globex", other},
		{"the tenant in another case", readAcme, auth.ScopeRead, "ACME", other},
		{"the tenant with a space", readAcme, auth.ScopeRead, "acme ", other},
		{"a tenant's prefix", readAcme, auth.ScopeRead, "acm", other},
		// A token without the tenant claim matches no tenant, not even an empty one.
		{"no tenant claim, empty path tenant", auth.Principal{Scopes: []string{auth.ScopeRead}}, auth.ScopeRead, "", other},
		{"no tenant claim", auth.Principal{Scopes: []string{auth.ScopeRead}}, auth.ScopeRead, "acme", other},
		// The scope is checked first: a caller without it learns nothing about tenants.
		{"neither scope nor tenant", readAcme, auth.ScopeManage, "globex", missing(auth.ScopeManage)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			check(t, tc.p.Authorize(tc.scope, tc.tenant), tc.want)
		})
	}
}

func TestCredentialErrors(t *testing.T) {
	t.Parallel()
	check(t, auth.ErrInvalidToken(), &denial{token.Unauthorized, token.InvalidCredential, ""})
	check(t, auth.ErrExpiredToken(), &denial{token.Unauthorized, token.ExpiredCredential, ""})
	// Each call is a new value: a caller that adds to one (a cause, a detail) changes no other.
	first := auth.ErrInvalidToken()
	first.Reason = token.ExpiredCredential
	check(t, auth.ErrInvalidToken(), &denial{token.Unauthorized, token.InvalidCredential, ""})
}

func TestScopesFromClaims(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		claims string // JSON, as a verified JWT's claims decode
		want   []string
		ok     bool
	}{
		{"no scope claims", `{}`, nil, true},
		{"scope: space separated", `{"scope":"ai.agent_read ai.agent_manage"}`, []string{"ai.agent_read", "ai.agent_manage"}, true},
		{"scope: extra white space", `{"scope":"  ai.agent_read\tai.agent_manage "}`, []string{"ai.agent_read", "ai.agent_manage"}, true},
		{"scope: empty", `{"scope":""}`, nil, true},
		{"scp: array", `{"scp":["ai.agent_read","ai.agent_manage"]}`, []string{"ai.agent_read", "ai.agent_manage"}, true},
		{"scp: space separated", `{"scp":"ai.agent_read ai.agent_manage"}`, []string{"ai.agent_read", "ai.agent_manage"}, true},
		{"both claims add up", `{"scope":"ai.agent_read","scp":["ai.agent_manage"]}`, []string{"ai.agent_read", "ai.agent_manage"}, true},
		{"scope: an array is invalid", `{"scope":["ai.agent_read"]}`, nil, false},
		{"scope: a number is invalid", `{"scope":1}`, nil, false},
		{"scope: null is invalid", `{"scope":null}`, nil, false},
		{"scp: a number is invalid", `{"scp":1}`, nil, false},
		{"scp: an object is invalid", `{"scp":{"a":"ai.agent_read"}}`, nil, false},
		{"scp: a non-string element is invalid", `{"scp":["ai.agent_read",1]}`, nil, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var claims map[string]any
			if err := json.Unmarshal([]byte(tc.claims), &claims); err != nil {
				t.Fatal(err)
			}
			got, ok := auth.ScopesFromClaims(claims)
			if ok != tc.ok || !slices.Equal(got, tc.want) {
				t.Fatalf("%v %v, want %v %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestAPIGateway(t *testing.T) {
	t.Parallel()
	invalid := &denial{token.Unauthorized, token.InvalidCredential, ""}
	cases := []struct {
		name        string
		tenantClaim string
		authorizer  string // requestContext.authorizer of the event; "" for none
		want        *auth.Principal
		err         *denial
	}{
		{"no authorizer: fails closed", "", ``, nil, invalid},
		{"an authorizer without a JWT", "", `{}`, nil, invalid},
		{"a JWT without claims", "", `{"jwt":{"claims":{},"scopes":["ai.agent_read"]}}`, nil, invalid},
		{"scope as a space separated string", "", `{"jwt":{"claims":{"sub":"u","tenant":"acme","scope":"ai.agent_read ai.agent_manage"}}}`,
			&auth.Principal{Subject: "u", Tenant: "acme", Scopes: []string{auth.ScopeRead, auth.ScopeManage}}, nil},
		// The authorizer flattens an array claim into one string: ["a","b"] arrives as "[a b]".
		{"scp as a flattened array", "", `{"jwt":{"claims":{"sub":"u","tenant":"acme","scp":"[ai.agent_read ai.agent_manage]"}}}`,
			&auth.Principal{Subject: "u", Tenant: "acme", Scopes: []string{auth.ScopeRead, auth.ScopeManage}}, nil},
		{"scp as a flattened array of one", "", `{"jwt":{"claims":{"sub":"u","tenant":"acme","scp":"[ai.agent_read]"}}}`,
			&auth.Principal{Subject: "u", Tenant: "acme", Scopes: []string{auth.ScopeRead}}, nil},
		{"scp as a space separated string", "", `{"jwt":{"claims":{"sub":"u","tenant":"acme","scp":"ai.agent_read"}}}`,
			&auth.Principal{Subject: "u", Tenant: "acme", Scopes: []string{auth.ScopeRead}}, nil},
		{"the authorizer's own scope list", "", `{"jwt":{"claims":{"sub":"u","tenant":"acme"},"scopes":["ai.agent_read"]}}`,
			&auth.Principal{Subject: "u", Tenant: "acme", Scopes: []string{auth.ScopeRead}}, nil},
		// A JSON text inside the string is not a list of scopes: its quotes stay, nothing matches.
		{"scp as JSON text", "", `{"jwt":{"claims":{"sub":"u","tenant":"acme","scp":"[\"ai.agent_read\"]"}}}`,
			&auth.Principal{Subject: "u", Tenant: "acme", Scopes: []string{`"ai.agent_read"`}}, nil},
		{"no tenant claim", "", `{"jwt":{"claims":{"sub":"u","scope":"ai.agent_read"}}}`,
			&auth.Principal{Subject: "u", Scopes: []string{auth.ScopeRead}}, nil},
		{"TENANT_CLAIM names another claim", "org", `{"jwt":{"claims":{"sub":"u","org":"acme","tenant":"globex","scope":"ai.agent_read"}}}`,
			&auth.Principal{Subject: "u", Tenant: "acme", Scopes: []string{auth.ScopeRead}}, nil},
		{"TENANT_CLAIM's claim missing", "org", `{"jwt":{"claims":{"sub":"u","tenant":"acme","scope":"ai.agent_read"}}}`,
			&auth.Principal{Subject: "u", Scopes: []string{auth.ScopeRead}}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			raw := `{"version":"2.0","routeKey":"GET /x","rawPath":"/x","requestContext":{"http":{"method":"GET","path":"/x"}`
			if tc.authorizer != "" {
				raw += `,"authorizer":` + tc.authorizer
			}
			raw += `}}`
			var event events.APIGatewayV2HTTPRequest
			if err := json.Unmarshal([]byte(raw), &event); err != nil {
				t.Fatal(err)
			}
			// The adapter pkg/lambdafn uses: it puts the event's context on the request.
			r, err := (&core.RequestAccessorV2{}).EventToRequestWithContext(context.Background(), event)
			if err != nil {
				t.Fatal(err)
			}
			p, err := auth.APIGateway{TenantClaim: tc.tenantClaim}.Authenticate(r)
			if tc.err != nil {
				check(t, err, tc.err)
				if p.Subject != "" || p.Tenant != "" || len(p.Scopes) > 0 {
					t.Errorf("a refusal came with a principal %+v", p)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.Subject != tc.want.Subject || p.Tenant != tc.want.Tenant || !slices.Equal(p.Scopes, tc.want.Scopes) {
				t.Fatalf("%+v, want %+v", p, *tc.want)
			}
		})
	}
}

// Outside Lambda (no API Gateway context on the request at all) the authenticator fails closed.
func TestAPIGatewayWithoutContext(t *testing.T) {
	t.Parallel()
	_, err := auth.APIGateway{}.Authenticate(httptest.NewRequest("GET", "/ai-service/acme/agentic/tokens", nil))
	check(t, err, &denial{token.Unauthorized, token.InvalidCredential, ""})
}

// Whatever the claims, a principal read from them passes Authorize only with the scope and the
// tenant: a missing tenant claim is never "any tenant".
func TestAPIGatewayPrincipalFailsClosed(t *testing.T) {
	t.Parallel()
	event := events.APIGatewayV2HTTPRequest{RequestContext: events.APIGatewayV2HTTPRequestContext{
		Authorizer: &events.APIGatewayV2HTTPRequestContextAuthorizerDescription{JWT: &events.APIGatewayV2HTTPRequestContextAuthorizerJWTDescription{
			Claims: map[string]string{"sub": "u", "scope": "ai.agent_read ai.agent_manage"}}}}}
	event.RequestContext.HTTP.Method, event.RequestContext.HTTP.Path, event.RawPath = "GET", "/x", "/x"
	r, err := (&core.RequestAccessorV2{}).EventToRequestWithContext(context.Background(), event)
	if err != nil {
		t.Fatal(err)
	}
	p, err := auth.APIGateway{}.Authenticate(r)
	if err != nil {
		t.Fatal(err)
	}
	for _, tenant := range []string{"", "acme", "tenant"} {
		check(t, p.Authorize(auth.ScopeRead, tenant), &denial{token.Forbidden, token.OtherTenant, ""})
	}
}
