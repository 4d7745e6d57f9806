package eventbus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	"github.com/aws/smithy-go"

	"aitokens/pkg/awsconf"
	"aitokens/pkg/awsretry"
	"aitokens/pkg/config"
)

// EventBridge's limits of one PutEvents call (issue 27): at most 10 entries ("Amazon
// EventBridge quotas", https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-quota.html),
// whose total entry size, counted as EntrySize does, must be less than 256 KB ("Calculating
// Amazon EventBridge PutEvents event entry size",
// https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-putevent-size.html). A batch is
// cut into calls within both, and an entry that alone is not less than MaxRequestBytes is
// reported rather than sent (EventBridge would refuse the whole call it is in).
const (
	MaxEntries      = 10
	MaxRequestBytes = 256 * 1024
)

// EntrySize is an entry's size as EventBridge counts it against MaxRequestBytes: 14 bytes for
// Time when set, and the UTF-8 bytes of Source, DetailType, Detail and each of Resources (the
// documented formula: EventBusName and the JSON around the fields do not count).
func EntrySize(e types.PutEventsRequestEntry) int {
	n := len(aws.ToString(e.Source)) + len(aws.ToString(e.DetailType)) + len(aws.ToString(e.Detail))
	if e.Time != nil {
		n += 14
	}
	for _, r := range e.Resources {
		n += len(r)
	}
	return n
}

// calls cuts entries into PutEvents calls of at most MaxEntries entries and less than
// MaxRequestBytes in all, in their order (each entry is less than MaxRequestBytes itself).
func calls(todo []*pending) [][]*pending {
	var out [][]*pending
	start, size := 0, 0
	for i, p := range todo {
		n := EntrySize(p.entry)
		if i > start && (i-start == MaxEntries || size+n >= MaxRequestBytes) {
			out = append(out, todo[start:i])
			start, size = i, 0
		}
		size += n
	}
	if start < len(todo) {
		out = append(out, todo[start:])
	}
	return out
}

// Client is the one EventBridge call the publisher makes: *eventbridge.Client, or LogClient.
type Client interface {
	PutEvents(ctx context.Context, in *eventbridge.PutEventsInput, optFns ...func(*eventbridge.Options)) (*eventbridge.PutEventsOutput, error)
}

// Publisher puts audit events on a bus.
type Publisher struct {
	client Client
	bus    string
	source string
	log    *slog.Logger
	// budget bounds the retries of one Handle when its context has no deadline (a Lambda
	// invocation's context always has one: its deadline less margin bounds them then).
	budget time.Duration
	margin time.Duration
}

// New is a publisher to bus (an empty bus: only a LogClient makes sense) with source.
func New(client Client, bus, source string, log *slog.Logger) *Publisher {
	return &Publisher{client: client, bus: bus, source: source, log: log, budget: 30 * time.Second, margin: time.Second}
}

// FromConfig is the publisher of a configuration: to EVENT_BUS_NAME through EventBridge (the
// SDK's standard configuration, so AWS_ENDPOINT_URL_EVENTBRIDGE points it elsewhere), or, with
// no bus named, one JSON line per event on log.
func FromConfig(ctx context.Context, cfg config.Config, log *slog.Logger) (*Publisher, error) {
	if cfg.EventBusName == "" {
		return New(LogClient{Log: log}, "", cfg.EventSource, log), nil
	}
	client, err := NewClient(ctx, cfg.AWS)
	if err != nil {
		return nil, err
	}
	return New(client, cfg.EventBusName, cfg.EventSource, log), nil
}

// NewClient builds an EventBridge client with the service's retry and per-attempt deadline
// policy, configured as the other AWS clients are (pkg/awsconf: in Lambda, the environment it
// gives; AWS_ENDPOINT_URL_EVENTBRIDGE points it elsewhere).
func NewClient(ctx context.Context, policy awsretry.Policy) (*eventbridge.Client, error) {
	cfg, err := awsconf.Load(ctx, policy)
	if err != nil {
		return nil, err
	}
	return eventbridge.NewFromConfig(cfg), nil
}

// WithBudget is the publisher retrying for at most d when its context has no deadline, and
// stopping margin before a deadline it has.
func (p *Publisher) WithBudget(d, margin time.Duration) *Publisher {
	c := *p
	c.budget, c.margin = d, margin
	return &c
}

