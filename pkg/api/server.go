package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/lambdacontext"
	"github.com/awslabs/aws-lambda-go-api-proxy/core"

	"aitokens/pkg/auth"
	"aitokens/pkg/service"
	"aitokens/pkg/token"
)

// MaxBodyBytes bounds every request body.
const MaxBodyBytes = 64 * 1024

// Server serves the routes it was built with.
type Server struct {
	svc     *service.Service
	auth    auth.Authenticator
	log     *slog.Logger
	timeout time.Duration
	mux     *http.ServeMux
	slots   limiter
}

// Config is what a Server is built from.
type Config struct {
	Service *service.Service
	Auth    auth.Authenticator
	Log     *slog.Logger
	// RequestTimeout bounds every request; in Lambda the invocation's deadline less
	// lambdaMargin bounds it further.
	RequestTimeout time.Duration
	Routes         []Route // all of Routes when empty
	// MaxConcurrent is how many requests are served at once (MAX_CONCURRENT_REQUESTS); one
	// more gets a 503 with Retry-After, logged like any answer. 0 is no limit.
	MaxConcurrent int
}

// New builds a handler for the configured routes, checking that it has all they need.
func New(cfg Config) (*Server, error) {
	switch {
	case cfg.Service == nil:
		return nil, errors.New("api: no service")
	case cfg.Auth == nil:
		return nil, errors.New("api: no authenticator")
	case cfg.Log == nil:
		return nil, errors.New("api: no logger")
	case cfg.RequestTimeout <= 0:
		return nil, errors.New("api: the request timeout must be positive")
	}
	routes := cfg.Routes
	if len(routes) == 0 {
		routes = Routes
	}
	s := &Server{svc: cfg.Service, auth: cfg.Auth, log: cfg.Log, timeout: cfg.RequestTimeout, mux: http.NewServeMux(),
		slots: newLimiter(cfg.MaxConcurrent)}
	for _, r := range routes {
		if r.Seals && !cfg.Service.CanSeal() {
			return nil, fmt.Errorf("api: route %s seals values but the service has no sealer", r.Function)
		}
		s.mux.Handle(r.Method+" "+r.Path, s.wrap(r))
	}
	// "/" matches whatever no route does, method mismatches included, so the answer is this
	// API's JSON 404 or 405 rather than the mux's plain text.
	s.mux.Handle("/", s.wrap(Route{handle: (*Server).noRoute}))
	return s, nil
}

// lambdaMargin is kept free of the invocation's deadline so that a timed-out request still
// gets its 503 out before Lambda stops the function.
const lambdaMargin = 500 * time.Millisecond

// WithDeadline bounds ctx by timeout and, when ctx already has a deadline (a Lambda
// invocation's), by that deadline less lambdaMargin. Every AWS call of the request inherits it.
func WithDeadline(ctx context.Context, timeout time.Duration) (context.Context, context.CancelFunc) {
	deadline := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Add(-lambdaMargin).Before(deadline) {
		deadline = d.Add(-lambdaMargin)
	}
	return context.WithDeadline(ctx, deadline)
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// The mux would answer a path with "." or ".." segments with a redirect to the cleaned
	// path; an API client gets a JSON 400 instead, and no path can walk to another tenant.
	if p := r.URL.Path; p != "/" && (path.Clean(p) != p || strings.HasSuffix(p, "/")) {
		s.wrap(Route{handle: func(*Server, http.ResponseWriter, *http.Request) error {
			return token.InvalidField("path", "the path must not hold empty, . or .. segments")
		}}).ServeHTTP(w, r)
		return
	}
	s.mux.ServeHTTP(w, r)
}

// noRoute is a 405 with Allow when the path has routes for other methods, else a 404.
func (s *Server) noRoute(w http.ResponseWriter, r *http.Request) error {
	var allowed []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pattern := s.mux.Handler(probe); pattern != "/" {
			allowed = append(allowed, m)
		}
	}
	if len(allowed) == 0 {
		return &token.Error{Kind: token.NotFound, Message: "No resource at this path."}
	}
	w.Header().Set("Allow", strings.Join(allowed, ", "))
	return &token.Error{Kind: kindMethodNotAllowed, Message: "Method " + r.Method + " is not allowed here."}
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (w *statusRecorder) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *statusRecorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

type (
	requestIDKey struct{}
	actorKey     struct{} // the caller's JWT sub, recorded as the actor of a change
)

