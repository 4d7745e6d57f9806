package lambdafn

import (
	"cmp"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambdacontext"

	"aitokens/pkg/metrics"
)

// Observer gives every invocation of a function what operators follow it by. Each log line of
// the invocation (the request line of pkg/api, the resolve line) carries the function's name,
// the X-Ray trace id and whether the invocation is the process's first (coldStart); Lambda's
// request id is already in them. After the handler, one Embedded Metric Format line (pkg/metrics)
// goes to the same stream: requests, 4xx, 5xx, latency, the cold start, and what the handler
// counted (KMS calls, resolve cache hits and misses, refused resolves by reason).
type Observer struct {
	function string
	dims     []metrics.Dimension
	out      io.Writer
	mu       sync.Mutex // one line at a time on out
	getenv   func(string) string
	invoked  atomic.Bool
}

// NewObserver observes function of the stack service (the Service dimension), writing its
// lines to out (stdout in Lambda: the function's log stream).
func NewObserver(function, service string, out io.Writer) *Observer {
	return &Observer{function: function, out: out, getenv: os.Getenv,
		dims: []metrics.Dimension{{Name: "Service", Value: service}, {Name: "Function", Value: function}}}
}

// Logger writes JSON lines to the observer's stream, with the fields every line shares.
func (o *Observer) Logger() *slog.Logger { return newLogger(o.function, &lockedWriter{o}) }

// newLogger writes one JSON object per line to out with the function's name and, within an
// invocation, its trace id and cold start.
func newLogger(function string, out io.Writer) *slog.Logger {
	return slog.New(logHandler{slog.NewJSONHandler(out, nil).WithAttrs([]slog.Attr{slog.String("function", function)})})
}

type lockedWriter struct{ o *Observer }

func (w *lockedWriter) Write(b []byte) (int, error) {
	w.o.mu.Lock()
	defer w.o.mu.Unlock()
	return w.o.out.Write(b)
}

// Invocation is one invocation under observation.
type Invocation struct {
	RequestID string // Lambda's
	TraceID   string // the X-Ray trace id (the Root of the trace header)
	ColdStart bool   // the first invocation of this process
	start     time.Time
	metrics   *metrics.Recorder
}

type invocationKey struct{}

// traceHeader is the context key under which aws-lambda-go puts the invocation's trace header
// (it also sets _X_AMZN_TRACE_ID, which is what this reads without that context).
const traceHeader = "x-amzn-trace-id"

// Begin starts an invocation: the returned context carries its metrics recorder (see
// metrics.FromContext) and what its log lines share. End must follow.
func (o *Observer) Begin(ctx context.Context) (context.Context, *Invocation) {
	inv := &Invocation{start: time.Now(), ColdStart: !o.invoked.Swap(true), metrics: &metrics.Recorder{}}
	if lc, ok := lambdacontext.FromContext(ctx); ok {
		inv.RequestID = lc.AwsRequestID
	}
	header, ok := ctx.Value(traceHeader).(string)
	if !ok {
		header = o.getenv("_X_AMZN_TRACE_ID")
	}
	for part := range strings.SplitSeq(header, ";") {
		if root, ok := strings.CutPrefix(part, "Root="); ok {
			inv.TraceID = root
		}
	}
	ctx = context.WithValue(ctx, invocationKey{}, inv)
	return metrics.NewContext(ctx, inv.metrics), inv
}

// End writes the invocation's metrics line; status is the HTTP status it answered with.
func (o *Observer) End(inv *Invocation, status int) {
	r := inv.metrics
	r.Add(metrics.Requests, 1)
	r.Add(metrics.ClientErrors, count(status >= 400 && status < 500))
	r.Add(metrics.ServerErrors, count(status >= 500))
	r.Add(metrics.Latency, float64(time.Since(inv.start).Microseconds())/1000)
	r.Add(metrics.ColdStarts, count(inv.ColdStart))
	line := r.AppendEMF(make([]byte, 0, 1024), time.Now(), o.dims,
		metrics.Dimension{Name: "requestId", Value: inv.RequestID}, metrics.Dimension{Name: "traceId", Value: inv.TraceID})
	o.mu.Lock()
	defer o.mu.Unlock()
	o.out.Write(append(line, '\n'))
}

func count(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// HTTPHandler is a function behind API Gateway's HTTP API (payload 2.0).
type HTTPHandler func(context.Context, events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error)

// HTTP observes next. An invocation that fails or panics counts as a 5xx and logs at ERROR.
func (o *Observer) HTTP(next HTTPHandler) HTTPHandler {
	return func(ctx context.Context, ev events.APIGatewayV2HTTPRequest) (res events.APIGatewayV2HTTPResponse, err error) {
		ctx, inv := o.Begin(ctx)
		status := http.StatusInternalServerError
		returned := false
		defer func() { o.end(ctx, inv, status, returned, err) }()
		res, err = next(ctx, ev)
		returned = true
		if err == nil {
			status = res.StatusCode
		}
		return res, err
	}
}

// end ends an invocation. One that failed (an error, or a panic: it did not return) has no
// answer of its own for API Gateway or the caller to show as a 5xx, and so no request line:
// it gets an ERROR line here, with the request id the metrics line has. A panic goes on
// unrecovered, with its stack, to the Lambda runtime.
func (o *Observer) end(ctx context.Context, inv *Invocation, status int, returned bool, err error) {
	if !returned {
		err = errors.New("panic")
	}
	if err != nil {
		o.Logger().LogAttrs(ctx, slog.LevelError, "invocation failed", slog.String("requestId", inv.RequestID),
			slog.Int("status", status), slog.String("error", err.Error()))
	}
	o.End(inv, status)
}

// ResolveHandler is the resolve function's handler.
type ResolveHandler func(context.Context, ResolveRequest) (ResolveResponse, error)

// Resolve observes next: a refusal (a 4xx answer) counts as a refused resolve by its reason.
func (o *Observer) Resolve(next ResolveHandler) ResolveHandler {
	return func(ctx context.Context, req ResolveRequest) (res ResolveResponse, err error) {
		ctx, inv := o.Begin(ctx)
		status := http.StatusInternalServerError
		returned := false
		defer func() { o.end(ctx, inv, status, returned, err) }()
		res, err = next(ctx, req)
		returned = true
		switch {
		case err != nil:
		case res.Error == nil:
			status = http.StatusOK
		default:
			status = res.Error.Code
			if status >= 400 && status < 500 {
				reason := cmp.Or(res.Error.Reason, "other") // a dimension value is never empty
				inv.metrics.AddBy(metrics.RefusedResolves, 1, metrics.Dimension{Name: "Reason", Value: reason})
			}
		}
		return res, err
	}
}

// logHandler adds to every line of an invocation its trace id and cold start.
type logHandler struct{ slog.Handler }

func (h logHandler) Handle(ctx context.Context, r slog.Record) error {
	if inv, ok := ctx.Value(invocationKey{}).(*Invocation); ok {
		r.AddAttrs(slog.String("traceId", inv.TraceID), slog.Bool("coldStart", inv.ColdStart))
	}
	return h.Handler.Handle(ctx, r)
}

func (h logHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return logHandler{h.Handler.WithAttrs(attrs)}
}

func (h logHandler) WithGroup(name string) slog.Handler { return logHandler{h.Handler.WithGroup(name)} }
