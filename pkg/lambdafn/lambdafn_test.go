package lambdafn_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambdacontext"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/awslabs/aws-lambda-go-api-proxy/httpadapter"

	"aitokens/pkg/api"
	"aitokens/pkg/auth"
	"aitokens/pkg/config"
	"aitokens/pkg/devtools/kmstest"
	"aitokens/pkg/devtools/testenv"
	"aitokens/pkg/lambdafn"
	"aitokens/pkg/query"
	"aitokens/pkg/seal"
	"aitokens/pkg/seal/kmsseal"
	"aitokens/pkg/service"
	"aitokens/pkg/store"
	"aitokens/pkg/token"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

func getEvent(t testing.TB, claims map[string]string, scopes []string) events.APIGatewayV2HTTPRequest {
	t.Helper()
	raw, err := os.ReadFile("../../events/get-token.json")
	if err != nil {
		t.Fatal(err)
	}
	var ev events.APIGatewayV2HTTPRequest
	if err := json.Unmarshal(raw, &ev); err != nil {
		t.Fatal(err)
	}
	ev.RequestContext.Authorizer.JWT.Claims = claims
	ev.RequestContext.Authorizer.JWT.Scopes = scopes
	return ev
}

// The authorizer's claims arrive as strings (an array claim as "[a b]") and its scopes apart.
func TestAPIGatewayClaims(t *testing.T) {
	h, err := lambdafn.Handler(context.Background(), testConfig(t), "get-token", nil)
	if err != nil {
		t.Fatal(err)
	}
	adapter := httpadapter.NewV2(h)
	cases := []struct {
		name   string
		claims map[string]string
		scopes []string
		status int
	}{
		{"scope claim", map[string]string{"tenant": "acme", "scope": "ai.agent_read ai.agent_manage"}, nil, 404},
		{"scp array claim", map[string]string{"tenant": "acme", "scp": "[ai.agent_manage ai.agent_read]"}, nil, 404},
		{"authorizer scopes", map[string]string{"tenant": "acme"}, []string{"ai.agent_read"}, 404},
		{"no claims", nil, nil, 401},
		{"wrong scope", map[string]string{"tenant": "acme", "scope": "ai.agent_manage"}, nil, 403},
		{"scope as a prefix", map[string]string{"tenant": "acme", "scope": "ai.agent_readonly"}, nil, 403},
		{"other tenant", map[string]string{"tenant": "globex", "scope": "ai.agent_read"}, nil, 403},
		{"no tenant", map[string]string{"scope": "ai.agent_read"}, nil, 403},
	}
	for _, c := range cases {
		res, err := adapter.ProxyWithContext(context.Background(), getEvent(t, c.claims, c.scopes))
		if err != nil || res.StatusCode != c.status {
			t.Errorf("%s: %d %s %v", c.name, res.StatusCode, res.Body, err)
		}
	}
}

