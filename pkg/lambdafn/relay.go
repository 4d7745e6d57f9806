package lambdafn

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sync/atomic"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdaurl"

	"aitokens/pkg/awsconf"
	"aitokens/pkg/config"
	"aitokens/pkg/metrics"
	"aitokens/pkg/relay"
)

// RelayHandler is the relay function's handler: a function URL event in, a streamed response
// out (InvokeMode RESPONSE_STREAM).
type RelayHandler func(context.Context, *events.LambdaFunctionURLRequest) (*events.LambdaFunctionURLStreamingResponse, error)

// errStreamAborted ends a relayed stream that broke off: the runtime reports it in the
// stream's trailers, and Lambda cuts the caller's response instead of ending it as complete.
var errStreamAborted = errors.New("relay: the upstream's stream broke off")

type abortKey struct{}

// NewRelay builds the relay function from its configuration and a sealer that can open
// values: the service as resolve-token has it (opened values cached in this process, so a warm
// call makes no KMS call), and pkg/relay never allowed plain HTTP or loopback upstreams (Dev is
// for serve --dev only). Each call writes the relay's one log line, with the invocation's trace
// id and cold start, and its one metrics line, to o.
func NewRelay(ctx context.Context, cfg config.Config, sealer SealerFactory, o *Observer) (RelayHandler, error) {
	if sealer == nil {
		return nil, errors.New("lambdafn: relay needs a sealer")
	}
	svc, err := newService(ctx, cfg, cachedSealer(sealer))
	if err != nil {
		return nil, err
	}
	log := o.Logger()
	// The metrics line is the relay's (with its host, token, status and bytes), on the
	// invocation's recorder, which has the cold start, and with the trace id as the other
	// functions' lines have it.
	traceID := func(ctx context.Context) []metrics.Dimension {
		inv, _ := ctx.Value(invocationKey{}).(*Invocation)
		if inv == nil {
			return nil
		}
		return []metrics.Dimension{{Name: "traceId", Value: inv.TraceID}}
	}
	h, err := relay.New(relay.Config{Grants: svc, Log: log, Metrics: &lockedWriter{o}, Dims: o.dims, Props: traceID, Dev: false})
	if err != nil {
		return nil, err
	}
	return streaming(h, log, o), nil
}

// streaming serves h to function URL events through lambdaurl. lambdaurl runs the handler in a
// goroutine of its own without recovering: the relay's abort of a broken stream
// (http.ErrAbortHandler, as net/http takes it) would end the process. It is recovered here and
// turned into the stream's error, so Lambda cuts the caller's response instead of ending it as
// if complete.
func streaming(h http.Handler, log *slog.Logger, o *Observer) RelayHandler {
	inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		aborted, _ := r.Context().Value(abortKey{}).(*atomic.Bool)
		defer func() {
			if v := recover(); v != nil {
				if v != http.ErrAbortHandler {
					log.ErrorContext(r.Context(), "relay panicked", "error", fmt.Sprint(v))
				}
				aborted.Store(true)
			}
		}()
		h.ServeHTTP(w, r)
	})
	wrapped := lambdaurl.Wrap(inner)
	return func(ctx context.Context, req *events.LambdaFunctionURLRequest) (*events.LambdaFunctionURLStreamingResponse, error) {
		ctx, inv := o.Begin(ctx) // the log line's trace id and cold start; the relay writes the metrics line
		inv.metrics.Add(metrics.ColdStarts, count(inv.ColdStart))
		aborted := &atomic.Bool{}
		res, err := wrapped(context.WithValue(ctx, abortKey{}, aborted), req)
		if err != nil {
			return nil, err
		}
		res.Body = &abortingReader{r: res.Body, aborted: aborted}
		return res, nil
	}
}

// abortingReader is the response body; at its end, an aborted stream is an error, not EOF. The
// flag is set before lambdaurl closes the pipe, so the EOF that follows sees it.
type abortingReader struct {
	r       io.Reader
	aborted *atomic.Bool
}

func (a *abortingReader) Read(p []byte) (int, error) {
	n, err := a.r.Read(p)
	if err == io.EOF && a.aborted.Load() {
		err = errStreamAborted
	}
	return n, err
}

// StartRelay runs the relay function until the Lambda runtime stops it.
func StartRelay(sealer SealerFactory) {
	cfg, err := loadConfig()
	if err != nil {
		initFailed("relay", err)
	}
	o := NewObserver("relay", cfg.ServiceName, os.Stdout)
	awsconf.SetLogger(o.Logger()) // the SDK's own lines too, before its clients are made
	h, err := NewRelay(context.Background(), cfg, sealer, o)
	if err != nil {
		initFailed("relay", err)
	}
	lambda.Start(h)
}
