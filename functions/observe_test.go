package functions_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"aitokens/pkg/api"
	"aitokens/pkg/devtools/ebtest"
	"aitokens/pkg/devtools/emfcheck"
	"aitokens/pkg/devtools/kmstest"
	"aitokens/pkg/devtools/runtimeapi"
)

// A JWT as a client would send it: it must never reach a log line.
const clientJWT = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImRldiJ9.eyJzdWIiOiJhZG1pbi11aSIsInRlbmFudCI6ImFjbWUifQ.c2lnbmF0dXJlLW5vdC1hLXJlYWwtb25l"

// invocationLines splits an invocation's output into its log lines and its metrics lines,
// checking every metrics line against the EMF specification and every line for the value, its
// hint and the JWT. The AWS SDK's own lines ("logger":"aws-sdk", a warning after an attempt cut
// off under load, which the SDK then retries) are checked like every line but not counted: the
// promise of one log line per call is the function's, and a loaded machine may add a retry.
func invocationLines(t *testing.T, fn string, out []byte, never ...string) (logs, emf []map[string]any) {
	t.Helper()
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := sc.Bytes()
		for _, s := range never {
			if bytes.Contains(line, []byte(s)) {
				t.Fatalf("%s: a line holds %q: %s", fn, s, line)
			}
		}
		var m map[string]any
		if err := json.Unmarshal(line, &m); err != nil {
			t.Fatalf("%s: not a JSON line: %s", fn, line)
		}
		if emfcheck.Is(line) {
			if err := emfcheck.Check(line); err != nil {
				t.Fatalf("%s: %v", fn, err)
			}
			emf = append(emf, m)
		} else if m["logger"] == "aws-sdk" {
			if m["level"] != "WARN" && m["level"] != "DEBUG" {
				t.Fatalf("%s: an SDK line at %v: %s", fn, m["level"], line)
			}
		} else {
			logs = append(logs, m)
		}
	}
	return logs, emf
}

