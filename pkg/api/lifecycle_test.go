package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"aitokens/pkg/devtools/testenv"
	"aitokens/pkg/store"
	"aitokens/pkg/token"
)

// future is an expiry a year from now, as the API shows it.
func future() string { return token.FormatTime(time.Now().Add(365 * 24 * time.Hour)) }

func TestExpiryEndToEnd(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	mgr := h.manager()
	at := future()
	if res := h.do("PUT", base+"/openai", `{"name":"OpenAI","value":"sk-expiring-value","expiresAt":"`+at+`"}`, mgr); res.status != 201 {
		t.Fatalf("create with expiresAt: %d %s", res.status, res.body)
	}
	h.create("forever", "Forever", "sk-forever-value")
	if doc := h.getDoc("openai"); doc["expiresAt"] != at {
		t.Fatalf("GET shows %v, want expiresAt %s", doc, at)
	}
	if _, ok := h.getDoc("forever")["expiresAt"]; ok {
		t.Fatal("a token without expiry shows expiresAt")
	}
	list := func(query string) string {
		res := h.do("GET", base+"?fields=id&"+query, "", mgr)
		if res.status != 200 {
			t.Fatalf("list %s: %d %s", query, res.status, res.body)
		}
		return strings.TrimSpace(string(res.body))
	}
	for _, c := range []struct{ query, want string }{
		{"q=expiresAt:exists", `[{"id":"openai"}]`},
		{"q=expiresAt:missing", `[{"id":"forever"}]`},
		{"q=expiresAt:%3E2026-01-01", `[{"id":"openai"}]`},
		{"q=expiresAt:%3C2026-01-01", `[]`},
		{"sort=expiresAt", `[{"id":"openai"},{"id":"forever"}]`},
		{"sort=expiresAt:desc", `[{"id":"openai"},{"id":"forever"}]`}, // absent sorts last either way
	} {
		if got := list(c.query); got != c.want {
			t.Errorf("list %s: %s, want %s", c.query, got, c.want)
		}
	}

	// Changing it: PUT to a past date is allowed on update (it switches the token off),
	// PATCH replaces and removes it.
	past := "2020-01-01T00:00:00.000Z"
	steps := []struct {
		name, method, body string
		want               any // expiresAt afterwards; nil: absent
	}{
		{"PUT a past date", "PUT", `{"name":"OpenAI","expiresAt":"` + past + `"}`, past},
		{"PATCH REPLACE", "PATCH", `[{"op":"REPLACE","path":"/expiresAt","value":"` + at + `"}]`, at},
		{"PATCH REMOVE", "PATCH", `[{"op":"REMOVE","path":"/expiresAt"}]`, nil},
		{"PATCH ADD", "PATCH", `[{"op":"add","path":"/expiresAt","value":"` + at + `"}]`, at},
		{"PUT null clears", "PUT", `{"name":"OpenAI","expiresAt":null}`, nil},
		{"PUT without expiresAt leaves it", "PUT", `{"name":"OpenAI"}`, nil},
	}
	for _, s := range steps {
		if res := h.do(s.method, base+"/openai", s.body, mgr); res.status != 204 {
			t.Fatalf("%s: %d %s", s.name, res.status, res.body)
		}
		if got := h.getDoc("openai")["expiresAt"]; got != s.want {
			t.Fatalf("%s: expiresAt %v, want %v", s.name, got, s.want)
		}
	}
}

