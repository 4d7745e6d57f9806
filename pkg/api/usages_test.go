package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"aitokens/pkg/auth"
	"aitokens/pkg/token"
)

func usageCount(t *testing.T, h *harness, id string) float64 {
	t.Helper()
	return h.getDoc(id)["metadata"].(map[string]any)["usageCount"].(float64)
}

func TestUsagesRegisterListUnregister(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.create("openai", "OpenAI", "sk-1")
	mgr := h.manager()
	steps := []struct {
		method, path string
		status       int
		count        float64
	}{
		{"PUT", "/openai/usages/agent/support-agent", 201, 1},
		{"PUT", "/openai/usages/agent/support-agent", 204, 1},
		{"PUT", "/openai/usages/mcp-server/github", 201, 2},
		{"PUT", "/openai/usages/tool/web.search:v2", 201, 3},
		{"PUT", "/openai/usages/oauth-client/crm", 201, 4},
		{"DELETE", "/openai/usages/tool/web.search:v2", 204, 3},
		{"DELETE", "/openai/usages/tool/web.search:v2", 204, 3},
		{"DELETE", "/openai/usages/agent/never-registered", 204, 3},
	}
	for _, s := range steps {
		if res := h.do(s.method, base+s.path, "", mgr); res.status != s.status {
			t.Fatalf("%s %s: %d %s", s.method, s.path, res.status, res.body)
		}
		if got := usageCount(t, h, "openai"); got != s.count {
			t.Fatalf("%s %s: usageCount %v, want %v", s.method, s.path, got, s.count)
		}
	}
	res := h.do("GET", base+"/openai/usages?pageSize=2", "", h.jwt("acme", auth.ScopeRead), "X-Total-Count", "true")
	var usages []map[string]any
	res.json(t, &usages)
	if res.status != 200 || len(usages) != 2 || usages[0]["kind"] != "agent" || usages[0]["refId"] != "support-agent" ||
		usages[1]["kind"] != "mcp-server" || res.header.Get("X-Total-Count") != "3" {
		t.Fatalf("usages: %d %s total %s", res.status, res.body, res.header.Get("X-Total-Count"))
	}
	// q can filter on the count.
	h.create("unused", "Unused", "sk-2")
	list := h.do("GET", base+"?q=metadata.usageCount:%3E0&fields=id", "", mgr)
	if string(list.body) != `[{"id":"openai"}]`+"\n" {
		t.Fatalf("q on usageCount: %s", list.body)
	}
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.create("openai", "OpenAI", "sk-1")
	mgr := h.manager()
	cases := []struct {
		name, method, path, jwt string
		status                  int
	}{
		{"register on a missing token", "PUT", "/nope/usages/agent/a1", mgr, 404},
		{"usages of a missing token", "GET", "/nope/usages", mgr, 404},
		{"unknown kind", "PUT", "/openai/usages/robot/a1", mgr, 400},
		{"bad refId", "PUT", "/openai/usages/agent/a%23b", mgr, 400},
		{"bad token id", "PUT", "/a.b/usages/agent/a1", mgr, 400},
		{"read scope cannot register", "PUT", "/openai/usages/agent/a1", h.jwt("acme", auth.ScopeRead), 403},
		{"read scope cannot unregister", "DELETE", "/openai/usages/agent/a1", h.jwt("acme", auth.ScopeRead), 403},
		{"manage scope alone cannot list", "GET", "/openai/usages", h.jwt("acme", auth.ScopeManage), 403},
		{"other tenant", "PUT", "/openai/usages/agent/a1", h.jwt("globex", auth.ScopeManage), 403},
		{"bad pageSize", "GET", "/openai/usages?pageSize=0", mgr, 400},
		{"bad force", "DELETE", "/openai?force=maybe", mgr, 400},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := scanTable(t, h)
			if res := h.do(c.method, base+c.path, "", c.jwt); res.status != c.status {
				t.Fatalf("%d %s, want %d", res.status, res.body, c.status)
			}
			if !reflect.DeepEqual(before, scanTable(t, h)) {
				t.Fatal("a failed request changed the store")
			}
		})
	}
}

