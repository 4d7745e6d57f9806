// Package streamreader reads a DynamoDB table's stream in process and hands its records to a
// handler as Lambda's event source mapping would hand them to the publish-events function: the
// same filter, the same DynamoDB stream event, and the same answer (batch item failures: the
// records from the first failed one on are handed again). `aitokens serve --dev` runs it over
// DynamoDB Local's stream (the dynamodbstreams API) with eventbus.Publisher.Handle, the
// function's own handler; tests run it with a handler that invokes the function's binary.
package streamreader

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"
	st "github.com/aws/aws-sdk-go-v2/service/dynamodbstreams/types"

	"aitokens/pkg/awsconf"
	"aitokens/pkg/awsretry"
	"aitokens/pkg/eventbus"
)

// Handler handles one batch, as the publish-events function does.
type Handler func(ctx context.Context, batch events.DynamoDBEvent) (events.DynamoDBEventResponse, error)

// Options of a Reader. Zero values take the defaults.
type Options struct {
	Endpoint string // DynamoDB (Local) endpoint; "" for AWS
	Table    string
	Policy   awsretry.Policy
	Handler  Handler
	Log      *slog.Logger
	// Checkpoint is a file where the reader keeps, per shard, the last record it handed over
	// successfully, so that a reader started again goes on from there (at least once: a batch
	// in flight when it stopped is handed again). "" keeps it in memory only.
	Checkpoint string
	BatchSize  int32         // records per batch, default 100 (the template's BatchSize)
	Poll       time.Duration // pause when a pass found nothing, default 100 ms
	// Timeout bounds one handler call, as the function's timeout bounds an invocation;
	// default 30 s.
	Timeout time.Duration
	// RetryPause is the first pause before a failed batch is handed again (doubling up to 5 s),
	// default 200 ms.
	RetryPause time.Duration
}

// Reader follows one table's stream.
type Reader struct {
	opts    Options
	db      *dynamodb.Client
	streams *dynamodbstreams.Client

	mu          sync.Mutex
	checkpoints map[string]string // shard id -> last sequence number handed over successfully
	arn         string
}

// New makes a reader; Run starts it.
func New(ctx context.Context, opts Options) (*Reader, error) {
	if opts.Handler == nil || opts.Table == "" {
		return nil, errors.New("streamreader: a table and a handler are required")
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.BatchSize == 0 {
		opts.BatchSize = 100
	}
	if opts.Poll == 0 {
		opts.Poll = 100 * time.Millisecond
	}
	if opts.Timeout == 0 {
		opts.Timeout = 30 * time.Second
	}
	if opts.RetryPause == 0 {
		opts.RetryPause = 200 * time.Millisecond
	}
	if opts.Policy.MaxAttempts == 0 {
		opts.Policy = awsretry.DefaultPolicy
	}
	// As pkg/store's client: DynamoDB Local takes any credentials; AWS, the service's loader.
	cfg := awsconf.Local(os.Getenv, opts.Policy)
	if opts.Endpoint == "" {
		var err error
		if cfg, err = awsconf.Load(ctx, opts.Policy); err != nil {
			return nil, err
		}
	}
	r := &Reader{opts: opts, checkpoints: map[string]string{}}
	r.db = dynamodb.NewFromConfig(cfg, func(o *dynamodb.Options) {
		if opts.Endpoint != "" {
			o.BaseEndpoint = aws.String(opts.Endpoint)
			o.DisableValidateResponseChecksum = true // as store.NewClient, for DynamoDB Local
		}
	})
	r.streams = dynamodbstreams.NewFromConfig(cfg, func(o *dynamodbstreams.Options) {
		if opts.Endpoint != "" {
			o.BaseEndpoint = aws.String(opts.Endpoint)
		}
	})
	return r, nil
}

// shard is what the reader knows of one shard of the stream.
type shard struct {
	id, parent string
	iterator   *string
	resumeAt   string // hand again from this sequence number (a failed batch), "" for none
	done       bool   // closed, and every record of it handed over
	failures   int    // consecutive failed batches
	notBefore  time.Time
}

// Run follows the stream until ctx ends, handing over the records of each shard in order,
// a shard's children only after it. It returns ctx's error, or why it could not start.
func (r *Reader) Run(ctx context.Context) error {
	desc, err := r.db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(r.opts.Table)})
	if err != nil {
		return err
	}
	arn := aws.ToString(desc.Table.LatestStreamArn)
	if arn == "" {
		return fmt.Errorf("streamreader: table %s has no stream", r.opts.Table)
	}
	r.load(arn)
	shards := map[string]*shard{}
	var lastList time.Time
	for ctx.Err() == nil {
		if time.Since(lastList) > time.Second || allDone(shards) {
			if err := r.listShards(ctx, arn, shards); err != nil && ctx.Err() == nil {
				r.opts.Log.Warn("stream: cannot list shards", "error", err.Error())
			}
			lastList = time.Now()
		}
		busy := false
		for _, sh := range shards {
			if sh.done || !ready(sh, shards) || time.Now().Before(sh.notBefore) {
				continue
			}
			n, err := r.pass(ctx, arn, sh)
			if err != nil && ctx.Err() == nil {
				r.opts.Log.Warn("stream: read failed", "shard", sh.id, "error", err.Error())
			}
			busy = busy || n > 0
		}
		if !busy {
			select {
			case <-ctx.Done():
			case <-time.After(r.opts.Poll):
			}
		}
	}
	return ctx.Err()
}