// testConfig is a function's configuration on a fresh table of this run's DynamoDB Local.
func testConfig(t testing.TB) config.Config {
	t.Helper()
	cfg, err := config.Load(func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	cfg.TableName, cfg.DynamoDBEndpoint, cfg.AWS = testenv.NewTable(t), testenv.Endpoint(), testenv.Policy
	return cfg
}

func TestUnknownFunctionAndMissingSealer(t *testing.T) {
	cfg := testConfig(t)
	if _, err := lambdafn.Handler(context.Background(), cfg, "no-such-function", nil); err == nil {
		t.Error("a function without a route started")
	}
	if _, err := lambdafn.Handler(context.Background(), cfg, "upsert-token", nil); err == nil || !strings.Contains(err.Error(), "no sealer") {
		t.Errorf("upsert-token without a sealer: %v", err)
	}
	if _, err := lambdafn.NewResolver(context.Background(), cfg, nil); err == nil {
		t.Error("resolve-token without a sealer started")
	}
}

// fixedCaller lets the direct path and the adapter path pass the same authentication, so the
// benchmark compares only what the adapter adds.
type fixedCaller struct{}

func (fixedCaller) Authenticate(*http.Request) (auth.Principal, error) {
	return auth.Principal{Tenant: "acme", Scopes: []string{auth.ScopeRead}}, nil
}

// BenchmarkAdapterVersusDirect alternates one invocation through aws-lambda-go-api-proxy's V2
// adapter (event -> http.Request -> response event) with one direct ServeHTTP of the same GET
// on DynamoDB Local, and reports both and their ratio.
func BenchmarkAdapterVersusDirect(b *testing.B) {
	table := testenv.NewTable(b)
	st := store.New(testenv.Client(), table)
	svc, err := service.New(st, seal.NewLocalFromKey(bytes.Repeat([]byte{1}, 32)), nil)
	if err != nil {
		b.Fatal(err)
	}
	in := service.Upsert{Tenant: "acme", ID: "openai", Name: new("OpenAI"), Value: new("sk-bench"), Meta: service.Meta{RequestID: "r"}}
	if _, err := svc.Upsert(context.Background(), in); err != nil {
		b.Fatal(err)
	}
	route, _ := api.RouteByFunction("get-token")
	h, err := api.New(api.Config{Service: svc, Auth: fixedCaller{}, Log: slog.New(slog.NewJSONHandler(io.Discard, nil)),
		RequestTimeout: time.Minute, Routes: []api.Route{route}})
	if err != nil {
		b.Fatal(err)
	}
	adapter := httpadapter.NewV2(h)
	ev := getEvent(b, map[string]string{"tenant": "acme"}, []string{"ai.agent_read"})
	var viaAdapter, direct time.Duration
	for b.Loop() {
		start := time.Now()
		res, err := adapter.ProxyWithContext(context.Background(), ev)
		if err != nil || res.StatusCode != 200 {
			b.Fatal(res.StatusCode, err)
		}
		viaAdapter += time.Since(start)
		start = time.Now()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/ai-service/acme/agentic/tokens/openai", nil))
		if rec.Code != 200 {
			b.Fatal(rec.Code)
		}
		direct += time.Since(start)
	}
	b.ReportMetric(float64(viaAdapter.Nanoseconds())/float64(b.N), "adapter-ns/op")
	b.ReportMetric(float64(direct.Nanoseconds())/float64(b.N), "direct-ns/op")
	b.ReportMetric(float64(viaAdapter)/float64(direct), "adapter/direct")
}

// localSealer is a SealerFactory for tests: the local sealer with a fixed key.
func localSealer(context.Context, config.Config) (seal.Sealer, error) {
	return seal.NewLocalFromKey(bytes.Repeat([]byte{7}, 32)), nil
}

// The resolve function answers a structured 503 within its deadline when the database stalls,
// and resolves again once the stall ends.
func TestResolveWithAStalledDatabase(t *testing.T) {
	cfg := testConfig(t)
	st := store.New(testenv.Client(), cfg.TableName)
	svc, err := service.New(st, seal.NewLocalFromKey(bytes.Repeat([]byte{7}, 32)), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Upsert(context.Background(), service.Upsert{Tenant: "acme", ID: "openai", Name: new("OpenAI"), Value: new("sk-resolve-stall"), Meta: service.Meta{RequestID: "r1"}}); err != nil {
		t.Fatal(err)
	}
	proxy := testenv.NewFaultProxy(t)
	cfg.DynamoDBEndpoint, cfg.RequestTimeout = proxy.URL, time.Second
	r, err := lambdafn.NewResolver(context.Background(), cfg, localSealer)
	if err != nil {
		t.Fatal(err)
	}
	proxy.Stall()
	start := time.Now()
	res, err := r.Resolve(context.Background(), lambdafn.ResolveRequest{Tenant: "acme", TokenID: "openai"})
	took := time.Since(start)
	if err != nil || res.Error == nil || res.Error.Code != 503 || res.Value != "" {
		t.Fatalf("resolve during a stall: %+v %v", res, err)
	}
	if took > 3*cfg.RequestTimeout {
		t.Fatalf("resolve during a stall took %v", took)
	}
	proxy.Release()
	if res, err := r.Resolve(context.Background(), lambdafn.ResolveRequest{Tenant: "acme", TokenID: "openai"}); err != nil || res.Value != "sk-resolve-stall" {
		t.Fatalf("resolve after the stall: %+v %v", res.Error, err)
	}
}

// kmsResolver is a resolver whose sealer is the KMS sealer talking to a test KMS, on a table
// holding one token sealed by it.
func kmsResolver(t testing.TB) (*lambdafn.Resolver, *kmstest.Server, config.Config) {
	t.Helper()
	srv := kmstest.New()
	t.Cleanup(srv.Close)
	srv.UseFromEnv(t)
	cfg := testConfig(t)
	cfg.KMSKeyID = "alias/ai-tokens"
	sealer, err := kmsseal.FromConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := service.New(store.New(testenv.Client(), cfg.TableName), sealer, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Upsert(context.Background(), service.Upsert{Tenant: "acme", ID: "openai", Name: new("OpenAI"), Value: new("sk-kms-resolve-value"), Meta: service.Meta{RequestID: "r1"}}); err != nil {
		t.Fatal(err)
	}
	r, err := lambdafn.NewResolver(context.Background(), cfg, kmsseal.FromConfig)
	if err != nil {
		t.Fatal(err)
	}
	return r.WithLogger(slog.New(slog.NewJSONHandler(io.Discard, nil))), srv, cfg
}

// A warm resolve function opens a value with KMS once and serves it from memory after that.
func TestWarmResolveCallsKMSOnce(t *testing.T) {
	r, srv, _ := kmsResolver(t)
	const resolves = 1000
	for i := range resolves {
		res, err := r.Resolve(context.Background(), lambdafn.ResolveRequest{Tenant: "acme", TokenID: "openai"})
		if err != nil || res.Value != "sk-kms-resolve-value" {
			t.Fatalf("resolve %d: %+v %v", i, res.Error, err)
		}
	}
	if got := srv.Calls()["Decrypt"]; got != 1 {
		t.Fatalf("%d KMS Decrypt calls for %d resolves of one token, want 1", got, resolves)
	}
	t.Logf("%d resolves of one token in one warm process: %d KMS Decrypt call", resolves, srv.Calls()["Decrypt"])
}

// BenchmarkWarmResolveVersusGetItem alternates one warm resolve (the function's handler, cache
// hit) with one raw consistent GetItem of the same item, and reports both and their ratio.
func BenchmarkWarmResolveVersusGetItem(b *testing.B) {
	r, srv, cfg := kmsResolver(b)
	req := lambdafn.ResolveRequest{Tenant: "acme", TokenID: "openai"}
	if _, err := r.Resolve(context.Background(), req); err != nil { // warm it
		b.Fatal(err)
	}
	getItem := &dynamodb.GetItemInput{TableName: aws.String(cfg.TableName), ConsistentRead: aws.Bool(true),
		Key: map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: "acme"}, "sk": &types.AttributeValueMemberS{Value: "token#openai"}}}
	before := srv.Calls()["Decrypt"]
	var resolve, raw time.Duration
	var allocs uint64
	var ms runtime.MemStats
	for b.Loop() {
		runtime.ReadMemStats(&ms)
		mallocs := ms.Mallocs
		start := time.Now()
		res, err := r.Resolve(context.Background(), req)
		resolve += time.Since(start)
		runtime.ReadMemStats(&ms)
		allocs += ms.Mallocs - mallocs
		if err != nil || res.Value == "" {
			b.Fatal(res.Error, err)
		}
		start = time.Now()
		if _, err := testenv.Client().GetItem(context.Background(), getItem); err != nil {
			b.Fatal(err)
		}
		raw += time.Since(start)
	}
	b.ReportMetric(float64(resolve.Nanoseconds())/float64(b.N), "resolve-ns/op")
	b.ReportMetric(float64(raw.Nanoseconds())/float64(b.N), "getitem-ns/op")
	b.ReportMetric(float64(resolve)/float64(raw), "resolve/getitem")
	b.ReportMetric(float64(allocs)/float64(b.N), "allocs/resolve")
	b.ReportMetric(float64(srv.Calls()["Decrypt"]-before)/float64(b.N), "kms-calls/resolve")
}

// lambdaMargin is what a request leaves free of its invocation's deadline, so that a timed-out
// request still gets its 503 out before Lambda stops the function (README: REQUEST_TIMEOUT "in
// Lambda also bounded by the invocation's deadline less 0.5 s").
const lambdaMargin = 500 * time.Millisecond

// deadlineCaller authenticates every request and notes the deadline of the context it came
// with: the request's own, which every DynamoDB and KMS call of the request inherits.
type deadlineCaller struct{ seen chan time.Time }

func (c deadlineCaller) Authenticate(r *http.Request) (auth.Principal, error) {
	d, _ := r.Context().Deadline()
	c.seen <- d
	return auth.Principal{Tenant: "acme", Scopes: []string{auth.ScopeRead}}, nil
}

// deadlineSealer is the local sealer noting the deadline of the context it opens a value with.
type deadlineSealer struct {
	seal.Sealer
	seen chan time.Time
}

func (s deadlineSealer) Open(ctx context.Context, b seal.Binding, sealed token.Sealed) ([]byte, error) {
	d, _ := ctx.Deadline()
	s.seen <- d
	return s.Sealer.Open(ctx, b, sealed)
}

// A request's deadline is REQUEST_TIMEOUT or the invocation's deadline less the margin,
// whichever comes first, for an API function (through the adapter, as lambda.Start calls it)
// and for resolve alike.
func TestRequestDeadlineIsClippedToTheInvocation(t *testing.T) {
	cfg := testConfig(t)
	local := seal.NewLocalFromKey(bytes.Repeat([]byte{7}, 32))
	svc, err := service.New(store.New(testenv.Client(), cfg.TableName), local, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Upsert(context.Background(), service.Upsert{Tenant: "acme", ID: "openai", Name: new("OpenAI"),
		Value: new("sk-deadline-value"), Meta: service.Meta{RequestID: "r1"}}); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name                string
		timeout, invocation time.Duration // REQUEST_TIMEOUT; the invocation's time left
		clipped             bool          // the invocation's deadline less the margin comes first
	}{
		{"REQUEST_TIMEOUT first", 5 * time.Second, 20 * time.Second, false},
		{"invocation first", 20 * time.Second, 5 * time.Second, true},
		// Without the margin REQUEST_TIMEOUT would come first here.
		{"the margin decides", 5 * time.Second, 5*time.Second + lambdaMargin/2, true},
	}
	// check calls invoke with an invocation deadline and compares the deadline seen inside.
	check := func(t *testing.T, timeout, invocation time.Duration, clipped bool, seen chan time.Time, invoke func(context.Context)) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), invocation)
		defer cancel()
		invocationDeadline, _ := ctx.Deadline()
		before := time.Now()
		invoke(ctx)
		after := time.Now()
		var got time.Time
		select {
		case got = <-seen:
		default:
			t.Fatal("the request never reached the recorder")
		}
		if clipped {
			if want := invocationDeadline.Add(-lambdaMargin); !got.Equal(want) {
				t.Fatalf("deadline %v after the start, want the invocation's less %v: %v", got.Sub(before), lambdaMargin, want.Sub(before))
			}
			return
		}
		if got.Before(before.Add(timeout)) || got.After(after.Add(timeout)) {
			t.Fatalf("deadline %v after the start, want REQUEST_TIMEOUT %v", got.Sub(before), timeout)
		}
	}
	for _, c := range cases {
		t.Run(c.name+"/api", func(t *testing.T) {
			seen := make(chan time.Time, 1)
			route, _ := api.RouteByFunction("get-token")
			h, err := api.New(api.Config{Service: svc, Auth: deadlineCaller{seen}, Log: slog.New(slog.NewJSONHandler(io.Discard, nil)),
				RequestTimeout: c.timeout, Routes: []api.Route{route}})
			if err != nil {
				t.Fatal(err)
			}
			check(t, c.timeout, c.invocation, c.clipped, seen, func(ctx context.Context) {
				ev := getEvent(t, map[string]string{"tenant": "acme"}, []string{auth.ScopeRead})
				if res, err := httpadapter.NewV2(h).ProxyWithContext(ctx, ev); err != nil || res.StatusCode != 200 {
					t.Fatalf("get: %d %s %v", res.StatusCode, res.Body, err)
				}
			})
		})
		t.Run(c.name+"/resolve", func(t *testing.T) {
			seen := make(chan time.Time, 1)
			rcfg := cfg
			rcfg.RequestTimeout = c.timeout
			r, err := lambdafn.NewResolver(context.Background(), rcfg, func(context.Context, config.Config) (seal.Sealer, error) {
				return deadlineSealer{Sealer: local, seen: seen}, nil
			})
			if err != nil {
				t.Fatal(err)
			}
			r = r.WithLogger(slog.New(slog.NewJSONHandler(io.Discard, nil)))
			check(t, c.timeout, c.invocation, c.clipped, seen, func(ctx context.Context) {
				if res, err := r.Resolve(ctx, lambdafn.ResolveRequest{Tenant: "acme", TokenID: "openai"}); err != nil || res.Value != "sk-deadline-value" {
					t.Fatalf("resolve: %+v %v", res.Error, err)
				}
			})
		})
	}
}

