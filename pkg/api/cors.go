package api

import (
	"net/http"
	"slices"
	"strconv"
	"strings"

	"aitokens/pkg/config"
)

// CORSPolicy is what a page on another origin may do with this API. It has one definition,
// CORS(): the local server applies it (WithCORS) and template.yaml's CorsConfiguration states
// it for API Gateway, which answers preflights itself in AWS; a test fails when the two drift.
// There is no credentials mode: callers send a bearer token, never a cookie.
type CORSPolicy struct {
	AllowMethods  []string // the route table's methods
	AllowHeaders  []string // request headers a page may send, lower case
	ExposeHeaders []string // response headers a page may read besides the CORS-safelisted ones
	MaxAge        int      // seconds a browser may cache a preflight answer
}

// CORS is the policy of this API.
func CORS() CORSPolicy {
	var methods []string
	for _, r := range Routes {
		if !slices.Contains(methods, r.Method) {
			methods = append(methods, r.Method)
		}
	}
	return CORSPolicy{
		AllowMethods: methods,
		// authorization carries the bearer token, content-type a JSON body (not a safelisted
		// type), x-total-count asks lists for their total; the rest is what the admin dashboard
		// sends with every call.
		AllowHeaders: []string{"authorization", "content-type", "x-total-count", "accept-language", "content-language", "emporix-tenant"},
		// x-total-count answers the list's count, location names a created token, retry-after
		// says when to try again after a 503, x-request-id names the request in a user's report.
		ExposeHeaders: []string{"x-total-count", "location", "retry-after", "x-request-id"},
		// Two hours: Chromium's own cap, so the dashboard makes about one preflight per URL
		// and method in a working session, and a changed policy reaches browsers within it.
		MaxAge: 7200,
	}
}

// WithCORS applies CORS() for origins (config.Config.CORSAllowedOrigins: exact origins, or
// config.AnyOrigin alone); without origins it returns next unchanged. It must be the outermost
// handler, so that every answer under it carries the headers a browser needs to read it: the
// 401 that sends a user to log in again, a 403, 404 or 405, and the concurrency limiter's 503.
//
//   - A preflight (OPTIONS with Origin and Access-Control-Request-Method) is answered here with
//     204, before authentication, whatever its path: with the policy's headers for an allowed
//     origin, with none for any other, so the browser refuses the request it announced. It never
//     reaches the routes, so no origin sees a 405 for OPTIONS.
//   - Any other request goes on to next; for an allowed origin its answer, errors included,
//     carries Access-Control-Allow-Origin and Access-Control-Expose-Headers. Another origin's
//     answer carries no CORS header and the browser keeps it from the page.
//   - Every answer carries Vary: Origin, since whether it holds CORS headers depends on it.
//
// "*" is answered as "*" (any page, no credentials); an exact list echoes the request's origin.
func WithCORS(next http.Handler, origins []string) http.Handler {
	if len(origins) == 0 {
		return next
	}
	anyOrigin := slices.Equal(origins, []string{config.AnyOrigin})
	allowed := func(origin string) bool { return origin != "" && (anyOrigin || slices.Contains(origins, origin)) }
	p := CORS()
	methods, headers := strings.Join(p.AllowMethods, ", "), strings.Join(p.AllowHeaders, ", ")
	exposed, maxAge := strings.Join(p.ExposeHeaders, ", "), strconv.Itoa(p.MaxAge)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Add("Vary", "Origin")
		origin := r.Header.Get("Origin")
		allowOrigin := origin
		if anyOrigin {
			allowOrigin = config.AnyOrigin
		}
		if r.Method == http.MethodOptions && origin != "" && r.Header.Get("Access-Control-Request-Method") != "" {
			if allowed(origin) {
				h.Set("Access-Control-Allow-Origin", allowOrigin)
				h.Set("Access-Control-Allow-Methods", methods)
				h.Set("Access-Control-Allow-Headers", headers)
				h.Set("Access-Control-Max-Age", maxAge)
			}
			w.WriteHeader(http.StatusNoContent)
			return
		}
		if allowed(origin) {
			h.Set("Access-Control-Allow-Origin", allowOrigin)
			h.Set("Access-Control-Expose-Headers", exposed)
		}
		next.ServeHTTP(w, r)
	})
}
