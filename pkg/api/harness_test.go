package api_test

import (
	"bytes"
	"context"
	"crypto/rsa"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"aitokens/pkg/api"
	"aitokens/pkg/auth"
	"aitokens/pkg/auth/jwtauth"
	"aitokens/pkg/devtools/devkeys"
	"aitokens/pkg/devtools/syncbuf"
	"aitokens/pkg/devtools/testenv"
	"aitokens/pkg/query"
	"aitokens/pkg/seal"
	"aitokens/pkg/service"
	"aitokens/pkg/store"
	"aitokens/pkg/token"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// testRequestTimeout is the request deadline of the harness: roomy, since DynamoDB Local under
// the race detector is slow; the fault tests build servers with short ones.
const testRequestTimeout = 30 * time.Second

// harness is the real handler stack on a fresh DynamoDB Local table, with real JWTs.
type harness struct {
	t       testing.TB
	handler http.Handler
	key     *rsa.PrivateKey
	store   *store.Store
	table   string
	svc     *service.Service
	sealer  seal.Sealer
	logs    *syncbuf.Buffer
	bodies  *syncbuf.Buffer // every response, for leak scans
	router  routers.Router
	sent    *atomic.Int64 // responses written to bodies
}

var (
	specOnce sync.Once
	specDoc  *openapi3.T
	specErr  error
)

func openAPIRouter(t testing.TB) routers.Router {
	specOnce.Do(func() {
		loader := openapi3.NewLoader()
		specDoc, specErr = loader.LoadFromFile("../../infra/openapi.yaml")
		if specErr == nil {
			specErr = specDoc.Validate(context.Background())
		}
	})
	if specErr != nil {
		t.Fatalf("infra/openapi.yaml: %v", specErr)
	}
	r, err := gorillamux.NewRouter(specDoc)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func newHarness(t testing.TB) *harness {
	return newHarnessWith(t, seal.NewLocalFromKey(bytes.Repeat([]byte{42}, 32)))
}

func newHarnessWith(t testing.TB, sealer seal.Sealer) *harness {
	t.Helper()
	return newHarnessOn(t, testenv.Client(), testenv.NewTable(t), sealer)
}

// newHarnessOn builds the stack on a given DynamoDB client and table (e.g. through a proxy that
// injects faults).
func newHarnessOn(t testing.TB, client *dynamodb.Client, table string, sealer seal.Sealer) *harness {
	t.Helper()
	return newHarnessFrom(t, stack{client: client, table: table, sealer: sealer})
}

// stack says how newHarnessFrom builds a harness; zero fields take the defaults.
type stack struct {
	client         *dynamodb.Client // testenv.Client()
	table          string           // a new table
	sealer         seal.Sealer      // required
	requestTimeout time.Duration    // testRequestTimeout
	maxItemsRead   int              // query.MaxItemsRead
	now            func() time.Time // the wall clock
	maxConcurrent  int              // no limit
	// shareWith, when set, receives this harness's log lines and responses, so that its leak
	// scan reads them too.
	shareWith *harness
}

func newHarnessFrom(t testing.TB, o stack) *harness {
	t.Helper()
	if o.client == nil {
		o.client = testenv.Client()
	}
	if o.table == "" {
		o.table = testenv.NewTable(t)
	}
	if o.requestTimeout == 0 {
		o.requestTimeout = testRequestTimeout
	}
	client, table, sealer := o.client, o.table, o.sealer
	dir := t.TempDir()
	if err := os.WriteFile(devkeys.KeyPath(dir), harnessKey(t), 0o600); err != nil {
		t.Fatal(err)
	}
	key, err := devkeys.Ensure(dir) // loads the key, writes its JWKS
	if err != nil {
		t.Fatal(err)
	}
	authn, err := jwtauth.New(context.Background(), jwtauth.Config{JWKSFile: devkeys.JWKSPath(dir), Issuer: devkeys.Issuer, Audience: devkeys.Audience})
	if err != nil {
		t.Fatal(err)
	}
	st := store.New(client, table)
	if o.now != nil {
		st = st.WithClock(o.now)
	}
	svc, err := service.New(st, sealer, o.now)
	if err != nil {
		t.Fatal(err)
	}
	if o.maxItemsRead > 0 {
		svc = svc.WithMaxItemsRead(o.maxItemsRead)
	}
	logs, bodies, sent := &syncbuf.Buffer{}, &syncbuf.Buffer{}, &atomic.Int64{}
	if o.shareWith != nil {
		logs, bodies, sent = o.shareWith.logs, o.shareWith.bodies, o.shareWith.sent
	} else {
		t.Cleanup(func() { levelFollowsStatus(t, logs.Bytes()) })
	}
	log := slog.New(slog.NewJSONHandler(logs, nil))
	handler, err := api.New(api.Config{Service: svc, Auth: authn, Log: log, RequestTimeout: o.requestTimeout,
		MaxConcurrent: o.maxConcurrent})
	if err != nil {
		t.Fatal(err)
	}
	return &harness{t: t, handler: handler, key: key, store: st, table: table, svc: svc, sealer: sealer, logs: logs,
		bodies: bodies, sent: sent, router: openAPIRouter(t)}
}

// harnessKey is the signing key of every harness, as devkeys writes it: an RSA key costs
// ~50 ms of CPU under the race detector, a quarter of this package's run when each harness
// made its own. Tests of another signer make their own keys.
var harnessKeyPEM = sync.OnceValues(func() ([]byte, error) {
	dir, err := os.MkdirTemp("", "harness-key-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	if _, err := devkeys.Ensure(dir); err != nil {
		return nil, err
	}
	return os.ReadFile(devkeys.KeyPath(dir))
})

func harnessKey(t testing.TB) []byte {
	t.Helper()
	pem, err := harnessKeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	return pem
}

// steppingClock is a clock that moves one second on at every reading, so that every write
// gets its own modifiedAt without the test sleeping.
func steppingClock() func() time.Time {
	var ticks atomic.Int64
	start := time.Date(2026, 11, 23, 8, 0, 0, 0, time.UTC)
	return func() time.Time { return start.Add(time.Duration(ticks.Add(1)) * time.Second) }
}

// jwt mints a token for tenant with the given scopes.
func (h *harness) jwt(tenant string, scopes ...string) string {
	tok, err := devkeys.Mint(h.key, devkeys.Claims{Tenant: tenant, Scopes: scopes})
	if err != nil {
		h.t.Fatal(err)
	}
	return tok
}

func (h *harness) manager() string { return h.jwt("acme", auth.ScopeRead, auth.ScopeManage) }

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("response body %q: %v", r.body, err)
	}
}

