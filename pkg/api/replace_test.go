package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"aitokens/pkg/devtools/testenv"
	"aitokens/pkg/store"
	"aitokens/pkg/token"
)

// settableClock is a clock a test moves by hand (for a grace period), one millisecond on at
// every reading so that writes still get their own times.
type settableClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *settableClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(time.Millisecond)
	return c.now
}

func (c *settableClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// replaceFixture is a restricted token "old" used by agent/a and mcp-server/m.
func replaceFixture(t *testing.T, h *harness) {
	t.Helper()
	if res := h.do("PUT", base+"/old", `{"name":"Old","value":"sk-the-old-value-0001","restricted":true}`, h.manager()); res.status != 201 {
		t.Fatalf("create old: %d %s", res.status, res.body)
	}
	for _, u := range []string{"agent/a", "mcp-server/m"} {
		if res := h.do("PUT", base+"/old/usages/"+u, "", h.manager()); res.status != 201 {
			t.Fatalf("register %s: %d %s", u, res.status, res.body)
		}
	}
}

func (h *harness) resolve(id string, consumer *token.Consumer) (string, error) {
	v, err := h.svc.Resolve(context.Background(), "acme", id, consumer, fmt.Sprint("resolve-", time.Now().UnixNano()))
	return string(v), err
}

// Replacing with no grace: one PUT creates the new token with the old one's usages (so the
// consumers of the old one resolve the new one), links the two both ways (shown in GET and list,
// found by q), retires the old one at once (resolve refused with reason replaced, naming the
// successor), and records an event on each token.
func TestReplaceAtOnce(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	replaceFixture(t, h)
	res := h.do("PUT", base+"/new", `{"name":"New","value":"sk-the-new-value-0002","replaces":"old","graceSeconds":0}`, h.manager())
	if res.status != 201 || string(res.body) != "{\"id\":\"new\"}\n" {
		t.Fatalf("replace: %d %s", res.status, res.body)
	}
	old, next := h.getDoc("old"), h.getDoc("new")
	if old["replacedBy"] != "new" || next["replaces"] != "old" || old["expiresAt"] == nil {
		t.Fatalf("links: old %v, new %v", old, next)
	}
	if meta := next["metadata"].(map[string]any); meta["usageCount"] != 2.0 || next["restricted"] != nil {
		t.Fatalf("new token %v: want the 2 usages copied (and its own restriction, none)", next)
	}
	var usages []map[string]any
	h.do("GET", base+"/new/usages", "", h.manager()).json(t, &usages)
	if len(usages) != 2 || usages[0]["kind"] != "agent" || usages[1]["kind"] != "mcp-server" {
		t.Fatalf("usages of new: %v", usages)
	}
	for q, want := range map[string]string{"replacedBy:new": "old", "replaces:old": "new", "replaces:exists": "new"} {
		var docs []map[string]any
		h.do("GET", base+"?fields=id&q="+q, "", h.manager()).json(t, &docs)
		if len(docs) != 1 || docs[0]["id"] != want {
			t.Errorf("q=%s: %v, want %s", q, docs, want)
		}
	}
	agent := &token.Consumer{Kind: "agent", ID: "a"}
	_, err := h.resolve("old", agent)
	if e := token.As(err); e.Reason != token.Replaced || e.Successor != "new" {
		t.Fatalf("resolve of the retired token: %v", err)
	}
	if v, err := h.resolve("new", agent); err != nil || v != "sk-the-new-value-0002" {
		t.Fatalf("resolve of the new token for the old one's consumer: %q, %v", v, err)
	}
	oldEvents, newEvents := eventsOf(t, h, "old"), eventsOf(t, h, "new")
	if e := oldEvents[1]; e.Action != token.ActionReplaced || e.ReplacedBy != "new" || e.Version != 2 {
		t.Fatalf("old's events: %+v", oldEvents) // [0] is the refused resolve
	}
	if e := newEvents[len(newEvents)-1]; e.Action != token.ActionCreate || e.Replaces != "old" || len(newEvents) != 3 {
		t.Fatalf("new's events: %+v", newEvents)
	}
	// The events route shows the links too.
	var route []map[string]any
	h.do("GET", base+"/old/events", "", h.manager()).json(t, &route)
	if route[1]["action"] != "replaced" || route[1]["replacedBy"] != "new" {
		t.Fatalf("events route: %v", route[1])
	}
}

// With a grace period the old token keeps resolving, for the consumers it had, until the grace
// ends, and is refused after (an injected clock moves past it). A token that expires before the
// grace ends keeps its own, earlier expiry.
func TestReplaceWithGrace(t *testing.T) {
	t.Parallel()
	clock := &settableClock{now: time.Now().UTC()}
	h := newHarnessFrom(t, stack{sealer: newHarness(t).sealer, now: clock.Now})
	replaceFixture(t, h)
	if res := h.do("PUT", base+"/new", `{"name":"New","generate":true,"replaces":"old","graceSeconds":3600}`, h.manager()); res.status != 201 {
		t.Fatalf("replace: %d %s", res.status, res.body)
	}
	agent, stranger := &token.Consumer{Kind: "agent", ID: "a"}, &token.Consumer{Kind: "agent", ID: "z"}
	if v, err := h.resolve("old", agent); err != nil || v != "sk-the-old-value-0001" {
		t.Fatalf("within the grace: %q, %v", v, err)
	}
	if _, err := h.resolve("old", stranger); token.As(err).Reason != token.ConsumerRefused {
		t.Fatalf("within the grace, a consumer the old token never had: %v", err)
	}
	clock.Advance(3601 * time.Second)
	if _, err := h.resolve("old", agent); token.As(err).Reason != token.Replaced {
		t.Fatalf("after the grace: %v", err)
	}

	// Its own earlier expiry stays.
	soon := clock.Now().Add(time.Hour).Format(time.RFC3339)
	if res := h.do("PUT", base+"/short", `{"name":"Short","value":"sk-short-lived-value","expiresAt":"`+soon+`"}`, h.manager()); res.status != 201 {
		t.Fatalf("create short: %d %s", res.status, res.body)
	}
	if res := h.do("PUT", base+"/short2", `{"name":"Short 2","value":"sk-short-2-value","replaces":"short"}`, h.manager()); res.status != 201 {
		t.Fatalf("replace short: %d %s", res.status, res.body)
	}
	if doc := h.getDoc("short"); doc["expiresAt"] != soon[:19]+".000Z" {
		t.Fatalf("short's expiry %v, want its own %s (earlier than the default grace)", doc["expiresAt"], soon)
	}
	if e := eventsOf(t, h, "short")[0]; len(e.Changes) != 1 || e.Changes[0] != "replacedBy" {
		t.Fatalf("the replaced event of a token that keeps its expiry: %+v", e)
	}
}

// Every refusal is the documented error and leaves the store as it was.
func TestReplaceRefusals(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	replaceFixture(t, h)
	if res := h.do("PUT", base+"/done", `{"name":"Done","value":"sk-done-value"}`, h.manager()); res.status != 201 {
		t.Fatal(res.status)
	}
	if res := h.do("PUT", base+"/done2", `{"name":"Done 2","value":"sk-done-2-value","replaces":"done"}`, h.manager()); res.status != 201 {
		t.Fatal(res.status)
	}
	if res := h.do("PUT", base+"/crowded", `{"name":"Crowded","value":"sk-crowded-value"}`, h.manager()); res.status != 201 {
		t.Fatal(res.status)
	}
	for i := range store.MaxReplaceUsages + 1 {
		if res := h.do("PUT", base+fmt.Sprintf("/crowded/usages/agent/a%02d", i), "", h.manager()); res.status != 201 {
			t.Fatal(res.status)
		}
	}
	cases := []struct {
		name, id, body string
		status         int
		field, typ     string // of the first detail, when the error has one
	}{
		{"old token missing", "new", `{"name":"N","value":"v","replaces":"nope"}`, 404, "", ""},
		{"already replaced", "new", `{"name":"N","value":"v","replaces":"done"}`, 409, "replaces", "already_replaced"},
		{"too many usages", "new", `{"name":"N","value":"v","replaces":"crowded"}`, 409, "replaces", "limit"},
		{"on an update", "old", `{"name":"Old","replaces":"done"}`, 400, "replaces", ""},
		{"itself", "new", `{"name":"N","value":"v","replaces":"new"}`, 400, "replaces", ""},
		{"a bad id", "new", `{"name":"N","value":"v","replaces":"a#b"}`, 400, "replaces", ""},
		{"negative grace", "new", `{"name":"N","value":"v","replaces":"old","graceSeconds":-1}`, 400, "graceSeconds", ""},
		{"fractional grace", "new", `{"name":"N","value":"v","replaces":"old","graceSeconds":1.5}`, 400, "graceSeconds", ""},
		{"grace over 90 days", "new", `{"name":"N","value":"v","replaces":"old","graceSeconds":7776001}`, 400, "graceSeconds", ""},
		{"grace as a string", "new", `{"name":"N","value":"v","replaces":"old","graceSeconds":"60"}`, 400, "", ""},
		{"grace without replaces", "new", `{"name":"N","value":"v","graceSeconds":60}`, 400, "graceSeconds", ""},
		{"grace on an update", "old", `{"name":"Old","graceSeconds":60}`, 400, "graceSeconds", ""},
	}
	for _, c := range cases {
		before := scanTable(t, h)
		res := h.do("PUT", base+"/"+c.id, c.body, h.manager())
		if res.status != c.status {
			t.Errorf("%s: %d %s, want %d", c.name, res.status, res.body, c.status)
			continue
		}
		e := res.errorBody(t)
		if c.field != "" && (len(e.Details) == 0 || e.Details[0].Field != c.field || c.typ != "" && e.Details[0].Type != c.typ) {
			t.Errorf("%s: details %+v, want field %s type %s", c.name, e.Details, c.field, c.typ)
		}
		if after := scanTable(t, h); !sameItems(before, after) {
			t.Errorf("%s: the store changed (%d items before, %d after)", c.name, len(before), len(after))
		}
	}
	// The stored link sent back unchanged on an update (a client that PUTs what it read) is a
	// read-only field and ignored.
	if res := h.do("PUT", base+"/done2", `{"name":"Done two","replaces":"done","replacedBy":"x"}`, h.manager()); res.status != 204 {
		t.Fatalf("update echoing the link: %d %s", res.status, res.body)
	}
}

// sameItems reports whether two scans hold the same items.
func sameItems(a, b []map[string]types.AttributeValue) bool {
	if len(a) != len(b) {
		return false
	}
	key := func(items []map[string]types.AttributeValue) map[string]string {
		m := map[string]string{}
		for _, it := range items {
			raw, _ := json.Marshal(it)
			m[it["sk"].(*types.AttributeValueMemberS).Value] = string(raw)
		}
		return m
	}
	ka, kb := key(a), key(b)
	for k, v := range ka {
		if kb[k] != v {
			return false
		}
	}
	return true
}

// Two concurrent replacements of one token: exactly one wins, the other is refused (already
// replaced, or a conflict to retry), and only the winner exists.
func TestConcurrentReplacementsOneWins(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	replaceFixture(t, h)
	const n = 4
	statuses := make([]int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			body := fmt.Sprintf(`{"name":"N%d","value":"sk-successor-%d-value","replaces":"old"}`, i, i)
			statuses[i] = h.do("PUT", fmt.Sprintf("%s/next%d", base, i), body, h.manager()).status
		})
	}
	wg.Wait()
	won, exist := 0, 0
	for i, s := range statuses {
		switch s {
		case 201:
			won++
		case 409:
		default:
			t.Errorf("replacement %d: %d", i, s)
		}
		if h.do("GET", fmt.Sprintf("%s/next%d", base, i), "", h.manager()).status == 200 {
			exist++
		}
	}
	if won != 1 || exist != 1 {
		t.Fatalf("statuses %v: %d won, %d successors exist; want exactly one", statuses, won, exist)
	}
}

