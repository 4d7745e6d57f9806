package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
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
	if meta := next["metadata"].(map[string]any); meta["usageCount"] != 2.0 || next["restricted"] != true {
		t.Fatalf("new token %v: want the 2 usages copied (and the old one's restriction)", next)
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

// A replacement never widens who may resolve (issue 30, 1): the successor of a restricted token
// is restricted without asking, so it resolves for the consumers it inherited and for no one
// else, nor for a call without a consumer; asking for an open successor of a restricted token is
// a 400 that says why, with nothing written. An open token's successor may be open.
func TestSuccessorOfARestrictedTokenIsRestricted(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	replaceFixture(t, h)
	if res := h.do("PUT", base+"/new", `{"name":"New","value":"sk-the-new-value-0002","replaces":"old"}`, h.manager()); res.status != 201 {
		t.Fatalf("replace: %d %s", res.status, res.body)
	}
	if doc := h.getDoc("new"); doc["restricted"] != true {
		t.Fatalf("successor of a restricted token: %v, want restricted", doc)
	}
	if v, err := h.resolve("new", &token.Consumer{Kind: "agent", ID: "a"}); err != nil || v != "sk-the-new-value-0002" {
		t.Fatalf("an inherited consumer: %q, %v", v, err)
	}
	for _, c := range []*token.Consumer{{Kind: "agent", ID: "stranger"}, nil} {
		if _, err := h.resolve("new", c); token.As(err).Reason != token.ConsumerRefused {
			t.Errorf("successor resolved for %v: %v, want consumer_not_allowed", c, err)
		}
	}

	if res := h.do("PUT", base+"/old2", `{"name":"Old 2","value":"sk-the-old-value-0003","restricted":true}`, h.manager()); res.status != 201 {
		t.Fatal(res.status)
	}
	before := scanTable(t, h)
	res := h.do("PUT", base+"/new2", `{"name":"New 2","value":"sk-the-new-value-0004","replaces":"old2","restricted":false}`, h.manager())
	if e := res.errorBody(t); res.status != 400 || len(e.Details) != 1 || e.Details[0].Field != "restricted" ||
		!strings.Contains(e.Details[0].Message, "PATCH") {
		t.Fatalf("an open successor of a restricted token: %d %s", res.status, res.body)
	}
	if after := scanTable(t, h); !sameItems(before, after) {
		t.Fatalf("the refused replacement wrote (%d items before, %d after)", len(before), len(after))
	}

	if res := h.do("PUT", base+"/open", `{"name":"Open","value":"sk-the-open-value-0005"}`, h.manager()); res.status != 201 {
		t.Fatal(res.status)
	}
	if res := h.do("PUT", base+"/open2", `{"name":"Open 2","value":"sk-the-open-value-0006","replaces":"open","restricted":false}`, h.manager()); res.status != 201 {
		t.Fatalf("an open successor of an open token: %d %s", res.status, res.body)
	}
	if doc := h.getDoc("open2"); doc["restricted"] != nil {
		t.Fatalf("successor of an open token: %v, want open", doc)
	}
}

// A race cannot widen it either: a replacement that read its predecessor open, held at its
// transaction while the predecessor is restricted, reads again and makes a restricted successor.
func TestSuccessorRestrictedWhenThePredecessorIsRestrictedMeanwhile(t *testing.T) {
	t.Parallel()
	proxy := testenv.NewFaultProxy(t)
	client, err := store.NewClient(context.Background(), proxy.URL, testenv.Policy)
	if err != nil {
		t.Fatal(err)
	}
	h := newHarnessFrom(t, stack{client: client, sealer: newHarness(t).sealer})
	direct := newHarnessFrom(t, stack{table: h.table, sealer: h.sealer})
	if res := h.do("PUT", base+"/old", `{"name":"Old","value":"sk-the-old-value-0001"}`, h.manager()); res.status != 201 {
		t.Fatal(res.status)
	}
	pause := proxy.PauseNext("TransactWriteItems")
	done := make(chan response, 1)
	go func() {
		done <- h.do("PUT", base+"/new", `{"name":"New","value":"sk-the-new-value-0002","replaces":"old"}`, h.manager())
	}()
	select {
	case <-pause.Reached:
	case <-time.After(30 * time.Second):
		t.Fatal("the replacement never reached its transaction")
	}
	if res := direct.do("PATCH", base+"/old", `[{"op":"REPLACE","path":"/restricted","value":true}]`, direct.manager()); res.status != 204 {
		t.Fatalf("restrict the predecessor: %d %s", res.status, res.body)
	}
	pause.Release()
	select {
	case res := <-done:
		if res.status != 201 {
			t.Fatalf("replacement: %d %s", res.status, res.body)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the replacement did not end")
	}
	if doc := direct.getDoc("new"); doc["restricted"] != true {
		t.Fatalf("successor of a token restricted before the replacement committed: %v, want restricted", doc)
	}
}

// Retirement is final (issue 30, 2): once replaced, a token's retirement only moves earlier. A
// PATCH or PUT that removes its expiry or sets it later is a 409 retirement_final naming the
// successor, with nothing written; an earlier one is accepted and moves the retirement with it,
// so that it cannot be moved back. And resolve refuses a retired token whatever its expiresAt
// says (an item changed around this service's checks, as an older version of it could).
func TestRetirementIsFinal(t *testing.T) {
	t.Parallel()
	clock := &settableClock{now: time.Now().UTC()}
	h := newHarnessFrom(t, stack{sealer: newHarness(t).sealer, now: clock.Now})
	replaceFixture(t, h)
	if res := h.do("PUT", base+"/new", `{"name":"New","value":"sk-the-new-value-0002","replaces":"old","graceSeconds":3600}`, h.manager()); res.status != 201 {
		t.Fatalf("replace: %d %s", res.status, res.body)
	}
	retires := h.getDoc("old")["expiresAt"].(string)
	at, _ := time.Parse(time.RFC3339Nano, retires)
	later, earlier := at.Add(time.Second).Format(time.RFC3339), at.Add(-10*time.Minute).Format(time.RFC3339)
	refused := []struct{ name, method, body string }{
		{"PATCH removing the expiry", "PATCH", `[{"op":"REMOVE","path":"/expiresAt"}]`},
		{"PATCH moving it later", "PATCH", `[{"op":"REPLACE","path":"/expiresAt","value":"2099-01-01T00:00:00Z"}]`},
		{"PATCH a second later", "PATCH", `[{"op":"ADD","path":"/expiresAt","value":"` + later + `"}]`},
		{"PUT moving it later", "PUT", `{"name":"Old","expiresAt":"2099-01-01T00:00:00Z"}`},
		{"PUT removing it", "PUT", `{"name":"Old","expiresAt":null}`},
	}
	for _, c := range refused {
		before := scanTable(t, h)
		res := h.do(c.method, base+"/old", c.body, h.manager())
		if res.status != 409 {
			t.Errorf("%s: %d %s, want 409 retirement_final", c.name, res.status, res.body)
			continue
		}
		e := res.errorBody(t)
		if len(e.Details) != 1 || e.Details[0].Type != "retirement_final" || e.ResourceID != "old" ||
			!strings.Contains(e.Details[0].Message, "new") || !strings.Contains(e.Message, retires) {
			t.Errorf("%s: %d %s, want 409 retirement_final naming new", c.name, res.status, res.body)
		}
		if after := scanTable(t, h); !sameItems(before, after) {
			t.Errorf("%s: the store changed", c.name)
		}
	}
	// Earlier (or the same) is fine, and then the earlier time is the retirement.
	if res := h.do("PUT", base+"/old", `{"name":"Old","expiresAt":"`+retires+`"}`, h.manager()); res.status != 204 {
		t.Fatalf("PUT of the same retirement: %d %s", res.status, res.body)
	}
	if res := h.do("PATCH", base+"/old", `[{"op":"REPLACE","path":"/expiresAt","value":"`+earlier+`"}]`, h.manager()); res.status != 204 {
		t.Fatalf("PATCH moving it earlier: %d %s", res.status, res.body)
	}
	if res := h.do("PATCH", base+"/old", `[{"op":"REPLACE","path":"/expiresAt","value":"`+retires+`"}]`, h.manager()); res.status != 409 {
		t.Fatalf("PATCH moving it back to the first retirement: %d %s", res.status, res.body)
	}
	agent := &token.Consumer{Kind: "agent", ID: "a"}
	if v, err := h.resolve("old", agent); err != nil || v != "sk-the-old-value-0001" {
		t.Fatalf("before its retirement: %q, %v", v, err)
	}
	// An item whose expiry went around the checks: past its retirement, resolve still refuses.
	if _, err := testenv.Client().UpdateItem(context.Background(), &dynamodb.UpdateItemInput{TableName: aws.String(h.table),
		Key:              map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: "acme"}, "sk": &types.AttributeValueMemberS{Value: "token#old"}},
		UpdateExpression: aws.String("REMOVE expiresAt, expiryDay")}); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Hour)
	if _, err := h.resolve("old", agent); token.As(err).Reason != token.Replaced || token.As(err).Successor != "new" {
		t.Fatalf("a replaced token past its retirement, its expiry removed behind the service's back: %v, want replaced", err)
	}
	testenv.LeaveInvariants(t, h.table, "the test removes a replaced token's expiry behind the service's back")
}

