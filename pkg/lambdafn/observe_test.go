package lambdafn_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambdacontext"

	"aitokens/pkg/devtools/emfcheck"
	"aitokens/pkg/devtools/syncbuf"
	"aitokens/pkg/lambdafn"
)

// syncBuffer is a log stream that tests read line by line.
type syncBuffer struct{ syncbuf.Buffer }

// lines takes the stream's JSON lines so far, each checked: an EMF line against the
// specification, and none holding what must never be logged.
func (b *syncBuffer) lines(t *testing.T, never ...string) (logs, emf []map[string]any) {
	t.Helper()
	sc := bufio.NewScanner(bytes.NewReader(b.Take()))
	for sc.Scan() {
		line := sc.Bytes()
		for _, s := range never {
			if bytes.Contains(line, []byte(s)) {
				t.Fatalf("a line holds %q: %s", s, line)
			}
		}
		var m map[string]any
		if err := json.Unmarshal(line, &m); err != nil {
			t.Fatalf("not a JSON line: %s", line)
		}
		if emfcheck.Is(line) {
			if err := emfcheck.Check(line); err != nil {
				t.Fatal(err)
			}
			emf = append(emf, m)
		} else {
			logs = append(logs, m)
		}
	}
	return logs, emf
}

// invocationContext is the context aws-lambda-go gives a handler.
func invocationContext(requestID, traceHeader string) context.Context {
	ctx := lambdacontext.NewContext(context.Background(), &lambdacontext.LambdaContext{AwsRequestID: requestID})
	//lint:ignore SA1029 aws-lambda-go's own key, a plain string
	return context.WithValue(ctx, "x-amzn-trace-id", traceHeader)
}

// want checks members of a line.
func want(t *testing.T, what string, line map[string]any, members map[string]any) {
	t.Helper()
	for k, v := range members {
		if line[k] != v {
			t.Errorf("%s: %s = %#v, want %#v in %v", what, k, line[k], v, line)
		}
	}
}

// Every invocation of an HTTP function gives one metrics line after its log lines: the Lambda
// request id and the trace id in both, the cold start on the first invocation only, 4xx and 5xx
// by the answer, and a failed invocation counted as a 5xx.
func TestObservedHTTPInvocations(t *testing.T) {
	var out syncBuffer
	o := lambdafn.NewObserver("get-token", "ai-tokens-test", &out)
	log := o.Logger()
	cases := []struct {
		status     int
		err        error
		four, five float64
	}{
		{200, nil, 0, 0},
		{404, nil, 1, 0},
		{503, nil, 0, 1},
		{0, errors.New("adapter failed"), 0, 1},
	}
	for i, c := range cases {
		h := o.HTTP(func(ctx context.Context, ev events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
			log.InfoContext(ctx, "request", "status", c.status)
			return events.APIGatewayV2HTTPResponse{StatusCode: c.status}, c.err
		})
		rid := "req-" + string(rune('a'+i))
		if _, err := h(invocationContext(rid, "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"), events.APIGatewayV2HTTPRequest{}); err != c.err {
			t.Fatal(err)
		}
		logs, emf := out.lines(t)
		// A failed invocation has no answer of its own, and so an ERROR line of the observer's.
		wantLogs := map[bool]int{true: 2, false: 1}[c.err != nil]
		if len(logs) != wantLogs || len(emf) != 1 {
			t.Fatalf("invocation %d: %d log lines and %d metrics lines, want %d and 1", i, len(logs), len(emf), wantLogs)
		}
		want(t, "log line", logs[0], map[string]any{"function": "get-token", "traceId": "1-5759e988-bd862e3fe1be46a994272793", "coldStart": i == 0})
		if c.err != nil {
			want(t, "failure line", logs[1], map[string]any{"level": "ERROR", "msg": "invocation failed", "requestId": rid, "status": 500.0,
				"error": c.err.Error(), "traceId": "1-5759e988-bd862e3fe1be46a994272793"})
		}
		want(t, "metrics line", emf[0], map[string]any{"Service": "ai-tokens-test", "Function": "get-token", "requestId": rid,
			"traceId": "1-5759e988-bd862e3fe1be46a994272793", "Requests": 1.0, "4xx": c.four, "5xx": c.five, "ColdStart": map[bool]float64{true: 1, false: 0}[i == 0]})
		if ms, _ := emf[0]["Latency"].(float64); ms < 0 || ms > 10_000 {
			t.Errorf("Latency %v", emf[0]["Latency"])
		}
	}
}