func allDone(shards map[string]*shard) bool {
	for _, sh := range shards {
		if !sh.done {
			return false
		}
	}
	return true
}

// ready: a shard is read after its parent is finished (or gone from the stream), as Lambda does.
func ready(sh *shard, shards map[string]*shard) bool {
	p, ok := shards[sh.parent]
	return sh.parent == "" || !ok || p.done
}

func (r *Reader) listShards(ctx context.Context, arn string, shards map[string]*shard) error {
	var start *string
	for {
		out, err := r.streams.DescribeStream(ctx, &dynamodbstreams.DescribeStreamInput{StreamArn: aws.String(arn), ExclusiveStartShardId: start})
		if err != nil {
			return err
		}
		for _, s := range out.StreamDescription.Shards {
			id := aws.ToString(s.ShardId)
			if _, ok := shards[id]; !ok {
				shards[id] = &shard{id: id, parent: aws.ToString(s.ParentShardId)}
			}
		}
		start = out.StreamDescription.LastEvaluatedShardId
		if start == nil {
			return nil
		}
	}
}

// pass reads one batch of a shard and hands it over; it returns how many records it read.
func (r *Reader) pass(ctx context.Context, arn string, sh *shard) (int, error) {
	if sh.iterator == nil {
		in := &dynamodbstreams.GetShardIteratorInput{StreamArn: aws.String(arn), ShardId: aws.String(sh.id), ShardIteratorType: st.ShardIteratorTypeTrimHorizon}
		if sh.resumeAt != "" {
			in.ShardIteratorType, in.SequenceNumber = st.ShardIteratorTypeAtSequenceNumber, aws.String(sh.resumeAt)
		} else if seq := r.checkpoint(sh.id); seq != "" {
			in.ShardIteratorType, in.SequenceNumber = st.ShardIteratorTypeAfterSequenceNumber, aws.String(seq)
		}
		out, err := r.streams.GetShardIterator(ctx, in)
		var trimmed *st.TrimmedDataAccessException
		if errors.As(err, &trimmed) {
			r.opts.Log.Warn("stream: the checkpoint is older than the stream's retention; reading from its oldest record", "shard", sh.id)
			sh.resumeAt = ""
			r.setCheckpoint(sh.id, "")
			return 0, nil
		}
		var gone *st.ResourceNotFoundException
		if errors.As(err, &gone) {
			sh.done = true // trimmed away with everything in it
			return 0, nil
		}
		if err != nil {
			return 0, err
		}
		sh.iterator = out.ShardIterator
	}
	out, err := r.streams.GetRecords(ctx, &dynamodbstreams.GetRecordsInput{ShardIterator: sh.iterator, Limit: aws.Int32(r.opts.BatchSize)})
	var expired *st.ExpiredIteratorException
	var trimmed *st.TrimmedDataAccessException
	switch {
	case errors.As(err, &expired) || errors.As(err, &trimmed):
		sh.iterator = nil // get a new one from the checkpoint
		return 0, nil
	case err != nil:
		return 0, err
	}
	var batch events.DynamoDBEvent
	for _, rec := range out.Records {
		lr := Convert(arn, rec)
		if eventbus.Publishable(lr) { // the event source mapping's filter
			batch.Records = append(batch.Records, lr)
		}
	}
	if len(batch.Records) > 0 {
		failedAt, err := r.hand(ctx, batch)
		if ctx.Err() != nil {
			return len(out.Records), nil // stopping: as a process killed, it records nothing of this batch
		}
		if err != nil || failedAt >= 0 {
			// As Lambda: what came before the first failure is done; hand again from it (the
			// whole batch when the handler failed).
			if err != nil {
				failedAt = 0
			}
			if failedAt > 0 {
				r.setCheckpoint(sh.id, batch.Records[failedAt-1].Change.SequenceNumber)
			}
			sh.iterator, sh.resumeAt = nil, batch.Records[failedAt].Change.SequenceNumber
			sh.failures++
			sh.notBefore = time.Now().Add(min(r.opts.RetryPause<<min(sh.failures-1, 8), 5*time.Second))
			if err != nil {
				return len(out.Records), fmt.Errorf("handler: %w", err)
			}
			return len(out.Records), nil
		}
	}
	sh.failures, sh.resumeAt = 0, ""
	if n := len(out.Records); n > 0 {
		r.setCheckpoint(sh.id, aws.ToString(out.Records[n-1].Dynamodb.SequenceNumber))
	}
	sh.iterator = out.NextShardIterator
	if sh.iterator == nil {
		sh.done = true // closed and read to its end
	}
	return len(out.Records), nil
}

