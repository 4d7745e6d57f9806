package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/getkin/kin-openapi/openapi3"

	"aitokens/pkg/auth"
	"aitokens/pkg/devtools/devkeys"
	"aitokens/pkg/devtools/testenv"
	"aitokens/pkg/query"
	"aitokens/pkg/token"
)

// specExamples reads x-examples of the shared contract.
func specExamples(t *testing.T) map[string]json.RawMessage {
	t.Helper()
	raw, err := os.ReadFile("../../infra/spec/ai-tokens.openapi.json")
	if err != nil {
		t.Fatalf("the public contract (a copy of the shared one) must be in infra/spec: %v", err)
	}
	var spec struct {
		Examples map[string]json.RawMessage `json:"x-examples"`
	}
	if err := json.Unmarshal(raw, &spec); err != nil {
		t.Fatal(err)
	}
	return spec.Examples
}

func decode(t *testing.T, raw []byte) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// withoutRequestID is an error body without its requestId (the one member the service adds
// to the contract's samples; the harness checks it against the X-Request-Id header).
func withoutRequestID(t *testing.T, raw []byte) any {
	t.Helper()
	v := decode(t, raw)
	if m, ok := v.(map[string]any); ok {
		if _, ok := m["requestId"]; !ok {
			t.Errorf("error body without requestId: %s", raw)
		}
		delete(m, "requestId")
	}
	return v
}

func TestSpecExamplesReplayed(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ex := specExamples(t)
	mgr := h.manager()

	// upsert_request creates; the answer has the shape of upsert_created, with the path's id.
	created := h.do(http.MethodPut, base+"/a81bc81b-dead-4e5d-abff-90865d1e13b1", string(ex["upsert_request"]), mgr)
	if created.status != http.StatusCreated || !reflect.DeepEqual(decode(t, created.body), decode(t, ex["upsert_created"])) {
		t.Fatalf("upsert: %d %s, want 201 %s", created.status, created.body, ex["upsert_created"])
	}

	// get and list: the same documents as the samples (fields=id,name gives their shape).
	h.create("openai", "OpenAi Token", "sk-1")
	h.create("emporix--openai", "Emporix OpenAi Token", "sk-2")
	got := h.do(http.MethodGet, base+"/openai?fields=id,name", "", mgr)
	if got.status != http.StatusOK || !reflect.DeepEqual(decode(t, got.body), decode(t, ex["get"])) {
		t.Fatalf("get: %d %s, want %s", got.status, got.body, ex["get"])
	}
	list := h.do(http.MethodGet, base+"?fields=id,name&q="+urlQuery("id:~openai"), "", mgr)
	if list.status != http.StatusOK || !reflect.DeepEqual(decode(t, list.body), decode(t, ex["list"])) {
		t.Fatalf("list: %d %s, want %s", list.status, list.body, ex["list"])
	}

	// search_request finds by name.
	h.create("support-bot", "Customer Support Bot", "sk-3")
	search := h.do(http.MethodPost, base+"/search?fields=id", string(ex["search_request"]), mgr)
	if search.status != http.StatusOK || string(search.body) != `[{"id":"support-bot"}]`+"\n" {
		t.Fatalf("search: %d %s", search.status, search.body)
	}

	// patch_request renames.
	if res := h.do(http.MethodPatch, base+"/openai", string(ex["patch_request"]), mgr); res.status != http.StatusNoContent {
		t.Fatalf("patch: %d %s", res.status, res.body)
	}
	if doc := h.getDoc("openai"); doc["name"] != "New OpenAI Token" {
		t.Fatalf("after patch: %v", doc)
	}

	// Error samples: the same body, or the same code/status/message where the text is generic.
	if res := h.do(http.MethodGet, base, "", ""); res.status != 401 || !reflect.DeepEqual(withoutRequestID(t, res.body), decode(t, ex["error_401"])) {
		t.Fatalf("401: %d %s", res.status, res.body)
	}
	expired, _ := devkeys.Mint(h.key, devkeys.Claims{Tenant: "acme", Scopes: []string{auth.ScopeRead}, TTL: -time.Hour})
	if res := h.do(http.MethodGet, base, "", expired); res.status != 401 || !reflect.DeepEqual(withoutRequestID(t, res.body), decode(t, ex["error_401_expired"])) {
		t.Fatalf("401 expired: %d %s", res.status, res.body)
	}
	sameHead := func(name string, res response, status int) {
		t.Helper()
		var want map[string]any
		json.Unmarshal(ex[name], &want)
		var gotBody map[string]any
		res.json(t, &gotBody)
		if res.status != status || gotBody["code"] != want["code"] || gotBody["status"] != want["status"] {
			t.Fatalf("%s: %d %s, want %s", name, res.status, res.body, ex[name])
		}
	}
	forbidden := h.do(http.MethodPut, base+"/openai", `{"name":"x"}`, h.jwt("acme", auth.ScopeRead))
	sameHead("error_403", forbidden, 403)
	if forbidden.errorBody(t).Message != "The access to the requested resource has been forbidden by the server." {
		t.Fatalf("403 message: %s", forbidden.body)
	}
	sameHead("error_400", h.do(http.MethodPut, base+"/new", `{"value":"v"}`, mgr), 400)
	missing := h.do(http.MethodGet, base+"/628cd20c6e8b2432b6346ca6", "", mgr)
	if missing.status != 404 || !reflect.DeepEqual(withoutRequestID(t, missing.body), decode(t, ex["error_404"])) {
		t.Fatalf("404: %d %s, want %s", missing.status, missing.body, ex["error_404"])
	}
	sameHead("error_409", h.do(http.MethodPut, base+"/openai", `{"name":"x","metadata":{"version":7}}`, mgr), 409)
}