// Every function, run as its real binary on its sample event, writes one log line for its
// request (or resolve) and one metrics line after it: the same Lambda request id and X-Ray
// trace id in both, the function, route, tenant, status and duration, the cold start; the
// sealing functions count their KMS calls and resolve its cache. No line holds the value, its
// hint or the caller's JWT.
func TestEveryFunctionLogsAndMeasuresItsInvocations(t *testing.T) {
	t.Parallel() // waits on processes and a database, not on this machine's cores
	e := newEnv(t)
	keys := kmstest.New()
	defer keys.Close()
	for i, kv := range e.vars {
		if strings.HasPrefix(kv, "MASTER_KEY_FILE=") { // seal with the test KMS instead
			e.vars[i] = "MASTER_KEY_FILE="
		}
	}
	bus := ebtest.New() // publish-events puts its sample's events here (not one log line each)
	defer bus.Close()
	e.vars = append(e.vars, "KMS_KEY_ID="+kmstest.KeyARN, "AWS_ENDPOINT_URL_KMS="+keys.URL, "SERVICE_NAME=ai-tokens-test",
		"AWS_ENDPOINT_URL_EVENTBRIDGE="+bus.URL, "EVENT_BUS_NAME="+ebtest.Bus)
	const value, hint = "sk-example-not-a-real-key", "…-key"
	routes := map[string]api.Route{}
	for _, r := range api.Routes {
		routes[r.Function] = r
	}
	// In an order in which each succeeds: create, read, change, use, resolve, delete; then the
	// event functions (on their sample events, which hold no tenant's request).
	order := []string{"upsert-token", "get-token", "patch-token", "list-tokens", "search-tokens", "register-token-usage",
		"list-token-usages", "unregister-token-usage", "resolve-token", "relay", "list-token-events", "delete-token",
		"publish-events", "sweep-expiring"}
	internal := map[string]string{"resolve-token": "resolve", "publish-events": "publish", "sweep-expiring": "sweep", "relay": "relay"} // their msg
	if len(order) != len(functionNames()) {
		t.Fatalf("the order names %d functions, there are %d", len(order), len(functionNames()))
	}
	for _, fn := range order {
		ev := event(t, fn, func(ev map[string]any) {
			if headers, ok := ev["headers"].(map[string]any); ok {
				headers["authorization"] = "Bearer " + clientJWT
			}
		})
		res := e.invoke(fn, ev)
		if res.Response == nil || bytes.Contains(res.Response, []byte(`"statusCode":5`)) || bytes.Contains(res.Response, []byte(`"error"`)) {
			t.Fatalf("%s: %s %s\n%s", fn, res.Response, res.Error, res.Logs)
		}
		logs, emf := invocationLines(t, fn, res.Logs, value, hint, clientJWT, "Bearer")
		if len(logs) != 1 || len(emf) != 1 {
			t.Fatalf("%s: %d log lines and %d metrics lines, want 1 and 1:\n%s", fn, len(logs), len(emf), res.Logs)
		}
		line, m := logs[0], emf[0]
		wantRoute, wantMsg, wantTenant := routes[fn].Path, "request", any("acme")
		if msg, ok := internal[fn]; ok {
			wantRoute, wantMsg = fn, msg
		}
		if fn == "publish-events" || fn == "sweep-expiring" {
			wantTenant = nil // an invocation of no one tenant
		}
		for k, v := range map[string]any{"msg": wantMsg, "function": fn, "requestId": res.RequestID, "traceId": res.TraceID,
			"coldStart": true, "route": wantRoute, "tenant": wantTenant} {
			if line[k] != v {
				t.Errorf("%s log line: %s = %#v, want %#v (%v)", fn, k, line[k], v, line)
			}
		}
		if _, ok := line["status"].(float64); !ok {
			t.Errorf("%s log line without status: %v", fn, line)
		}
		if _, ok := internal[fn]; !ok {
			// A route's answer names its request as its log line does (the Lambda request id),
			// and the line also has API Gateway's id of it.
			var out httpResponse
			var sent struct {
				RequestContext struct {
					RequestID string `json:"requestId"`
				} `json:"requestContext"`
			}
			_ = json.Unmarshal(res.Response, &out)
			_ = json.Unmarshal(ev, &sent)
			if out.Headers[api.RequestIDHeader] != res.RequestID || sent.RequestContext.RequestID == "" || line["apiRequestId"] != sent.RequestContext.RequestID {
				t.Errorf("%s: %s header %q, API Gateway's id %q; want the Lambda request id %q and the event's %q (%v)", fn, api.RequestIDHeader,
					out.Headers[api.RequestIDHeader], line["apiRequestId"], res.RequestID, sent.RequestContext.RequestID, line)
			}
		}
		if _, ok := line["durationMs"].(float64); !ok {
			t.Errorf("%s log line without durationMs: %v", fn, line)
		}
		for k, v := range map[string]any{"Service": "ai-tokens-test", "Function": fn, "requestId": res.RequestID, "traceId": res.TraceID,
			"Requests": 1.0, "ColdStart": 1.0, "5xx": 0.0} {
			if m[k] != v {
				t.Errorf("%s metrics line: %s = %#v, want %#v (%v)", fn, k, m[k], v, m)
			}
		}
		switch fn {
		case "upsert-token":
			if m["KMSCalls"] != 1.0 {
				t.Errorf("upsert-token created with %v KMS calls: %v", m["KMSCalls"], m)
			}
		case "resolve-token":
			if m["KMSCalls"] != 1.0 || m["ResolveCacheMisses"] != 1.0 {
				t.Errorf("a cold resolve-token: %v", m)
			}
		case "relay": // the sample's token has no egress policy: refused before anything is opened
			kms, _ := m["KMSCalls"].(float64)
			misses, _ := m["ResolveCacheMisses"].(float64)
			if kms != 0 || misses != 0 || m["status"] != "403" || m["tokenId"] != "openai" {
				t.Errorf("a cold relay on a token without a policy: %v", m)
			}
		case "publish-events": // the sample holds two audit events and a token's change
			if m["EventsPublished"] != 2.0 || m["EventsFailed"] != 0.0 || len(bus.Entries()) != 2 {
				t.Errorf("publish-events on its sample: %v, %d entries", m, len(bus.Entries()))
			}
		case "sweep-expiring":
			if m["RemindersWritten"] != 0.0 {
				t.Errorf("sweep-expiring with nothing due: %v", m)
			}
		default:
			if _, ok := m["KMSCalls"]; ok {
				t.Errorf("%s counts KMS calls: %v", fn, m)
			}
		}
	}
}