// A resolve with a cold cache while KMS fails or stops answering: a structured error with the
// key service's reason, no value, one log line saying so, and one event of the failed resolve on
// the token; once KMS is back the same warm function resolves (a failure is not cached).
func TestResolveWhenKMSFails(t *testing.T) {
	cases := []struct {
		name    string
		fault   func(*kmstest.Server)
		code    int
		reason  string
		mends   bool // the fault ends within the test (a closed server does not come back)
		message string
	}{
		{"throttled", func(s *kmstest.Server) { s.Throttle(-1) }, 503, "key_service_unavailable", true, "unavailable"},
		{"stalled", func(s *kmstest.Server) { s.Stall() }, 503, "key_service_unavailable", true, "unavailable"},
		{"unreachable", func(s *kmstest.Server) { s.Close() }, 503, "key_service_unavailable", false, "unavailable"},
		{"access denied", func(s *kmstest.Server) { s.Refuse("AccessDeniedException") }, 502, "key_service_refused", true, "AccessDeniedException"},
		{"disabled key", func(s *kmstest.Server) { s.Refuse("DisabledException") }, 502, "key_service_refused", true, "DisabledException"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, srv, cfg := kmsResolver(t)
			// A KMS that stops answering is given up after AWS_MAX_ATTEMPTS attempts of
			// AWS_ATTEMPT_TIMEOUT each, here well within the request's deadline.
			policy := testenv.Policy
			policy.AttemptTimeout, policy.MaxAttempts = 500*time.Millisecond, 2
			logs := &bytes.Buffer{}
			r, err := lambdafn.NewResolver(context.Background(), cfg, func(ctx context.Context, cfg config.Config) (seal.Sealer, error) {
				client, err := kmsseal.NewClient(ctx, policy)
				return kmsseal.New(client, cfg.KMSKeyID), err
			})
			if err != nil {
				t.Fatal(err)
			}
			r = r.WithLogger(slog.New(slog.NewJSONHandler(logs, nil)))
			c.fault(srv)
			consumer := &token.Consumer{Kind: "agent", ID: "support"}
			ctx := lambdacontext.NewContext(context.Background(), &lambdacontext.LambdaContext{AwsRequestID: "kms-" + strings.ReplaceAll(c.name, " ", "-")})
			res, err := r.Resolve(ctx, lambdafn.ResolveRequest{Tenant: "acme", TokenID: "openai", Consumer: consumer})
			if err != nil || res.Value != "" || res.Error == nil || res.Error.Code != c.code || res.Error.Reason != c.reason ||
				!strings.Contains(res.Error.Message, c.message) || res.Error.RequestID != "kms-"+strings.ReplaceAll(c.name, " ", "-") {
				t.Fatalf("resolve: value %q, error %+v, %v", res.Value, res.Error, err)
			}
			if line := logs.String(); !strings.Contains(line, `"outcome":"`+c.reason+`"`) || !strings.Contains(line, `"level":"ERROR"`) || strings.Contains(line, "sk-kms-resolve-value") {
				t.Fatalf("log line: %s", line)
			}
			svc, err := service.New(store.New(testenv.Client(), cfg.TableName), nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			events, _, err := svc.Events(context.Background(), "acme", "openai", query.Page{Number: 1, Size: 10})
			if err != nil || len(events) != 2 {
				t.Fatalf("events: %+v %v, want the create and the failed resolve", events, err)
			}
			if e := events[0]; e.Action != token.ActionResolve || e.Outcome != c.reason || e.Actor != "agent/support" ||
				e.RequestID != "kms-"+strings.ReplaceAll(c.name, " ", "-") || e.Version != 1 {
				t.Fatalf("event of the failed resolve: %+v", e)
			}
			if !c.mends {
				return
			}
			srv.Throttle(0)
			srv.Refuse("")
			srv.Release()
			if res, err := r.Resolve(context.Background(), lambdafn.ResolveRequest{Tenant: "acme", TokenID: "openai", Consumer: consumer}); err != nil || res.Value != "sk-kms-resolve-value" {
				t.Fatalf("resolve once KMS is back: %+v %v", res.Error, err)
			}
		})
	}
}