func TestDeleteInUseIsRefusedThenForced(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.create("openai", "OpenAI", "sk-1")
	mgr := h.manager()
	for _, u := range []string{"agent/a1", "mcp-server/m1"} {
		if res := h.do("PUT", base+"/openai/usages/"+u, "", mgr); res.status != 201 {
			t.Fatalf("register %s: %d", u, res.status)
		}
	}
	before := scanTable(t, h)
	res := h.do("DELETE", base+"/openai", "", mgr)
	e := res.errorBody(t)
	var force, a1, m1 bool
	for _, d := range e.Details {
		force = force || d.Type == "force"
		a1 = a1 || d.Type == "agent" && strings.Contains(d.Message, "a1")
		m1 = m1 || d.Type == "mcp-server" && strings.Contains(d.Message, "m1")
	}
	if res.status != 409 || !force || !a1 || !m1 {
		t.Fatalf("refused delete: %d %s", res.status, res.body)
	}
	if !reflect.DeepEqual(before, scanTable(t, h)) {
		t.Fatal("a refused delete changed the store")
	}
	if res := h.do("DELETE", base+"/openai?force=false", "", mgr); res.status != 409 {
		t.Fatalf("force=false: %d", res.status)
	}
	if res := h.do("DELETE", base+"/openai?force=true", "", mgr); res.status != 204 {
		t.Fatalf("forced delete: %d %s", res.status, res.body)
	}
	if items := withoutEvents(scanTable(t, h)); len(items) != 0 {
		t.Fatalf("%d items left after a forced delete", len(items))
	}
	if res := h.do("DELETE", base+"/openai?force=true", "", mgr); res.status != 204 {
		t.Fatalf("forced delete of a missing token: %d", res.status)
	}
}

func TestForcedDeleteBeyondTheTransactionLimit(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.create("big", "Big", "sk-1")
	ctx := context.Background()
	for i := range 230 {
		if _, err := h.store.RegisterUsage(ctx, "acme", "big", "agent", fmt.Sprintf("a%03d", i), token.Event{At: time.Now(), RequestID: fmt.Sprint("seed-", i)}); err != nil {
			t.Fatal(err)
		}
	}
	if got := usageCount(t, h, "big"); got != 230 {
		t.Fatalf("usageCount %v", got)
	}
	if res := h.do("DELETE", base+"/big?force=true", "", h.manager()); res.status != 204 {
		t.Fatalf("forced delete: %d %s", res.status, res.body)
	}
	if items := withoutEvents(scanTable(t, h)); len(items) != 0 {
		t.Fatalf("%d items left", len(items))
	}
	// Beyond the transaction limit, every usage removed before the last transaction has its
	// usage_unregister event under the forced delete's request; the last removes the token
	// with the rest of its usages under one force_delete event.
	events := eventsOf(t, h, "big")
	if events[0].Action != "force_delete" || events[0].Version != 1 {
		t.Fatalf("newest event %+v", events[0])
	}
	removed := 0
	for _, e := range events {
		if e.Action == "usage_unregister" {
			removed++
			if e.RequestID != events[0].RequestID || e.Actor != events[0].Actor {
				t.Errorf("a removal under another request or actor: %+v", e)
			}
		}
	}
	if chunks := (230 - 98 + 48) / 49; removed != chunks*49 || len(events) != 1+230+removed+1 {
		t.Fatalf("%d events, %d usage removals before the last transaction, want %d", len(events), removed, chunks*49)
	}
}

// withoutEvents leaves out the audit events of a scan, and the counters that count no token.
func withoutEvents(items []map[string]types.AttributeValue) []map[string]types.AttributeValue {
	var kept []map[string]types.AttributeValue
	for _, it := range items {
		sk := it["sk"].(*types.AttributeValueMemberS).Value
		if n, ok := it["tokens"].(*types.AttributeValueMemberN); ok && strings.HasPrefix(sk, "count#") && n.Value == "0" {
			continue // a counter of no tokens is no item left behind
		}
		if !strings.HasPrefix(sk, "event#") {
			kept = append(kept, it)
		}
	}
	return kept
}

// orphans counts usage items whose token is gone, tokens whose usageCount differs from the
// number of their usage items, and the tokens whose count was compared.
func orphans(t *testing.T, h *harness) (orphaned, miscounted, compared int) {
	t.Helper()
	tokens := map[string]int{}
	counts := map[string]int{}
	for _, it := range scanTable(t, h) {
		sk := it["sk"].(*types.AttributeValueMemberS).Value
		if id, ok := strings.CutPrefix(sk, "token#"); ok {
			n := 0
			if c, ok := it["usageCount"].(*types.AttributeValueMemberN); ok {
				fmt.Sscan(c.Value, &n)
			}
			tokens[id] = n
		} else if rest, ok := strings.CutPrefix(sk, "usage#"); ok {
			id, _, _ := strings.Cut(rest, "#")
			counts[id]++
		}
	}
	for id, n := range counts {
		if _, ok := tokens[id]; !ok {
			orphaned += n
		}
	}
	for id, want := range tokens {
		compared++
		if counts[id] != want {
			miscounted++
		}
	}
	return orphaned, miscounted, compared
}

