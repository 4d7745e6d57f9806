package streamreader_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"aitokens/pkg/awsretry"
	"aitokens/pkg/config"
	"aitokens/pkg/devtools/ebtest"
	"aitokens/pkg/devtools/streamreader"
	"aitokens/pkg/devtools/syncbuf"
	"aitokens/pkg/devtools/testenv"
	"aitokens/pkg/eventbus"
	"aitokens/pkg/reminders"
	"aitokens/pkg/seal"
	"aitokens/pkg/service"
	"aitokens/pkg/store"
	"aitokens/pkg/token"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// ebPolicy is the EventBridge client's policy in these tests: short attempts, so that a stalled
// EventBridge costs a test a second or two, not the production 2 s times 4.
var ebPolicy = awsretry.Policy{MaxAttempts: 2, AttemptTimeout: 300 * time.Millisecond, Backoff: awsretry.NoBackoff}

type rig struct {
	t     *testing.T
	ctx   context.Context
	table string
	st    *store.Store
	eb    *ebtest.Server
	pub   *eventbus.Publisher
}

func newRig(t *testing.T) *rig {
	eb := ebtest.New()
	t.Cleanup(eb.Close)
	eb.UseFromEnv(t)
	ctx := context.Background()
	client, err := eventbus.NewClient(ctx, ebPolicy)
	if err != nil {
		t.Fatal(err)
	}
	table := testenv.NewTableWithStream(t)
	return &rig{t: t, ctx: ctx, table: table, st: store.New(testenv.Client(), table), eb: eb,
		pub: eventbus.New(client, ebtest.Bus, "aitokens", slog.New(slog.DiscardHandler))}
}

// run starts a reader with handler (the publisher's by default) until the returned stop.
func (r *rig) run(handler streamreader.Handler, opts streamreader.Options) (stop func()) {
	r.t.Helper()
	if handler == nil {
		handler = r.pub.Handle
	}
	opts.Endpoint, opts.Table, opts.Policy, opts.Handler = testenv.Endpoint(), r.table, testenv.Policy, handler
	if opts.Poll == 0 {
		opts.Poll = 20 * time.Millisecond
	}
	reader, err := streamreader.New(r.ctx, opts)
	if err != nil {
		r.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(r.ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		reader.Run(ctx)
	}()
	stop = func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			r.t.Error("the reader did not stop within 30 s")
		}
	}
	r.t.Cleanup(stop)
	return stop
}

func (r *rig) create(id string) {
	r.t.Helper()
	if err := r.st.Create(r.ctx, token.Token{Tenant: "acme", ID: id, Name: id}, token.Sealed{}, token.Event{RequestID: "req-" + id, Actor: "tester"}); err != nil {
		r.t.Fatal(err)
	}
}

// waitFor polls cond every 20 ms until it holds, failing the test after d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func ids(entries []ebtest.Entry) []string {
	var out []string
	for _, e := range entries {
		out = append(out, e.ID())
	}
	return out
}

// unique is what a consumer that drops repeats by id keeps, sorted.
func unique(entries []ebtest.Entry) []string {
	return slices.Compact(slices.Sorted(slices.Values(ids(entries))))
}

// detailFields are the only fields a detail may have.
var detailFields = []string{"id", "tenant", "tokenId", "at", "action", "actor", "requestId", "version", "outcome", "changes", "usage", "replaces", "replacedBy", "lead", "expiresAt"}

