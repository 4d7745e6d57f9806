package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"testing"

	"aitokens/pkg/auth"
	"aitokens/pkg/devtools/testenv"
	"aitokens/pkg/query"
	"aitokens/pkg/service"
)

// queryFixture creates a fixed set of tokens and returns each one's createdAt.
func queryFixture(t *testing.T, h *harness) map[string]string {
	t.Helper()
	tokens := []struct{ id, name string }{
		{"openai", "OpenAI Token"},
		{"emporix--openai", "Emporix OpenAi Token"},
		{"anthropic", "Anthropic Key"},
		{"support-bot", "Customer Support Bot"},
		{"mcp_github", "MCP GitHub Server"},
		{"slack-bot", "Slack Bot Token"},
		{"oauth-client", "OAuth Client Secret"},
		{"zeta", "zeta (lower case)"},
	}
	for _, tk := range tokens {
		h.create(tk.id, tk.name, "value-"+tk.id)
	}
	// Versions: anthropic 3, support-bot 2, oauth-client 2, the rest 1.
	for _, id := range []string{"anthropic", "anthropic", "support-bot", "oauth-client"} {
		if res := h.do(http.MethodPatch, base+"/"+id, `[{"op":"REPLACE","path":"/name","value":"`+nameOf(tokens, id)+`"}]`, h.manager()); res.status != 204 {
			t.Fatalf("patch %s: %d", id, res.status)
		}
	}
	created := map[string]string{}
	for _, tk := range tokens {
		created[tk.id] = h.getDoc(tk.id)["metadata"].(map[string]any)["createdAt"].(string)
	}
	return created
}

func nameOf(tokens []struct{ id, name string }, id string) string {
	for _, tk := range tokens {
		if tk.id == id {
			return tk.name
		}
	}
	return ""
}

func idsOf(t *testing.T, res response) string {
	t.Helper()
	var docs []map[string]any
	res.json(t, &docs)
	ids := make([]string, 0, len(docs))
	for _, d := range docs {
		ids = append(ids, fmt.Sprint(d["id"]))
	}
	sort.Strings(ids)
	return strings.Join(ids, ",")
}

