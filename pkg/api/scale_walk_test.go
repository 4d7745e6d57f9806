package api_test

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"aitokens/pkg/auth"
	"aitokens/pkg/devtools/testenv"
	"aitokens/pkg/seal"
	"aitokens/pkg/store"
)

// scaleFixture is a table with tenants "big" and "small", seeded by seedLikeAPI.
type scaleFixture struct {
	table      string
	big, small []seeded
}

var (
	sharedScaleMu sync.Mutex
	sharedScale   = map[int]*scaleFixture{}
)

// scaleTable seeds a scaleFixture: n tokens in "big", small in "small" (the same ids and names). Under AITOKENS_SCALE_TOKENS (a large tenant:
// 100,000 take ten minutes to seed) the fixture is seeded once per process and kept, so that
// the walk and BenchmarkScale run in one `go test` read the same table; its DynamoDB Local
// goes with the run. Otherwise each caller gets its own table, deleted after it.
func scaleTable(tb testing.TB, n, small int, sealer seal.Sealer) *scaleFixture {
	tb.Helper()
	shared := os.Getenv("AITOKENS_SCALE_TOKENS") != ""
	if shared {
		sharedScaleMu.Lock()
		defer sharedScaleMu.Unlock()
		if f := sharedScale[n]; f != nil && len(f.small) >= small {
			return f
		}
	}
	var table string
	if shared {
		table = keptTable(tb)
	} else {
		table = testenv.NewTable(tb)
		testenv.LeaveInvariants(tb, table, "tokens seeded in bulk have no audit trail")
	}
	h := newHarnessFrom(tb, stack{table: table, sealer: sealer})
	start := time.Now()
	f := &scaleFixture{table: table, big: seedLikeAPI(tb, h, "big", n), small: seedLikeAPI(tb, h, "small", small)}
	tb.Logf("seeded %d + %d tokens in %s", n, small, time.Since(start).Round(time.Second))
	if shared {
		sharedScale[n] = f
	}
	return f
}

// keptTable is a table as testenv.NewTable makes it (stream off), left for the rest of the run.
func keptTable(tb testing.TB) string {
	b := make([]byte, 6)
	rand.Read(b)
	name := "scale-" + hex.EncodeToString(b)
	ctx := context.Background()
	testenv.Require(tb)
	if err := store.CreateTable(ctx, testenv.Client(), name); err != nil {
		tb.Fatal(err)
	}
	if _, err := testenv.Client().UpdateTable(ctx, &dynamodb.UpdateTableInput{TableName: aws.String(name),
		StreamSpecification: &types.StreamSpecification{StreamEnabled: aws.Bool(false)}}); err != nil {
		tb.Fatal(err)
	}
	return name
}

// orderOf sorts tokens as the API does for sort field (id, name, metadata.createdAt,
// metadata.modifiedAt, expiresAt) in one direction: a token without the field last in both,
// ties by id ascending. Written here apart from pkg/query, from what the README says.
func orderOf(tokens []seeded, field string, desc bool) []seeded {
	value := func(t seeded) string {
		switch field {
		case "name":
			return t.name
		case "metadata.createdAt":
			return t.createdAt
		case "metadata.modifiedAt":
			return t.modifiedAt
		case "expiresAt":
			return t.expiresAt
		}
		return t.id
	}
	out := slices.Clone(tokens)
	slices.SortFunc(out, func(a, b seeded) int {
		va, vb := value(a), value(b)
		switch {
		case va == "" && vb != "":
			return 1
		case vb == "" && va != "":
			return -1
		}
		c := strings.Compare(va, vb) // times are all in one fixed-width UTC format: strings sort as instants
		if desc {
			c = -c
		}
		return cmp.Or(c, strings.Compare(a.id, b.id))
	})
	return out
}

