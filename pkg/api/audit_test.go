package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"aitokens/pkg/auth"
	"aitokens/pkg/devtools/devkeys"
	"aitokens/pkg/devtools/testenv"
	"aitokens/pkg/store"
	"aitokens/pkg/token"
)

// as mints a manage-and-read JWT of acme for subject.
func (h *harness) as(subject string) string {
	tok, err := devkeys.Mint(h.key, devkeys.Claims{Tenant: "acme", Subject: subject, Scopes: []string{auth.ScopeRead, auth.ScopeManage}})
	if err != nil {
		h.t.Fatal(err)
	}
	return tok
}

// Every change makes exactly one event, with the caller as actor and the version it left; a
// refused write makes none.
func TestEveryChangeHasOneEvent(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	alice, bob := h.as("alice"), h.as("bob")
	h.create("other", "Other", "sk-other-value-0001")
	steps := []struct {
		name, jwt, method, path, body string
		status                        int
		action                        string // "" when no event is expected
		version                       int
		changes                       []string
		usage                         string
	}{
		{"create", alice, "PUT", "/openai", `{"name":"OpenAI","value":"sk-audit-value-0001"}`, 201, "create", 1, nil, ""},
		{"rename", bob, "PUT", "/openai", `{"name":"Renamed"}`, 204, "update", 2, []string{"name"}, ""},
		{"expiry by PUT", alice, "PUT", "/openai", `{"name":"Renamed","expiresAt":"2030-01-01T00:00:00Z"}`, 204, "update", 3, []string{"name", "expiresAt"}, ""},
		{"patch expiry and restriction", bob, "PATCH", "/openai", `[{"op":"REMOVE","path":"/expiresAt"},{"op":"REPLACE","path":"/restricted","value":true}]`, 204, "patch", 4, []string{"expiresAt", "restricted"}, ""},
		{"register", alice, "PUT", "/openai/usages/agent/support", ``, 201, "usage_register", 4, nil, "agent/support"},
		{"register again (no change)", alice, "PUT", "/openai/usages/agent/support", ``, 204, "", 0, nil, ""},
		{"delete refused: in use", bob, "DELETE", "/openai", ``, 409, "", 0, nil, ""},
		{"version mismatch", bob, "PUT", "/openai", `{"name":"X","metadata":{"version":1}}`, 409, "", 0, nil, ""},
		{"bad input", bob, "PATCH", "/openai", `[{"op":"REPLACE","path":"/value","value":"x"}]`, 400, "", 0, nil, ""},
		{"value change refused", bob, "PUT", "/openai", `{"name":"X","value":"sk-another-value"}`, 400, "", 0, nil, ""},
		{"unregister", bob, "DELETE", "/openai/usages/agent/support", ``, 204, "usage_unregister", 4, nil, "agent/support"},
		{"unregister again (no change)", bob, "DELETE", "/openai/usages/agent/support", ``, 204, "", 0, nil, ""},
		{"delete", alice, "DELETE", "/openai", ``, 204, "delete", 4, nil, ""},
		{"delete again (nothing there)", alice, "DELETE", "/openai", ``, 204, "", 0, nil, ""},
		{"version for a missing token", bob, "PUT", "/openai", `{"name":"X","metadata":{"version":4}}`, 404, "", 0, nil, ""},
		{"create again", bob, "PUT", "/openai", `{"name":"Again","value":"sk-audit-value-0002"}`, 201, "create", 1, nil, ""},
		{"register for the forced delete", bob, "PUT", "/openai/usages/tool/rag", ``, 201, "usage_register", 1, nil, "tool/rag"},
		{"forced delete", alice, "DELETE", "/openai?force=true", ``, 204, "force_delete", 1, nil, ""},
	}
	want := 0
	for _, s := range steps {
		before := eventsOf(t, h, "openai")
		res := h.do(s.method, base+s.path, s.body, s.jwt)
		if res.status != s.status {
			t.Fatalf("%s: %d %s", s.name, res.status, res.body)
		}
		after := eventsOf(t, h, "openai")
		if s.action == "" {
			if len(after) != len(before) {
				t.Fatalf("%s: %d events recorded, want none", s.name, len(after)-len(before))
			}
			continue
		}
		want++
		if len(after) != len(before)+1 {
			t.Fatalf("%s: %d events recorded, want 1", s.name, len(after)-len(before))
		}
		e := after[0]
		actor := map[string]string{alice: "alice", bob: "bob"}[s.jwt]
		if e.Action != s.action || e.Actor != actor || e.Version != s.version || e.TokenID != "openai" || e.Outcome != "success" ||
			e.RequestID == "" || strings.Join(e.Changes, ",") != strings.Join(s.changes, ",") || e.Usage != s.usage {
			t.Fatalf("%s: event %+v", s.name, e)
		}
	}
	if got := len(eventsOf(t, h, "openai")); got != want {
		t.Fatalf("%d events, want %d", got, want)
	}
	if got := len(eventsOf(t, h, "other")); got != 1 {
		t.Fatalf("another token has %d events", got)
	}
}