// RequestIDHeader carries the request id of every answer of a route, the one its log line
// (and, for a change, its event) has, so that a user's report finds the line.
const RequestIDHeader = "X-Request-Id"

// requestID is the Lambda request id when there is one, else a random id. Stored on every
// write, it lets a retried write recognise its own earlier success.
func requestID(ctx context.Context) string {
	if lc, ok := lambdacontext.FromContext(ctx); ok && lc.AwsRequestID != "" {
		return lc.AwsRequestID
	}
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// wrap runs one route: authenticate, authorize scope and tenant, check the path, handle, and
// log one line. Errors of any kind are rendered here, so handlers just return them.
func (s *Server) wrap(rt Route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rid := requestID(r.Context())
		w.Header().Set(RequestIDHeader, rid)
		rec := &statusRecorder{ResponseWriter: w}
		tenant := r.PathValue("tenant")
		var err error
		defer func() {
			if p := recover(); p != nil {
				err = token.InternalError(fmt.Errorf("panic: %v", p))
				writeError(rec, err, rid)
			}
			s.logRequest(r, rt, rid, tenant, rec.status, time.Since(start), err)
		}()
		release, ok := s.slots.acquire()
		if !ok {
			err = errBusy()
			writeError(rec, err, rid)
			return
		}
		defer release()
		ctx, cancel := WithDeadline(r.Context(), s.timeout)
		defer cancel()
		ctx = context.WithValue(ctx, requestIDKey{}, rid)
		if rt.Scope != "" {
			var p auth.Principal
			// With the request's deadline: a JWKS read that is due waits no longer than it.
			p, err = s.authorize(r.WithContext(ctx), rt, tenant)
			ctx = context.WithValue(ctx, actorKey{}, p.Subject)
		}
		r = r.WithContext(ctx)
		if err == nil {
			r.Body = http.MaxBytesReader(rec, r.Body, MaxBodyBytes)
			err = rt.handle(s, rec, r)
		}
		if err != nil {
			writeError(rec, err, rid)
		}
	})
}

func (s *Server) authorize(r *http.Request, rt Route, tenant string) (auth.Principal, error) {
	p, err := s.auth.Authenticate(r)
	if err != nil {
		return p, err
	}
	if err := p.Authorize(rt.Scope, tenant); err != nil {
		return p, err
	}
	// The tenant equals a verified claim here, yet a claim is not proof of a well-formed tenant.
	if err := token.ValidateTenant(tenant); err != nil {
		return p, err
	}
	if strings.Contains(rt.Path, "{tokenId}") {
		return p, token.ValidateID(r.PathValue("tokenId"))
	}
	return p, nil
}

// logRequest writes the one line per request. It names no header, body, value or token.
func (s *Server) logRequest(r *http.Request, rt Route, rid, tenant string, status int, d time.Duration, err error) {
	attrs := []slog.Attr{
		slog.String("requestId", rid),
		slog.String("method", r.Method),
		slog.String("route", rt.Path),
		slog.String("tenant", tenant),
		slog.Int("status", status),
		slog.Float64("durationMs", float64(d.Microseconds())/1000),
	}
	// API Gateway's own id of the request (its apigw-requestid header and access log line).
	if gw, ok := core.GetAPIGatewayV2ContextFromContext(r.Context()); ok && gw.RequestID != "" {
		attrs = append(attrs, slog.String("apiRequestId", gw.RequestID))
	}
	level := LogLevel(status)
	if err != nil {
		e := token.As(err)
		attrs = append(attrs, slog.String("errorKind", string(e.Kind)))
		// A 5xx error is logged at ERROR with its cause, also one that came after the handler
		// had sent its status (a panic half-way through an answer).
		if StatusOf(e.Kind) >= 500 {
			level = slog.LevelError
			attrs = append(attrs, slog.String("error", e.Error()))
		}
	}
	s.log.LogAttrs(r.Context(), level, "request", attrs...)
}

// LogLevel is the level of the one log line of an answer with status: ERROR for every 5xx,
// of a route or of resolve-token (the runbook's queries select level = "ERROR"), INFO
// otherwise (a 4xx is the caller's mistake, counted in the metrics, not an operator's alarm).
func LogLevel(status int) slog.Level {
	if status >= 500 {
		return slog.LevelError
	}
	return slog.LevelInfo
}