func urlQuery(q string) string {
	return strings.NewReplacer(" ", "%20", "~", "%7E", ":", "%3A", "\"", "%22", "(", "%28", ")", "%29", ",", "%2C", ">", "%3E", "<", "%3C", "=", "%3D", "#", "%23", "+", "%2B").Replace(q)
}

func TestLifecycle(t *testing.T) {
	t.Parallel()
	h := newHarnessFrom(t, stack{sealer: newHarness(t).sealer, now: steppingClock()})
	mgr := h.manager()
	h.create("openai", "OpenAI Token", "sk-secret")
	doc := h.getDoc("openai")
	meta := doc["metadata"].(map[string]any)
	if meta["version"] != 1.0 || meta["createdAt"] != meta["modifiedAt"] {
		t.Fatalf("new token metadata: %v", meta)
	}
	created := meta["createdAt"].(string)
	if _, err := time.Parse("2006-01-02T15:04:05.000Z", created); err != nil {
		t.Fatalf("createdAt %q is not RFC 3339 UTC with milliseconds", created)
	}

	steps := []struct {
		name, method, body string
		status             int
		wantName           string
		wantVersion        float64
	}{
		{"rename without value", http.MethodPut, `{"name":"Renamed"}`, 204, "Renamed", 2},
		{"same value again", http.MethodPut, `{"name":"Renamed","value":"sk-secret"}`, 204, "Renamed", 3},
		{"read-only fields ignored", http.MethodPut, `{"id":"other","name":"R2","metadata":{"createdAt":"2000-01-01T00:00:00Z","version":3},"extra":1}`, 204, "R2", 4},
		{"patch, lower-case op", http.MethodPatch, `[{"op":"replace","path":"/name","value":"P1"}]`, 204, "P1", 5},
		{"patch, several ops", http.MethodPatch, `[{"op":"Add","path":"/name","value":"P2"},{"op":"REPLACE","path":"/name","value":"P3"}]`, 204, "P3", 6},
	}
	for _, s := range steps {
		res := h.do(s.method, base+"/openai", s.body, mgr)
		if res.status != s.status {
			t.Fatalf("%s: %d %s", s.name, res.status, res.body)
		}
		doc := h.getDoc("openai")
		meta := doc["metadata"].(map[string]any)
		if doc["id"] != "openai" || doc["name"] != s.wantName || meta["version"] != s.wantVersion || meta["createdAt"] != created || meta["modifiedAt"] == created {
			t.Fatalf("%s: %v", s.name, doc)
		}
	}
	if res := h.do(http.MethodDelete, base+"/openai", "", mgr); res.status != 204 {
		t.Fatalf("delete: %d", res.status)
	}
	if res := h.do(http.MethodGet, base+"/openai", "", mgr); res.status != 404 {
		t.Fatalf("get after delete: %d", res.status)
	}
	if res := h.do(http.MethodDelete, base+"/openai", "", mgr); res.status != 204 {
		t.Fatalf("delete again: %d", res.status)
	}
	// The id is free again: a create gives version 1.
	h.create("openai", "Again", "sk-new")
	if v := h.getDoc("openai")["metadata"].(map[string]any)["version"]; v != 1.0 {
		t.Fatalf("re-created version %v", v)
	}
}

