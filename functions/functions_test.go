// Package functions_test runs every Lambda function's real binary through the in-process
// Runtime API against DynamoDB Local, and checks template.yaml, the events and the Makefile
// against the route table and the internal functions.
package functions_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"aitokens/pkg/api"
	"aitokens/pkg/devtools/runtimeapi"
	"aitokens/pkg/devtools/testenv"
	"aitokens/pkg/seal"
	"aitokens/pkg/service"
	"aitokens/pkg/store"
	"aitokens/pkg/token"
)

// internalFunctions are the functions without an API route: resolve-token (invoked directly
// by the platform's services), publish-events (the table's stream), sweep-expiring (a
// schedule) and relay (its own function URL). The template test checks each one's trigger and
// permissions.
var internalFunctions = []string{"resolve-token", "publish-events", "sweep-expiring", "relay"}

// functionNames is every function: one per route plus the internal ones.
func functionNames() []string {
	var names []string
	for _, r := range api.Routes {
		names = append(names, r.Function)
	}
	return append(names, internalFunctions...)
}

var binDir string

func TestMain(m *testing.M) {
	os.Exit(testenv.Main(&buildFirst{m}))
}

// buildFlags are the Makefile's LAMBDA_BUILD flags, for this machine's OS and architecture.
var buildFlags = []string{"-tags", "lambda.norpc", "-trimpath", "-ldflags=-s -w"}

// linked is each function's transitive imports (go list's Deps), listed in one go list for the
// tests that check what a function links.
var linked = sync.OnceValues(func() (map[string]map[string]bool, error) {
	args := append([]string{"list"}, buildFlags...)
	args = append(args, "-f", `{{.ImportPath}} {{join .Deps " "}}`)
	for _, fn := range functionNames() {
		args = append(args, "./"+fn)
	}
	out, err := exec.Command("go", args...).Output()
	if err != nil {
		return nil, fmt.Errorf("go list: %w", err)
	}
	deps := map[string]map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		set := map[string]bool{}
		for _, dep := range fields[1:] {
			set[dep] = true
		}
		deps[path.Base(fields[0])] = set
	}
	return deps, nil
})

// links reports whether function fn links a package whose import path starts with prefix.
func links(t *testing.T, fn, prefix string) bool {
	t.Helper()
	deps, err := linked()
	if err != nil {
		t.Fatal(err)
	}
	if deps[fn] == nil {
		t.Fatalf("go list did not list %s", fn)
	}
	for dep := range deps[fn] {
		if dep == prefix || strings.HasPrefix(dep, prefix+"/") {
			return true
		}
	}
	return false
}

// buildFirst builds every function's binary (for this machine) once before the tests run.
type buildFirst struct{ m *testing.M }