// Every kind of change (a replace too), made through the service with a real sealer, reaches EventBridge as
// exactly one entry with its audit event's key as id and the action's detail-type, and no entry
// holds the value, its hint or anything sealed.
func TestEveryChangeIsPublishedOnce(t *testing.T) {
	r := newRig(t)
	r.run(nil, streamreader.Options{})
	sealer := seal.NewLocalFromKey(make([]byte, 32))
	svc, err := service.New(r.st, sealer, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, m := r.ctx, service.Meta{RequestID: "r1", Actor: "admin-ui"}
	value, newValue, name, renamed := "sk-stream-secret-value-abcdWXYZ", "sk-stream-successor-value-efghQRST", "OpenAI", "OpenAI (prod)"
	exp := time.Now().Add(30 * time.Hour).UTC().Truncate(time.Second)
	restricted := true
	steps := []func() error{
		func() error {
			_, err := svc.Upsert(ctx, service.Upsert{Tenant: "acme", ID: "openai", Name: &name, Value: &value, Restricted: &restricted, Meta: m})
			return err
		},
		func() error {
			_, err := svc.Upsert(ctx, service.Upsert{Tenant: "acme", ID: "openai", Name: &renamed, Meta: service.Meta{RequestID: "r2", Actor: "admin-ui"}})
			return err
		},
		func() error {
			return svc.Patch(ctx, "acme", "openai", []service.PatchOp{{Op: "REPLACE", Path: "/expiresAt", Value: exp.Format(time.RFC3339)}}, service.Meta{RequestID: "r3", Actor: "admin-ui"})
		},
		func() error {
			_, err := svc.RegisterUsage(ctx, "acme", "openai", "agent", "support", service.Meta{RequestID: "r4", Actor: "admin-ui"})
			return err
		},
		func() error {
			if _, err := svc.Resolve(ctx, "acme", "openai", &token.Consumer{Kind: "agent", ID: "stranger"}, "r5"); err == nil {
				return fmt.Errorf("a stranger resolved a restricted token")
			}
			return nil // refused, and recorded
		},
		func() error {
			res, err := reminders.New(r.st, config.Events{ReminderLeads: []time.Duration{48 * time.Hour}, ReminderLookback: time.Hour},
				slog.New(slog.DiscardHandler)).Sweep(ctx, "r6")
			if err == nil && res.Expiring != 1 {
				err = fmt.Errorf("sweep: %+v", res)
			}
			return err
		},
		func() error {
			return svc.UnregisterUsage(ctx, "acme", "openai", "agent", "support", service.Meta{RequestID: "r7", Actor: "admin-ui"})
		},
		func() error {
			_, err := svc.RegisterUsage(ctx, "acme", "openai", "tool", "rag", service.Meta{RequestID: "r8", Actor: "admin-ui"})
			return err
		},
		func() error {
			_, err := svc.Upsert(ctx, service.Upsert{Tenant: "acme", ID: "openai-v2", Name: &name, Value: &newValue, Replaces: new("openai"),
				Meta: service.Meta{RequestID: "r9", Actor: "admin-ui"}})
			return err
		},
		func() error {
			return svc.Delete(ctx, "acme", "openai", true, service.Meta{RequestID: "r10", Actor: "admin-ui"})
		},
	}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	keys := testenv.EventKeys(t, r.table)
	if len(keys) != 12 {
		t.Fatalf("%d audit events, want 12: %v", len(keys), keys)
	}
	waitFor(t, 30*time.Second, "every event on the bus", func() bool { return len(r.eb.Entries()) >= len(keys) })
	time.Sleep(300 * time.Millisecond) // and nothing more comes
	entries := r.eb.Entries()
	if got := slices.Sorted(slices.Values(ids(entries))); !slices.Equal(got, keys) {
		t.Fatalf("entries' ids\n%v\nwant each audit event's key once\n%v", got, keys)
	}
	types := map[string]int{}
	for _, e := range entries {
		types[e.DetailType]++
		var d map[string]any
		if err := json.Unmarshal([]byte(e.Detail), &d); err != nil {
			t.Fatal(err)
		}
		if e.Source != "aitokens" || e.EventBusName != ebtest.Bus || eventbus.DetailType(d["action"].(string)) != e.DetailType ||
			d["tenant"] != "acme" || (d["tokenId"] != "openai" && d["tokenId"] != "openai-v2") {
			t.Errorf("entry %+v", e)
		}
		switch {
		case d["action"] == "replaced" && (d["tokenId"] != "openai" || d["replacedBy"] != "openai-v2"):
			t.Errorf("the replaced event: %s", e.Detail)
		case d["action"] == "create" && d["tokenId"] == "openai-v2" && d["replaces"] != "openai":
			t.Errorf("the successor's create: %s", e.Detail)
		}
		for k := range d {
			if !slices.Contains(detailFields, k) {
				t.Errorf("detail field %q in %s", k, e.Detail)
			}
		}
		raw := strings.ToLower(e.Source + e.DetailType + e.Detail)
		for _, secret := range []string{strings.ToLower(value), strings.ToLower(newValue), "wxyz", "qrst", "…", "seal", "digest", "cipher", "hint", "value", "eyj", "bearer"} {
			if strings.Contains(raw, secret) {
				t.Errorf("entry holds %q: %s", secret, e.Detail)
			}
		}
	}
	// (The forced delete removes tool/rag in its one transaction, recorded by its own event.)
	// (The replace is the successor's create, the old token's replaced, and the copy of tool/rag.)
	want := map[string]int{"AI Token Created": 2, "AI Token Updated": 2, "AI Token Usage Registered": 3, "AI Token Resolve Refused": 1,
		"AI Token Expiring": 1, "AI Token Usage Unregistered": 1, "AI Token Deleted": 1, "AI Token Replaced": 1}
	if !maps.Equal(types, want) {
		t.Fatalf("detail-types %v, want %v", types, want)
	}
}

// One failed entry in an answer of ten: that one is sent again, the nine others are not.
func TestOneFailedEntryIsSentAgainAlone(t *testing.T) {
	r := newRig(t)
	for i := range 10 {
		r.create(fmt.Sprintf("t%d", i))
	}
	r.eb.FailEntries(1, "", func(e ebtest.Entry) bool { return strings.Contains(e.Detail, `"tokenId":"t4"`) })
	r.run(nil, streamreader.Options{})
	waitFor(t, 30*time.Second, "ten entries accepted", func() bool { return len(r.eb.Entries()) >= 10 })
	time.Sleep(300 * time.Millisecond)
	calls := r.eb.Calls()
	if len(calls) != 2 || len(calls[0]) != 10 || len(calls[1]) != 1 || !strings.Contains(calls[1][0].Detail, `"tokenId":"t4"`) {
		var sizes []int
		for _, c := range calls {
			sizes = append(sizes, len(c))
		}
		t.Fatalf("calls of %v entries, want one of 10 and one with t4's alone", sizes)
	}
	if got := slices.Sorted(slices.Values(ids(r.eb.Entries()))); !slices.Equal(got, testenv.EventKeys(t, r.table)) {
		t.Fatalf("accepted %v", got)
	}
}

// A stalled EventBridge: the handler reports every record of the batch as failed before the
// invocation's deadline, and once EventBridge answers again the reader hands them again and
// they are delivered.
func TestStalledEventBridgeReportsInTimeThenDelivers(t *testing.T) {
	r := newRig(t)
	r.eb.Stall()
	const timeout = 3 * time.Second
	type answer struct {
		took     time.Duration
		records  int
		failures int
	}
	var mu sync.Mutex
	var answers []answer
	handler := func(ctx context.Context, batch events.DynamoDBEvent) (events.DynamoDBEventResponse, error) {
		start := time.Now()
		res, err := r.pub.Handle(ctx, batch)
		mu.Lock()
		answers = append(answers, answer{time.Since(start), len(batch.Records), len(res.BatchItemFailures)})
		mu.Unlock()
		return res, err
	}
	r.pub = r.pub.WithBudget(time.Minute, 500*time.Millisecond)
	for i := range 3 {
		r.create(fmt.Sprintf("s%d", i))
	}
	r.run(handler, streamreader.Options{Timeout: timeout, RetryPause: 100 * time.Millisecond})
	waitFor(t, 20*time.Second, "a handled batch", func() bool { mu.Lock(); defer mu.Unlock(); return len(answers) > 0 })
	mu.Lock()
	first := answers[0]
	mu.Unlock()
	if first.records != 3 || first.failures != 3 || first.took >= timeout || first.took < timeout/2 {
		t.Fatalf("stalled: %+v, want 3 of 3 records reported failed after retrying, within %v", first, timeout)
	}
	if n := len(r.eb.Entries()); n != 0 {
		t.Fatalf("%d entries accepted by a stalled EventBridge", n)
	}
	r.eb.Release()
	waitFor(t, 30*time.Second, "the records delivered after the stall", func() bool { return len(unique(r.eb.Entries())) == 3 })
	mu.Lock()
	n := len(answers)
	mu.Unlock()
	t.Logf("stalled invocation answered after %v; %d invocations in all", first.took.Round(time.Millisecond), n)
}

// The reader killed while a PutEvents call was in flight (EventBridge took its entries, the
// answer never came), then started again on its checkpoint: every event is delivered at least
// once, the repeats carry the same ids (a consumer drops them), and what was delivered and
// checkpointed before is not sent again.
func TestKilledMidBatchDeliversAtLeastOnce(t *testing.T) {
	r := newRig(t)
	checkpoint := filepath.Join(t.TempDir(), "checkpoint.json")
	for i := range 25 {
		r.create(fmt.Sprintf("k%02d", i))
	}
	hold := r.eb.AcceptAndHold(2)
	stop := r.run(nil, streamreader.Options{Checkpoint: checkpoint})
	select {
	case <-hold.Reached:
	case <-time.After(30 * time.Second):
		t.Fatal("the second call never came")
	}
	stop() // killed with call 2's entries taken and its answer pending
	if n := len(r.eb.Entries()); n != 20 {
		t.Fatalf("%d entries accepted before the kill, want 20", n)
	}
	stop = r.run(nil, streamreader.Options{Checkpoint: checkpoint})
	keys := testenv.EventKeys(t, r.table)
	waitFor(t, 30*time.Second, "every event delivered after the restart", func() bool { return slices.Equal(unique(r.eb.Entries()), keys) })
	entries := r.eb.Entries()
	if len(entries) != 45 {
		t.Fatalf("%d deliveries, want 20 before the kill and the whole batch of 25 again", len(entries))
	}
	seen := map[string]int{}
	for _, e := range entries {
		seen[e.ID()]++
	}
	for _, k := range keys {
		if seen[k] < 1 || (seen[k] > 1) != slices.Contains(ids(entries[:20]), k) {
			t.Errorf("%s delivered %d times", k, seen[k])
		}
	}
	// The checkpoint now covers the batch: a third reader sends only what is new.
	stop()
	r.run(nil, streamreader.Options{Checkpoint: checkpoint})
	r.create("after")
	waitFor(t, 30*time.Second, "the new event", func() bool { return len(r.eb.Entries()) > 45 })
	time.Sleep(300 * time.Millisecond)
	if entries := r.eb.Entries(); len(entries) != 46 || !strings.Contains(entries[45].Detail, `"tokenId":"after"`) {
		t.Fatalf("after the second restart: %d deliveries, want 46 ending with the new event", len(entries))
	}
}

// Without a bus, events are logged, one JSON line each, through the same handler.
func TestLogClientWritesOneLinePerEvent(t *testing.T) {
	r := newRig(t)
	var buf syncbuf.Buffer
	r.pub = eventbus.New(eventbus.LogClient{Log: slog.New(slog.NewJSONHandler(&buf, nil))}, "", "aitokens", slog.New(slog.DiscardHandler))
	r.create("logged")
	r.run(nil, streamreader.Options{})
	waitFor(t, 30*time.Second, "a log line", func() bool { return strings.Contains(buf.String(), `"msg":"event"`) })
	var line struct {
		Msg, Source, DetailType string
		Detail                  eventbus.Detail
	}
	if err := json.Unmarshal([]byte(strings.TrimSpace(buf.String())), &line); err != nil {
		t.Fatalf("%v: %s", err, buf.String())
	}
	if line.Source != "aitokens" || line.DetailType != "AI Token Created" || line.Detail.TokenID != "logged" ||
		line.Detail.ID != testenv.EventKeys(t, r.table)[0] {
		t.Fatalf("%+v", line)
	}
}

// BenchmarkChangeToPutEvents measures the delay from a committed change (its write returned)
// to the PutEvents call that carries its event, through the in-process reader, over 200
// changes made one after another: the figure of docs/benchmarks.md.
func BenchmarkChangeToPutEvents(b *testing.B) {
	const changes = 200
	for b.Loop() {
		b.StopTimer()
		eb := ebtest.New()
		for _, kv := range eb.Env() {
			k, v, _ := strings.Cut(kv, "=")
			b.Setenv(k, v)
		}
		ctx := context.Background()
		client, err := eventbus.NewClient(ctx, awsretry.DefaultPolicy)
		if err != nil {
			b.Fatal(err)
		}
		pub := eventbus.New(client, ebtest.Bus, "aitokens", slog.New(slog.DiscardHandler))
		table := testenv.NewTableWithStream(b)
		st := store.New(testenv.Client(), table)
		var mu sync.Mutex
		arrived := map[string]time.Time{}
		eb.OnCall(func(entries []ebtest.Entry) {
			mu.Lock()
			for _, e := range entries {
				var d eventbus.Detail
				json.Unmarshal([]byte(e.Detail), &d)
				if _, ok := arrived[d.TokenID]; !ok {
					arrived[d.TokenID] = e.Arrived
				}
			}
			mu.Unlock()
		})
		reader, err := streamreader.New(ctx, streamreader.Options{Endpoint: testenv.Endpoint(), Table: table, Policy: testenv.Policy, Handler: pub.Handle})
		if err != nil {
			b.Fatal(err)
		}
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); reader.Run(rctx) }()
		b.StartTimer()
		committed := map[string]time.Time{}
		for i := range changes {
			id := fmt.Sprintf("d%03d", i)
			if err := st.Create(ctx, token.Token{Tenant: "acme", ID: id, Name: id}, token.Sealed{}, token.Event{RequestID: id}); err != nil {
				b.Fatal(err)
			}
			committed[id] = time.Now()
			time.Sleep(10 * time.Millisecond) // changes one after another, as a busy tenant makes them
		}
		deadline := time.Now().Add(time.Minute)
		for {
			mu.Lock()
			n := len(arrived)
			mu.Unlock()
			if n == changes {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("%d of %d events arrived within a minute", n, changes)
			}
			time.Sleep(20 * time.Millisecond)
		}
		b.StopTimer()
		cancel()
		<-done
		eb.Close()
		var delays []time.Duration
		for id, c := range committed {
			delays = append(delays, arrived[id].Sub(c))
		}
		sort.Slice(delays, func(i, j int) bool { return delays[i] < delays[j] })
		b.ReportMetric(float64(delays[len(delays)/2].Microseconds())/1000, "median-ms")
		b.ReportMetric(float64(delays[len(delays)*95/100].Microseconds())/1000, "p95-ms")
		b.ReportMetric(float64(delays[len(delays)-1].Microseconds())/1000, "max-ms")
		b.StartTimer()
	}
}