// pending is one record still to publish.
type pending struct {
	seq    string
	id     string
	entry  types.PutEventsRequestEntry
	tries  int
	reason string // why its last try failed
	unsent bool   // failed before any try: not an entry, or one EventBridge never takes
}

// Summary is what one batch came to.
type Summary struct {
	Records   int // in the batch
	Ignored   int // not audit event items
	Published int // accepted by EventBridge
	Retried   int // entries sent again within the invocation
	Failed    int // reported as batch item failures
}

// Handle is Publish with one log line of its summary: the handler of the local stream reader
// (the publish-events function logs its own line, with the invocation's, pkg/lambdafn/eventfn).
func (p *Publisher) Handle(ctx context.Context, batch events.DynamoDBEvent) (events.DynamoDBEventResponse, error) {
	start := time.Now()
	res, sum := p.Publish(ctx, batch)
	p.log.InfoContext(ctx, "publish", "records", sum.Records, "ignored", sum.Ignored, "published", sum.Published,
		"retried", sum.Retried, "failed", sum.Failed, "durationMs", float64(time.Since(start).Microseconds())/1000)
	return res, nil
}

// Publish publishes the audit events of one batch of stream records (the publish-events
// function's work; the local stream reader's the same way). Other records are ignored. A failed entry, a throttled or failed call, or a stalled one (each attempt has its
// deadline, awsretry) is retried, only the entries that failed, until the invocation's
// deadline less a margin; what is still not published then is reported as batch item
// failures, in record order, so that Lambda retries from the first of them. Nothing is
// dropped: it is published or reported. A whole failed batch is reported item by item too,
// never as an error (which would make Lambda retry the batch, bisected, rather than just what
// failed).
func (p *Publisher) Publish(ctx context.Context, batch events.DynamoDBEvent) (events.DynamoDBEventResponse, Summary) {
	var todo []*pending
	var failed []*pending
	ignored := 0
	for _, r := range batch.Records {
		if !Publishable(r) {
			ignored++
			continue
		}
		d, err := DetailOf(r)
		if err != nil {
			failed = append(failed, &pending{seq: r.Change.SequenceNumber, reason: err.Error(), unsent: true})
			continue
		}
		e := types.PutEventsRequestEntry{Source: aws.String(p.source), DetailType: aws.String(DetailType(d.Action)),
			Detail: aws.String(d.JSON())}
		if p.bus != "" {
			e.EventBusName = aws.String(p.bus)
		}
		if at, err := time.Parse(time.RFC3339Nano, d.At); err == nil {
			e.Time = &at
		}
		if n := EntrySize(e); n >= MaxRequestBytes {
			// Never accepted, however often it is tried: reported (Lambda's retries, then the DLQ).
			failed = append(failed, &pending{seq: r.Change.SequenceNumber, id: d.ID, entry: e, unsent: true,
				reason: fmt.Sprintf("the entry is %d bytes, not less than EventBridge's PutEvents limit of %d", n, MaxRequestBytes)})
			continue
		}
		todo = append(todo, &pending{seq: r.Change.SequenceNumber, id: d.ID, entry: e})
	}
	total := len(todo)
	budget, cancel := p.withBudget(ctx)
	defer cancel()
	retried := 0
	for round := 0; len(todo) > 0; round++ {
		if round > 0 {
			retried += len(todo)
			if !sleep(budget, backoff(round)) {
				break
			}
		}
		var again []*pending
		for _, chunk := range calls(todo) {
			retry, gaveUp := p.put(budget, chunk)
			again = append(again, retry...)
			failed = append(failed, gaveUp...)
		}
		todo = again
		if budget.Err() != nil {
			break
		}
	}
	failed = append(failed, todo...)
	res := events.DynamoDBEventResponse{BatchItemFailures: []events.DynamoDBBatchItemFailure{}}
	bySeq := map[string]*pending{}
	for _, f := range failed {
		bySeq[f.seq] = f
	}
	for _, r := range batch.Records { // record order: Lambda retries from the first
		if f, ok := bySeq[r.Change.SequenceNumber]; ok {
			res.BatchItemFailures = append(res.BatchItemFailures, events.DynamoDBBatchItemFailure{ItemIdentifier: f.seq})
			p.log.ErrorContext(ctx, "event not published", "id", f.id, "sequenceNumber", f.seq, "tries", f.tries, "error", f.reason)
		}
	}
	return res, Summary{Records: len(batch.Records), Ignored: ignored, Published: total - len(failed) + countUnsent(failed),
		Retried: retried, Failed: len(failed)}
}

