package lambdafn_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"aitokens/pkg/awsconf"
	"aitokens/pkg/devtools/kmstest"
	"aitokens/pkg/devtools/testenv"
	"aitokens/pkg/lambdafn"
	"aitokens/pkg/seal/kmsseal"
	"aitokens/pkg/service"
	"aitokens/pkg/store"
)

// cutBody stands in front of a test KMS and, for its first call, sends the KMS's status, its
// headers and half its body, then stops sending until the client gives up: an attempt that
// times out mid-body, as one does on a loaded machine. Later calls pass whole. It keeps the
// bodies it saw, which no log line may hold.
type cutBody struct {
	kms   string
	calls atomic.Int32
	mu    sync.Mutex
	seen  [][]byte
}

func (c *cutBody) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	in, _ := io.ReadAll(r.Body)
	req, _ := http.NewRequestWithContext(r.Context(), r.Method, c.kms+r.URL.Path, bytes.NewReader(in))
	req.Header = r.Header.Clone()
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	out, _ := io.ReadAll(res.Body)
	res.Body.Close()
	c.mu.Lock()
	c.seen = append(c.seen, in, out)
	c.mu.Unlock()
	for k, v := range res.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(res.StatusCode)
	if c.calls.Add(1) > 1 {
		w.Write(out)
		return
	}
	w.Write(out[:len(out)/2])
	w.(http.Flusher).Flush()
	select {
	case <-r.Context().Done(): // the client hung up
	case <-time.After(10 * time.Second):
	}
}

// A warning of the AWS SDK itself (a KMS attempt cut mid-body, then retried) is, in a function's
// log, one JSON line like every other: at WARN, with the function, the invocation's trace id and
// cold start, and the SDK's message, which holds no body, credentials or signature. The resolve
// still succeeds on the retry.
func TestTheSDKsWarningIsAJSONLineOfTheFunction(t *testing.T) {
	kms := kmstest.New()
	t.Cleanup(kms.Close)
	kms.UseFromEnv(t)
	const secret, session = "sdklog-secret-access-key", "sdklog-session-token"
	t.Setenv("AWS_SECRET_ACCESS_KEY", secret)
	t.Setenv("AWS_SESSION_TOKEN", session)
	cfg := testConfig(t)
	cfg.KMSKeyID = "alias/ai-tokens"
	const value = "sk-sdklog-value"
	sealer, err := kmsseal.FromConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := service.New(store.New(testenv.Client(), cfg.TableName), sealer, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Upsert(context.Background(), service.Upsert{Tenant: "acme", ID: "openai", Name: new("OpenAI"), Value: new(value), Meta: service.Meta{RequestID: "r1"}}); err != nil {
		t.Fatal(err)
	}

	cut := &cutBody{kms: kms.URL}
	proxy := httptest.NewServer(cut)
	t.Cleanup(proxy.Close)
	t.Setenv("AWS_ENDPOINT_URL_KMS", proxy.URL)
	// As StartResolve does: the observer's logger for the SDK too, before the clients are made.
	var out syncBuffer
	o := lambdafn.NewObserver("resolve-token", "ai-tokens-test", &out)
	awsconf.SetLogger(o.Logger())
	t.Cleanup(func() { awsconf.SetLogger(nil) })
	cfg.AWS.AttemptTimeout, cfg.AWS.MaxAttempts = 300*time.Millisecond, 2
	r, err := lambdafn.NewResolver(context.Background(), cfg, kmsseal.FromConfig)
	if err != nil {
		t.Fatal(err)
	}
	resolve := o.Resolve(r.WithLogger(o.Logger()).Resolve)
	const trace = "1-5759e988-bd862e3fe1be46a994272793"
	res, err := resolve(invocationContext("sdklog-1", "Root="+trace+";Sampled=1"), lambdafn.ResolveRequest{Tenant: "acme", TokenID: "openai"})
	if err != nil || res.Value != value {
		t.Fatalf("resolve: %+v %v", res.Error, err)
	}
	if n := cut.calls.Load(); n != 2 {
		t.Fatalf("%d KMS calls, want the cut one and its retry", n)
	}

	never := []string{value, secret, session, "AWS4-HMAC-SHA256", "Signature=", "Credential="}
	cut.mu.Lock()
	for _, b := range cut.seen {
		never = append(never, string(b))
		if half := b[:len(b)/2]; len(half) > 8 {
			never = append(never, string(half))
		}
	}
	cut.mu.Unlock()
	logs, emf := out.lines(t, never...) // every line JSON, none holding what must not be logged
	var sdk []map[string]any
	for _, l := range logs {
		if l["logger"] == "aws-sdk" {
			sdk = append(sdk, l)
		}
	}
	if len(sdk) != 1 || len(logs) != 2 || len(emf) != 1 {
		t.Fatalf("%d SDK lines, %d log lines, %d metrics lines; want 1, 2 (the SDK's and the resolve) and 1: %v", len(sdk), len(logs), len(emf), logs)
	}
	want(t, "the SDK's line", sdk[0], map[string]any{"level": "WARN", "function": "resolve-token", "traceId": trace, "coldStart": true})
	if msg, _ := sdk[0]["msg"].(string); !strings.HasPrefix(msg, "failed to discard remaining HTTP response body") {
		t.Errorf("the SDK's line: msg %q, want the SDK's warning", msg)
	}
}