// The trail over HTTP: newest first, paged with X-Total-Count, readable after the token is
// deleted, refused to another tenant, and never holding secret material.
func TestEventsRoute(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	mgr := h.manager()
	const value = "sk-audit-secret-value-0003"
	h.create("openai", "OpenAI", value)
	for _, name := range []string{"A", "B", "C", "D"} {
		h.do("PUT", base+"/openai", `{"name":"`+name+`"}`, mgr)
	}
	h.do("DELETE", base+"/openai", "", mgr)

	res := h.do("GET", base+"/openai/events?pageSize=2&pageNumber=1", "", h.jwt("acme", auth.ScopeRead), "X-Total-Count", "true")
	var page []map[string]any
	res.json(t, &page)
	if res.status != 200 || res.header.Get("X-Total-Count") != "6" || len(page) != 2 || page[0]["action"] != "delete" ||
		page[0]["version"] != 5.0 || page[1]["version"] != 5.0 || page[1]["action"] != "update" {
		t.Fatalf("events page 1 of a deleted token: %d %s (total %s)", res.status, res.body, res.header.Get("X-Total-Count"))
	}
	last := h.do("GET", base+"/openai/events?pageSize=2&pageNumber=3", "", mgr)
	last.json(t, &page)
	if len(page) != 2 || page[1]["action"] != "create" || page[1]["version"] != 1.0 {
		t.Fatalf("events page 3: %s", last.body)
	}
	if past := h.do("GET", base+"/openai/events?pageNumber=9", "", mgr); strings.TrimSpace(string(past.body)) != "[]" {
		t.Fatalf("past the end: %s", past.body)
	}
	if never := h.do("GET", base+"/never-existed/events", "", mgr); never.status != 200 || strings.TrimSpace(string(never.body)) != "[]" {
		t.Fatalf("an id without events: %d %s", never.status, never.body)
	}
	cases := []struct {
		name, jwt, path string
		status          int
	}{
		{"another tenant", h.jwt("globex", auth.ScopeRead), base + "/openai/events", 403},
		{"no read scope", h.jwt("acme", auth.ScopeManage), base + "/openai/events", 403},
		{"bad id", mgr, base + "/bad.id/events", 400},
		{"bad page size", mgr, base + "/openai/events?pageSize=0", 400},
		{"no token", "", base + "/openai/events", 401},
	}
	for _, c := range cases {
		if res := h.do("GET", c.path, "", c.jwt); res.status != c.status {
			t.Errorf("%s: %d %s", c.name, res.status, res.body)
		}
	}

	// No value, hint, digest, ciphertext or JWT in any event item, and each expires by TTL.
	var needles [][]byte
	needles = append(needles, []byte(value), []byte("…0003"), []byte(mgr))
	for _, it := range scanTable(t, h) {
		sk := it["sk"].(*types.AttributeValueMemberS).Value
		if !strings.HasPrefix(sk, "event#") {
			continue
		}
		raw, _ := json.Marshal(it)
		for _, n := range needles {
			if bytes.Contains(raw, n) {
				t.Fatalf("an event holds secret material: %s", raw)
			}
		}
		for _, attr := range []string{"sealCiphertext", "sealWrappedKey", "sealDigest", "hint", "value"} {
			if _, ok := it[attr]; ok {
				t.Fatalf("an event has %s", attr)
			}
		}
		at, _ := time.Parse(time.RFC3339, it["at"].(*types.AttributeValueMemberS).Value)
		ttl := it["ttl"].(*types.AttributeValueMemberN).Value
		if want := at.Add(store.DefaultAuditRetention).Unix(); ttl != jsonNumber(want) {
			t.Fatalf("ttl %s, want %d (at + 400 days)", ttl, want)
		}
	}
}

func jsonNumber(n int64) string { b, _ := json.Marshal(n); return string(b) }