func TestIDsWithDashUnderscoreAndEscapes(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	for _, tc := range []struct{ path, id string }{
		{"a-b_c", "a-b_c"},
		{"%41bc", "Abc"}, // decoded once
		{"x" + strings.Repeat("y", 65), "x" + strings.Repeat("y", 65)},
	} {
		if res := h.do(http.MethodPut, base+"/"+tc.path, `{"name":"n","value":"v"}`, h.manager()); res.status != 201 {
			t.Fatalf("%s: %d %s", tc.path, res.status, res.body)
		}
		if doc := h.getDoc(tc.id); doc["id"] != tc.id {
			t.Fatalf("%s: %v", tc.path, doc)
		}
	}
}

func TestListPagingSortFieldsAndTotal(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	names := map[string]string{"a": "Zeta", "b": "Alpha", "c": "Mid", "d": "Alpha", "e": "Beta"}
	for id, name := range names {
		h.create(id, name, "v-"+id)
	}
	mgr := h.jwt("acme", auth.ScopeRead)
	ids := func(res response) string {
		var docs []map[string]any
		res.json(t, &docs)
		var out []string
		for _, d := range docs {
			out = append(out, fmt.Sprint(d["id"]))
		}
		return strings.Join(out, ",")
	}
	cases := []struct {
		query, want string
		total       string
	}{
		{"", "a,b,c,d,e", "5"},
		{"?sort=name", "b,d,e,c,a", "5"},
		{"?sort=name:desc,id:desc", "a,c,e,d,b", "5"},
		{"?sort=name:desc", "a,c,e,b,d", "5"}, // ties by id ascending
		{"?sort=name&pageSize=2", "b,d", "5"},
		{"?sort=name&pageSize=2&pageNumber=3", "a", "5"},
		{"?pageSize=2&pageNumber=4", "", "5"},
		{"?sort=metadata.version,id:desc", "e,d,c,b,a", "5"},
	}
	for _, c := range cases {
		res := h.do(http.MethodGet, base+c.query, "", mgr, "X-Total-Count", "true")
		if res.status != 200 || ids(res) != c.want || res.header.Get("X-Total-Count") != c.total {
			t.Errorf("%s: %d ids %q total %q, want %q %q", c.query, res.status, ids(res), res.header.Get("X-Total-Count"), c.want, c.total)
		}
		search := h.do(http.MethodPost, base+"/search"+c.query, `{}`, mgr, "X-Total-Count", "true")
		if ids(search) != c.want || search.header.Get("X-Total-Count") != c.total {
			t.Errorf("search %s: ids %q total %q", c.query, ids(search), search.header.Get("X-Total-Count"))
		}
	}
	if res := h.do(http.MethodGet, base, "", mgr); res.header.Get("X-Total-Count") != "" {
		t.Error("X-Total-Count given without being asked for")
	}
	res := h.do(http.MethodGet, base+"?fields=name,metadata.version&pageSize=1", "", mgr)
	if string(res.body) != `[{"metadata":{"version":1},"name":"Zeta"}]`+"\n" {
		t.Errorf("fields: %s", res.body)
	}
	if res := h.do(http.MethodGet, "/ai-service/other/agentic/tokens", "", h.jwt("other", auth.ScopeRead)); string(res.body) != "[]\n" {
		t.Errorf("another tenant sees %s", res.body)
	}
}

// scanTable returns every item of the table, to prove that a failed request changed nothing.
func scanTable(t *testing.T, h *harness) []map[string]types.AttributeValue {
	t.Helper()
	out, err := testenv.Client().Scan(context.Background(), &dynamodb.ScanInput{TableName: aws.String(h.table), ConsistentRead: aws.Bool(true)})
	if err != nil {
		t.Fatal(err)
	}
	return out.Items
}

