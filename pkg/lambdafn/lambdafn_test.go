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
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/awslabs/aws-lambda-go-api-proxy/httpadapter"

	"aitokens/pkg/api"
	"aitokens/pkg/auth"
	"aitokens/pkg/lambdafn"
	"aitokens/pkg/seal"
	"aitokens/pkg/service"
	"aitokens/pkg/store"
	"aitokens/pkg/testenv"
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
	t.Setenv("TABLE_NAME", testenv.NewTable(t))
	t.Setenv("DYNAMODB_ENDPOINT", testenv.Endpoint())
	h, err := lambdafn.Handler(context.Background(), "get-token", nil)
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

func TestUnknownFunctionAndMissingTable(t *testing.T) {
	if _, err := lambdafn.Handler(context.Background(), "no-such-function", nil); err == nil {
		t.Error("a function without a route started")
	}
	t.Setenv("TABLE_NAME", "")
	if _, err := lambdafn.Handler(context.Background(), "get-token", nil); err == nil {
		t.Error("a function without TABLE_NAME started")
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
	svc := service.New(st, seal.NewLocalFromKey(bytes.Repeat([]byte{1}, 32)))
	in := service.Upsert{Tenant: "acme", ID: "openai", Name: ptr("OpenAI"), Value: ptr("sk-bench"), RequestID: "r"}
	if _, err := svc.Upsert(context.Background(), in); err != nil {
		b.Fatal(err)
	}
	route, _ := api.RouteByFunction("get-token")
	h := api.New(svc, fixedCaller{}, slog.New(slog.NewJSONHandler(io.Discard, nil)), route)
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

func ptr(s string) *string { return &s }