// A change whose DynamoDB response is lost is retried by the SDK; its event is recorded once.
func TestLostResponseRecordsOneEvent(t *testing.T) {
	t.Parallel()
	proxy := testenv.NewFaultProxy(t)
	client, err := store.NewClient(context.Background(), proxy.URL, testenv.Policy)
	if err != nil {
		t.Fatal(err)
	}
	h := newHarnessFrom(t, stack{client: client, sealer: newHarness(t).sealer})
	mgr := h.manager()
	steps := []struct{ method, path, body string }{
		{"PUT", "/openai", `{"name":"OpenAI","value":"sk-lost-0001"}`},
		{"PUT", "/openai", `{"name":"Renamed"}`},
		{"PATCH", "/openai", `[{"op":"REPLACE","path":"/restricted","value":true}]`},
		{"PUT", "/openai/usages/agent/a1", ``},
		{"DELETE", "/openai/usages/agent/a1", ``},
		{"DELETE", "/openai", ``},
	}
	for i, s := range steps {
		proxy.DropNextResponse("TransactWriteItems", 1)
		if res := h.do(s.method, base+s.path, s.body, mgr); res.status >= 300 {
			t.Fatalf("step %d with its response lost: %d %s", i, res.status, res.body)
		}
		if got := len(eventsOf(t, h, "openai")); got != i+1 {
			t.Fatalf("step %d (%s %s): %d events, want %d", i, s.method, s.path, got, i+1)
		}
	}
}

// Refused resolves are recorded with the consumer as actor and the reason as outcome; a
// successful one is not.
func TestRefusedResolvesAreRecorded(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	mgr := h.manager()
	h.do("PUT", base+"/r", `{"name":"R","value":"sk-restricted-0004","restricted":true}`, mgr)
	h.do("PUT", base+"/r/usages/agent/support", "", mgr)
	h.do("PUT", base+"/exp", `{"name":"E","value":"sk-expiring-0004","expiresAt":"`+future()+`"}`, mgr)
	h.do("PUT", base+"/exp", `{"name":"E","expiresAt":"2020-01-01T00:00:00Z"}`, mgr)
	ctx := context.Background()
	calls := []struct {
		id       string
		consumer *token.Consumer
		actor    string
		outcome  string // "" for a successful resolve: no event
		version  int
	}{
		{"r", &token.Consumer{Kind: "agent", ID: "support"}, "", "", 0},
		{"r", &token.Consumer{Kind: "agent", ID: "sales"}, "agent/sales", "consumer_not_allowed", 1},
		{"r", nil, "unnamed", "consumer_not_allowed", 1},
		{"exp", &token.Consumer{Kind: "tool", ID: "rag"}, "tool/rag", "expired", 2},
		{"gone", nil, "unnamed", "not_found", 0},
	}
	for i, c := range calls {
		before := len(eventsOf(t, h, c.id))
		h.svc.Resolve(ctx, "acme", c.id, c.consumer, "resolve-"+string(rune('a'+i)))
		events := eventsOf(t, h, c.id)
		if c.outcome == "" {
			if len(events) != before {
				t.Fatalf("call %d: a successful resolve was recorded", i)
			}
			continue
		}
		e := events[0]
		if len(events) != before+1 || e.Action != "resolve" || e.Actor != c.actor || e.Outcome != c.outcome || e.Version != c.version || e.RequestID == "" {
			t.Fatalf("call %d: %d new events, newest %+v", i, len(events)-before, e)
		}
	}
	res := h.do("GET", base+"/gone/events", "", mgr)
	if res.status != http.StatusOK || !strings.Contains(string(res.body), `"outcome":"not_found"`) {
		t.Fatalf("the refusal of a missing token over HTTP: %s", res.body)
	}
}

// Paging is bounded like the list: past the bound of events read is a 400 that says so.
func TestEventsPagingBound(t *testing.T) {
	t.Parallel()
	h := newHarnessFrom(t, stack{sealer: newHarness(t).sealer, maxItemsRead: 3})
	mgr := h.manager()
	h.create("openai", "OpenAI", "sk-bound-0001")
	for _, n := range []string{"A", "B", "C"} {
		h.do("PUT", base+"/openai", `{"name":"`+n+`"}`, mgr)
	}
	if res := h.do("GET", base+"/openai/events?pageSize=3", "", mgr); res.status != 200 {
		t.Fatalf("within the bound: %d %s", res.status, res.body)
	}
	res := h.do("GET", base+"/openai/events?pageSize=3&pageNumber=2", "", mgr)
	const want = `{"code":400,"status":"Bad Request","message":"Validation problem with request.",` +
		`"details":[{"field":"pageNumber","message":"only the 3 newest events of a token can be paged through"}]}`
	if res.status != 400 || strings.TrimSpace(strings.Replace(string(res.body), `,"requestId":"`+res.header.Get("X-Request-Id")+`"`, "", 1)) != want {
		t.Fatalf("past the bound: %d %s", res.status, res.body)
	}
}