// hand gives a batch to the handler within the timeout; it returns the index of the first
// failed record (-1 for none) or the handler's error (the whole batch failed).
func (r *Reader) hand(ctx context.Context, batch events.DynamoDBEvent) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, r.opts.Timeout)
	defer cancel()
	res, err := r.opts.Handler(ctx, batch)
	if err != nil {
		return 0, err
	}
	first := -1
	for _, f := range res.BatchItemFailures {
		for i, rec := range batch.Records {
			if rec.Change.SequenceNumber == f.ItemIdentifier && (first < 0 || i < first) {
				first = i
			}
		}
	}
	return first, nil
}

// checkpoints on disk: {"streamArn": ..., "shards": {shardId: sequenceNumber}}.
type checkpointFile struct {
	StreamArn string            `json:"streamArn"`
	Shards    map[string]string `json:"shards"`
}

func (r *Reader) load(arn string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.arn = arn
	if r.opts.Checkpoint == "" {
		return
	}
	raw, err := os.ReadFile(r.opts.Checkpoint)
	if err != nil {
		return
	}
	var f checkpointFile
	if json.Unmarshal(raw, &f) == nil && f.StreamArn == arn && f.Shards != nil {
		r.checkpoints = f.Shards // another stream (the table was made again): start afresh
	}
}

func (r *Reader) checkpoint(shardID string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.checkpoints[shardID]
}

func (r *Reader) setCheckpoint(shardID, seq string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if seq == "" {
		delete(r.checkpoints, shardID)
	} else {
		r.checkpoints[shardID] = seq
	}
	if r.opts.Checkpoint == "" {
		return
	}
	raw, _ := json.Marshal(checkpointFile{StreamArn: r.arn, Shards: r.checkpoints})
	tmp := r.opts.Checkpoint + ".tmp"
	err := os.MkdirAll(filepath.Dir(tmp), 0o700)
	if err == nil {
		err = os.WriteFile(tmp, raw, 0o600)
	}
	if err == nil {
		err = os.Rename(tmp, r.opts.Checkpoint) // whole or not at all: a crash leaves the last one
	}
	if err != nil {
		r.opts.Log.Warn("stream: cannot write the checkpoint", "file", r.opts.Checkpoint, "error", err.Error())
	}
}

// Convert is a stream record as Lambda hands it to a function.
func Convert(arn string, rec st.Record) events.DynamoDBEventRecord {
	out := events.DynamoDBEventRecord{AWSRegion: aws.ToString(rec.AwsRegion), EventID: aws.ToString(rec.EventID),
		EventName: string(rec.EventName), EventSource: "aws:dynamodb", EventVersion: aws.ToString(rec.EventVersion), EventSourceArn: arn}
	if d := rec.Dynamodb; d != nil {
		out.Change = events.DynamoDBStreamRecord{Keys: attributes(d.Keys), NewImage: attributes(d.NewImage), OldImage: attributes(d.OldImage),
			SequenceNumber: aws.ToString(d.SequenceNumber), SizeBytes: aws.ToInt64(d.SizeBytes), StreamViewType: string(d.StreamViewType)}
		if d.ApproximateCreationDateTime != nil {
			out.Change.ApproximateCreationDateTime = events.SecondsEpochTime{Time: *d.ApproximateCreationDateTime}
		}
	}
	return out
}

func attributes(m map[string]st.AttributeValue) map[string]events.DynamoDBAttributeValue {
	if m == nil {
		return nil
	}
	out := make(map[string]events.DynamoDBAttributeValue, len(m))
	for k, v := range m {
		out[k] = attribute(v)
	}
	return out
}

func attribute(v st.AttributeValue) events.DynamoDBAttributeValue {
	switch v := v.(type) {
	case *st.AttributeValueMemberS:
		return events.NewStringAttribute(v.Value)
	case *st.AttributeValueMemberN:
		return events.NewNumberAttribute(v.Value)
	case *st.AttributeValueMemberB:
		return events.NewBinaryAttribute(v.Value)
	case *st.AttributeValueMemberBOOL:
		return events.NewBooleanAttribute(v.Value)
	case *st.AttributeValueMemberSS:
		return events.NewStringSetAttribute(v.Value)
	case *st.AttributeValueMemberNS:
		return events.NewNumberSetAttribute(v.Value)
	case *st.AttributeValueMemberBS:
		return events.NewBinarySetAttribute(v.Value)
	case *st.AttributeValueMemberL:
		l := make([]events.DynamoDBAttributeValue, len(v.Value))
		for i, e := range v.Value {
			l[i] = attribute(e)
		}
		return events.NewListAttribute(l)
	case *st.AttributeValueMemberM:
		return events.NewMapAttribute(attributes(v.Value))
	}
	return events.NewNullAttribute()
}
