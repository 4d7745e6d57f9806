package main

// The browser test lives here, beside serve, because what it proves is serve's composition:
// devSetup and buildServer are the very functions `serve --dev` (make run) calls, and
// newHTTPServer's order of CORS, limiter and routes is only visible from this package.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"html/template"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"aitokens/pkg/auth"
	"aitokens/pkg/config"
	"aitokens/pkg/devtools/devkeys"
	"aitokens/pkg/devtools/syncbuf"
	"aitokens/pkg/devtools/testenv"
)

// chromium finds a Chromium to drive. A -short run, or one outside CI, without one skips the
// browser test and says how to get one; under CI=true a full run without a browser fails, since
// .ci/run installs it and a silent skip would hide that the browser test never ran.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "headless-shell"} {
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	testenv.Missing(t, "no Chromium found on PATH; install one to run the browser test: apt-get update && apt-get install -y chromium (.ci/run does)")
	return ""
}

// startDevServer runs what `serve --dev` runs, on a free loopback port, against this package's
// DynamoDB Local with a table of its own, allowing corsOrigins. It returns the API's URL and
// the development key its JWTs are signed with.
func startDevServer(t *testing.T, corsOrigins []string) (string, *devkeys.Claims, func(devkeys.Claims) string) {
	t.Helper()
	suffix := make([]byte, 6)
	rand.Read(suffix)
	vars := map[string]string{
		"DATA_DIR":             t.TempDir(),
		"TABLE_NAME":           "browser-" + hex.EncodeToString(suffix),
		"DYNAMODB_ENDPOINT":    testenv.EndpointFor(t),
		"CORS_ALLOWED_ORIGINS": strings.Join(corsOrigins, ","),
	}
	cfg, err := config.Load(func(k string) string { return vars[k] })
	if err != nil {
		t.Fatal(err)
	}
	cfg.AWS = testenv.Policy
	logs := &syncbuf.Buffer{}
	log := slog.New(slog.NewJSONHandler(logs, nil))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("server log:\n%s", logs)
		}
	})
	ctx := context.Background()
	stopDB, err := devSetup(ctx, log, &cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stopDB)
	srv, err := buildServer(ctx, cfg, log, true)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	key, err := devkeys.Ensure(cfg.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	manager := &devkeys.Claims{Tenant: "acme", Scopes: []string{auth.ScopeRead, auth.ScopeManage}}
	mint := func(c devkeys.Claims) string {
		jwt, err := devkeys.Mint(key, c)
		if err != nil {
			t.Fatal(err)
		}
		return jwt
	}
	return "http://" + ln.Addr().String(), manager, mint
}

// page is the dashboard's part that matters here: fetch calls with a bearer token and the
// headers the dashboard sends, reading status, body and response headers like it does. Each
// call answers {status, body, totalCount, location, requestId} or, when the browser refuses, {error}.
var page = template.Must(template.New("page").Parse(`<!doctype html>
<meta charset="utf-8">
<title>AI Tokens from another origin</title>
<script>
const cfg = {{.}};
const base = "/ai-service/acme/agentic/tokens";

async function call(method, path, opts = {}) {
  const headers = {
    "Authorization": "Bearer " + (opts.token || cfg.token),
    "Accept-Language": "de-DE,de;q=0.9",
    "Content-Language": "de",
    "Emporix-Tenant": "acme",
    ...(opts.headers || {}),
  };
  const init = {method, headers};
  if (opts.body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(opts.body);
  }
  try {
    const res = await fetch(cfg.api + path, init);
    const text = await res.text();
    return {status: res.status, body: text ? JSON.parse(text) : null,
            totalCount: res.headers.get("X-Total-Count"), location: res.headers.get("Location"),
            requestId: res.headers.get("X-Request-Id")};
  } catch (e) {
    return {error: String(e)};
  }
}

// What the dashboard's AI Tokens page does, in its order.
async function dashboard() {
  const s = {};
  s.create = await call("PUT", base + "/openai", {body: {name: "OpenAI Token", value: "sk-browser-test-value-0123"}});
  s.list = await call("GET", base + "?sort=name", {headers: {"X-Total-Count": "true"}});
  s.rename = await call("PUT", base + "/openai", {body: {name: "OpenAI (prod)", metadata: {version: 1}}});
  s.get = await call("GET", base + "/openai");
  s.use = await call("PUT", base + "/openai/usages/agent/support-agent");
  s.deleteInUse = await call("DELETE", base + "/openai");
  s.forceDelete = await call("DELETE", base + "/openai?force=true");
  s.listAfter = await call("GET", base, {headers: {"X-Total-Count": "true"}});
  s.expiredSession = await call("GET", base, {token: cfg.expired});
  return s;
}

// A page on an origin the API does not allow tries the same.
async function stranger() {
  return {
    create: await call("PUT", base + "/blocked", {body: {name: "Blocked", value: "sk-never-stored-0123456789"}}),
    list: await call("GET", base, {headers: {"X-Total-Count": "true"}}),
  };
}
</script>
<p>AI Tokens</p>
`))