// Register racing delete, many rounds: never a usage of a deleted token. Every third round races
// registrars against an unregistrar instead, and its token survives, so that the usage counts
// of surviving tokens are compared too.
func TestRegisterRacingDeleteLeavesNoOrphans(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	mgr := h.manager()
	const rounds, registrars = 15, 4
	for round := range rounds {
		if round%3 == 2 {
			raceRegisterUnregister(t, h, fmt.Sprintf("kept-%d", round), registrars)
			continue
		}
		id := fmt.Sprintf("race-%d", round)
		h.create(id, "Race", "sk-race")
		var wg sync.WaitGroup
		start := make(chan struct{})
		for r := range registrars {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				for i := range 3 {
					status := h.do("PUT", fmt.Sprintf("%s/%s/usages/agent/r%d-%d", base, id, r, i), "", mgr).status
					if status != 201 && status != 404 && status != 409 {
						t.Errorf("register: %d", status)
					}
				}
			}()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			query := ""
			if round%2 == 0 {
				query = "?force=true"
			}
			for {
				status := h.do("DELETE", base+"/"+id+query, "", mgr).status
				if status == 204 {
					return
				}
				if status != 409 {
					t.Errorf("delete: %d", status)
					return
				}
				query = "?force=true" // refused because in use: force it
			}
		}()
		close(start)
		wg.Wait()
	}
	o, m, compared := orphans(t, h)
	if o != 0 || m != 0 || compared != rounds/3 {
		t.Fatalf("%d orphaned usages, %d of %d surviving tokens with a wrong usageCount", o, m, compared)
	}
}

// raceRegisterUnregister registers usages from several goroutines while another unregisters
// some of them, on a token that stays.
func raceRegisterUnregister(t *testing.T, h *harness, id string, registrars int) {
	mgr := h.manager()
	h.create(id, "Kept", "sk-kept")
	var wg sync.WaitGroup
	start := make(chan struct{})
	for r := range registrars {
		wg.Add(2)
		go func() {
			defer wg.Done()
			<-start
			for i := range 3 {
				if status := h.do("PUT", fmt.Sprintf("%s/%s/usages/tool/r%d-%d", base, id, r, i), "", mgr).status; status != 201 {
					t.Errorf("register: %d", status)
				}
			}
		}()
		go func() {
			defer wg.Done()
			<-start
			for i := range 2 {
				if res := h.do("DELETE", fmt.Sprintf("%s/%s/usages/tool/r%d-%d", base, id, r, i), "", mgr); res.status != 204 {
					t.Errorf("unregister: %d %s", res.status, res.body)
				}
			}
		}()
	}
	close(start)
	wg.Wait()
}

// infra/openapi.yaml shows the 409 of deleting a token in use as the service renders it, force
// entry included, so a client generated from it knows the answer a dashboard's force dialog needs.
func TestOpenAPIDocumentsTheInUseConflict(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.create("openai", "OpenAI", "sk-in-use-value-0123456789")
	if res := h.do("PUT", base+"/openai/usages/agent/support-agent", "", h.manager()); res.status != 201 {
		t.Fatalf("register: %d %s", res.status, res.body)
	}
	res := h.do("DELETE", base+"/openai", "", h.manager())
	if res.status != 409 {
		t.Fatalf("delete of a token in use: %d %s", res.status, res.body)
	}
	response := specDoc.Paths.Find("/ai-service/{tenant}/agentic/tokens/{tokenId}").Delete.Responses.Status(409)
	if response == nil || response.Ref != "#/components/responses/TokenInUse" {
		t.Fatalf("infra/openapi.yaml: DELETE of a token lists no TokenInUse 409: %+v", response)
	}
	example := response.Value.Content.Get("application/json").Examples["inUse"].Value.Value
	if got := withoutRequestID(t, res.body); !reflect.DeepEqual(got, example) {
		want, _ := json.Marshal(example)
		t.Errorf("the documented 409 drifted from the service's:\n doc  %s\n code %s", want, res.body)
	}
}
