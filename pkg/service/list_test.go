package service_test

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"aitokens/pkg/devtools/testenv"
	"aitokens/pkg/query"
	"aitokens/pkg/service"
	"aitokens/pkg/store"
	"aitokens/pkg/token"
)

// A list answers what the full read answers: for every q, sort and page below, the page and
// total of List (indexes, counter, bounded scans) equal those of reading every token of the
// tenant (the store's partition Query) and matching, sorting and paging them with pkg/query, on
// the same data. The data has what the indexes must get right: equal names, createdAt and
// modifiedAt shared by several tokens (ties broken by id), tokens with and without expiry,
// names that are prefixes of others, a name longer than the name index's key, renames,
// expiry changes, a replacement, usages, and another tenant with the same names.
func TestListAnswersAsTheFullRead(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	table := testenv.NewTable(t)
	var mu sync.Mutex
	clock := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	tick := 0
	now := func() time.Time { // every third reading moves on: three writes share a time
		mu.Lock()
		defer mu.Unlock()
		tick++
		if tick%3 == 0 {
			clock = clock.Add(time.Second)
		}
		return clock
	}
	st := store.New(testenv.Client(), table).WithClock(now)
	svc, err := service.New(st, sealer, now)
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("𝔘", token.MaxNameLength-1) + "!" // 1,021 bytes: more than the name index's key holds
	names := []string{"Dup", "Dup", "Dup", "dup", "Dup ", "Prefix a", "Prefix b", "Prefixed", "Open AI", "OpenAI", "ab", "ab c",
		"Ünïcode ✓", "x-proxy", long, "zeta", "Token 1", "Token 10", "Token 2", "Dup"}
	exp := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	for tenant, n := range map[string]int{"acme": 40, "other": 6} {
		for i := range n {
			in := service.Upsert{Tenant: tenant, ID: fmt.Sprintf("t%02d", (i*7)%n), Name: &names[i%len(names)], Value: new("v"), Meta: meta(fmt.Sprintf("c-%s-%d", tenant, i))}
			switch i % 4 {
			case 1:
				in.ExpiresAt = &exp // shared expiries
			case 2:
				e := exp.Add(time.Duration(i) * time.Hour)
				in.ExpiresAt = &e
			}
			if _, err := svc.Upsert(ctx, in); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i, id := range []string{"t03", "t05", "t08", "t13", "t21"} {
		cur, err := svc.Get(ctx, "acme", id)
		if err != nil {
			t.Fatal(err)
		}
		in := service.Upsert{Tenant: "acme", ID: id, Name: &cur.Name, Meta: meta(fmt.Sprint("u", i))}
		switch i % 3 {
		case 0:
			in.Name = new("Renamed " + id)
		case 1:
			e := exp.Add(-time.Duration(i) * time.Minute)
			in.ExpiresAt = &e
		default:
			in.RemoveExpiry = true
		}
		if _, err := svc.Upsert(ctx, in); err != nil {
			t.Fatalf("update %s: %v", id, err)
		}
	}
	if _, err := svc.RegisterUsage(ctx, "acme", "t07", "agent", "a1", meta("r1")); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Upsert(ctx, service.Upsert{Tenant: "acme", ID: "t40", Name: new("Successor"), Value: new("v2"), Replaces: new("t07"),
		Meta: meta("rep")}); err != nil {
		t.Fatal(err)
	}
	if err := svc.Delete(ctx, "acme", "t11", false, meta("del")); err != nil {
		t.Fatal(err)
	}

	all, err := st.List(ctx, "acme", 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := st.Count(ctx, "acme"); n != len(all.Tokens) || err != nil {
		t.Fatalf("count %d (%v), the tenant has %d tokens", n, err, len(all.Tokens))
	}
	qs := []string{"", `name:~x`, `name:~^Prefix`, `name:~^Dup`, `name:Dup`, `name:"Dup "`, `name:~^Nothing`, `name:~!$`,
		`name:~^Prefix metadata.version:>1`, `metadata.version:>1`, `expiresAt:exists`, `expiresAt:missing`, `id:(t01,t02,t30)`,
		`compoundLogicalQuery:((name:~^Open) OR (expiresAt:<2027-01-01T00:30:00Z))`, `name:~(?i)dup`, `metadata.usageCount:>0`}
	sorts := []string{"", "id:desc", "name", "name:desc", "metadata.createdAt", "metadata.createdAt:desc", "metadata.modifiedAt",
		"metadata.modifiedAt:desc", "expiresAt", "expiresAt:desc", "metadata.version:desc", "name,metadata.version:desc", "name:desc,id:desc"}
	pages := []query.Page{{Number: 1, Size: 60}, {Number: 1, Size: 3}, {Number: 2, Size: 3}, {Number: 5, Size: 4}, {Number: 3, Size: 13}, {Number: 9, Size: 7}}
	var g errgroup.Group
	g.SetLimit(4)
	for i, qs := range qs {
		q, err := query.Parse(qs)
		if err != nil {
			t.Fatal(err)
		}
		sorts, pages := sorts, pages
		if i > 0 { // a q is matched in memory after its read, whatever the order: a few orders and pages suffice
			sorts, pages = []string{"", "metadata.modifiedAt:desc"}, []query.Page{pages[2], pages[3]}
		}
		for _, ss := range sorts {
			keys, err := query.ParseSort(ss)
			if err != nil {
				t.Fatal(err)
			}
			var matched []token.Token
			for _, tk := range all.Tokens {
				if q.Match(tk.Document()) {
					matched = append(matched, tk)
				}
			}
			query.Sort(matched, token.Token.Document, keys)
			for _, p := range pages {
				g.Go(func() error {
					want := query.PageOf(p, matched)
					got, err := svc.List(ctx, service.List{Tenant: "acme", Query: q, Sort: keys, Page: p})
					if err != nil {
						return fmt.Errorf("q=%s sort=%s page %v: %v", qs, ss, p, err)
					}
					if got.Total != len(matched) || !reflect.DeepEqual(docs(got.Tokens), docs(want)) {
						t.Errorf("q=%s sort=%s page %v: total %d %v, the full read gives %d %v", qs, ss, p, got.Total, ids(got.Tokens), len(matched), ids(want))
					}
					return nil
				})
			}
		}
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
}

func docs(ts []token.Token) []map[string]any {
	out := make([]map[string]any, len(ts))
	for i, t := range ts {
		out[i] = t.Document()
	}
	return out
}

func ids(ts []token.Token) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.ID
	}
	return out
}