func TestErrorPaths(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.create("openai", "OpenAI Token", "sk-secret")
	mgr := h.manager()
	reader := h.jwt("acme", auth.ScopeRead)
	big := `{"name":"n","value":"` + strings.Repeat("x", 64*1024) + `"}`
	cases := []struct {
		name, method, path, body, jwt string
		status                        int
		field                         string // details[0].field, when the error names one
	}{
		{"malformed JSON", "PUT", "/openai", `{"name":`, mgr, 400, "body"},
		{"body not an object", "PUT", "/openai", `["x"]`, mgr, 400, "body"},
		{"empty body", "PUT", "/new", ``, mgr, 400, "body"},
		{"name missing on create", "PUT", "/new", `{"value":"v"}`, mgr, 400, "name"},
		{"value missing on create", "PUT", "/new", `{"name":"n"}`, mgr, 400, "value"},
		{"value empty on create", "PUT", "/new", `{"name":"n","value":""}`, mgr, 400, "value"},
		{"name null", "PUT", "/openai", `{"name":null}`, mgr, 400, "name"},
		{"name blank", "PUT", "/openai", `{"name":"  "}`, mgr, 400, "name"},
		{"name wrong type", "PUT", "/openai", `{"name":5}`, mgr, 400, "name"},
		{"value wrong type", "PUT", "/new", `{"name":"n","value":12345}`, mgr, 400, "value"},
		{"name with control character", "PUT", "/openai", "{\"name\":\"a\\u0007b\"}", mgr, 400, "name"},
		{"name too long", "PUT", "/openai", `{"name":"` + strings.Repeat("n", 257) + `"}`, mgr, 400, "name"},
		{"invalid UTF-8", "PUT", "/openai", "{\"name\":\"\xff\xfe\"}", mgr, 400, "body"},
		{"changed value", "PUT", "/openai", `{"name":"n","value":"sk-other"}`, mgr, 400, "value"},
		{"version zero", "PUT", "/openai", `{"name":"n","metadata":{"version":0}}`, mgr, 400, "metadata.version"},
		{"version not a number", "PUT", "/openai", `{"name":"n","metadata":{"version":"1"}}`, mgr, 400, "metadata.version"},
		{"version on a missing token", "PUT", "/new", `{"name":"n","value":"v","metadata":{"version":1}}`, mgr, 404, ""},
		{"stale version", "PUT", "/openai", `{"name":"n","metadata":{"version":2}}`, mgr, 409, ""},
		{"body over 64 KiB", "PUT", "/new", big, mgr, 413, ""},
		{"id too long", "PUT", "/" + strings.Repeat("a", 67), `{"name":"n","value":"v"}`, mgr, 400, "id"},
		{"id with a dot", "GET", "/a.b", ``, mgr, 400, "id"},
		{"id with an escaped slash", "GET", "/a%2Fb", ``, mgr, 400, "id"},
		{"id with an escaped hash", "GET", "/a%23b", ``, mgr, 400, "id"},
		{"missing token", "GET", "/nope", ``, mgr, 404, ""},
		{"patch missing token", "PATCH", "/nope", `[{"op":"REPLACE","path":"/name","value":"n"}]`, mgr, 404, ""},
		{"patch not an array", "PATCH", "/openai", `{"op":"REPLACE"}`, mgr, 400, "body"},
		{"patch empty", "PATCH", "/openai", `[]`, mgr, 400, "body"},
		{"patch unknown op", "PATCH", "/openai", `[{"op":"MOVE","path":"/name","value":"n"}]`, mgr, 400, "op"},
		{"patch without path", "PATCH", "/openai", `[{"op":"REPLACE","value":"n"}]`, mgr, 400, "body[0]"},
		{"patch value", "PATCH", "/openai", `[{"op":"REPLACE","path":"/value","value":"sk"}]`, mgr, 400, "/value"},
		{"patch id", "PATCH", "/openai", `[{"op":"REPLACE","path":"/id","value":"x"}]`, mgr, 400, "/id"},
		{"patch metadata", "PATCH", "/openai", `[{"op":"REPLACE","path":"/metadata/version","value":9}]`, mgr, 400, "/metadata/version"},
		{"patch remove name", "PATCH", "/openai", `[{"op":"REMOVE","path":"/name"}]`, mgr, 400, "/name"},
		{"patch name not a string", "PATCH", "/openai", `[{"op":"REPLACE","path":"/name","value":{"a":1}}]`, mgr, 400, "/name"},
		{"patch atomic: good op then bad op", "PATCH", "/openai", `[{"op":"REPLACE","path":"/name","value":"ok"},{"op":"REPLACE","path":"/value","value":"x"}]`, mgr, 400, "/value"},
		{"pageSize zero", "GET", "?pageSize=0", ``, reader, 400, "pageSize"},
		{"pageSize over 1000", "GET", "?pageSize=1001", ``, reader, 400, "pageSize"},
		{"pageSize not a number", "GET", "?pageSize=ten", ``, reader, 400, "pageSize"},
		{"pageNumber zero", "GET", "?pageNumber=0", ``, reader, 400, "pageNumber"},
		{"pageNumber negative", "GET", "?pageNumber=-1", ``, reader, 400, "pageNumber"},
		{"sort unknown field", "GET", "?sort=value", ``, reader, 400, "sort"},
		{"sort bad direction", "GET", "?sort=name:up", ``, reader, 400, "sort"},
		{"fields unknown", "GET", "?fields=value", ``, reader, 400, "fields"},
		{"get fields unknown", "GET", "/openai?fields=sealCiphertext", ``, reader, 400, "fields"},
		{"search body not JSON", "POST", "/search", `q=x`, reader, 400, "body"},
		{"search q not a string", "POST", "/search", `{"q":5}`, reader, 400, "q"},
		{"no token", "GET", "", ``, "", 401, ""},
		{"garbage token", "GET", "", ``, "not.a.jwt", 401, ""},
		{"read scope cannot write", "PUT", "/openai", `{"name":"n"}`, reader, 403, ""},
		{"manage scope alone cannot read", "GET", "/openai", ``, h.jwt("acme", auth.ScopeManage), 403, ""},
		{"token of another tenant", "DELETE", "/openai", ``, h.jwt("other", auth.ScopeManage), 403, ""},
		{"wrong method", "POST", "", `{}`, mgr, 405, ""},
		{"unknown path", "GET", "/openai/extra", ``, mgr, 404, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := scanTable(t, h)
			res := h.do(c.method, base+c.path, c.body, c.jwt)
			if res.status != c.status {
				t.Fatalf("status %d, want %d: %s", res.status, c.status, res.body)
			}
			if c.status != 401 {
				e := res.errorBody(t)
				if e.Code != c.status || e.Status != http.StatusText(c.status) || e.Message == "" {
					t.Fatalf("error body %s", res.body)
				}
				if c.field != "" && (len(e.Details) == 0 || e.Details[0].Field != c.field) {
					t.Fatalf("details %+v, want field %q", e.Details, c.field)
				}
			}
			if strings.Contains(string(res.body), "sk-secret") || strings.Contains(string(res.body), "12345") {
				t.Fatalf("error body echoes a value: %s", res.body)
			}
			if after := scanTable(t, h); !reflect.DeepEqual(before, after) {
				t.Fatal("a failed request changed the store")
			}
		})
	}
	if res := h.do("GET", base+"/openai", "", reader); res.status != 200 {
		t.Fatalf("the token must still be there: %d", res.status)
	}
	// A tenant path that is not a tenant name is a 400 even when the claim matches it.
	if res := h.do("GET", "/ai-service/ACME/agentic/tokens", "", h.jwt("ACME", auth.ScopeRead)); res.status != 400 {
		t.Fatalf("bad tenant: %d %s", res.status, res.body)
	}
	if res := h.do("POST", base, "{}", mgr); res.header.Get("Allow") != "GET" {
		t.Fatalf("405 without Allow: %v", res.header)
	}
}

