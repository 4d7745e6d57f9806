// Package eventfn runs the two functions of lifecycle events as AWS Lambda functions:
// publish-events (the table's stream to EventBridge) and sweep-expiring (the hourly expiry
// reminders). It is apart from pkg/lambdafn so that the route functions do not link the
// EventBridge client and the sweeper.
package eventfn

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"os"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"

	"aitokens/pkg/api"
	"aitokens/pkg/config"
	"aitokens/pkg/eventbus"
	"aitokens/pkg/reminders"
	"aitokens/pkg/store"
)

// jsonLogger writes one JSON object per line to stdout, as the other functions (pkg/lambdafn).
func jsonLogger() *slog.Logger { return slog.New(slog.NewJSONHandler(os.Stdout, nil)) }

// initFailed logs why a function could not start, as one JSON line, and exits.
func initFailed(function string, err error) {
	jsonLogger().Error("init failed", "function", function, "error", err.Error())
	os.Exit(1)
}

// StartPublishEvents runs the publish-events function: the table's stream (audit event items,
// filtered by its event source mapping) to the bus, answering with batch item failures. With
// no EVENT_BUS_NAME (local runs) it logs each event as one JSON line instead.
func StartPublishEvents() {
	cfg, err := config.Load(os.Getenv) // it reads no table: TABLE_NAME is not required
	if err != nil {
		initFailed("publish-events", err)
	}
	p, err := eventbus.FromConfig(context.Background(), cfg, jsonLogger())
	if err != nil {
		initFailed("publish-events", err)
	}
	lambda.Start(p.Handle)
}

// sweepTimeout bounds one sweep, inside the invocation's own deadline less a margin.
const sweepTimeout = 10 * time.Minute

// NewSweep is the handler of the sweep-expiring function (invoked by its hourly schedule; the
// event is not read): the reminders due now, recorded under the invocation's request id.
func NewSweep(ctx context.Context, cfg config.Config) (func(context.Context, json.RawMessage) (reminders.Result, error), error) {
	client, err := store.NewClient(ctx, cfg.DynamoDBEndpoint, cfg.AWS)
	if err != nil {
		return nil, err
	}
	sw := reminders.New(store.New(client, cfg.TableName).WithAuditRetention(cfg.AuditRetention), cfg.Events, jsonLogger())
	return func(ctx context.Context, _ json.RawMessage) (reminders.Result, error) {
		ctx, cancel := api.WithDeadline(ctx, sweepTimeout)
		defer cancel()
		rid := ""
		if lc, ok := lambdacontext.FromContext(ctx); ok {
			rid = lc.AwsRequestID
		}
		if rid == "" {
			b := make([]byte, 16)
			rand.Read(b)
			rid = hex.EncodeToString(b)
		}
		return sw.Sweep(ctx, rid)
	}, nil
}

// StartSweepExpiring runs the sweep-expiring function; it needs TABLE_NAME.
func StartSweepExpiring() {
	if err := config.RequireTable(os.Getenv); err != nil {
		initFailed("sweep-expiring", err)
	}
	cfg, err := config.Load(os.Getenv)
	if err != nil {
		initFailed("sweep-expiring", err)
	}
	h, err := NewSweep(context.Background(), cfg)
	if err != nil {
		initFailed("sweep-expiring", err)
	}
	lambda.Start(h)
}
