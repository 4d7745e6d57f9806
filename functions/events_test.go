package functions_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"aitokens/pkg/devtools/ebtest"
	"aitokens/pkg/devtools/runtimeapi"
	"aitokens/pkg/devtools/streamreader"
	"aitokens/pkg/devtools/testenv"
	"aitokens/pkg/eventbus"
	"aitokens/pkg/reminders"
	"aitokens/pkg/seal"
	"aitokens/pkg/service"
	"aitokens/pkg/store"
	"aitokens/pkg/token"
)

// The stack's lifecycle events: the table's stream and expiry index, the bus, publish-events
// fed by the stream (the filter of pkg/eventbus, partial batch answers, bisect, bounded retries,
// a dead-letter queue) with rights to that bus, that stream and that queue only, and
// sweep-expiring on an hourly schedule with rights to the index, its reads and its transaction.
func TestTemplateLifecycleEvents(t *testing.T) {
	_, _, resources := loadTemplate(t)
	table := dig(resources, "TokensTable", "Properties")
	if dig(table, "StreamSpecification", "StreamViewType") != "NEW_IMAGE" {
		t.Errorf("the table's stream: %v", dig(table, "StreamSpecification"))
	}
	var index any
	for _, gsi := range dig(table, "GlobalSecondaryIndexes").([]any) {
		if dig(gsi, "IndexName") == store.ExpiryIndex {
			index = gsi
		}
	}
	if keys := dig(index, "KeySchema").([]any); len(keys) != 2 || dig(keys[0], "AttributeName") != "expiryDay" || dig(keys[1], "AttributeName") != "expiresAt" ||
		!slices.Equal(strs(dig(index, "Projection", "NonKeyAttributes")), []string{"uid"}) {
		t.Errorf("the expiry index: %v", index)
	}
	if dig(resources, "EventBus", "Type") != "AWS::Events::EventBus" {
		t.Error("no EventBus")
	}

	pub := dig(resources, "PublishEventsFunction", "Properties")
	if dig(pub, "Environment", "Variables", "EVENT_BUS_NAME", "!Ref") != "EventBus" {
		t.Errorf("publish-events is not given the bus: %v", dig(pub, "Environment"))
	}
	stream := dig(pub, "Events", "Stream", "Properties")
	var pattern, want any
	json.Unmarshal([]byte(dig(stream, "FilterCriteria", "Filters").([]any)[0].(map[string]any)["Pattern"].(string)), &pattern)
	json.Unmarshal([]byte(eventbus.StreamFilterPattern), &want)
	retries, _ := dig(stream, "MaximumRetryAttempts").(string)
	if dig(pub, "Events", "Stream", "Type") != "DynamoDB" || dig(stream, "Stream", "!GetAtt") != "TokensTable.StreamArn" ||
		!reflect.DeepEqual(pattern, want) || !slices.Equal(strs(dig(stream, "FunctionResponseTypes")), []string{"ReportBatchItemFailures"}) ||
		dig(stream, "BisectBatchOnFunctionError") != "true" || retries == "" || retries == "-1" ||
		dig(stream, "DestinationConfig", "OnFailure", "Destination", "!GetAtt") != "PublishEventsDeadLetters.Arn" {
		t.Errorf("publish-events' event source mapping: %v", stream)
	}
	// The publisher's own alarms (docs/operations.md): behind the stream, and batches given up.
	all, _ := alarms(t)
	for id, want := range map[string][]string{
		"PublishEventsIteratorAgeAlarm": {`"Namespace":"AWS/Lambda"`, `"MetricName":"IteratorAge"`, `"Value":{"!Ref":"PublishEventsFunction"}`, `"Statistic":"Maximum"`},
		"PublishEventsDeadLettersAlarm": {`"Namespace":"AWS/SQS"`, `"MetricName":"ApproximateNumberOfMessagesVisible"`, `"!GetAtt":"PublishEventsDeadLetters.QueueName"`},
	} {
		text := string(must(json.Marshal(all[id])))
		for _, w := range want {
			if !strings.Contains(text, w) {
				t.Errorf("%s lacks %s: %s", id, w, text)
			}
		}
	}
	sweep := dig(resources, "SweepExpiringFunction", "Properties")
	if dig(sweep, "Events", "Hourly", "Type") != "Schedule" || dig(sweep, "Events", "Hourly", "Properties", "Schedule") != "rate(1 hour)" {
		t.Errorf("sweep-expiring's schedule: %v", dig(sweep, "Events"))
	}

	// Each statement's actions and resource, as "action resource".
	grants := func(fn string) []string {
		roleName, _, _ := strings.Cut(dig(resources, logicalID(fn), "Properties", "Role", "!GetAtt").(string), ".")
		var out []string
		for _, policy := range dig(resources, roleName, "Properties", "Policies").([]any) {
			for _, st := range dig(policy, "PolicyDocument", "Statement").([]any) {
				res, _ := json.Marshal(dig(st, "Resource"))
				for _, a := range strs(dig(st, "Action")) {
					if !strings.HasPrefix(a, "logs:") {
						out = append(out, a+" "+string(res))
					}
				}
			}
		}
		slices.Sort(out)
		return out
	}
	wantGrants := map[string][]string{
		"publish-events": {
			`dynamodb:DescribeStream {"!GetAtt":"TokensTable.StreamArn"}`,
			`dynamodb:GetRecords {"!GetAtt":"TokensTable.StreamArn"}`,
			`dynamodb:GetShardIterator {"!GetAtt":"TokensTable.StreamArn"}`,
			`dynamodb:ListStreams {"!Sub":"${TokensTable.Arn}/stream/*"}`,
			`events:PutEvents {"!GetAtt":"EventBus.Arn"}`,
			`sqs:SendMessage {"!GetAtt":"PublishEventsDeadLetters.Arn"}`,
		},
		"sweep-expiring": {
			`dynamodb:BatchGetItem {"!GetAtt":"TokensTable.Arn"}`,
			`dynamodb:GetItem {"!GetAtt":"TokensTable.Arn"}`,
			`dynamodb:PutItem {"!GetAtt":"TokensTable.Arn"}`,
			`dynamodb:Query {"!Sub":"${TokensTable.Arn}/index/expiry"}`,
			`dynamodb:UpdateItem {"!GetAtt":"TokensTable.Arn"}`, // a reminder keeps the token's eventAt
		},
	}
	for fn, want := range wantGrants {
		if got := grants(fn); !slices.Equal(got, want) {
			t.Errorf("%s may\n%s\nwant exactly\n%s", fn, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
	// Nothing else may put events on the bus.
	for _, fn := range functionNames() {
		if _, ok := wantGrants[fn]; ok {
			continue
		}
		for _, g := range grants(fn) {
			if strings.HasPrefix(g, "events:") || strings.HasPrefix(g, "sqs:") {
				t.Errorf("%s may %s", fn, g)
			}
		}
	}
}

// Every audit action has its detail-type, and the OpenAPI document lists every action.
func TestEveryActionHasADetailType(t *testing.T) {
	_, spec := loadYAML(t, "../infra/openapi.yaml")
	enum := strs(dig(spec, "components", "schemas", "Event", "properties", "action", "enum"))
	for action := range eventbus.DetailTypes {
		if !slices.Contains(enum, action) {
			t.Errorf("action %s is not in infra/openapi.yaml's Event.action", action)
		}
	}
	for _, action := range enum {
		if eventbus.DetailType(action) == eventbus.DetailTypeOther {
			t.Errorf("action %s has no detail-type (pkg/eventbus.DetailTypes)", action)
		}
	}
}

// lambdaStream plays the event source mapping for a function binary: a stream reader over the
// test table whose handler invokes the binary (started again after it died, as Lambda does).
type lambdaStream struct {
	t       *testing.T
	env     []string
	timeout time.Duration // the function's deadline; 4 s when zero
	mu      sync.Mutex
	proc    *runtimeapi.Process
	answer  []invocation
}

type invocation struct {
	records, failures int
	took              time.Duration
	err               error
}

func (l *lambdaStream) process() (*runtimeapi.Process, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.proc == nil {
		timeout := l.timeout
		if timeout == 0 {
			timeout = 4 * time.Second
		}
		p, err := runtimeapi.Start(runtimeapi.Invocation{Binary: filepath.Join(binDir, "publish-events"), Function: "publish-events",
			Env: l.env, Timeout: timeout})
		if err != nil {
			return nil, err
		}
		l.proc = p
	}
	return l.proc, nil
}

// kill stops the running function process (a Lambda environment that dies mid-invocation).
func (l *lambdaStream) kill() {
	l.mu.Lock()
	p := l.proc
	l.proc = nil
	l.mu.Unlock()
	if p != nil {
		p.Stop()
	}
}

func (l *lambdaStream) handle(ctx context.Context, batch events.DynamoDBEvent) (events.DynamoDBEventResponse, error) {
	var out events.DynamoDBEventResponse
	p, err := l.process()
	if err != nil {
		return out, err
	}
	raw, _ := json.Marshal(batch)
	res, err := p.Invoke(ctx, raw)
	if err == nil && res.Response == nil {
		err = fmt.Errorf("function error %s", res.Error)
	}
	if err == nil {
		err = json.Unmarshal(res.Response, &out)
	}
	if err != nil {
		l.kill() // Lambda starts a new environment after a crashed one
	}
	l.mu.Lock()
	l.answer = append(l.answer, invocation{len(batch.Records), len(out.BatchItemFailures), res.InvokeDuration, err})
	l.mu.Unlock()
	return out, err
}

func (l *lambdaStream) invocations() []invocation {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.answer)
}

type eventsRig struct {
	t      *testing.T
	ctx    context.Context
	table  string
	st     *store.Store
	eb     *ebtest.Server
	lambda *lambdaStream
	stop   func()
}

// newEventsRig is a table, a test EventBridge and publish-events' binary fed by the table's
// real stream (DynamoDB Local) through the stream reader.
func newEventsRig(t *testing.T) *eventsRig {
	e := newEnvOn(t, testenv.NewTableWithStream(t))
	eb := ebtest.New()
	t.Cleanup(eb.Close)
	vars := append(append([]string{}, e.vars...), eb.Env()...)
	vars = append(vars, "AWS_ATTEMPT_TIMEOUT=300ms", "AWS_MAX_ATTEMPTS=2")
	table := strings.TrimPrefix(e.vars[0], "TABLE_NAME=")
	r := &eventsRig{t: t, ctx: context.Background(), table: table, st: store.New(testenv.Client(), table), eb: eb,
		lambda: &lambdaStream{t: t, env: vars}}
	t.Cleanup(r.lambda.kill)
	return r
}

// patient gives the function attempts that no loaded machine outlasts, each call tried once, and
// a deadline to match, for a test that counts PutEvents calls: the SDK's retry of a call cut at
// the rig's 300 ms would be one call more. The stall test is the one about attempt deadlines.
func (r *eventsRig) patient() {
	r.lambda.env = append(r.lambda.env, "AWS_ATTEMPT_TIMEOUT=20s", "AWS_MAX_ATTEMPTS=1")
	r.lambda.timeout = 30 * time.Second
}

func (r *eventsRig) start() {
	reader, err := streamreader.New(r.ctx, streamreader.Options{Endpoint: testenv.Endpoint(), Table: r.table, Policy: testenv.Policy,
		Handler: r.lambda.handle, Poll: 20 * time.Millisecond, Timeout: 30 * time.Second, RetryPause: 100 * time.Millisecond})
	if err != nil {
		r.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(r.ctx)
	done := make(chan struct{})
	go func() { defer close(done); reader.Run(ctx) }()
	r.stop = func() { cancel(); <-done }
	r.t.Cleanup(r.stop)
}

func (r *eventsRig) create(id string) {
	r.t.Helper()
	if err := r.st.Create(r.ctx, token.Token{Tenant: "acme", ID: id, Name: id}, token.Sealed{}, token.Event{RequestID: "req-" + id, Actor: "tester"}); err != nil {
		r.t.Fatal(err)
	}
}

func wait(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func entryIDs(entries []ebtest.Entry) []string {
	var out []string
	for _, e := range entries {
		out = append(out, e.ID())
	}
	slices.Sort(out)
	return out
}

// Through the real publish-events binary on DynamoDB Local's stream: every change is exactly
// one entry with its audit event's key as id and no secret material; one failed entry among
// ten is sent again alone.
func TestPublishEventsFunction(t *testing.T) {
	t.Parallel() // waits on processes and a database, not on this machine's cores
	r := newEventsRig(t)
	r.patient() // the calls are counted
	sealer := seal.NewLocalFromKey(make([]byte, 32))
	svc, err := service.New(r.st, sealer, nil)
	if err != nil {
		t.Fatal(err)
	}
	value, name := "sk-function-secret-abcdWXYZ", "Function"
	m := func(rid string) service.Meta { return service.Meta{RequestID: rid, Actor: "admin-ui"} }
	if _, err := svc.Upsert(r.ctx, service.Upsert{Tenant: "acme", ID: "fn", Name: &name, Value: &value, Meta: m("r1")}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.RegisterUsage(r.ctx, "acme", "fn", "agent", "a", m("r2")); err != nil {
		t.Fatal(err)
	}
	if err := svc.Patch(r.ctx, "acme", "fn", []service.PatchOp{{Op: "REPLACE", Path: "/restricted", Value: true}}, m("r3")); err != nil {
		t.Fatal(err)
	}
	if err := svc.Delete(r.ctx, "acme", "fn", true, m("r4")); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		r.create(fmt.Sprintf("t%d", i))
	}
	r.eb.FailEntries(1, "", func(e ebtest.Entry) bool { return strings.Contains(e.Detail, `"tokenId":"t4"`) })
	r.start()
	keys := testenv.EventKeys(t, r.table)
	wait(t, 60*time.Second, "every event on the bus", func() bool { return len(r.eb.Entries()) >= len(keys) })
	time.Sleep(300 * time.Millisecond)
	if got := entryIDs(r.eb.Entries()); !slices.Equal(got, keys) {
		t.Fatalf("ids\n%v\nwant each audit event's key once\n%v", got, keys)
	}
	// 14 events in one batch: calls of 10 and 4, then t4's alone.
	var sizes []int
	for _, c := range r.eb.Calls() {
		sizes = append(sizes, len(c))
	}
	if calls := r.eb.Calls(); !slices.Equal(sizes, []int{10, 4, 1}) || !strings.Contains(calls[2][0].Detail, `"tokenId":"t4"`) {
		t.Fatalf("calls of %v entries, want 10, 4 and t4's alone", sizes)
	}
	for _, e := range r.eb.Entries() {
		raw := strings.ToLower(e.Detail)
		for _, secret := range []string{strings.ToLower(value), "wxyz", "…", "seal", "digest", "cipher", "hint", "value", "eyj"} {
			if strings.Contains(raw, secret) {
				t.Errorf("entry holds %q: %s", secret, e.Detail)
			}
		}
	}
	if inv := r.lambda.invocations(); len(inv) != 1 || inv[0].failures != 0 || inv[0].err != nil {
		t.Fatalf("invocations %+v, want one that published everything", inv)
	}
}

// EventBridge stalled: the function answers before its deadline (4 s) with every record as a
// batch item failure; the records are delivered once EventBridge answers again.
func TestPublishEventsFunctionStalled(t *testing.T) {
	t.Parallel() // waits on processes and a database, not on this machine's cores
	r := newEventsRig(t)
	r.eb.Stall()
	for i := range 3 {
		r.create(fmt.Sprintf("s%d", i))
	}
	r.start()
	wait(t, 60*time.Second, "an invocation", func() bool { return len(r.lambda.invocations()) > 0 })
	first := r.lambda.invocations()[0]
	if first.err != nil || first.records != 3 || first.failures != 3 || first.took >= 4*time.Second {
		t.Fatalf("stalled invocation %+v, want 3 of 3 reported failed within the 4 s deadline", first)
	}
	r.eb.Release()
	wait(t, 60*time.Second, "delivery after the stall", func() bool {
		return slices.Equal(slices.Compact(entryIDs(r.eb.Entries())), testenv.EventKeys(t, r.table))
	})
	t.Logf("the stalled invocation answered after %v", first.took.Round(time.Millisecond))
}

// The function killed while a PutEvents call is in flight (EventBridge took its entries; the
// answer never came back): Lambda hands the batch again to a new process, every event is
// delivered at least once, and the repeats carry the same ids.
func TestPublishEventsFunctionKilledMidBatch(t *testing.T) {
	t.Parallel() // waits on processes and a database, not on this machine's cores
	r := newEventsRig(t)
	// Only the kill may end a call here. With the rig's 300 ms attempts, a first PutEvents slower
	// than that on a loaded machine was sent again by the SDK, the hold caught the repeat
	// instead of the second call, and the count was off (45 deliveries, 10 ids repeated).
	r.patient()
	for i := range 25 {
		r.create(fmt.Sprintf("k%02d", i))
	}
	hold := r.eb.AcceptAndHold(2)
	go func() {
		select {
		case <-hold.Reached:
			r.lambda.kill()
		case <-time.After(60 * time.Second):
		}
	}()
	r.start()
	keys := testenv.EventKeys(t, r.table)
	// The second invocation's entries reach EventBridge before its answer reaches the runtime
	// API: wait for both.
	wait(t, 90*time.Second, "every event delivered, and the invocation that did it answered", func() bool {
		return slices.Equal(slices.Compact(entryIDs(r.eb.Entries())), keys) && len(r.lambda.invocations()) >= 2
	})
	inv := r.lambda.invocations()
	if len(inv) < 2 || inv[0].err == nil {
		t.Fatalf("invocations %+v, want the killed one and another", inv)
	}
	entries := r.eb.Entries()
	seen := map[string]int{}
	for _, e := range entries {
		seen[e.ID()]++
	}
	repeats := 0
	for _, k := range keys {
		if seen[k] > 1 {
			repeats++
		}
	}
	if len(entries) != 45 || repeats != 20 {
		var sizes []int
		for _, c := range r.eb.Calls() {
			sizes = append(sizes, len(c))
		}
		t.Fatalf("%d deliveries with %d ids repeated (calls of %v entries), want 20 before the kill and the 25 again", len(entries), repeats, sizes)
	}
}

// sweep-expiring's binary writes the reminders due, once, and they are in the token's trail.
func TestSweepExpiringFunction(t *testing.T) {
	t.Parallel() // waits on processes and a database, not on this machine's cores
	e := newEnv(t)
	table := strings.TrimPrefix(e.vars[0], "TABLE_NAME=")
	st := store.New(testenv.Client(), table)
	ctx := context.Background()
	now := time.Now().UTC()
	for id, exp := range map[string]*time.Time{"soon": new(now.Add(48 * time.Hour)), "later": new(now.Add(90 * 24 * time.Hour)), "never": nil, "past": new(now.Add(time.Hour))} {
		if err := st.Create(ctx, token.Token{Tenant: "acme", ID: id, Name: id, ExpiresAt: exp}, token.Sealed{}, token.Event{RequestID: "c-" + id}); err != nil {
			t.Fatal(err)
		}
	}
	past := now.Add(-time.Hour)
	if err := st.Update(ctx, store.Update{Tenant: "acme", ID: "past", ExpiresAt: &past}, token.Event{RequestID: "u-past", Action: token.ActionPatch}); err != nil {
		t.Fatal(err)
	}
	sample := event(t, "sweep-expiring", nil)
	var first, second reminders.Result
	for _, out := range []*reminders.Result{&first, &second} {
		res := e.invoke("sweep-expiring", sample)
		if err := json.Unmarshal(res.Response, out); err != nil {
			t.Fatalf("%s %s: %v\n%s", res.Response, res.Error, err, res.Logs)
		}
	}
	if first.IndexItemsRead != 2 || first.Expiring != 1 || first.Expired != 1 || second.Expiring+second.Expired != 0 || second.AlreadyWritten != 2 {
		t.Fatalf("sweeps %+v then %+v", first, second)
	}
	trail := e.call("list-token-events", event(t, "list-token-events", withBody("soon", "")))
	if !strings.Contains(trail.Body, `"action":"expiring","actor":"sweep-expiring"`) || !strings.Contains(trail.Body, `"lead":"168h"`) {
		t.Fatalf("soon's trail: %s", trail.Body)
	}
}

// The event functions stop at init with one JSON line naming a bad setting of theirs.
func TestEventFunctionsBadConfiguration(t *testing.T) {
	base := newEnv(t).vars
	cases := []struct{ fn, change, want string }{
		{"sweep-expiring", "EXPIRY_REMINDER_LEADS=soon", "EXPIRY_REMINDER_LEADS"},
		{"sweep-expiring", "TABLE_NAME=", "TABLE_NAME is not set"},
		{"publish-events", "EVENT_SOURCE=aws.tokens", "EVENT_SOURCE"},
	}
	for _, c := range cases {
		res, err := runtimeapi.Invoke(context.Background(), runtimeapi.Invocation{Binary: filepath.Join(binDir, c.fn), Function: c.fn,
			Env: append(append([]string{}, base...), c.change), Event: []byte(`{}`)})
		var line struct{ Msg, Function, Error string }
		if err == nil || json.Unmarshal(bytes.TrimSpace(res.Logs), &line) != nil || line.Msg != "init failed" || !strings.Contains(line.Error, c.want) {
			t.Errorf("%s with %s: %v %q", c.fn, c.change, err, res.Logs)
		}
	}
}