func TestQueryTableThroughListAndSearch(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	created := queryFixture(t, h)
	all := "anthropic,emporix--openai,mcp_github,oauth-client,openai,slack-bot,support-bot,zeta"
	cases := []struct{ q, want string }{
		{"", all},
		{"id:openai", "openai"},
		{"id:nothing", ""},
		{`id:"emporix--openai"`, "emporix--openai"},
		{`name:"OpenAI Token"`, "openai"},
		{`name:"openai token"`, ""},
		{"name:~Token", "emporix--openai,openai,slack-bot"},
		{"name:~Bot", "slack-bot,support-bot"},
		{"name:~(?i)bot", "slack-bot,support-bot"},
		{"name:~(?i)OPENAI", "emporix--openai,openai"},
		{"name:~OpenAI", "openai"},
		{"name:~^O", "oauth-client,openai"},
		{"name:~Secret$", "oauth-client"},
		{"name:~Support", "support-bot"},
		{"name:(~Support Bot)", "support-bot"},
		{"name:(~Slack Bot Token)", "slack-bot"},
		{`name:(~\(lower case\))`, "zeta"},
		{"name:~[A-Z]{3}", "mcp_github"},
		{"id:~bot", "slack-bot,support-bot"},
		{"id:~^o", "oauth-client,openai"},
		{"id:~_", "mcp_github"},
		{"id:(openai,zeta)", "openai,zeta"},
		{`id:("openai","emporix--openai",missing-one)`, "emporix--openai,openai"},
		{"id:(openai, slack-bot) name:~Bot", "slack-bot"},
		{"metadata.version:1", "emporix--openai,mcp_github,openai,slack-bot,zeta"},
		{"metadata.version:>1", "anthropic,oauth-client,support-bot"},
		{"metadata.version:>=2", "anthropic,oauth-client,support-bot"},
		{"metadata.version:<2", "emporix--openai,mcp_github,openai,slack-bot,zeta"},
		{"metadata.version:<=3", all},
		{"metadata.version:(>1 AND <3)", "oauth-client,support-bot"},
		{"metadata.version:(>=3 AND <=3)", "anthropic"},
		{"metadata.version:(1,3)", "anthropic,emporix--openai,mcp_github,openai,slack-bot,zeta"},
		{"metadata.version:>1 name:~Bot", "support-bot"},
		{"metadata.version:>1 metadata.version:<3", "oauth-client,support-bot"},
		{"metadata.createdAt:>=" + quote(created["support-bot"]), "mcp_github,oauth-client,slack-bot,support-bot,zeta"},
		{"metadata.createdAt:<" + quote(created["emporix--openai"]), "openai"},
		{"metadata.createdAt:(>=" + quote(created["emporix--openai"]) + " AND <=" + quote(created["anthropic"]) + ")", "anthropic,emporix--openai"},
		{"metadata.createdAt:" + quote(created["zeta"]), "zeta"},
		{"metadata.createdAt:>2000-01-01", all},
		{"metadata.createdAt:<2000-01-01", ""},
		{"metadata.modifiedAt:>" + quote(created["zeta"]), "anthropic,oauth-client,support-bot"},
		{"metadata.lastUsedAt:null", all},
		{"metadata.lastUsedAt:missing", all},
		{"metadata.lastUsedAt:exists", ""},
		{"name:exists", all},
		{"name:missing", ""},
		{"metadata.usageCount:0", all},
		{"compoundLogicalQuery:((id:openai) OR (id:zeta))", "openai,zeta"},
		{"compoundLogicalQuery:((name:~Bot metadata.version:1) OR (id:anthropic))", "anthropic,slack-bot"},
		{"compoundLogicalQuery:((name:~Token) OR (name:~Bot)) metadata.version:1", "emporix--openai,openai,slack-bot"},
		{"compoundLogicalQuery:((id:openai) OR ((metadata.version:>1) AND (name:~Key)))", "anthropic,openai"},
	}
	reader := h.jwt("acme", auth.ScopeRead)
	for _, c := range cases {
		list := h.do(http.MethodGet, base+"?pageSize=1000&q="+url.QueryEscape(c.q), "", reader, "X-Total-Count", "true")
		if list.status != 200 || idsOf(t, list) != c.want {
			t.Errorf("list %s: %d %s, want %q", c.q, list.status, list.body, c.want)
			continue
		}
		body, _ := json.Marshal(map[string]string{"q": c.q})
		search := h.do(http.MethodPost, base+"/search?pageSize=1000", string(body), reader, "X-Total-Count", "true")
		if search.status != 200 || idsOf(t, search) != c.want {
			t.Errorf("search %s: %d %s, want %q", c.q, search.status, search.body, c.want)
		}
		wantTotal := 0
		if c.want != "" {
			wantTotal = strings.Count(c.want, ",") + 1
		}
		if list.header.Get("X-Total-Count") != fmt.Sprint(wantTotal) || search.header.Get("X-Total-Count") != fmt.Sprint(wantTotal) {
			t.Errorf("%s: totals %s / %s, want %d", c.q, list.header.Get("X-Total-Count"), search.header.Get("X-Total-Count"), wantTotal)
		}
	}
}

func quote(s string) string { return `"` + s + `"` }

func TestQueryComposesWithSortPagingFieldsAndTotal(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	queryFixture(t, h)
	reader := h.jwt("acme", auth.ScopeRead)
	q := url.QueryEscape("name:~(?i)o")
	res := h.do(http.MethodGet, base+"?q="+q+"&sort=name:desc&pageSize=2&pageNumber=2&fields=id", "", reader, "X-Total-Count", "true")
	// The 7 names with an o, by name descending (byte order): zeta (lower case), Slack Bot Token,
	// OpenAI Token, OAuth Client Secret, Emporix OpenAi Token, Customer Support Bot, Anthropic Key.
	if string(res.body) != `[{"id":"openai"},{"id":"oauth-client"}]`+"\n" || res.header.Get("X-Total-Count") != "7" {
		t.Fatalf("%s total %s", res.body, res.header.Get("X-Total-Count"))
	}
	search := h.do(http.MethodPost, base+"/search?sort=name:desc&pageSize=2&pageNumber=2&fields=id", `{"q":"name:~(?i)o"}`, reader, "X-Total-Count", "true")
	if string(search.body) != string(res.body) || search.header.Get("X-Total-Count") != "7" {
		t.Fatalf("search differs: %s", search.body)
	}
}