func TestConcurrentVersionedPuts(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.create("openai", "OpenAI Token", "sk-secret")
	mgr := h.manager()
	const writers = 20
	statuses := make([]int, writers)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			body := fmt.Sprintf(`{"name":"writer %d","metadata":{"version":1}}`, i)
			statuses[i] = h.do(http.MethodPut, base+"/openai", body, mgr).status
		}()
	}
	close(start)
	wg.Wait()
	count := map[int]int{}
	for _, s := range statuses {
		count[s]++
	}
	if count[204] != 1 || count[409] != writers-1 {
		t.Fatalf("statuses %v, want one 204 and %d 409", count, writers-1)
	}
	doc := h.getDoc("openai")
	if v := doc["metadata"].(map[string]any)["version"]; v != 2.0 {
		t.Fatalf("final version %v, want 2", v)
	}
	if !strings.HasPrefix(doc["name"].(string), "writer ") {
		t.Fatalf("final name %v", doc["name"])
	}
}

func TestStoredItemHoldsNoPlaintext(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	const value = "sk-proj-very-unique-plaintext-0123456789"
	h.create("openai", "OpenAI Token", value)
	out, err := testenv.Client().GetItem(context.Background(), &dynamodb.GetItemInput{
		TableName: aws.String(h.table),
		Key: map[string]types.AttributeValue{
			"pk": &types.AttributeValueMemberS{Value: "acme"}, "sk": &types.AttributeValueMemberS{Value: "token#openai"},
		},
	})
	if err != nil || out.Item == nil {
		t.Fatalf("item: %v", err)
	}
	for _, attr := range []string{"sealCiphertext", "sealWrappedKey", "sealNonce", "sealKeyId", "sealAlgorithm", "sealDigest"} {
		if out.Item[attr] == nil {
			t.Errorf("sealed attribute %s missing", attr)
		}
	}
	for name, av := range out.Item {
		var raw string
		switch v := av.(type) {
		case *types.AttributeValueMemberS:
			raw = v.Value
		case *types.AttributeValueMemberB:
			raw = string(v.Value)
		}
		if strings.Contains(raw, value) || strings.Contains(raw, "very-unique") {
			t.Fatalf("attribute %s holds the plain value", name)
		}
	}
	if strings.Contains(h.logs.String(), value) || strings.Contains(h.bodies.String(), value) {
		t.Fatal("the value reached a log line or a response")
	}
}

