package functions_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"aitokens/pkg/devtools/kmstest"
	"aitokens/pkg/devtools/runtimeapi"
)

// relayAnswer is a relay function's streamed answer, split as a function URL does it: the JSON
// prelude (status and headers), 8 NUL bytes, the body.
type relayAnswer struct {
	StatusCode int               `json:"statusCode"`
	Headers    map[string]string `json:"headers"`
	Body       string            `json:"-"`
}

func splitStream(t *testing.T, raw []byte) relayAnswer {
	t.Helper()
	prelude, body, ok := bytes.Cut(raw, make([]byte, 8))
	var a relayAnswer
	if !ok || json.Unmarshal(prelude, &a) != nil {
		t.Fatalf("not a prelude, 8 NUL bytes and a body: %q", raw)
	}
	a.Body = string(body)
	return a
}

// The relay's real binary behind a function URL event (events/relay.json), as in AWS: it never
// allows plain HTTP or loopback upstreams (pkg/relay's Dev is serve --dev's alone), so a call
// that gets past every check of the token still cannot reach an upstream on this machine; the
// success path (value injected, echo redacted, a stream as it comes) is therefore tested in
// pkg/relay and through serve --dev (cmd/aitokens TestServeDevMountsTheRelay). Here: each
// refusal end to end, answered as a stream (prelude, then the API's error body with the
// Lambda request id), one log line and one metrics line per call, nothing of the value in
// any of them, and the AWS calls recorded for the relay role's IAM check.
func TestRelayFunction(t *testing.T) {
	t.Parallel() // waits on processes and a database, not on this machine's cores
	e := newEnv(t)
	keys := kmstest.New()
	defer keys.Close()
	for i, kv := range e.vars {
		if strings.HasPrefix(kv, "MASTER_KEY_FILE=") { // seal with the test KMS: its calls are recorded
			e.vars[i] = "MASTER_KEY_FILE="
		}
	}
	e.vars = append(e.vars, "KMS_KEY_ID="+kmstest.KeyARN, "AWS_ENDPOINT_URL_KMS="+keys.URL, "SERVICE_NAME=ai-tokens-test")
	var reached atomic.Int64
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { reached.Add(1) }))
	defer up.Close()
	_, upPort, _ := net.SplitHostPort(strings.TrimPrefix(up.URL, "http://"))
	const value = "sk-example-not-a-real-key" // the upsert sample's
	create := func(id, egress string) {
		res := e.call("upsert-token", event(t, "upsert-token", func(ev map[string]any) {
			withPath("/ai-service/acme/agentic/tokens/"+id, id)(ev)
			if egress != "" {
				var body map[string]any
				json.Unmarshal([]byte(ev["body"].(string)), &body)
				body["egress"] = json.RawMessage(egress)
				raw, _ := json.Marshal(body)
				ev["body"] = string(raw)
			}
		}))
		if res.StatusCode != 201 {
			t.Fatalf("create %s: %+v", id, res)
		}
	}
	inject := `"inject":{"in":"header","name":"Authorization","template":"Bearer {{value}}"}`
	create("openai", `{"allowedHosts":["api.openai.com"],`+inject+`}`)
	create("local", `{"allowedHosts":["localhost:`+upPort+`"],`+inject+`}`)
	create("plain", "")

	proc, err := runtimeapi.Start(runtimeapi.Invocation{Binary: filepath.Join(binDir, "relay"), Function: "relay", Env: e.vars})
	if err != nil {
		t.Fatal(err)
	}
	defer proc.Stop()
	cases := []struct {
		name, path, consumer string
		status               int
		outcome              string
	}{
		{"unknown token", "/relay/acme/nope/api.openai.com/v1/models", "", 404, "not_found"},
		{"another tenant's token", "/relay/globex/openai/api.openai.com/v1/models", "", 404, "not_found"},
		{"a host the policy does not list", "/relay/acme/openai/example.com/v1/models", "", 403, "host_not_allowed"},
		{"the listed host on another port", "/relay/acme/openai/api.openai.com:8443/v1/models", "", 403, "host_not_allowed"},
		{"a token without a policy", "/relay/acme/plain/api.openai.com/v1/models", "", 403, "not_relayable"},
		{"a loopback upstream, though its policy lists it", "/relay/acme/local/localhost:" + upPort + "/v1/models", "", 502, "upstream_unreachable"},
		{"a bad consumer header", "/relay/acme/openai/api.openai.com/v1/models", "agent", 400, "invalid"},
		{"no relay path", "/relay/acme", "", 404, "not_found"},
	}
	ctx := context.Background()
	for i, c := range cases {
		ev := event(t, "relay", func(ev map[string]any) {
			ev["rawPath"] = c.path
			ev["requestContext"].(map[string]any)["http"].(map[string]any)["path"] = c.path
			ev["headers"].(map[string]any)["x-token-consumer"] = c.consumer
			if c.consumer == "" {
				delete(ev["headers"].(map[string]any), "x-token-consumer")
			}
		})
		res, err := proc.Invoke(ctx, ev)
		if err != nil || !res.Streamed || res.StreamErrorType != "" {
			t.Fatalf("%s: %v, streamed %v, stream error %q %s\n%s", c.name, err, res.Streamed, res.StreamErrorType, res.StreamError, proc.Logs())
		}
		a := splitStream(t, res.Response)
		var body struct {
			Code      int    `json:"code"`
			RequestID string `json:"requestId"`
		}
		if a.StatusCode != c.status || json.Unmarshal([]byte(a.Body), &body) != nil || body.Code != c.status || body.RequestID != res.RequestID ||
			a.Headers["Content-Type"] != "application/json" || a.Headers["X-Request-Id"] != res.RequestID {
			t.Errorf("%s: %d %v %s, want %d with the Lambda request id %s", c.name, a.StatusCode, a.Headers, a.Body, c.status, res.RequestID)
		}
		if strings.Contains(string(res.Response), value) {
			t.Errorf("%s: the value is in the answer", c.name)
		}
		// The process's output reaches its log through a pipe: wait for this call's lines.
		var logs, emf []map[string]any
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			if logs, emf = invocationLines(t, "relay", proc.Logs(), value, "Bearer", "AWS4-HMAC-SHA256", "IQoJb3JpZ2luX2VjEXAMPLE"); len(emf) > i || time.Now().After(deadline) {
				break
			}
		}
		if len(logs) != i+1 || len(emf) != i+1 {
			t.Fatalf("%s: after %d calls %d log lines and %d metrics lines, want one of each per call:\n%s", c.name, i+1, len(logs), len(emf), proc.Logs())
		}
		line, m := logs[i], emf[i]
		for k, v := range map[string]any{"msg": "relay", "function": "relay", "requestId": res.RequestID, "traceId": res.TraceID,
			"coldStart": i == 0, "status": float64(c.status), "outcome": c.outcome} {
			if line[k] != v {
				t.Errorf("%s log line: %s = %#v, want %#v (%v)", c.name, k, line[k], v, line)
			}
		}
		for k, v := range map[string]any{"Service": "ai-tokens-test", "Function": "relay", "requestId": res.RequestID, "traceId": res.TraceID,
			"Requests": 1.0, "ColdStart": map[bool]float64{true: 1, false: 0}[i == 0], "status": strconv.Itoa(c.status)} {
			if m[k] != v {
				t.Errorf("%s metrics line: %s = %#v, want %#v (%v)", c.name, k, m[k], v, m)
			}
		}
	}
	if n := reached.Load(); n != 0 {
		t.Errorf("the loopback upstream was reached %d times", n)
	}
	// The refusals are in the tokens' trails (with the relay action), never the value.
	trail := e.call("list-token-events", event(t, "list-token-events", nil))
	if !strings.Contains(trail.Body, `"action":"relay"`) || !strings.Contains(trail.Body, `"outcome":"host_not_allowed"`) || strings.Contains(trail.Body, value) {
		t.Errorf("openai's trail: %s", trail.Body)
	}
}