// errorBody decodes the ErrorMessage of an error response.
func (r response) errorBody(t testing.TB) api.ErrorMessage {
	t.Helper()
	var e api.ErrorMessage
	r.json(t, &e)
	return e
}

// do sends one request through the handler and checks the response against infra/openapi.yaml
// and the JSON content type rule.
func (h *harness) do(method, path, body, jwt string, headers ...string) response {
	h.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, path, rd)
	if jwt != "" {
		req.Header.Set("Authorization", "Bearer "+jwt)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	rec := httptest.NewRecorder()
	h.handler.ServeHTTP(rec, req)
	res := response{status: rec.Code, header: rec.Header(), body: rec.Body.Bytes()}
	h.sent.Add(1)
	h.bodies.Write(append(append([]byte(nil), res.body...), '\n'))
	for k, vs := range res.header {
		h.bodies.Write([]byte(k + ": " + strings.Join(vs, ",") + "\n"))
	}
	if len(res.body) > 0 && res.header.Get("Content-Type") != "application/json" {
		h.t.Errorf("%s %s: %d with Content-Type %q", method, path, res.status, res.header.Get("Content-Type"))
	}
	h.carriesItsRequestID(method+" "+path, res)
	h.validate(req, body, res)
	return res
}

func (h *harness) validate(req *http.Request, body string, res response) {
	h.t.Helper()
	probe := req.Clone(context.Background())
	probe.Body = io.NopCloser(strings.NewReader(body))
	route, params, err := h.router.FindRoute(probe)
	if err != nil {
		// Only a request the service did not route (its JSON 404 or 405) may lack an operation.
		if res.status != http.StatusNotFound && res.status != http.StatusMethodNotAllowed && res.status != http.StatusBadRequest {
			h.t.Errorf("%s %s: answered %d, but infra/openapi.yaml has no such operation", req.Method, req.URL.Path, res.status)
		}
		return
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: probe, PathParams: params, Route: route},
		Status:                 res.status,
		Header:                 res.header,
		Body:                   io.NopCloser(bytes.NewReader(res.body)),
		Options:                &openapi3filter.Options{IncludeResponseStatus: true},
	}
	if err := openapi3filter.ValidateResponse(context.Background(), in); err != nil {
		h.t.Errorf("%s %s: response does not match infra/openapi.yaml: %v\nbody: %s", req.Method, req.URL, err, res.body)
	}
}

const base = "/ai-service/acme/agentic/tokens"

// create makes a token and fails the test if it is not created.
func (h *harness) create(id, name, value string) {
	h.t.Helper()
	body, _ := json.Marshal(map[string]string{"name": name, "value": value})
	if res := h.do(http.MethodPut, base+"/"+id, string(body), h.manager()); res.status != http.StatusCreated {
		h.t.Fatalf("create %s: %d %s", id, res.status, res.body)
	}
}

// getDoc reads one token's document.
func (h *harness) getDoc(id string) map[string]any {
	h.t.Helper()
	res := h.do(http.MethodGet, base+"/"+id, "", h.manager())
	if res.status != http.StatusOK {
		h.t.Fatalf("get %s: %d %s", id, res.status, res.body)
	}
	var doc map[string]any
	res.json(h.t, &doc)
	return doc
}

// eventsOf is a token's whole audit trail, newest first, through the service.
func eventsOf(t testing.TB, h *harness, id string) []token.Event {
	t.Helper()
	events, total, err := h.svc.Events(context.Background(), "acme", id, query.Page{Number: 1, Size: query.MaxPageSize})
	if err != nil || len(events) != total {
		t.Fatalf("events of %s: %d of %d, %v", id, len(events), total, err)
	}
	return events
}

// carriesItsRequestID checks that an answer names its request: an X-Request-Id header, the
// same id in an error body's requestId, and the same in the request's log line.
func (h *harness) carriesItsRequestID(what string, res response) {
	h.t.Helper()
	rid := res.header.Get(api.RequestIDHeader)
	if rid == "" {
		h.t.Errorf("%s: %d without %s", what, res.status, api.RequestIDHeader)
		return
	}
	if res.status >= 400 {
		var body struct {
			RequestID string `json:"requestId"`
		}
		if err := json.Unmarshal(res.body, &body); err != nil || body.RequestID != rid {
			h.t.Errorf("%s: %d body %s, want requestId %q", what, res.status, res.body, rid)
		}
	}
	if !strings.Contains(h.logs.String(), `"requestId":"`+rid+`"`) {
		h.t.Errorf("%s: no log line has the request id %s", what, rid)
	}
}