// The resolve function's log line is at the level its answer's status calls for: ERROR for
// every 5xx (store_unavailable here; the key service's 503 and 502 in TestResolveWhenKMSFails),
// with the cause, so that the runbook's level = "ERROR" query finds it; INFO for a value or a
// refusal.
func TestResolveLogLevelFollowsStatus(t *testing.T) {
	cfg := testConfig(t)
	st := store.New(testenv.Client(), cfg.TableName)
	svc, err := service.New(st, seal.NewLocalFromKey(bytes.Repeat([]byte{7}, 32)), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Upsert(context.Background(), service.Upsert{Tenant: "acme", ID: "openai", Name: new("OpenAI"), Value: new("sk-resolve-level"), Meta: service.Meta{RequestID: "r1"}}); err != nil {
		t.Fatal(err)
	}
	proxy := testenv.NewFaultProxy(t)
	cfg.DynamoDBEndpoint = proxy.URL
	r, err := lambdafn.NewResolver(context.Background(), cfg, localSealer)
	if err != nil {
		t.Fatal(err)
	}
	logs := &bytes.Buffer{}
	r = r.WithLogger(slog.New(slog.NewJSONHandler(logs, nil)))
	cases := []struct {
		name   string
		before func()
		req    lambdafn.ResolveRequest
		status int
		reason string
	}{
		{"value", nil, lambdafn.ResolveRequest{Tenant: "acme", TokenID: "openai"}, 200, ""},
		{"not found", nil, lambdafn.ResolveRequest{Tenant: "acme", TokenID: "nope"}, 404, "not_found"},
		{"invalid", nil, lambdafn.ResolveRequest{Tenant: "ACME", TokenID: "openai"}, 400, "invalid"},
		{"store unavailable", func() { proxy.Throttle(-1) }, lambdafn.ResolveRequest{Tenant: "acme", TokenID: "openai"}, 503, "store_unavailable"},
		{"store back", func() { proxy.Throttle(0) }, lambdafn.ResolveRequest{Tenant: "acme", TokenID: "openai"}, 200, ""},
	}
	for _, c := range cases {
		if c.before != nil {
			c.before()
		}
		logs.Reset()
		res, err := r.Resolve(context.Background(), c.req)
		status := 200
		if res.Error != nil {
			status = res.Error.Code
		}
		if err != nil || status != c.status || (res.Error != nil && res.Error.Reason != c.reason) {
			t.Fatalf("%s: %+v %v, want %d %s", c.name, res.Error, err, c.status, c.reason)
		}
		var line struct {
			Level, Msg, Error, RequestID string
			Status                       int
		}
		if err := json.Unmarshal(logs.Bytes(), &line); err != nil {
			t.Fatalf("%s: log %q: %v", c.name, logs, err)
		}
		// Without a Lambda context the id is made up, and the error names it as the line does.
		if res.Error != nil && (res.Error.RequestID == "" || res.Error.RequestID != line.RequestID) {
			t.Errorf("%s: error requestId %q, the log line's %q", c.name, res.Error.RequestID, line.RequestID)
		}
		want := map[bool]string{true: "ERROR", false: "INFO"}[c.status >= 500]
		if line.Msg != "resolve" || line.Status != c.status || line.Level != want || (want == "ERROR") != (line.Error != "") {
			t.Errorf("%s: a %d logged as %s", c.name, c.status, logs)
		}
	}
}