// Without aws-lambda-go's context value the trace id comes from _X_AMZN_TRACE_ID, as Lambda
// sets it per invocation; a panicking handler, HTTP or resolve, still leaves its metrics line,
// as a 5xx, and an ERROR line, and its panic goes on to the runtime.
func TestObservedTraceFromEnvironmentAndPanics(t *testing.T) {
	t.Setenv("_X_AMZN_TRACE_ID", "Root=1-6759e988-cd862e3fe1be46a994272793;Sampled=0")
	var out syncBuffer
	o := lambdafn.NewObserver("patch-token", "s", &out)
	h := o.HTTP(func(ctx context.Context, ev events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
		panic("boom")
	})
	resolve := o.Resolve(func(ctx context.Context, req lambdafn.ResolveRequest) (lambdafn.ResolveResponse, error) {
		panic("boom")
	})
	for _, invoke := range []func(){
		func() { h(context.Background(), events.APIGatewayV2HTTPRequest{}) },
		func() { resolve(context.Background(), lambdafn.ResolveRequest{}) },
	} {
		func() {
			defer func() {
				if p := recover(); p != "boom" {
					t.Errorf("the panic reached the runtime as %v", p)
				}
			}()
			invoke()
		}()
		logs, emf := out.lines(t)
		if len(emf) != 1 || len(logs) != 1 {
			t.Fatalf("%d metrics lines and %d log lines after a panic", len(emf), len(logs))
		}
		want(t, "metrics line", emf[0], map[string]any{"5xx": 1.0, "traceId": "1-6759e988-cd862e3fe1be46a994272793", "requestId": ""})
		want(t, "failure line", logs[0], map[string]any{"level": "ERROR", "msg": "invocation failed", "status": 500.0, "error": "panic",
			"traceId": "1-6759e988-cd862e3fe1be46a994272793"})
	}
}

// The resolve function's lines: KMS calls and cache misses on the first resolve of a value,
// a cache hit and no KMS call on the next, a refusal counted by its reason; never the value.
func TestObservedResolves(t *testing.T) {
	r, _, _ := kmsResolver(t)
	var out syncBuffer
	o := lambdafn.NewObserver("resolve-token", "ai-tokens-test", &out)
	resolve := o.Resolve(r.WithLogger(o.Logger()).Resolve)
	steps := []struct {
		name    string
		req     lambdafn.ResolveRequest
		metrics map[string]any
		absent  []string
	}{
		{"first", lambdafn.ResolveRequest{Tenant: "acme", TokenID: "openai"},
			map[string]any{"KMSCalls": 1.0, "ResolveCacheMisses": 1.0, "ColdStart": 1.0, "4xx": 0.0}, []string{"ResolveCacheHits", "RefusedResolves"}},
		{"warm", lambdafn.ResolveRequest{Tenant: "acme", TokenID: "openai"},
			map[string]any{"ResolveCacheHits": 1.0, "ColdStart": 0.0}, []string{"KMSCalls", "ResolveCacheMisses", "RefusedResolves"}},
		{"refused", lambdafn.ResolveRequest{Tenant: "acme", TokenID: "nope"},
			map[string]any{"RefusedResolves": 1.0, "Reason": "not_found", "4xx": 1.0}, []string{"KMSCalls", "ResolveCacheHits"}},
		{"bad request", lambdafn.ResolveRequest{Tenant: "ACME", TokenID: "openai"},
			map[string]any{"RefusedResolves": 1.0, "Reason": "invalid", "4xx": 1.0}, nil},
	}
	for i, s := range steps {
		rid := "resolve-" + s.name
		res, err := resolve(invocationContext(rid, "Root=1-5759e988-bd862e3fe1be46a99427279"+string(rune('0'+i))), s.req)
		if err != nil || (i < 2) != (res.Value == "sk-kms-resolve-value") {
			t.Fatalf("%s: %+v %v", s.name, res, err)
		}
		logs, emf := out.lines(t, "sk-kms-resolve-value")
		if len(logs) != 1 || len(emf) != 1 {
			t.Fatalf("%s: %d log lines and %d metrics lines", s.name, len(logs), len(emf))
		}
		trace := "1-5759e988-bd862e3fe1be46a99427279" + string(rune('0'+i))
		want(t, s.name+" log line", logs[0], map[string]any{"msg": "resolve", "requestId": rid, "traceId": trace, "function": "resolve-token", "coldStart": i == 0})
		want(t, s.name+" metrics line", emf[0], s.metrics)
		want(t, s.name+" metrics line", emf[0], map[string]any{"requestId": rid, "traceId": trace, "Function": "resolve-token"})
		for _, k := range s.absent {
			if _, ok := emf[0][k]; ok {
				t.Errorf("%s: %s in %v", s.name, k, emf[0])
			}
		}
	}
}

// BenchmarkObservedVersusPlainResolve alternates a warm resolve (cache hit) with and without
// the observer, whose metrics line goes to /dev/null through a real write, and reports the
// observer's cost.
func BenchmarkObservedVersusPlainResolve(b *testing.B) {
	r, _, _ := kmsResolver(b)
	devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer devNull.Close()
	o := lambdafn.NewObserver("resolve-token", "bench", devNull)
	plain := r.WithLogger(o.Logger())
	observed := o.Resolve(plain.Resolve)
	req := lambdafn.ResolveRequest{Tenant: "acme", TokenID: "openai"}
	ctx := invocationContext("r", "Root=1-5759e988-bd862e3fe1be46a994272793")
	observed(ctx, req) // warm the cache
	var withObserver, without time.Duration
	for b.Loop() {
		start := time.Now()
		if res, _ := observed(ctx, req); res.Value == "" {
			b.Fatal(res.Error)
		}
		withObserver += time.Since(start)
		start = time.Now()
		if res, _ := plain.Resolve(ctx, req); res.Value == "" {
			b.Fatal(res.Error)
		}
		without += time.Since(start)
	}
	b.ReportMetric(float64(withObserver.Nanoseconds())/float64(b.N), "observed-ns/op")
	b.ReportMetric(float64(without.Nanoseconds())/float64(b.N), "plain-ns/op")
	b.ReportMetric(float64(withObserver)/float64(without), "observed/plain")
}
