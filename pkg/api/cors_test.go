package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"aitokens/pkg/api"
	"aitokens/pkg/auth"
	"aitokens/pkg/devtools/testenv"
	"aitokens/pkg/store"
)

const (
	dashboard = "https://admin.example.com"
	stranger  = "https://evil.example.net"
)

// corsHeaders are the response headers of CORS; a disallowed origin must get none of them.
var corsHeaders = []string{"Access-Control-Allow-Origin", "Access-Control-Allow-Methods", "Access-Control-Allow-Headers",
	"Access-Control-Max-Age", "Access-Control-Expose-Headers", "Access-Control-Allow-Credentials"}

func noCORSHeaders(t *testing.T, name string, h http.Header) {
	t.Helper()
	for _, k := range corsHeaders {
		if v := h.Values(k); len(v) > 0 {
			t.Errorf("%s: %s: %q, want no CORS header", name, k, v)
		}
	}
}

func variesByOrigin(t *testing.T, name string, h http.Header) {
	t.Helper()
	if !slices.Contains(h.Values("Vary"), "Origin") {
		t.Errorf("%s: Vary %q, want Origin", name, h.Values("Vary"))
	}
}

// The policy is the route table's methods and the headers the dashboard and the API need.
func TestCORSPolicy(t *testing.T) {
	t.Parallel()
	p := api.CORS()
	if !slices.Equal(p.AllowMethods, []string{"GET", "POST", "PUT", "DELETE", "PATCH"}) {
		t.Errorf("methods %q", p.AllowMethods)
	}
	for _, want := range []string{"authorization", "content-type", "x-total-count", "accept-language", "content-language", "emporix-tenant"} {
		if !slices.Contains(p.AllowHeaders, want) {
			t.Errorf("allowed headers %q lack %s", p.AllowHeaders, want)
		}
	}
	if !slices.Equal(p.ExposeHeaders, []string{"x-total-count", "location", "retry-after", "x-request-id"}) || p.MaxAge <= 0 {
		t.Errorf("exposed %q, max age %d", p.ExposeHeaders, p.MaxAge)
	}
}

// preflight sends a browser's preflight for method to handler; it carries no JWT, as a
// browser's never does.
func preflight(handler http.Handler, origin, method, path string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodOptions, path, nil)
	req.Header.Set("Origin", origin)
	req.Header.Set("Access-Control-Request-Method", method)
	req.Header.Set("Access-Control-Request-Headers", "authorization,content-type")
	rec := httptest.NewRecorder()
	handler.ServeHTTP(rec, req)
	return rec
}

// Preflights are answered before authentication: the policy for an allowed origin, nothing
// for another; neither reaches the routes (no 401, no 405, no body).
func TestCORSPreflight(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	p := api.CORS()
	cases := []struct {
		name, origin, method, path string
		origins                    []string
		allowOrigin                string // "" = no CORS headers at all
	}{
		{"allowed origin, list", dashboard, "GET", base, []string{"http://localhost:3000", dashboard}, dashboard},
		{"allowed origin, delete of a token", dashboard, "DELETE", base + "/openai", []string{dashboard}, dashboard},
		{"allowed origin, a usage", dashboard, "PUT", base + "/openai/usages/agent/a1", []string{dashboard}, dashboard},
		{"allowed origin, no route at this path", dashboard, "GET", "/elsewhere", []string{dashboard}, dashboard},
		{"any origin", stranger, "PATCH", base + "/openai", []string{"*"}, "*"},
		{"disallowed origin", stranger, "PUT", base + "/openai", []string{dashboard}, ""},
		{"an origin differing in case", "https://Admin.example.com", "GET", base, []string{dashboard}, ""},
		{"an origin differing in port", dashboard + ":8443", "GET", base, []string{dashboard}, ""},
	}
	for _, c := range cases {
		rec := preflight(api.WithCORS(h.handler, c.origins), c.origin, c.method, c.path)
		if rec.Code != http.StatusNoContent || rec.Body.Len() != 0 {
			t.Errorf("%s: %d %q, want an empty 204", c.name, rec.Code, rec.Body)
		}
		variesByOrigin(t, c.name, rec.Header())
		if c.allowOrigin == "" {
			noCORSHeaders(t, c.name, rec.Header())
			continue
		}
		hd := rec.Header()
		if hd.Get("Access-Control-Allow-Origin") != c.allowOrigin || hd.Get("Access-Control-Allow-Methods") != strings.Join(p.AllowMethods, ", ") ||
			hd.Get("Access-Control-Allow-Headers") != strings.Join(p.AllowHeaders, ", ") || hd.Get("Access-Control-Max-Age") != "7200" ||
			hd.Get("Access-Control-Allow-Credentials") != "" {
			t.Errorf("%s: preflight headers %v", c.name, hd)
		}
	}
	// Without CORS configured, an OPTIONS is an ordinary request: the API's 405.
	rec := preflight(api.WithCORS(h.handler, nil), dashboard, "GET", base)
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("CORS off: preflight answered %d", rec.Code)
	}
	noCORSHeaders(t, "CORS off", rec.Header())
}