// longestRun is the most tokens that share one value of the sort field.
func longestRun(tokens []seeded, field string) int {
	runs, most := map[string]int{}, 1
	for _, t := range tokens {
		v := map[string]string{"name": t.name, "metadata.createdAt": t.createdAt, "metadata.modifiedAt": t.modifiedAt,
			"expiresAt": t.expiresAt}[field]
		if v != "" {
			runs[v]++
			most = max(most, runs[v])
		}
	}
	return most
}

// walkDoc is what the walk reads of a listed token.
type walkDoc struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	Metadata struct {
		CreatedAt  string `json:"createdAt"`
		ModifiedAt string `json:"modifiedAt"`
	} `json:"metadata"`
	ExpiresAt string `json:"expiresAt"`
}

func (t seeded) doc() walkDoc {
	d := walkDoc{ID: t.id, Name: t.name, ExpiresAt: t.expiresAt}
	d.Metadata.CreatedAt, d.Metadata.ModifiedAt = t.createdAt, t.modifiedAt
	return d
}

// walkPages are the pages a client walks through a list of total entries at size: the first,
// one in the middle, the last, and the one after the last (empty).
func walkPages(total, size int) []int {
	last := max(1, (total+size-1)/size)
	return slices.Compact([]int{1, (last + 1) / 2, last, last + 1})
}

// isSealed says whether a stored attribute is part of the sealed value (store.item's seal*).
func isSealed(attr string) bool { return strings.HasPrefix(attr, "seal") }

// keysOnlyIndexes are the list indexes that project keys only, with their sort key.
var keysOnlyIndexes = map[string]string{store.ListIndexByName: "byName", store.ListIndexByCreated: "byCreated",
	store.ListIndexByModified: "byModified", store.ListIndexByExpires: "byExpires", store.ListIndexByIDKeys: "id"}

