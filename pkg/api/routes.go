// Package api is the HTTP face of the service: one route table, the handlers, authentication and
// scope checks, error rendering and request logs. The local server serves all routes; each
// Lambda serves one.
package api

import (
	"net/http"

	"aitokens/pkg/auth"
)

const (
	tokensPath = "/ai-service/{tenant}/agentic/tokens"
	tokenPath  = tokensPath + "/{tokenId}"
	usagesPath = tokenPath + "/usages"
	usagePath  = usagesPath + "/{kind}/{refId}"
	eventsPath = tokenPath + "/events"
)

// Route is one operation: the single source of truth for the local server, the Lambdas,
// template.yaml (checked by a test) and the events.
type Route struct {
	Function string // Lambda function name, also functions/<Function>
	Method   string
	Path     string
	Scope    string
	Seals    bool // the route seals values: it needs a sealer (and, in AWS, kms:GenerateDataKey)
	handle   func(*Server, http.ResponseWriter, *http.Request) error
}

// Routes lists every public operation.
var Routes = []Route{
	{"list-tokens", http.MethodGet, tokensPath, auth.ScopeRead, false, (*Server).list},
	{"search-tokens", http.MethodPost, tokensPath + "/search", auth.ScopeRead, false, (*Server).search},
	{"get-token", http.MethodGet, tokenPath, auth.ScopeRead, false, (*Server).get},
	{"upsert-token", http.MethodPut, tokenPath, auth.ScopeManage, true, (*Server).upsert},
	{"delete-token", http.MethodDelete, tokenPath, auth.ScopeManage, false, (*Server).delete},
	{"patch-token", http.MethodPatch, tokenPath, auth.ScopeManage, false, (*Server).patch},
	{"list-token-usages", http.MethodGet, usagesPath, auth.ScopeRead, false, (*Server).listUsages},
	{"register-token-usage", http.MethodPut, usagePath, auth.ScopeManage, false, (*Server).registerUsage},
	{"unregister-token-usage", http.MethodDelete, usagePath, auth.ScopeManage, false, (*Server).unregisterUsage},
	{"list-token-events", http.MethodGet, eventsPath, auth.ScopeRead, false, (*Server).listEvents},
}

// RouteByFunction finds the route a Lambda function serves.
func RouteByFunction(function string) (Route, bool) {
	for _, r := range Routes {
		if r.Function == function {
			return r, true
		}
	}
	return Route{}, false
}