// A replacement whose DynamoDB response is lost is retried by the SDK and recognised: one new
// token, one set of copies, and the generated value in the 201 is the one stored. A client that
// repeats the whole PUT of a value gets the idempotent update (204), not a second replacement.
func TestReplaceSurvivesALostResponse(t *testing.T) {
	t.Parallel()
	proxy := testenv.NewFaultProxy(t)
	client, err := store.NewClient(context.Background(), proxy.URL, testenv.Policy)
	if err != nil {
		t.Fatal(err)
	}
	h := newHarnessFrom(t, stack{client: client, sealer: newHarness(t).sealer})
	replaceFixture(t, h)
	proxy.DropNextResponse("TransactWriteItems", 1)
	res := h.do("PUT", base+"/new", `{"name":"New","generate":true,"replaces":"old"}`, h.manager())
	var created struct{ ID, Value string }
	res.json(t, &created)
	if res.status != 201 || created.Value == "" {
		t.Fatalf("replace with a lost response: %d %s", res.status, res.body)
	}
	if v, err := h.resolve("new", &token.Consumer{Kind: "agent", ID: "a"}); err != nil || v != created.Value {
		t.Fatalf("the value shown is not the value stored: %v", err)
	}
	if n := len(eventsOf(t, h, "new")); n != 3 { // create and two usage copies
		t.Fatalf("%d events on the new token", n)
	}
	// A client that lost its 201 and repeats the whole PUT with a value gets the idempotent
	// update of the token its first request made (204): no second replacement, no more copies.
	body := `{"name":"New two","value":"sk-new-two-value-0003","replaces":"new"}`
	if res := h.do("PUT", base+"/new2", body, h.manager()); res.status != 201 {
		t.Fatalf("replace new: %d %s", res.status, res.body)
	}
	events := len(eventsOf(t, h, "new2"))
	if res := h.do("PUT", base+"/new2", body, h.manager()); res.status != 204 {
		t.Fatalf("the same replacing PUT again: %d %s", res.status, res.body)
	}
	if doc := h.getDoc("new2"); doc["metadata"].(map[string]any)["usageCount"] != 2.0 || len(eventsOf(t, h, "new2")) != events+1 {
		t.Fatalf("after the repeat: %v, %d events (was %d)", doc, len(eventsOf(t, h, "new2")), events)
	}
	// With a generated value the repeat is refused, as for any generated value: it is shown once.
	if res := h.do("PUT", base+"/new", `{"name":"New","generate":true,"replaces":"old"}`, h.manager()); res.status != 400 {
		t.Fatalf("repeating a generating replace: %d %s", res.status, res.body)
	}
}