// An error answer of a route and a refused resolve, of the real binaries, carry the Lambda
// request id that their log lines have: in the X-Request-Id header and the body's requestId.
func TestErrorAnswersNameTheirRequest(t *testing.T) {
	t.Parallel() // waits on processes and a database, not on this machine's cores
	e := newEnv(t)
	for _, fn := range []string{"get-token", "resolve-token"} {
		res := e.invoke(fn, event(t, fn, nil)) // the sample's token does not exist in a new table
		logs, _ := invocationLines(t, fn, res.Logs)
		if len(logs) != 1 || logs[0]["requestId"] != res.RequestID || res.RequestID == "" {
			t.Fatalf("%s: log lines %v, want one with the request id %q", fn, logs, res.RequestID)
		}
		var body struct {
			RequestID string `json:"requestId"`
			Code      int    `json:"code"`
			Error     *struct {
				RequestID string `json:"requestId"`
				Code      int    `json:"code"`
			} `json:"error"`
		}
		if fn == "resolve-token" {
			if err := json.Unmarshal(res.Response, &body); err != nil || body.Error == nil || body.Error.Code != 404 || body.Error.RequestID != res.RequestID {
				t.Errorf("%s: %s, want a 404 error with requestId %q", fn, res.Response, res.RequestID)
			}
			continue
		}
		var out httpResponse
		if err := json.Unmarshal(res.Response, &out); err != nil || out.StatusCode != 404 || out.Headers[api.RequestIDHeader] != res.RequestID ||
			json.Unmarshal([]byte(out.Body), &body) != nil || body.RequestID != res.RequestID {
			t.Errorf("%s: %s, want a 404 with %s and requestId %q", fn, res.Response, api.RequestIDHeader, res.RequestID)
		}
	}
}

// A warm process: the second invocation is no cold start, in its log line and its metrics.
func TestWarmInvocationIsNoColdStart(t *testing.T) {
	e := newEnv(t)
	p, err := runtimeapi.Start(runtimeapi.Invocation{Binary: filepath.Join(binDir, "get-token"), Function: "get-token", Env: e.vars})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	for i, cold := range []bool{true, false, false} {
		res, err := p.Invoke(context.Background(), event(t, "get-token", nil))
		if err != nil {
			t.Fatal(err)
		}
		// The process's output reaches its log through a pipe: wait for it, within a deadline.
		var logs, emf []map[string]any
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			if logs, emf = invocationLines(t, "get-token", p.Logs()); len(emf) > i || time.Now().After(deadline) {
				break
			}
		}
		if len(logs) != i+1 || len(emf) != i+1 {
			t.Fatalf("after %d invocations: %d log lines, %d metrics lines", i+1, len(logs), len(emf))
		}
		if logs[i]["coldStart"] != cold || emf[i]["ColdStart"] != map[bool]float64{true: 1, false: 0}[cold] || logs[i]["traceId"] != res.TraceID {
			t.Errorf("invocation %d: log %v, metrics %v", i+1, logs[i], emf[i])
		}
	}
}