func TestQueryErrorsOverHTTP(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.create("openai", "OpenAI Token", "v")
	reader := h.jwt("acme", auth.ScopeRead)
	cases := []struct{ q, want string }{
		{"value:x", `unknown field "value" at position 1`},
		{"name:(~abc", "missing ) at position 6"},
		{"name:~a(b", "bad regular expression"},
		{"id:", "empty value at position 4"},
		{"metadata.version:>abc", "is a number"},
		{"name:>5", "compares numbers or dates"},
		{"metadata.createdAt:>soon", "is a date"},
		{"name:~" + strings.Repeat("a", 300), "longer than 256"},
		{strings.Repeat("id:a ", 500), "longer than 2048"},
	}
	for _, c := range cases {
		for _, res := range []response{
			h.do(http.MethodGet, base+"?q="+url.QueryEscape(c.q), "", reader),
			h.do(http.MethodPost, base+"/search", mustJSON(map[string]string{"q": c.q}), reader),
		} {
			e := res.errorBody(t)
			if res.status != 400 || !strings.Contains(e.Message, c.want) || len(e.Details) == 0 || e.Details[0].Field != "q" {
				t.Errorf("%.40s: %d %s, want 400 naming %q", c.q, res.status, res.body, c.want)
			}
		}
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// A query on id equality or an IN list of ids reads those keys, not the whole partition.
func TestIDQueriesReadOnlyTheirKeys(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	queryFixture(t, h)
	cases := []struct {
		q         string
		itemsRead int
	}{
		{"id:openai", 1},
		{"id:(openai,zeta,absent)", 2},
		{"id:openai name:~Nope", 1},
		{"name:~Token", 8 + 3}, // the name index's 8 keys, then the 3 matches' items
		{"", 8},                // the listing index's page
	}
	for _, c := range cases {
		q, err := query.Parse(c.q)
		if err != nil {
			t.Fatal(err)
		}
		sortKeys, _ := query.ParseSort("")
		res, err := h.svc.List(context.Background(), service.List{Tenant: "acme", Query: q, Sort: sortKeys, Page: query.Page{Number: 1, Size: 60}})
		if err != nil || res.ItemsRead != c.itemsRead {
			t.Errorf("%s: read %d items, want %d (%v)", c.q, res.ItemsRead, c.itemsRead, err)
		}
	}
}

// A tenant whose tokens fill more than one DynamoDB page (a Query answers at most 1 MB of items
// read, before the projection) is listed whole: the store follows LastEvaluatedKey to the end.
func TestListReadsEveryPage(t *testing.T) {
	h, proxy := proxiedHarness(t, testenv.Policy.AttemptTimeout, testRequestTimeout)
	// 300 items of about 4 KB: 1.2 MB, so at least two pages.
	const tokens = 300
	seedSizedTokens(t, h.table, tokens, 4096)
	before := len(proxy.Calls())
	res := h.do(http.MethodGet, base+"?pageSize=1000&fields=id", "", h.jwt("acme", auth.ScopeRead), "X-Total-Count", "true")
	var docs []map[string]any
	res.json(t, &docs)
	seen := map[string]bool{}
	for _, d := range docs {
		seen[d["id"].(string)] = true
	}
	for i := range tokens {
		if id := fmt.Sprintf("token-%05d", i); !seen[id] {
			t.Errorf("%s is missing from the list", id)
		}
	}
	if res.status != http.StatusOK || len(docs) != tokens || res.header.Get("X-Total-Count") != fmt.Sprint(tokens) {
		t.Fatalf("list of %d tokens: %d, %d tokens, X-Total-Count %q", tokens, res.status, len(docs), res.header.Get("X-Total-Count"))
	}
	queries := 0
	for _, op := range proxy.Calls()[before:] {
		if op == "Query" {
			queries++
		}
	}
	if queries < 2 {
		t.Fatalf("the list read the partition in %d Query call(s): the seeded items do not span pages, so the test proves nothing", queries)
	}
	t.Logf("%d tokens of ~4 KB listed whole in %d Query pages", tokens, queries)
}
