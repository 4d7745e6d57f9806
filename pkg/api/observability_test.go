package api_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// logLine is one request's log line as the runbook's queries read it.
type logLine struct {
	Level     string  `json:"level"`
	Msg       string  `json:"msg"`
	RequestID string  `json:"requestId"`
	Status    float64 `json:"status"`
	Error     string  `json:"error"`
}

// lastLogLine is the newest line of h's log.
func lastLogLine(t *testing.T, h *harness) logLine {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(h.logs.String()), "\n")
	var l logLine
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &l); err != nil {
		t.Fatalf("log line %q: %v", lines[len(lines)-1], err)
	}
	return l
}

// Every answer's log line is at the level its status calls for: ERROR for every 5xx (the
// runbook in docs/operations.md selects level = "ERROR"), with the cause; INFO for the rest.
func TestLogLevelFollowsStatus(t *testing.T) {
	// Not parallel: the test KMS is found through the environment (newKMSHarness).
	h, proxy := proxiedHarness(t, 2*time.Second, 10*time.Second)
	kms, srv := newKMSHarness(t)
	mgr := h.manager()
	h.create("openai", "OpenAI", "sk-level-value")
	cases := []struct {
		name                    string
		h                       *harness
		before                  func()
		method, path, body, jwt string
		status                  int
	}{
		{"read", h, nil, "GET", base + "/openai", "", mgr, 200},
		{"rename", h, nil, "PUT", base + "/openai", `{"name":"Renamed"}`, mgr, 204},
		{"missing", h, nil, "GET", base + "/nope", "", mgr, 404},
		{"bad body", h, nil, "PUT", base + "/openai", `{"name":`, mgr, 400},
		{"no token", h, nil, "GET", base + "/openai", "", "", 401},
		{"other tenant", h, nil, "GET", "/ai-service/globex/agentic/tokens/openai", "", mgr, 403},
		{"no route", h, nil, "GET", "/nowhere", "", mgr, 404},
		{"store throttled, read", h, func() { proxy.Throttle(-1) }, "GET", base + "/openai", "", mgr, 503},
		{"store throttled, list", h, nil, "GET", base, "", mgr, 503},
		{"store throttled, write", h, nil, "PUT", base + "/openai", `{"name":"Again"}`, mgr, 503},
		{"store back", h, func() { proxy.Throttle(0) }, "GET", base + "/openai", "", mgr, 200},
		{"key service unavailable", kms, func() { srv.Throttle(-1) }, "PUT", base + "/k1", `{"name":"K","value":"sk-kms-level"}`, mgr, 503},
		{"key service refused", kms, func() { srv.Throttle(0); srv.Refuse("AccessDeniedException") }, "PUT", base + "/k2", `{"name":"K","value":"sk-kms-level"}`, mgr, 502},
		{"key service back", kms, func() { srv.Refuse("") }, "PUT", base + "/k3", `{"name":"K","value":"sk-kms-level"}`, mgr, 201},
	}
	for _, c := range cases {
		if c.before != nil {
			c.before()
		}
		res := c.h.do(c.method, c.path, c.body, c.jwt)
		if res.status != c.status {
			t.Fatalf("%s: %d %s, want %d", c.name, res.status, res.body, c.status)
		}
		l := lastLogLine(t, c.h)
		want := map[bool]string{true: "ERROR", false: "INFO"}[c.status >= 500]
		if l.Msg != "request" || int(l.Status) != c.status || l.Level != want || (want == "ERROR") != (l.Error != "") {
			t.Errorf("%s: %d logged as %+v, want level %s (with the cause when ERROR)", c.name, c.status, l, want)
		}
	}
}

// levelFollowsStatus checks every request line of a harness's log: ERROR exactly when its
// status is a 5xx or its error is one. Each harness runs it when its test ends.
func levelFollowsStatus(t testing.TB, logs []byte) {
	for _, raw := range strings.Split(strings.TrimSpace(string(logs)), "\n") {
		var l logLine
		if json.Unmarshal([]byte(raw), &l) != nil || l.Msg != "request" {
			continue
		}
		if (l.Level == "ERROR") != (l.Status >= 500 || l.Error != "") {
			t.Errorf("a %v answer logged at %s: %s", l.Status, l.Level, raw)
		}
	}
}

// Every answer names its request as its log line does: the X-Request-Id header on each, the
// same id in each error body's requestId (the 401's fault body too), and one log line with
// that id and the answer's status. (The harness checks the first two on every answer of every
// test; this one goes through each kind of answer.)
func TestEveryAnswerNamesItsRequest(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	mgr := h.manager()
	h.create("openai", "OpenAI", "sk-named-value")
	h.do("PUT", base+"/openai/usages/agent/a", "", mgr)
	cases := []struct {
		name                    string
		method, path, body, jwt string
		status                  int
	}{
		{"get", "GET", base + "/openai", "", mgr, 200},
		{"list", "GET", base, "", mgr, 200},
		{"create", "PUT", base + "/other", `{"name":"O","value":"sk-other"}`, mgr, 201},
		{"update", "PUT", base + "/other", `{"name":"P"}`, mgr, 204},
		{"bad input", "PUT", base + "/other", `{"name":""}`, mgr, 400},
		{"no token", "GET", base, "", "", 401},
		{"bad token", "GET", base, "", "not-a-jwt", 401},
		{"missing scope", "PUT", base + "/other", `{"name":"Q"}`, h.jwt("acme", "ai.agent_read"), 403},
		{"not found", "GET", base + "/nope", "", mgr, 404},
		{"no route", "GET", "/nowhere", "", mgr, 404},
		{"method not allowed", "POST", base + "/openai", "", mgr, 405},
		{"in use", "DELETE", base + "/openai", "", mgr, 409},
		{"too large", "POST", base + "/search", `{"q":"` + strings.Repeat("x", 70_000) + `"}`, mgr, 413},
		{"not JSON", "PUT", base + "/other", `name=x`, mgr, 415},
	}
	seen := map[string]bool{}
	for _, c := range cases {
		var headers []string
		if c.name == "not JSON" {
			headers = []string{"Content-Type", "application/x-www-form-urlencoded"}
		}
		res := h.do(c.method, c.path, c.body, c.jwt, headers...)
		rid := res.header.Get("X-Request-Id")
		if res.status != c.status || rid == "" || seen[rid] {
			t.Fatalf("%s: %d, X-Request-Id %q (seen before: %v), want %d", c.name, res.status, rid, seen[rid], c.status)
		}
		seen[rid] = true
		if l := lastLogLine(t, h); l.RequestID != rid || int(l.Status) != c.status {
			t.Errorf("%s: the log line %+v, want request %s with status %d", c.name, l, rid, c.status)
		}
		if c.status >= 400 {
			var body struct {
				RequestID string `json:"requestId"`
			}
			if err := json.Unmarshal(res.body, &body); err != nil || body.RequestID != rid {
				t.Errorf("%s: body %s, want requestId %s", c.name, res.body, rid)
			}
		}
	}
}