func TestLogLines(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	mgr := h.manager()
	h.create("openai", "OpenAI Token", "sk-log-secret")
	h.do(http.MethodGet, base+"/openai", "", mgr)
	h.do(http.MethodGet, base+"/openai", "", "bad")
	lines := strings.Split(strings.TrimSpace(h.logs.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("want one line per request, got %d:\n%s", len(lines), h.logs.String())
	}
	for _, line := range lines {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("not JSON: %s", line)
		}
		for _, k := range []string{"requestId", "tenant", "route", "status", "durationMs"} {
			if _, ok := rec[k]; !ok {
				t.Errorf("log line lacks %s: %s", k, line)
			}
		}
		if strings.Contains(line, "sk-log-secret") || strings.Contains(line, mgr) || strings.Contains(line, "Bearer") {
			t.Errorf("log line leaks: %s", line)
		}
	}
}

// The OpenAPI document states the limits the code enforces, from the same constants.
func TestOpenAPIStatesTheLimits(t *testing.T) {
	t.Parallel()
	openAPIRouter(t)
	param := func(name string) *openapi3.Schema { return specDoc.Components.Parameters[name].Value.Schema.Value }
	request := specDoc.Components.Schemas["TokenRequest"].Value.Properties
	usagePath := specDoc.Paths.Find("/ai-service/{tenant}/agentic/tokens/{tokenId}/usages/{kind}/{refId}")
	checks := []struct {
		name      string
		got, want any
	}{
		{"tenant pattern", param("tenant").Pattern, token.TenantPattern},
		{"tokenId pattern", param("tokenId").Pattern, token.IDPattern},
		{"refId pattern", usagePath.Parameters.GetByInAndName("path", "refId").Schema.Value.Pattern, token.RefIDPattern},
		{"q maxLength", param("q").MaxLength, new(uint64(query.MaxQueryLength))},
		{"name maxLength", request["name"].Value.MaxLength, new(uint64(token.MaxNameLength))},
		{"value maxLength", request["value"].Value.MaxLength, new(uint64(token.MaxValueLength))},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("infra/openapi.yaml %s: %v, the code enforces %v", c.name, deref(c.got), deref(c.want))
		}
	}
}

func deref(v any) any {
	if p, ok := v.(*uint64); ok && p != nil {
		return *p
	}
	return v
}
