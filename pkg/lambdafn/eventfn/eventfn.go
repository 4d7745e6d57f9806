// Package eventfn runs the two functions of lifecycle events as AWS Lambda functions:
// publish-events (the table's stream to EventBridge) and sweep-expiring (the hourly expiry
// reminders), observed as every function is (pkg/lambdafn's Observer: one log line and one
// metrics line per invocation). It is apart from pkg/lambdafn so that the route functions do
// not link the EventBridge client and the sweeper.
package eventfn

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"

	"aitokens/pkg/api"
	"aitokens/pkg/awsconf"
	"aitokens/pkg/config"
	"aitokens/pkg/eventbus"
	"aitokens/pkg/lambdafn"
	"aitokens/pkg/metrics"
	"aitokens/pkg/reminders"
	"aitokens/pkg/store"
)

const (
	PublishEvents = "publish-events"
	SweepExpiring = "sweep-expiring"
)

// initFailed logs why a function could not start, as one JSON line like every other, and exits.
func initFailed(o *lambdafn.Observer, err error) {
	o.Logger().Error("init failed", "error", err.Error())
	os.Exit(1)
}

// Publisher is publish-events' handler: one batch of stream records, answered with the batch
// item failures, and one "publish" log line and one metrics line (EventsPublished,
// EventsFailed) per invocation.
func Publisher(o *lambdafn.Observer, p *eventbus.Publisher) func(context.Context, events.DynamoDBEvent) (events.DynamoDBEventResponse, error) {
	log := o.Logger()
	return func(ctx context.Context, batch events.DynamoDBEvent) (events.DynamoDBEventResponse, error) {
		start := time.Now()
		ctx, inv := o.Begin(ctx)
		defer o.End(inv, http.StatusOK) // failures are answered item by item, never as an error
		res, sum := p.Publish(ctx, batch)
		r := metrics.FromContext(ctx)
		r.Add(metrics.EventsPublished, float64(sum.Published))
		r.Add(metrics.EventsFailed, float64(sum.Failed))
		log.InfoContext(ctx, "publish", "requestId", inv.RequestID, "route", PublishEvents, "status", http.StatusOK,
			"durationMs", since(start), "records", sum.Records, "ignored", sum.Ignored, "published", sum.Published,
			"retried", sum.Retried, "failed", sum.Failed)
		return res, nil
	}
}

// StartPublishEvents runs the publish-events function: the table's stream (audit event items,
// filtered by its event source mapping) to the bus, answering with batch item failures. With
// no EVENT_BUS_NAME (local runs) it logs each event as one JSON line instead.
func StartPublishEvents() {
	cfg, err := config.Load(os.Getenv) // it reads no table: TABLE_NAME is not required
	o := lambdafn.NewObserver(PublishEvents, cfg.ServiceName, os.Stdout)
	awsconf.SetLogger(o.Logger()) // the SDK's own lines too, before its clients are made
	if err != nil {
		initFailed(o, err)
	}
	p, err := eventbus.FromConfig(context.Background(), cfg, o.Logger())
	if err != nil {
		initFailed(o, err)
	}
	lambda.Start(Publisher(o, p))
}

// sweepTimeout bounds one sweep, inside the invocation's own deadline less a margin.
const sweepTimeout = 10 * time.Minute

// Sweeper is sweep-expiring's handler (invoked by its hourly schedule; the event is not read):
// the reminders due now, recorded under the invocation's request id, with one "sweep" log line
// and one metrics line (RemindersWritten) per invocation. A sweep that could not write every
// reminder due is an invocation error (status 500 in its line), so that its alarm sees it.
func Sweeper(o *lambdafn.Observer, sw *reminders.Sweeper) func(context.Context, json.RawMessage) (reminders.Result, error) {
	log := o.Logger()
	return func(ctx context.Context, _ json.RawMessage) (reminders.Result, error) {
		start := time.Now()
		ctx, inv := o.Begin(ctx)
		status := http.StatusInternalServerError
		defer func() { o.End(inv, status) }()
		ctx, cancel := api.WithDeadline(ctx, sweepTimeout)
		defer cancel()
		rid := inv.RequestID
		if rid == "" {
			b := make([]byte, 16)
			rand.Read(b)
			rid = hex.EncodeToString(b)
		}
		res, err := sw.Sweep(ctx, rid)
		if err == nil {
			status = http.StatusOK
		}
		metrics.FromContext(ctx).Add(metrics.RemindersWritten, float64(res.Expiring+res.Expired))
		attrs := []any{"requestId", rid, "route", SweepExpiring, "status", status, "durationMs", since(start),
			"from", res.From, "to", res.To, "days", res.Days, "indexItemsRead", res.IndexItemsRead, "indexReadUnits", res.IndexReadUnits,
			"due", res.Due, "expiring", res.Expiring, "expired", res.Expired, "alreadyWritten", res.AlreadyWritten, "gone", res.Gone,
			"failed", res.Failed}
		if err != nil {
			attrs = append(attrs, "error", err.Error())
		}
		log.Log(ctx, map[bool]slog.Level{true: slog.LevelError, false: slog.LevelInfo}[err != nil], "sweep", attrs...)
		return res, err
	}
}

// StartSweepExpiring runs the sweep-expiring function; it needs TABLE_NAME.
func StartSweepExpiring() {
	o := lambdafn.NewObserver(SweepExpiring, "aitokens", os.Stdout)
	if err := config.RequireTable(os.Getenv); err != nil {
		initFailed(o, err)
	}
	cfg, err := config.Load(os.Getenv)
	if err != nil {
		initFailed(o, err)
	}
	o = lambdafn.NewObserver(SweepExpiring, cfg.ServiceName, os.Stdout)
	awsconf.SetLogger(o.Logger()) // the SDK's own lines too, before its clients are made
	client, err := store.NewClient(context.Background(), cfg.DynamoDBEndpoint, cfg.AWS)
	if err != nil {
		initFailed(o, err)
	}
	sw := reminders.New(store.New(client, cfg.TableName).WithAuditRetention(cfg.AuditRetention), cfg.Events, o.Logger())
	lambda.Start(Sweeper(o, sw))
}

func since(start time.Time) float64 { return float64(time.Since(start).Microseconds()) / 1000 }