// The identical replacing PUT repeated, graceSeconds and all (a client that lost its 201), is
// answered as the README documents, 204, as it is without graceSeconds (issue 30, 3); it copies
// nothing more and leaves the retirement where the first one set it.
func TestRepeatedReplacingPutWithGrace(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	replaceFixture(t, h)
	body := `{"name":"New","value":"sk-the-new-value-0002","replaces":"old","graceSeconds":60}`
	if res := h.do("PUT", base+"/new", body, h.manager()); res.status != 201 {
		t.Fatalf("replace: %d %s", res.status, res.body)
	}
	retires := h.getDoc("old")["expiresAt"]
	if res := h.do("PUT", base+"/new", body, h.manager()); res.status != 204 {
		t.Fatalf("the identical replacing PUT again: %d %s, want 204", res.status, res.body)
	}
	if doc := h.getDoc("new"); doc["metadata"].(map[string]any)["usageCount"] != 2.0 {
		t.Fatalf("after the repeat: %v", doc)
	}
	if got := h.getDoc("old")["expiresAt"]; got != retires {
		t.Fatalf("the repeat moved the retirement: %v, was %v", got, retires)
	}
	// graceSeconds on any other update is still refused.
	if res := h.do("PUT", base+"/old", `{"name":"Old","graceSeconds":60}`, h.manager()); res.status != 400 {
		t.Fatalf("graceSeconds on an update without the link: %d %s", res.status, res.body)
	}
}