// step is one fetch as the page saw it.
type step struct {
	Status     int    `json:"status"`
	Body       any    `json:"body"`
	TotalCount string `json:"totalCount"`
	Location   string `json:"location"`
	RequestID  string `json:"requestId"` // the X-Request-Id header, as the page can read it
	Error      string `json:"error"`
}

// body digs into a step's JSON body: body("details") or body("fault", "faultstring").
func (s step) body(path ...string) any {
	v := s.Body
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[p]
	}
	return v
}

// A page on another origin does everything the dashboard does, in a real browser, against the
// server `serve --dev` runs; a page on an origin that is not allowed is blocked by the browser.
func TestBrowserOnAnotherOrigin(t *testing.T) {
	chrome := chromium(t)
	var pageData struct{ API, Token, Expired string }
	servePage := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		page.Execute(w, map[string]string{"api": pageData.API, "token": pageData.Token, "expired": pageData.Expired})
	})
	dashboardSite := httptest.NewServer(servePage) // the dashboard's own origin (another port)
	defer dashboardSite.Close()
	strangerSite := httptest.NewServer(servePage) // an origin the API does not allow
	defer strangerSite.Close()

	api, manager, mint := startDevServer(t, []string{dashboardSite.URL})
	pageData.API = api
	pageData.Token = mint(*manager)
	expired := *manager
	expired.TTL = -time.Minute
	pageData.Expired = mint(expired)

	// One deadline for everything the browser does: its start, both pages, every fetch. The
	// browser lives as long as this context, which ends with the test anyway.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chrome), chromedp.NoSandbox, chromedp.DisableGPU)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	browser, cancelBrowser := chromedp.NewContext(allocCtx)
	defer cancelBrowser()
	open := func(url, script string) map[string]step {
		t.Helper()
		if _, err := chromedp.Run(browser, chromedp.Navigate(url)); err != nil {
			t.Fatalf("open %s: %v", url, err)
		}
		steps, err := chromedp.Run(browser, chromedp.Evaluate[map[string]step](script, chromedp.EvalAwaitPromise))
		if err != nil {
			t.Fatalf("%s on %s: %v", script, url, err)
		}
		return steps
	}

	s := open(dashboardSite.URL, "dashboard()")
	for name, st := range s {
		t.Logf("%s: %+v", name, st)
	}
	check := func(name string, ok bool) {
		t.Helper()
		if !ok {
			t.Errorf("%s: %+v", name, s[name])
		}
	}
	check("create", s["create"].Status == 201 && s["create"].body("id") == "openai" && s["create"].Location != "")
	check("list", s["list"].Status == 200 && s["list"].TotalCount == "1")
	check("rename", s["rename"].Status == 204)
	check("get", s["get"].Status == 200 && s["get"].body("name") == "OpenAI (prod)")
	check("use", s["use"].Status == 201)
	inUse := false
	details, _ := s["deleteInUse"].body("details").([]any)
	for _, d := range details {
		if m, ok := d.(map[string]any); ok && m["type"] == "force" {
			inUse = true
		}
	}
	check("deleteInUse", s["deleteInUse"].Status == 409 && inUse)
	check("forceDelete", s["forceDelete"].Status == 204)
	check("listAfter", s["listAfter"].Status == 200 && s["listAfter"].TotalCount == "0")
	check("expiredSession", s["expiredSession"].Status == 401 && s["expiredSession"].body("fault", "faultstring") == "Access Token expired")
	// The page can read every answer's request id (CORS exposes it), and an error body names
	// the same one, so a user's report can quote it.
	for name, st := range s {
		if st.RequestID == "" || (st.Status >= 400 && st.body("requestId") != st.RequestID) {
			t.Errorf("%s: the page read X-Request-Id %q, body requestId %v", name, st.RequestID, st.body("requestId"))
		}
	}

	blocked := open(strangerSite.URL, "stranger()")
	for name, st := range blocked {
		t.Logf("from %s, %s: %+v", strangerSite.URL, name, st)
		if st.Error == "" || st.Status != 0 {
			t.Errorf("a page on %s (not allowed) got an answer to %s: %+v", strangerSite.URL, name, st)
		}
	}
	// The browser refused at the preflight: the write it announced never reached the server.
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, api+"/ai-service/acme/agentic/tokens/blocked", nil)
	req.Header.Set("Authorization", "Bearer "+pageData.Token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNotFound {
		t.Errorf("the blocked page's token exists: GET answered %d", res.StatusCode)
	}
}