func (b *buildFirst) Run() int {
	dir, err := os.MkdirTemp("", "functions-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	binDir = dir
	if err := buildFunctions(dir); err != nil {
		fmt.Fprintln(os.Stderr, "build functions:", err)
		return 1
	}
	runtimeapi.RewriteEnv(recorder.Env) // every function's AWS calls are recorded (iam_test.go)
	defer recorder.Close()
	code := b.m.Run()
	if code == 0 && recordIsWhole(testenv.Client() != nil) {
		code = checkRecordAgainstRoles()
	}
	return code
}

// buildFunctions puts every function's binary in dir. `go install` into a directory kept
// between runs relinks only the functions whose code changed (linking all 13 was ~12 CPU-s of
// every run); with -trimpath a binary is the same from any checkout of the same code. A lock
// serialises runs from several checkouts, and each run copies the binaries out before it lets
// go, so that no test executes a binary that another run is replacing.
func buildFunctions(dir string) error {
	cache, err := os.UserCacheDir()
	if err != nil {
		return err
	}
	gobin := filepath.Join(cache, "aitokens", "functions-test-bin")
	if err := os.MkdirAll(gobin, 0o700); err != nil {
		return err
	}
	lock, err := os.OpenFile(gobin+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	defer lock.Close() // releases the lock
	for deadline := time.Now().Add(5 * time.Minute); ; {
		err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if err != syscall.EWOULDBLOCK || time.Now().After(deadline) {
			return fmt.Errorf("lock %s: %w", lock.Name(), err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	args := append([]string{"install"}, buildFlags...)
	for _, fn := range functionNames() {
		args = append(args, "./"+fn)
	}
	cmd := exec.Command("go", args...)
	cmd.Env = append(os.Environ(), "GOBIN="+gobin)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return err
	}
	for _, fn := range functionNames() {
		raw, err := os.ReadFile(filepath.Join(gobin, fn))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, fn), raw, 0o700); err != nil {
			return err
		}
	}
	return nil
}

type env struct {
	t    *testing.T
	vars []string
}

func newEnv(t *testing.T) *env { return newEnvOn(t, testenv.NewTable(t)) }

// newEnvOn is newEnv on a table of the caller's (one with its stream: NewTableWithStream).
func newEnvOn(t *testing.T, table string) *env {
	return &env{t: t, vars: []string{
		"TABLE_NAME=" + table,
		"DYNAMODB_ENDPOINT=" + testenv.Endpoint(),
		"MASTER_KEY_FILE=" + filepath.Join(t.TempDir(), "master.key"),
		"AWS_REGION=us-east-1", "AWS_ACCESS_KEY_ID=local", "AWS_SECRET_ACCESS_KEY=local",
	}}
}

// event reads events/<fn>.json and lets the test change it.
func event(t *testing.T, fn string, change func(map[string]any)) []byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "events", fn+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var ev map[string]any
	if err := json.Unmarshal(raw, &ev); err != nil {
		t.Fatal(err)
	}
	if change != nil {
		change(ev)
	}
	out, _ := json.Marshal(ev)
	return out
}

type httpResponse struct {
	StatusCode int               `json:"statusCode"`
	Headers    map[string]string `json:"headers"`
	Body       string            `json:"body"`
}

func (e *env) invoke(fn string, ev []byte) runtimeapi.Result {
	e.t.Helper()
	res, err := runtimeapi.Invoke(context.Background(), runtimeapi.Invocation{
		Binary: filepath.Join(binDir, fn), Function: fn, Env: e.vars, Event: ev,
	})
	if err != nil {
		e.t.Fatalf("%s: %v\n%s", fn, err, res.Logs)
	}
	return res
}

func (e *env) call(fn string, ev []byte) httpResponse {
	e.t.Helper()
	res := e.invoke(fn, ev)
	var out httpResponse
	if err := json.Unmarshal(res.Response, &out); err != nil {
		e.t.Fatalf("%s: response %s: %v (error %s)", fn, res.Response, err, res.Error)
	}
	return out
}

func TestEachFunctionThroughTheRuntimeAPI(t *testing.T) {
	t.Parallel() // waits on processes and a database, not on this machine's cores
	e := newEnv(t)
	steps := []struct {
		fn       string
		change   func(map[string]any)
		status   int
		contains string
	}{
		{"get-token", nil, 404, `"code":404`},
		{"upsert-token", nil, 201, `{"id":"openai"}`},
		{"upsert-token", nil, 204, ``}, // same value again: an update
		{"get-token", nil, 200, `"name":"OpenAI Token"`},
		{"patch-token", nil, 204, ``},
		{"list-tokens", nil, 200, `"name":"New OpenAI Token"`},
		{"search-tokens", nil, 200, `[{"id":"openai","name":"New OpenAI Token"}]`},
		{"search-tokens", func(ev map[string]any) { ev["body"] = `{"q":"name:(~unbalanced"}` }, 400, `missing )`},
		{"get-token", func(ev map[string]any) { delete(ev["requestContext"].(map[string]any), "authorizer") }, 401, `"faultstring":"Invalid access token"`},
		{"upsert-token", withScope("ai.agent_read"), 403, `"code":403`},
		{"delete-token", withScope("ai.agent_read"), 403, `"code":403`},
		{"get-token", withScope("ai.agent_manage"), 403, `"code":403`},
		{"get-token", withTenant("globex"), 403, `"code":403`},
		{"get-token", withPath("/ai-service/acme/agentic/tokens/a%2Fb", "a%2Fb"), 400, `"field":"id"`},
		{"get-token", withPath("/ai-service/acme/agentic/tokens/my-token_1", "my-token_1"), 404, `my-token_1`},
		{"register-token-usage", nil, 201, `"refId":"support-agent"`},
		{"list-token-usages", nil, 200, `"kind":"agent","refId":"support-agent"`},
		{"delete-token", nil, 409, `"type":"force"`},
		{"unregister-token-usage", nil, 204, ``},
		{"delete-token", nil, 204, ``},
		{"get-token", nil, 404, `"code":404`},
		{"register-token-usage", nil, 404, `"code":404`},
		{"list-token-usages", nil, 404, `"code":404`},
		{"list-tokens", func(ev map[string]any) { ev["rawQueryString"] = "pageSize=0" }, 400, `"field":"pageSize"`},
		{"patch-token", withScope("ai.agent_read"), 403, `"code":403`},
		{"unregister-token-usage", withScope("ai.agent_read"), 403, `"code":403`},
		{"register-token-usage", withTenant("globex"), 403, `"code":403`},
		// The trail of the deleted token, newest first, with the authorizer's sub as actor.
		{"list-token-events", nil, 200, `[{"at":`},
		{"list-token-events", nil, 200, `"action":"delete","actor":"admin-ui"`},
		{"list-token-events", withTenant("globex"), 403, `"code":403`},
		{"list-token-events", withScope("ai.agent_manage"), 403, `"code":403`},
	}
	for i, s := range steps {
		res := e.call(s.fn, event(t, s.fn, s.change))
		if res.StatusCode != s.status || !strings.Contains(res.Body, s.contains) {
			t.Fatalf("step %d %s: %d %s, want %d containing %s", i, s.fn, res.StatusCode, res.Body, s.status, s.contains)
		}
		if res.Body != "" && res.Headers["Content-Type"] != "application/json" {
			t.Fatalf("step %d %s: Content-Type %q", i, s.fn, res.Headers["Content-Type"])
		}
	}
}

func TestResolveFunction(t *testing.T) {
	t.Parallel() // waits on processes and a database, not on this machine's cores
	e := newEnv(t)
	if res := e.call("upsert-token", event(t, "upsert-token", nil)); res.StatusCode != 201 {
		t.Fatalf("create: %+v", res)
	}
	cases := []struct {
		name, event, want string
	}{
		{"value", `{"tenant":"acme","tokenId":"openai"}`, `{"value":"sk-example-not-a-real-key"}`},
		{"missing token", `{"tenant":"acme","tokenId":"nope"}`, `"code":404`},
		{"other tenant", `{"tenant":"globex","tokenId":"openai"}`, `"code":404`},
		{"bad id", `{"tenant":"acme","tokenId":"../x"}`, `"code":400`},
		{"bad tenant", `{"tenant":"ACME","tokenId":"openai"}`, `"code":400`},
	}
	for _, c := range cases {
		res := e.invoke("resolve-token", []byte(c.event))
		if !strings.Contains(string(res.Response), c.want) {
			t.Errorf("%s: %s, want %s", c.name, res.Response, c.want)
		}
		if c.name != "value" && strings.Contains(string(res.Response), "sk-example") {
			t.Errorf("%s leaks the value", c.name)
		}
		if strings.Contains(string(res.Logs), "sk-example") {
			t.Errorf("%s: the value reached the log: %s", c.name, res.Logs)
		}
	}
	// Resolving records lastUsedAt, shown in the token's metadata.
	got := e.call("get-token", event(t, "get-token", nil))
	if !strings.Contains(got.Body, `"lastUsedAt"`) {
		t.Fatalf("no lastUsedAt after resolve: %s", got.Body)
	}
}

func withScope(scope string) func(map[string]any) {
	return func(ev map[string]any) {
		jwt := ev["requestContext"].(map[string]any)["authorizer"].(map[string]any)["jwt"].(map[string]any)
		jwt["scopes"] = []string{scope}
		jwt["claims"].(map[string]any)["scope"] = scope
	}
}

func withTenant(tenant string) func(map[string]any) {
	return func(ev map[string]any) {
		claims := ev["requestContext"].(map[string]any)["authorizer"].(map[string]any)["jwt"].(map[string]any)["claims"].(map[string]any)
		claims["tenant"] = tenant
	}
}

func withPath(rawPath, id string) func(map[string]any) {
	return func(ev map[string]any) {
		ev["rawPath"] = rawPath
		ev["pathParameters"].(map[string]any)["tokenId"] = id
	}
}

// BenchmarkColdStart runs each function binary once per iteration through the Runtime API and
// reports the init time (process start to the first poll for an event) and the first invoke.
func BenchmarkColdStart(b *testing.B) {
	for _, fn := range []string{"get-token", "upsert-token", "resolve-token"} {
		b.Run(fn, func(b *testing.B) {
			vars := []string{
				"TABLE_NAME=" + testenv.NewTable(b), "DYNAMODB_ENDPOINT=" + testenv.Endpoint(),
				"MASTER_KEY_FILE=" + filepath.Join(b.TempDir(), "master.key"),
				"AWS_REGION=us-east-1", "AWS_ACCESS_KEY_ID=local", "AWS_SECRET_ACCESS_KEY=local",
			}
			raw, err := os.ReadFile(filepath.Join("..", "events", fn+".json"))
			if err != nil {
				b.Fatal(err)
			}
			var initTotal, invokeTotal time.Duration
			for b.Loop() {
				res, err := runtimeapi.Invoke(context.Background(), runtimeapi.Invocation{
					Binary: filepath.Join(binDir, fn), Function: fn, Env: vars, Event: raw,
				})
				if err != nil || res.Response == nil {
					b.Fatalf("%v %s", err, res.Error)
				}
				initTotal += res.InitDuration
				invokeTotal += res.InvokeDuration
			}
			b.ReportMetric(float64(initTotal.Microseconds())/1000/float64(b.N), "init-ms")
			b.ReportMetric(float64(invokeTotal.Microseconds())/1000/float64(b.N), "first-invoke-ms")
		})
	}
}

// A warm resolve-token process (one binary, many invocations) sees a restriction change, an
// expiry and a delete on the very next resolve, though it caches opened values.
func TestWarmResolveFunctionSeesChangesAtOnce(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	vars := map[string]string{}
	for _, kv := range e.vars {
		k, v, _ := strings.Cut(kv, "=")
		vars[k] = v
	}
	sealer, err := seal.NewLocal(vars["MASTER_KEY_FILE"])
	if err != nil {
		t.Fatal(err)
	}
	st := store.New(testenv.Client(), vars["TABLE_NAME"])
	svc, err := service.New(st, sealer, nil)
	if err != nil {
		t.Fatal(err)
	}
	name, restricted := "Restricted", true
	if _, err := svc.Upsert(ctx, service.Upsert{Tenant: "acme", ID: "bot", Name: &name, Value: &[]string{"sk-warm-resolve-value"}[0],
		Restricted: &restricted, Meta: service.Meta{RequestID: "r1"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.RegisterUsage(ctx, "acme", "bot", "agent", "support", service.Meta{RequestID: "r1"}); err != nil {
		t.Fatal(err)
	}
	proc, err := runtimeapi.Start(runtimeapi.Invocation{Binary: filepath.Join(binDir, "resolve-token"), Function: "resolve-token", Env: e.vars})
	if err != nil {
		t.Fatal(err)
	}
	defer proc.Stop()
	asSupport := []byte(`{"tenant":"acme","tokenId":"bot","consumer":{"kind":"agent","id":"support"}}`)
	past := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	steps := []struct {
		name   string
		change func() error
		want   string
	}{
		{"registered consumer", nil, `{"value":"sk-warm-resolve-value"}`},
		{"again, from the cache", nil, `{"value":"sk-warm-resolve-value"}`},
		{"usage unregistered", func() error {
			return svc.UnregisterUsage(ctx, "acme", "bot", "agent", "support", service.Meta{RequestID: "r1b"})
		}, `"reason":"consumer_not_allowed"`},
		{"restriction lifted", func() error {
			return svc.Patch(ctx, "acme", "bot", []service.PatchOp{{Op: "REPLACE", Path: "/restricted", Value: false}}, service.Meta{RequestID: "r2"})
		}, `{"value":"sk-warm-resolve-value"}`},
		{"expired", func() error {
			return st.Update(ctx, store.Update{Tenant: "acme", ID: "bot", ExpiresAt: &past, Version: 2}, token.Event{RequestID: "r3", At: time.Now()})
		}, `"reason":"expired"`},
		{"expiry removed", func() error {
			return st.Update(ctx, store.Update{Tenant: "acme", ID: "bot", RemoveExpiry: true, Version: 3}, token.Event{RequestID: "r4", At: time.Now()})
		}, `{"value":"sk-warm-resolve-value"}`},
		{"replaced, no grace", func() error {
			_, err := svc.Upsert(ctx, service.Upsert{Tenant: "acme", ID: "bot2", Name: new("Bot 2"), Value: new("sk-successor-value"),
				Replaces: new("bot"), GraceSeconds: new(0), Meta: service.Meta{RequestID: "r4b"}})
			return err
		}, `"reason":"replaced","replacedBy":"bot2"`},
		{"deleted", func() error { return svc.Delete(ctx, "acme", "bot", true, service.Meta{RequestID: "r5"}) }, `"reason":"not_found"`},
	}
	for _, s := range steps {
		if s.change != nil {
			if err := s.change(); err != nil {
				t.Fatalf("%s: %v", s.name, err)
			}
		}
		res, err := proc.Invoke(ctx, asSupport)
		if err != nil || !strings.Contains(string(res.Response), s.want) {
			t.Fatalf("%s: %s %v, want %s\n%s", s.name, res.Response, err, s.want, proc.Logs())
		}
	}
	logs := string(proc.Logs())
	if strings.Contains(logs, "sk-warm-resolve-value") {
		t.Fatalf("the value reached the log: %s", logs)
	}
	if !strings.Contains(logs, `"outcome":"consumer_not_allowed"`) || !strings.Contains(logs, `"consumerKind":"agent"`) {
		t.Fatalf("a refusal is not logged with its reason and consumer: %s", logs)
	}
}

// A function missing its configuration, or given a bad value, stops at init with one JSON log
// line that says why; it never starts to answer requests with 500s.
func TestBadConfigurationFailsAtInit(t *testing.T) {
	base := newEnv(t).vars
	cases := []struct {
		name   string
		change string // KEY=VALUE appended (the last one wins), or KEY= to empty it
		want   string
	}{
		{"no TABLE_NAME", "TABLE_NAME=", "TABLE_NAME is not set"},
		{"bad REQUEST_TIMEOUT", "REQUEST_TIMEOUT=soon", "REQUEST_TIMEOUT must be a positive duration"},
		{"bad AUDIT_RETENTION_DAYS", "AUDIT_RETENTION_DAYS=0", "AUDIT_RETENTION_DAYS must be a whole number"},
		{"malformed CORS_ALLOWED_ORIGINS", "CORS_ALLOWED_ORIGINS=https://*.example.com", "wildcard inside a host"},
	}
	for _, c := range cases {
		for _, fn := range []string{"get-token", "upsert-token", "resolve-token"} {
			vars := append(append([]string{}, base...), c.change)
			res, err := runtimeapi.Invoke(context.Background(), runtimeapi.Invocation{
				Binary: filepath.Join(binDir, fn), Function: fn, Env: vars, Event: []byte(`{}`)})
			if err == nil || res.Response != nil {
				t.Errorf("%s, %s: answered %s", c.name, fn, res.Response)
				continue
			}
			var line struct{ Msg, Function, Error string }
			if json.Unmarshal(bytes.TrimSpace(res.Logs), &line) != nil || line.Msg != "init failed" || line.Function != fn || !strings.Contains(line.Error, c.want) {
				t.Errorf("%s, %s: init log %q, want one JSON line saying %q", c.name, fn, res.Logs, c.want)
			}
		}
	}
	// The upsert and resolve functions need a sealer: neither KMS_KEY_ID nor MASTER_KEY_FILE.
	vars := append(append([]string{}, base...), "MASTER_KEY_FILE=")
	res, err := runtimeapi.Invoke(context.Background(), runtimeapi.Invocation{
		Binary: filepath.Join(binDir, "upsert-token"), Function: "upsert-token", Env: vars, Event: []byte(`{}`)})
	if err == nil || !strings.Contains(string(res.Logs), "KMS_KEY_ID") {
		t.Errorf("upsert-token without a sealer: %v %s", err, res.Logs)
	}
}

// withBody sets the request body of an event, for the token id in its path.
func withBody(id, body string) func(map[string]any) {
	return func(ev map[string]any) {
		ev["rawPath"] = strings.Replace(ev["rawPath"].(string), "/openai", "/"+id, 1)
		ev["requestContext"].(map[string]any)["http"].(map[string]any)["path"] = ev["rawPath"]
		ev["pathParameters"].(map[string]any)["tokenId"] = id
		if body != "" {
			ev["body"] = body
		}
	}
}

// The lifecycle through the real binaries: a generated, restricted, expiring token, its
// consumer, and resolve refusing and then giving the value.
func TestLifecycleThroughTheFunctions(t *testing.T) {
	t.Parallel() // waits on processes and a database, not on this machine's cores
	e := newEnv(t)
	expires := time.Now().Add(48 * time.Hour).UTC().Format(time.RFC3339)
	created := e.call("upsert-token", event(t, "upsert-token", withBody("gen",
		`{"name":"Generated","generate":true,"prefix":"mcp_","restricted":true,"expiresAt":"`+expires+`"}`)))
	var body struct{ ID, Value string }
	json.Unmarshal([]byte(created.Body), &body)
	if created.StatusCode != 201 || body.ID != "gen" || !strings.HasPrefix(body.Value, "mcp_") || len(body.Value) != 4+43 {
		t.Fatalf("generate: %+v", created)
	}
	got := e.call("get-token", event(t, "get-token", withBody("gen", "")))
	if !strings.Contains(got.Body, `"restricted":true`) || !strings.Contains(got.Body, `"expiresAt":"`) ||
		!strings.Contains(got.Body, `"hint":"…`+body.Value[len(body.Value)-4:]+`"`) || strings.Contains(got.Body, body.Value) {
		t.Fatalf("get: %s", got.Body)
	}
	resolve := func(consumer string) string {
		res := e.invoke("resolve-token", []byte(`{"tenant":"acme","tokenId":"gen"`+consumer+`}`))
		return string(res.Response)
	}
	asAgent := `,"consumer":{"kind":"agent","id":"support-agent"}`
	if out := resolve(asAgent); !strings.Contains(out, `"reason":"consumer_not_allowed"`) {
		t.Fatalf("an unregistered consumer: %s", out)
	}
	if res := e.call("register-token-usage", event(t, "register-token-usage", withBody("gen", ""))); res.StatusCode != 201 {
		t.Fatalf("register: %+v", res)
	}
	if out := resolve(asAgent); out != `{"value":"`+body.Value+`"}` {
		t.Fatalf("a registered consumer: %s", out)
	}
	if out := resolve(""); !strings.Contains(out, `"reason":"consumer_not_allowed"`) {
		t.Fatalf("no consumer: %s", out)
	}
	patch := `[{"op":"REPLACE","path":"/expiresAt","value":"2020-01-01T00:00:00Z"}]`
	if res := e.call("patch-token", event(t, "patch-token", withBody("gen", patch))); res.StatusCode != 204 {
		t.Fatalf("patch expiry: %+v", res)
	}
	if out := resolve(asAgent); !strings.Contains(out, `"reason":"expired"`) {
		t.Fatalf("expired: %s", out)
	}
	trail := e.call("list-token-events", event(t, "list-token-events", withBody("gen", "")))
	for _, want := range []string{`"action":"resolve","actor":"agent/support-agent"`, `"outcome":"expired"`, `"action":"patch"`,
		`"action":"usage_register"`, `"action":"create"`, `"outcome":"consumer_not_allowed"`, `"actor":"unnamed"`} {
		if !strings.Contains(trail.Body, want) {
			t.Fatalf("the trail lacks %s: %s", want, trail.Body)
		}
	}
	if strings.Contains(trail.Body, body.Value) || strings.Contains(trail.Body, "…"+body.Value[len(body.Value)-4:]) {
		t.Fatal("the trail holds the value or its hint")
	}
}
