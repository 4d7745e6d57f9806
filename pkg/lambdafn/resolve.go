package lambdafn

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"

	"aitokens/pkg/api"
	"aitokens/pkg/awsconf"
	"aitokens/pkg/config"
	"aitokens/pkg/seal"
	"aitokens/pkg/service"
	"aitokens/pkg/token"
)

// ResolveRequest is the event of the internal resolve-token function, invoked directly by the
// platform's services (lambda:InvokeFunction), never through API Gateway.
type ResolveRequest struct {
	Tenant  string `json:"tenant"`
	TokenID string `json:"tokenId"`
	// Consumer is who will use the value; a restricted token resolves only for a consumer
	// registered in its usages.
	Consumer *token.Consumer `json:"consumer,omitempty"`
}

// ResolveResponse holds the value, or an error in the shape of the API's ErrorMessage.
type ResolveResponse struct {
	Value string        `json:"value,omitempty"`
	Error *ResolveError `json:"error,omitempty"`
}

// ResolveError is a refused or failed resolve.
type ResolveError struct {
	Code    int    `json:"code"`
	Status  string `json:"status"`
	Message string `json:"message"`
	// Reason tells refusals apart: not_found, expired, consumer_not_allowed, replaced, invalid, ...
	Reason string `json:"reason,omitempty"`
	// ReplacedBy is, with reason replaced, the token to resolve instead.
	ReplacedBy string `json:"replacedBy,omitempty"`
	// RequestID is the invocation's id, as its log line has it (the Lambda request id, which
	// Invoke also answers in its x-amzn-RequestId header).
	RequestID string `json:"requestId,omitempty"`
}

// Resolver answers resolve events.
type Resolver struct {
	svc     *service.Service
	log     *slog.Logger
	timeout time.Duration
}

// NewResolver builds the resolver from its configuration and a sealer that can open values.
func NewResolver(ctx context.Context, cfg config.Config, sealer SealerFactory) (*Resolver, error) {
	if sealer == nil {
		return nil, errors.New("lambdafn: resolve-token needs a sealer")
	}
	svc, err := newService(ctx, cfg, cachedSealer(sealer))
	if err != nil {
		return nil, err
	}
	return &Resolver{svc: svc, log: newLogger("resolve-token", os.Stdout), timeout: cfg.RequestTimeout}, nil
}

// cachedSealer is sealer with the values it opens cached in this process (size and TTL from
// the configuration), so that a warm resolve or relay call makes no KMS call. Resolve-token and
// the relay share it so that both cache alike.
func cachedSealer(sealer SealerFactory) SealerFactory {
	return func(ctx context.Context, cfg config.Config) (seal.Sealer, error) {
		s, err := sealer(ctx, cfg)
		if err != nil {
			return nil, err
		}
		return seal.NewCache(s, cfg.ResolveCacheSize, cfg.ResolveCacheTTL), nil
	}
}

// WithLogger is the resolver writing its log lines to log instead of stdout.
func (r *Resolver) WithLogger(log *slog.Logger) *Resolver {
	c := *r
	c.log = log
	return &c
}

// Resolve answers one event. Errors are answers, not Lambda failures, so callers get a
// structured reason; the log line never holds the value.
func (r *Resolver) Resolve(ctx context.Context, req ResolveRequest) (ResolveResponse, error) {
	start := time.Now()
	ctx, cancel := api.WithDeadline(ctx, r.timeout)
	defer cancel()
	rid := ""
	if lc, ok := lambdacontext.FromContext(ctx); ok {
		rid = lc.AwsRequestID
	}
	if rid == "" {
		rid = randomID()
	}
	value, err := r.svc.Resolve(ctx, req.Tenant, req.TokenID, req.Consumer, rid)
	res := ResolveResponse{Value: string(value)}
	status := http.StatusOK
	if err != nil {
		var body api.ErrorMessage
		status, body = api.Render(err)
		e := token.As(err)
		reason := string(e.Reason)
		if reason == "" {
			reason = string(e.Kind)
		}
		res = ResolveResponse{Error: &ResolveError{Code: body.Code, Status: body.Status, Message: body.Message, Reason: reason,
			ReplacedBy: e.Successor, RequestID: rid}}
	}
	attrs := []any{"requestId", rid, "route", "resolve-token", "tenant", req.Tenant, "tokenId", req.TokenID, "status", status,
		"durationMs", float64(time.Since(start).Microseconds()) / 1000}
	if c := req.Consumer; c != nil && c.Validate() == nil {
		attrs = append(attrs, "consumerKind", c.Kind, "consumerId", c.ID)
	}
	if res.Error != nil {
		attrs = append(attrs, "outcome", res.Error.Reason)
	}
	if status >= 500 {
		attrs = append(attrs, "error", err.Error())
	}
	r.log.Log(ctx, api.LogLevel(status), "resolve", attrs...)
	return res, nil
}

// randomID names an invocation that came without a Lambda request id (a direct call).
func randomID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// StartResolve runs the resolve function until the Lambda runtime stops it.
func StartResolve(sealer SealerFactory) {
	cfg, err := loadConfig()
	if err != nil {
		initFailed("resolve-token", err)
	}
	o := NewObserver("resolve-token", cfg.ServiceName, os.Stdout)
	awsconf.SetLogger(o.Logger()) // the SDK's own lines too, before its clients are made
	r, err := NewResolver(context.Background(), cfg, sealer)
	if err != nil {
		initFailed("resolve-token", err)
	}
	lambda.Start(o.Resolve(r.WithLogger(o.Logger()).Resolve))
}