// A tenant lists, pages, sorts and counts through the clients' own calls, at any size: the
// dashboard's two lists (sort=name and the default, X-Total-Count: true) and the SDK's
// pageSize/pageNumber/sort pages of the list (GET ?q=) and of search (POST /search {"q"}), for
// every sort an index serves (both directions): the first page, one in the middle, the last and
// the one after it (200 with [], X-Total-Count still the total), and the filtered lists the
// README calls cheap (an exact name, an id list, name:~^Prefix) and a regex scan (name:~x).
// Each page is compared with the order computed here from the seeded tokens (ids, order,
// listing fields, X-Total-Count), and every DynamoDB read each request made is checked: no
// item it fetched carries a sealed attribute; a page of an index order fetches no more whole
// items than it shows, and the entries it reads before them (a deep page reads pageNumber ×
// pageSize of them) come from keys-only index entries (only the id order's first page reads
// list-id's listing attributes, which are the page). 303 tokens in `make test` (a ragged last
// page); AITOKENS_SCALE_TOKENS=100000 (`make test-scale`) walks a tenant of that size.
func TestScaleWalk(t *testing.T) {
	t.Parallel()
	n := scaleTokens(t, 303)
	sealer := seal.NewLocalFromKey([]byte(strings.Repeat("w", 32)))
	// "small" is another tenant with the same ids and names (its own times: a token of it shown
	// here fails the comparison of listing fields): 20 of them, or BenchmarkScale's 100 when
	// the two share one seeding.
	other := 20
	if os.Getenv("AITOKENS_SCALE_TOKENS") != "" {
		other = 100
	}
	f := scaleTable(t, n, other, sealer)
	meter := &capacityMeter{}
	client, err := store.NewClient(context.Background(), testenv.Endpoint(), testenv.Policy, func(o *dynamodb.Options) {
		o.APIOptions = append(o.APIOptions, meter.middleware)
	})
	if err != nil {
		t.Fatal(err)
	}
	timeout := testRequestTimeout
	if n > 1000 {
		timeout = 2 * time.Minute // a scan of 100,000 took 8.5 s in BenchmarkScale; deep pages read as many keys
	}
	h := newHarnessFrom(t, stack{client: client, table: f.table, sealer: sealer, requestTimeout: timeout})
	jwt := h.jwt("big", auth.ScopeRead)
	const path = "/ai-service/big/agentic/tokens"
	byID := map[string]seeded{}
	for _, tk := range f.big {
		byID[tk.id] = tk
	}

	type call struct {
		name   string
		search bool // POST /search {"q": q}, else GET ?q=q
		q      string
		params url.Values
		want   []seeded // the whole list in the API's order; the page is cut from it
		size   int      // pageSize sent (0: none, the default 60)
		page   int      // pageNumber sent (0: none)
		index  bool     // an index order without q: its reads are checked as a page's
		run    int      // for index: the longest run of tokens equal in the sort field
	}
	var calls []call
	// The dashboard's calls (cmd/aitokens/browser_test.go): no pageSize, no pageNumber.
	calls = append(calls,
		call{name: "dashboard sort=name", params: url.Values{"sort": {"name"}}, want: orderOf(f.big, "name", false), index: true,
			run: longestRun(f.big, "name")},
		call{name: "dashboard default", params: url.Values{}, want: orderOf(f.big, "id", false), index: true, run: 1})
	const size = 20
	for _, s := range []string{"", "id", "id:desc", "name", "name:desc", "metadata.createdAt", "metadata.createdAt:desc",
		"metadata.modifiedAt", "metadata.modifiedAt:desc", "expiresAt", "expiresAt:desc"} {
		field, dir, _ := strings.Cut(s, ":")
		want := orderOf(f.big, cmp.Or(field, "id"), dir == "desc")
		for _, p := range walkPages(len(want), size) {
			params := url.Values{"pageSize": {strconv.Itoa(size)}, "pageNumber": {strconv.Itoa(p)}}
			if s != "" {
				params.Set("sort", s)
			}
			calls = append(calls, call{name: fmt.Sprintf("sort=%s page %d", s, p), params: params, want: want, size: size, page: p, index: true,
				run: longestRun(f.big, cmp.Or(field, "id"))})
		}
	}
	nameRun := scaleName(75) // tokens 75, 76 and 77 share it
	for _, fl := range []struct {
		q, sort string
		match   func(seeded) bool
	}{
		{`name:"` + nameRun + `"`, "", func(t seeded) bool { return t.name == nameRun }},
		{`id:(t000005,t000050,t000099,t999999)`, "name:desc", func(t seeded) bool {
			return t.id == "t000005" || t.id == "t000050" || t.id == "t000099"
		}},
		{`name:~^Prefix`, "", func(t seeded) bool { return strings.HasPrefix(t.name, "Prefix") }},
		{`name:~^Prefix`, "name:desc", func(t seeded) bool { return strings.HasPrefix(t.name, "Prefix") }},
		{`name:~x`, "", func(t seeded) bool { return strings.Contains(t.name, "x") }},
		{`name:~x`, "metadata.createdAt:desc", func(t seeded) bool { return strings.Contains(t.name, "x") }},
	} {
		var matched []seeded
		for _, tk := range f.big {
			if fl.match(tk) {
				matched = append(matched, tk)
			}
		}
		field, dir, _ := strings.Cut(fl.sort, ":")
		want := orderOf(matched, cmp.Or(field, "id"), dir == "desc")
		pages := walkPages(len(want), size)
		for _, p := range pages {
			params := url.Values{"pageSize": {strconv.Itoa(size)}, "pageNumber": {strconv.Itoa(p)}}
			if fl.sort != "" {
				params.Set("sort", fl.sort)
			}
			calls = append(calls, call{name: fmt.Sprintf("q=%s sort=%s page %d", fl.q, fl.sort, p), q: fl.q, params: params, want: want, size: size, page: p})
			if p == 1 || p == pages[len(pages)-1] { // the SDK's search: the same answer
				calls = append(calls, call{name: fmt.Sprintf("search q=%s sort=%s page %d", fl.q, fl.sort, p), search: true, q: fl.q,
					params: params, want: want, size: size, page: p})
			}
		}
	}

	for _, c := range calls {
		var res response
		meter.takeAll()
		started := time.Now()
		if c.search {
			body, _ := json.Marshal(map[string]string{"q": c.q})
			res = h.do(http.MethodPost, path+"/search?"+c.params.Encode(), string(body), jwt, "X-Total-Count", "true")
		} else {
			params := c.params
			if c.q != "" {
				params = url.Values{"q": {c.q}}
				for k, v := range c.params {
					params[k] = v
				}
			}
			res = h.do(http.MethodGet, path+"?"+params.Encode(), "", jwt, "X-Total-Count", "true")
		}
		took := time.Since(started)
		_, reads := meter.takeAll()
		if res.status != http.StatusOK {
			t.Errorf("%s: %d %s", c.name, res.status, res.body)
			continue
		}
		size, page := cmp.Or(c.size, 60), cmp.Or(c.page, 1)
		from, to := min((page-1)*size, len(c.want)), min(page*size, len(c.want))
		var want []string
		for _, tk := range c.want[from:to] {
			want = append(want, tk.id)
		}
		var docs []walkDoc
		res.json(t, &docs)
		if docs == nil {
			t.Errorf("%s: body %s, want a JSON array", c.name, res.body)
		}
		var got []string
		for _, d := range docs {
			got = append(got, d.ID)
			if tk := byID[d.ID]; d != tk.doc() {
				t.Errorf("%s: %+v, seeded %+v", c.name, d, tk.doc())
			}
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: ids %v, want %v", c.name, got, want)
		}
		if total := res.header.Get("X-Total-Count"); total != strconv.Itoa(len(c.want)) {
			t.Errorf("%s: X-Total-Count %q, want %d", c.name, total, len(c.want))
		}
		entries, whole, listing := 0, 0, 0
		for _, r := range reads {
			for a := range r.attrs {
				if isSealed(a) {
					t.Errorf("%s: a %s of %q fetched the sealed attribute %s", c.name, r.op, r.index, a)
				}
			}
			switch {
			case r.op == "GetItem" || r.op == "BatchGetItem":
				whole += r.items
			case r.op == "Query" && r.index != "":
				entries += r.items
			}
			if !c.index || r.op != "Query" || r.index == "" {
				continue
			}
			if sk, ok := keysOnlyIndexes[r.index]; ok {
				for a := range r.attrs {
					if a != "pk" && a != "sk" && a != sk {
						t.Errorf("%s: the entries of %s read carry %s, not keys only", c.name, r.index, a)
					}
				}
			} else if r.index == store.ListIndexByID {
				listing += r.items
			} else {
				t.Errorf("%s: a page read the index %q", c.name, r.index)
			}
		}
		// A page of an index order reads its items and the entries before it (and a run of
		// equal values at its edge, and one entry ahead), never more; the page after the last
		// reads only the counter.
		switch {
		case !c.index:
		case from == len(c.want) && (entries > 0 || whole > 0):
			t.Errorf("%s: past the last page, read %d index entries and %d items", c.name, entries, whole)
		case whole > to-from:
			t.Errorf("%s: read %d whole items for a page of %d", c.name, whole, to-from)
		case entries > to+c.run+2:
			t.Errorf("%s: read %d index entries for the %d up to the page's end", c.name, entries, to)
		case listing > 0 && from > 0:
			// Only the first page reads list-id (its entries are the page): a deep one reads keys.
			t.Errorf("%s: read %d entries of %s, a page from %d", c.name, listing, store.ListIndexByID, from)
		}
		if n > 1000 {
			t.Logf("%s: %d of %d in %s; %d index entries, %d items read", c.name, len(got), len(c.want), took.Round(time.Millisecond), entries, whole)
		}
	}
}