// countUnsent is how many failures were never sent (they are not among the published).
func countUnsent(failed []*pending) int {
	n := 0
	for _, f := range failed {
		if f.unsent {
			n++
		}
	}
	return n
}

// put sends one call (of at most MaxEntries entries and MaxRequestBytes): those to retry (failed entries, or all of
// them after a throttled, failed or stalled call) and those not worth retrying (refused).
func (p *Publisher) put(ctx context.Context, chunk []*pending) (retry, gaveUp []*pending) {
	entries := make([]types.PutEventsRequestEntry, len(chunk))
	for i, c := range chunk {
		entries[i] = c.entry
		c.tries++
	}
	out, err := p.client.PutEvents(ctx, &eventbridge.PutEventsInput{Entries: entries})
	if err != nil {
		for _, c := range chunk {
			c.reason = err.Error()
		}
		if transient(err) {
			return chunk, nil
		}
		return nil, chunk
	}
	if len(out.Entries) != len(chunk) {
		for _, c := range chunk {
			c.reason = fmt.Sprintf("PutEvents answered %d entries for %d", len(out.Entries), len(chunk))
		}
		return chunk, nil
	}
	for i, res := range out.Entries {
		code := aws.ToString(res.ErrorCode)
		switch {
		case code == "" && aws.ToString(res.EventId) != "":
		case code == "" || code == "InternalFailure" || code == "ThrottlingException":
			chunk[i].reason = code + ": " + aws.ToString(res.ErrorMessage)
			retry = append(retry, chunk[i])
		default: // refused for good (MalformedDetail, AccessDenied, ...): Lambda's retries, then the DLQ
			chunk[i].reason = code + ": " + aws.ToString(res.ErrorMessage)
			gaveUp = append(gaveUp, chunk[i])
		}
	}
	return retry, gaveUp
}

// transient reports whether a failed call is worth another try: throttled, failing, out of
// reach or stalled past its attempt deadline (after the SDK's own retries), but not refused.
func transient(err error) bool {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode() {
		case "ThrottlingException", "InternalException", "InternalFailure", "ServiceUnavailable":
			return true
		}
		return awsretry.Unavailable(err)
	}
	return true // no answer at all: a timeout, a reset connection, the budget's end
}

// withBudget bounds the retries of one Handle: the context's deadline less the margin (at
// most half of what is left), or the budget when it has none.
func (p *Publisher) withBudget(ctx context.Context) (context.Context, context.CancelFunc) {
	deadline, ok := ctx.Deadline()
	if !ok {
		return context.WithTimeout(ctx, p.budget)
	}
	margin := min(p.margin, time.Until(deadline)/2)
	return context.WithDeadline(ctx, deadline.Add(-margin))
}

// backoff is the pause before retry round n (from 1): 50 ms doubling, at most 2 s.
func backoff(n int) time.Duration {
	return min(50*time.Millisecond<<min(n-1, 6), 2*time.Second)
}

// sleep waits d, or less if ctx ends first; false when it ended.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// LogClient stands in for EventBridge when no bus is named (local development): each entry
// becomes one JSON line on Log, and every entry succeeds.
type LogClient struct {
	Log *slog.Logger
}

var logEventIDs atomic.Int64

// PutEvents logs the entries.
func (l LogClient) PutEvents(ctx context.Context, in *eventbridge.PutEventsInput, _ ...func(*eventbridge.Options)) (*eventbridge.PutEventsOutput, error) {
	out := &eventbridge.PutEventsOutput{}
	for _, e := range in.Entries {
		l.Log.InfoContext(ctx, "event", "source", aws.ToString(e.Source), "detailType", aws.ToString(e.DetailType),
			"detail", json.RawMessage(aws.ToString(e.Detail)))
		out.Entries = append(out.Entries, types.PutEventsResultEntry{EventId: aws.String("log-" + strconv.FormatInt(logEventIDs.Add(1), 10))})
	}
	return out, nil
}