// Every answer to an allowed origin carries the CORS headers, errors included: the page must
// be able to read a 401 to send its user to log in again, and X-Total-Count of a list.
func TestCORSOnEveryAnswer(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.create("openai", "OpenAI", "sk-cors-value-0123456789")
	reader := h.jwt("acme", auth.ScopeRead)
	inner := h.handler
	cases := []struct {
		name, method, path, jwt string
		origins                 []string
		origin                  string
		status                  int
		allowOrigin             string // "" = no CORS headers at all
	}{
		{"list", "GET", base, "manager", []string{dashboard}, dashboard, 200, dashboard},
		{"list, any origin", "GET", base, "manager", []string{"*"}, stranger, 200, "*"},
		{"no JWT", "GET", base, "", []string{dashboard}, dashboard, 401, dashboard},
		{"no JWT, any origin", "GET", base, "", []string{"*"}, stranger, 401, "*"},
		{"bad JWT", "GET", base, "not-a-jwt", []string{dashboard}, dashboard, 401, dashboard},
		{"missing scope", "DELETE", base + "/openai", reader, []string{dashboard}, dashboard, 403, dashboard},
		{"other tenant", "GET", "/ai-service/other/agentic/tokens", "manager", []string{dashboard}, dashboard, 403, dashboard},
		{"not found", "GET", base + "/missing", "manager", []string{dashboard}, dashboard, 404, dashboard},
		{"no route", "GET", "/elsewhere", "manager", []string{dashboard}, dashboard, 404, dashboard},
		{"method not allowed", "POST", base + "/openai", "manager", []string{dashboard}, dashboard, 405, dashboard},
		{"OPTIONS that is no preflight", "OPTIONS", base, "manager", []string{dashboard}, dashboard, 405, dashboard},
		{"disallowed origin", "GET", base, "manager", []string{dashboard}, stranger, 200, ""},
		{"disallowed origin, 401", "GET", base, "", []string{dashboard}, stranger, 401, ""},
		{"no Origin (not a browser, or same origin)", "GET", base, "manager", []string{dashboard}, "", 200, ""},
	}
	for _, c := range cases {
		h.handler = api.WithCORS(inner, c.origins)
		jwt := c.jwt
		if jwt == "manager" {
			jwt = h.manager()
		}
		headers := []string{"X-Total-Count", "true"}
		if c.origin != "" {
			headers = append(headers, "Origin", c.origin)
		}
		res := h.do(c.method, c.path, "", jwt, headers...)
		if res.status != c.status {
			t.Errorf("%s: %d %s, want %d", c.name, res.status, res.body, c.status)
		}
		variesByOrigin(t, c.name, res.header)
		if c.allowOrigin == "" {
			noCORSHeaders(t, c.name, res.header)
			continue
		}
		if res.header.Get("Access-Control-Allow-Origin") != c.allowOrigin || res.header.Get("Access-Control-Expose-Headers") != "x-total-count, location, retry-after, x-request-id" {
			t.Errorf("%s: CORS headers %v", c.name, res.header)
		}
		if c.status == 401 && res.header.Get("WWW-Authenticate") == "" {
			t.Errorf("%s: the 401 lost its WWW-Authenticate", c.name)
		}
	}
	h.handler = inner
}

// The limiter's 503 is an answer like any other: under WithCORS it carries the headers, so a
// page can read its Retry-After instead of seeing a network error.
func TestCORSOnTheLimitersAnswer(t *testing.T) {
	t.Parallel()
	proxy := testenv.NewFaultProxy(t)
	client, err := store.NewClient(context.Background(), proxy.URL, testenv.Policy)
	if err != nil {
		t.Fatal(err)
	}
	h := newHarnessFrom(t, stack{client: client, sealer: newHarness(t).sealer, maxConcurrent: 1})
	handler := api.WithCORS(h.handler, []string{dashboard})
	held := proxy.PauseNext("GetItem")
	done := make(chan struct{})
	go func() {
		defer close(done)
		req := httptest.NewRequest("GET", base+"/held", nil)
		req.Header.Set("Authorization", "Bearer "+h.manager())
		handler.ServeHTTP(httptest.NewRecorder(), req)
	}()
	select {
	case <-held.Reached:
	case <-time.After(10 * time.Second):
		t.Fatal("the first request did not reach DynamoDB")
	}
	req := httptest.NewRequest("GET", base, nil)
	req.Header.Set("Origin", dashboard)
	rec := httptest.NewRecorder()
	handler.ServeHTTP(rec, req)
	// A preflight is answered before the limiter: it takes no slot and is never refused.
	pre := preflight(handler, dashboard, "GET", base)
	held.Release()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the held request did not end")
	}
	if pre.Code != http.StatusNoContent || pre.Header().Get("Access-Control-Allow-Origin") != dashboard {
		t.Errorf("a preflight while the cap is reached: %d %v", pre.Code, pre.Header())
	}
	var body api.ErrorMessage
	json.Unmarshal(rec.Body.Bytes(), &body)
	if rec.Code != 503 || body.Code != 503 || rec.Header().Get("Retry-After") == "" ||
		rec.Header().Get("Access-Control-Allow-Origin") != dashboard || !strings.Contains(rec.Header().Get("Access-Control-Expose-Headers"), "retry-after") {
		t.Fatalf("over the cap: %d %s %v", rec.Code, rec.Body, rec.Header())
	}
}