// Every bad lifecycle input is a 400 with the documented body, and the table is unchanged.
func TestLifecycleBadInput(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	mgr := h.manager()
	h.create("openai", "OpenAI", "sk-existing-value-0001")
	cases := []struct {
		name, method, path, body, field string
	}{
		{"expiresAt not RFC 3339", "PUT", "/new", `{"name":"n","value":"sk-x","expiresAt":"next tuesday"}`, "expiresAt"},
		{"expiresAt a date only", "PUT", "/new", `{"name":"n","value":"sk-x","expiresAt":"2030-01-01"}`, "expiresAt"},
		{"expiresAt a number", "PUT", "/new", `{"name":"n","value":"sk-x","expiresAt":1893456000}`, "expiresAt"},
		{"expiresAt null on create", "PUT", "/new", `{"name":"n","value":"sk-x","expiresAt":null}`, "expiresAt"},
		{"expiresAt in the past on create", "PUT", "/new", `{"name":"n","value":"sk-x","expiresAt":"2020-01-01T00:00:00Z"}`, "expiresAt"},
		{"expiresAt not RFC 3339 on update", "PUT", "/openai", `{"name":"n","expiresAt":"soon"}`, "expiresAt"},
		{"generate with value", "PUT", "/new", `{"name":"n","value":"sk-x","generate":true}`, "generate"},
		{"generate on an update", "PUT", "/openai", `{"name":"n","generate":true}`, "generate"},
		{"generate not a boolean", "PUT", "/new", `{"name":"n","generate":"yes"}`, "generate"},
		{"prefix outside its pattern", "PUT", "/new", `{"name":"n","generate":true,"prefix":"sk live"}`, "prefix"},
		{"prefix too long", "PUT", "/new", `{"name":"n","generate":true,"prefix":"` + strings.Repeat("p", 17) + `"}`, "prefix"},
		{"prefix without generate", "PUT", "/new", `{"name":"n","value":"sk-x","prefix":"sk_"}`, "prefix"},
		{"restricted not a boolean", "PUT", "/new", `{"name":"n","value":"sk-x","restricted":"true"}`, "restricted"},
		{"PATCH restricted not a boolean", "PATCH", "/openai", `[{"op":"REPLACE","path":"/restricted","value":"yes"}]`, "/restricted"},
		{"PATCH expiresAt not a date", "PATCH", "/openai", `[{"op":"REPLACE","path":"/expiresAt","value":42}]`, "/expiresAt"},
		{"PATCH expiresAt bad with a good name", "PATCH", "/openai", `[{"op":"REPLACE","path":"/name","value":"ok"},{"op":"REPLACE","path":"/expiresAt","value":"x"}]`, "expiresAt"},
		{"PATCH of the hint", "PATCH", "/openai", `[{"op":"REPLACE","path":"/metadata/hint","value":"…abcd"}]`, "/metadata/hint"},
	}
	for _, c := range cases {
		before := scanTable(t, h)
		res := h.do(c.method, base+c.path, c.body, mgr)
		e := res.errorBody(t)
		if res.status != 400 || e.Code != 400 || len(e.Details) == 0 || e.Details[0].Field != c.field {
			t.Errorf("%s: %d %s, want a 400 naming %s", c.name, res.status, res.body, c.field)
		}
		if !reflect.DeepEqual(before, scanTable(t, h)) {
			t.Errorf("%s changed the table", c.name)
		}
	}
}

func TestHint(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	cases := []struct{ id, value, want string }{
		{"long", "sk-proj-0123456789abcdef", "…cdef"},
		{"exactly16", "0123456789abcdef", "…cdef"},
		{"short", "0123456789abcde", ""},
		{"runes", "ключ-ключ-ключ-ключ", "…ключ"},
	}
	for _, c := range cases {
		h.create(c.id, "N", c.value)
		hint, ok := h.getDoc(c.id)["metadata"].(map[string]any)["hint"]
		if (c.want == "" && ok) || (c.want != "" && hint != c.want) {
			t.Errorf("%s: hint %v, want %q", c.id, hint, c.want)
		}
	}
	// Read-only: a hint in the body is ignored, on create and on update.
	mgr := h.manager()
	h.do("PUT", base+"/sent", `{"name":"N","value":"sk-0123456789-real","metadata":{"hint":"…fake"}}`, mgr)
	h.do("PUT", base+"/sent", `{"name":"N","metadata":{"hint":"…fake"}}`, mgr)
	if hint := h.getDoc("sent")["metadata"].(map[string]any)["hint"]; hint != "…real" {
		t.Fatalf("hint %v after sending one", hint)
	}
}

var generatedPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`)

func TestGeneratedValueIsShownOnce(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	mgr := h.manager()
	res := h.do("PUT", base+"/gen", `{"name":"Generated","generate":true}`, mgr)
	var created struct{ ID, Value string }
	res.json(t, &created)
	if res.status != 201 || created.ID != "gen" || !generatedPattern.MatchString(created.Value) {
		t.Fatalf("generate: %d %s", res.status, res.body)
	}
	if got, err := h.svc.Resolve(context.Background(), "acme", "gen", nil, "test-resolve"); err != nil || string(got) != created.Value {
		t.Fatalf("the stored value is not the one returned: %v", err)
	}
	if hint := h.getDoc("gen")["metadata"].(map[string]any)["hint"]; hint != "…"+created.Value[39:] {
		t.Fatalf("hint %v of a generated value", hint)
	}
	for _, r := range []response{h.do("GET", base+"/gen", "", mgr), h.do("GET", base, "", mgr)} {
		if strings.Contains(string(r.body), created.Value) {
			t.Fatal("a generated value came back after its 201")
		}
	}
	// The same PUT again (a client retry after a lost response): refused, never a second value.
	again := h.do("PUT", base+"/gen", `{"name":"Generated","generate":true}`, mgr)
	if again.status != 400 || strings.Contains(string(again.body), created.Value) {
		t.Fatalf("generate again: %d %s", again.status, again.body)
	}
	if got, _ := h.svc.Resolve(context.Background(), "acme", "gen", nil, "test-resolve"); string(got) != created.Value {
		t.Fatal("a second generate changed the value")
	}

	// With a prefix; two generated values differ.
	res = h.do("PUT", base+"/gen2", `{"name":"G2","generate":true,"prefix":"sk_live_"}`, mgr)
	var second struct{ Value string }
	res.json(t, &second)
	if res.status != 201 || !strings.HasPrefix(second.Value, "sk_live_") || !generatedPattern.MatchString(second.Value[8:]) || second.Value[8:] == created.Value {
		t.Fatalf("generate with a prefix: %d %s", res.status, res.body)
	}
}

// A create with generate whose DynamoDB response is lost is retried by the SDK within the same
// request: the 201 carries the value that was stored, not a second one.
func TestGeneratedValueSurvivesALostResponse(t *testing.T) {
	t.Parallel()
	proxy := testenv.NewFaultProxy(t)
	client, err := store.NewClient(context.Background(), proxy.URL, testenv.Policy)
	if err != nil {
		t.Fatal(err)
	}
	h := newHarnessFrom(t, stack{client: client, sealer: newHarness(t).sealer})
	proxy.DropNextResponse("TransactWriteItems", 1)
	res := h.do("PUT", base+"/gen", `{"name":"Generated","generate":true}`, h.manager())
	var created struct{ Value string }
	res.json(t, &created)
	if res.status != 201 || created.Value == "" {
		t.Fatalf("generate with a lost response: %d %s", res.status, res.body)
	}
	if got, err := h.svc.Resolve(context.Background(), "acme", "gen", nil, "test-resolve"); err != nil || string(got) != created.Value {
		t.Fatalf("the value returned is not the value stored (%v)", err)
	}
}

func TestRestrictedFlag(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	mgr := h.manager()
	if res := h.do("PUT", base+"/r", `{"name":"R","value":"sk-restricted-0001","restricted":true}`, mgr); res.status != 201 {
		t.Fatalf("create restricted: %d %s", res.status, res.body)
	}
	h.create("open", "Open", "sk-open-0001")
	steps := []struct {
		method, id, body string
		want             any
	}{
		{"", "r", "", true},
		{"", "open", "", nil},
		{"PATCH", "r", `[{"op":"REPLACE","path":"/restricted","value":false}]`, nil},
		{"PUT", "r", `{"name":"R","restricted":true}`, true},
		{"PATCH", "r", `[{"op":"REMOVE","path":"/restricted"}]`, nil},
		{"PATCH", "open", `[{"op":"ADD","path":"/restricted","value":true}]`, true},
	}
	for i, s := range steps {
		if s.method != "" {
			if res := h.do(s.method, base+"/"+s.id, s.body, mgr); res.status != 204 {
				t.Fatalf("step %d: %d %s", i, res.status, res.body)
			}
		}
		if got := h.getDoc(s.id)["restricted"]; got != s.want {
			t.Fatalf("step %d: restricted %v, want %v", i, got, s.want)
		}
	}
	res := h.do("GET", base+"?fields=id&q=restricted:false", "", mgr)
	if strings.TrimSpace(string(res.body)) != `[{"id":"r"}]` {
		t.Fatalf("q=restricted:false: %s", res.body)
	}
}

// Resolve refuses expired tokens and consumers a restricted token does not know, each with a
// structured reason, checked on the same read that loads the value.
func TestResolveRefusals(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	mgr := h.manager()
	h.do("PUT", base+"/r", `{"name":"R","value":"sk-restricted-0002","restricted":true}`, mgr)
	h.do("PUT", base+"/r/usages/agent/support", "", mgr)
	h.do("PUT", base+"/exp", `{"name":"E","value":"sk-expiring-0002","expiresAt":"`+future()+`"}`, mgr)
	h.do("PUT", base+"/exp", `{"name":"E","expiresAt":"2020-01-01T00:00:00Z"}`, mgr)
	ctx := context.Background()
	cases := []struct {
		name, id string
		consumer *token.Consumer
		reason   token.Reason
		kind     token.Kind
	}{
		{"restricted, registered consumer", "r", &token.Consumer{Kind: "agent", ID: "support"}, "", ""},
		{"restricted, no consumer", "r", nil, token.ConsumerRefused, token.Forbidden},
		{"restricted, another consumer", "r", &token.Consumer{Kind: "agent", ID: "sales"}, token.ConsumerRefused, token.Forbidden},
		{"restricted, same id of another kind", "r", &token.Consumer{Kind: "tool", ID: "support"}, token.ConsumerRefused, token.Forbidden},
		{"expired", "exp", nil, token.Expired, token.Forbidden},
		{"missing", "nope", nil, "", token.NotFound},
		{"consumer of an unknown kind", "r", &token.Consumer{Kind: "robot", ID: "x"}, "", token.Invalid},
		{"consumer with a bad id", "r", &token.Consumer{Kind: "agent", ID: "a b"}, "", token.Invalid},
	}
	for _, c := range cases {
		value, err := h.svc.Resolve(ctx, "acme", c.id, c.consumer, "test-resolve")
		e := token.As(err)
		switch {
		case c.kind == "" && (err != nil || string(value) != "sk-restricted-0002"):
			t.Errorf("%s: %v", c.name, err)
		case c.kind != "" && (err == nil || e.Kind != c.kind || e.Reason != c.reason || value != nil):
			t.Errorf("%s: %v, want %s/%s", c.name, err, c.kind, c.reason)
		}
	}
	// Unregistering the consumer takes effect on the next resolve.
	h.do("DELETE", base+"/r/usages/agent/support", "", mgr)
	if _, err := h.svc.Resolve(ctx, "acme", "r", &token.Consumer{Kind: "agent", ID: "support"}, "test-resolve"); token.As(err).Reason != token.ConsumerRefused {
		t.Fatalf("after unregister: %v", err)
	}
}

// An ordinary client's timestamp is accepted as it writes it: Go's time.Time JSON (up to 9
// fractional digits, its zone's offset) and Python's datetime.isoformat() ("+00:00", 6 digits,
// none when the microseconds are 0). It is kept and shown to the millisecond, truncated, and
// a q (list or search) with the client's own string finds the token, equal and in a range.
func TestOrdinaryClientsTimestamps(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	mgr := h.manager()
	goJSON := func(at time.Time) string {
		b, err := json.Marshal(struct {
			ExpiresAt time.Time `json:"expiresAt"`
		}{at})
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]string
		_ = json.Unmarshal(b, &m)
		return m["expiresAt"]
	}
	cases := []struct{ client, sent, shown string }{
		{"Go time.Time, nanoseconds, +02:00", goJSON(time.Date(2031, 3, 1, 10, 0, 0, 123456789, time.FixedZone("CEST", 2*3600))), "2031-03-01T08:00:00.123Z"},
		{"Go time.Time, UTC", goJSON(time.Date(2031, 3, 1, 8, 0, 0, 999999999, time.UTC)), "2031-03-01T08:00:00.999Z"},
		// datetime(2031, 3, 1, 8, 0, 0, 654321, tzinfo=timezone.utc).isoformat()
		{"Python isoformat", "2031-03-01T08:00:00.654321+00:00", "2031-03-01T08:00:00.654Z"},
		// datetime(2031, 3, 1, 8, 0, 0, tzinfo=timezone.utc).isoformat()
		{"Python isoformat, no microseconds", "2031-03-01T08:00:00+00:00", "2031-03-01T08:00:00.000Z"},
	}
	if cases[0].sent != "2031-03-01T10:00:00.123456789+02:00" {
		t.Fatalf("Go writes %s", cases[0].sent)
	}
	for i, c := range cases {
		id := fmt.Sprint("t", i)
		if res := h.do("PUT", base+"/"+id, `{"name":"N","value":"sk-client-value","expiresAt":"`+c.sent+`"}`, mgr); res.status != 201 {
			t.Fatalf("%s: create with %s: %d %s", c.client, c.sent, res.status, res.body)
		}
		if got := h.getDoc(id)["expiresAt"]; got != c.shown {
			t.Fatalf("%s: %s shown as %v, want %s", c.client, c.sent, got, c.shown)
		}
		if res := h.do("PATCH", base+"/"+id, `[{"op":"REPLACE","path":"/expiresAt","value":"`+c.sent+`"}]`, mgr); res.status != 204 {
			t.Fatalf("%s: PATCH with %s: %d %s", c.client, c.sent, res.status, res.body)
		}
		want := `[{"id":"` + id + `"}]`
		for _, q := range []string{
			"expiresAt:" + c.sent,
			`expiresAt:"` + c.sent + `"`,
			`expiresAt:(>=` + c.sent + ` AND <=` + c.sent + `)`,
			`expiresAt:(>="` + c.sent + `" AND <"2099-01-01T00:00:00Z") id:` + id,
		} {
			if res := h.do("GET", base+"?fields=id&q="+urlQuery(q), "", mgr); res.status != 200 || strings.TrimSpace(string(res.body)) != want {
				t.Errorf("%s: list q=%s: %d %s, want %s", c.client, q, res.status, res.body, want)
			}
			body, _ := json.Marshal(map[string]string{"q": q})
			if res := h.do("POST", base+"/search?fields=id", string(body), mgr); res.status != 200 || strings.TrimSpace(string(res.body)) != want {
				t.Errorf("%s: search q=%s: %d %s, want %s", c.client, q, res.status, res.body, want)
			}
		}
	}
	// Ten digits are still refused, naming the field; nothing is created.
	res := h.do("PUT", base+"/ten", `{"name":"N","value":"sk-client-value","expiresAt":"2031-03-01T08:00:00.1234567891Z"}`, mgr)
	if e := res.errorBody(t); res.status != 400 || len(e.Details) != 1 || e.Details[0].Field != "expiresAt" || !strings.Contains(e.Details[0].Message, "at most 9 fractional digits") {
		t.Fatalf("ten digits: %d %s", res.status, res.body)
	}
	if res := h.do("GET", base+"/ten", "", mgr); res.status != 404 {
		t.Fatalf("the refused create left a token: %d %s", res.status, res.body)
	}
	if res := h.do("GET", base+"?q="+urlQuery("expiresAt:2031-03-01T08:00:00.1234567891Z"), "", mgr); res.status != 400 || !strings.Contains(string(res.body), "at most 9 fractional digits") {
		t.Fatalf("q with ten digits: %d %s", res.status, res.body)
	}
}
