package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp/syntax"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"

	"aitokens/pkg/api"
	"aitokens/pkg/devtools/testenv"
	"aitokens/pkg/seal"
	"aitokens/pkg/seal/kmsseal"
	"aitokens/pkg/store"
	"aitokens/pkg/token"
)

// The AWS limits of issue 27 on the store's side (limits.go). DynamoDB Local enforces DynamoDB's
// (probed: a 401 KB item, an update growing one past 400 KB, 101 actions, a 4.3 MB transaction
// and a 5.8 KB expression are each a ValidationException), so these tests write the largest
// items and transactions the API allows into it, built from the code's own bounds: raising a
// bound (a name, value, egress or usage limit, MaxReplaceUsages) past what AWS takes fails them.

// maxLen is the longest UTF-8 string a bounded pattern (token.IDPattern, ...) matches.
func maxLen(t testing.TB, pattern string) int {
	t.Helper()
	re, err := syntax.Parse(pattern, syntax.Perl)
	if err != nil {
		t.Fatal(err)
	}
	var walk func(re *syntax.Regexp) int
	walk = func(re *syntax.Regexp) int {
		switch re.Op {
		case syntax.OpLiteral:
			n := 0
			for _, r := range re.Rune {
				n += utf8.RuneLen(r)
			}
			return n
		case syntax.OpCharClass:
			return utf8.RuneLen(re.Rune[len(re.Rune)-1]) // ranges are sorted: the last is the widest
		case syntax.OpAnyChar, syntax.OpAnyCharNotNL:
			return utf8.UTFMax
		case syntax.OpBeginLine, syntax.OpEndLine, syntax.OpBeginText, syntax.OpEndText, syntax.OpEmptyMatch:
			return 0
		case syntax.OpCapture:
			return walk(re.Sub[0])
		case syntax.OpRepeat:
			if re.Max < 0 {
				t.Fatalf("%s is unbounded", pattern)
			}
			return re.Max * walk(re.Sub[0])
		case syntax.OpQuest:
			return walk(re.Sub[0])
		case syntax.OpConcat:
			n := 0
			for _, s := range re.Sub {
				n += walk(s)
			}
			return n
		case syntax.OpAlternate:
			n := 0
			for _, s := range re.Sub {
				n = max(n, walk(s))
			}
			return n
		}
		t.Fatalf("%s: %v is unbounded or not handled", pattern, re.Op)
		return 0
	}
	return walk(re)
}

// largest is a string of n bytes made of c.
func largest(c string, n int) string { return strings.Repeat(c, n/len(c)) }

// worstToken is the largest token the API accepts (each field at its bound, the name in 4-byte
// characters) and its sealed value at the largest sizes KMS documents: a key ARN of 2048
// characters and a CiphertextBlob of 6144 bytes (KMS API reference, GenerateDataKey:
// "KeyId ... Maximum length of 2048", "CiphertextBlob ... Maximum length of 6144").
func worstToken(t testing.TB, tenant, id string) (token.Token, token.Sealed) {
	hosts := make([]string, token.MaxAllowedHosts)
	for i := range hosts {
		// 253 characters: three labels of 63 and one of 61, each host its own first letter.
		host := string(rune('a'+i)) + largest("a", 62) + "." + largest("b", 63) + "." + largest("c", 63) + "." + largest("d", 61)
		hosts[i] = host + ":65535"
		if len(host) != token.MaxHostLength {
			t.Fatalf("host of %d characters, want %d", len(host), token.MaxHostLength)
		}
	}
	egress := &token.Egress{AllowedHosts: hosts, Inject: token.Inject{In: token.InjectHeader,
		Name: largest("X", token.MaxInjectNameLength), Template: token.ValuePlaceholder + largest("t", token.MaxTemplateLength-len(token.ValuePlaceholder))}}
	if err := egress.Validate(); err != nil {
		t.Fatalf("the largest egress policy must be valid: %v", err)
	}
	name := strings.Repeat("𝄞", token.MaxNameLength)
	if err := token.ValidateName(name); err != nil {
		t.Fatal(err)
	}
	value := largest("v", token.MaxValueLength)
	digest, err := seal.Digest([]byte(value))
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(9999, 12, 31, 23, 59, 59, 999e6, time.UTC)
	tok := token.Token{Tenant: tenant, ID: id, Name: name, Restricted: true, Hint: token.HintOf(strings.Repeat("𝄞", token.HintMinLength)),
		ExpiresAt: &at, Egress: egress}
	sealed := token.Sealed{KeyID: largest("k", 2048), Algorithm: kmsseal.Algorithm, WrappedKey: make([]byte, 6144),
		Nonce: make([]byte, 12), Ciphertext: make([]byte, token.MaxValueLength+16), Digest: digest} // GCM adds a 16-byte tag
	return tok, sealed
}

// The largest token item the API can make: every attribute at its bound, and MaxUsages
// consumers of the longest kind and refId. It is under DynamoDB's 400 KB by the documented
// formula, and DynamoDB Local takes it.
func TestLargestTokenItemFits(t *testing.T) {
	ctx := context.Background()
	table := testenv.NewTable(t)
	testenv.LeaveInvariants(t, table, "one raw token item, with consumers but no usage items, to measure it")
	tenant := largest("t", maxLen(t, token.TenantPattern))
	id := largest("i", maxLen(t, token.IDPattern))
	tok, sealed := worstToken(t, tenant, id)
	tok.Replaces = largest("r", maxLen(t, token.IDPattern))
	kind := ""
	for _, k := range token.UsageKinds {
		if len(k) > len(kind) {
			kind = k
		}
	}
	consumers := make([]string, store.MaxUsages)
	for i := range consumers {
		ref := fmt.Sprintf("%0*d", maxLen(t, token.RefIDPattern), i)
		if err := token.ValidateUsage(kind, ref); err != nil {
			t.Fatal(err)
		}
		consumers[i] = token.Usage{Kind: kind, RefID: ref}.Key()
	}
	item, err := store.FullTokenItem(tok, sealed, consumers, largest("s", maxLen(t, token.IDPattern)), *tok.ExpiresAt)
	if err != nil {
		t.Fatal(err)
	}
	size := store.ItemSize(item)
	t.Logf("largest token item: %d bytes of DynamoDB's %d (%d consumers of %d bytes)", size, store.MaxItemBytes, len(consumers), len(consumers[0]))
	if size > store.MaxItemBytes {
		t.Fatalf("the largest token item is %d bytes, over DynamoDB's %d: lower a bound (MaxUsages %d, ...)", size, store.MaxItemBytes, store.MaxUsages)
	}
	if _, err := testenv.Client().PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(table), Item: item}); err != nil {
		t.Fatalf("DynamoDB Local refuses the largest token item: %v", err)
	}
	// A registration on the full token leaves it at most one consumer larger, the update's
	// own size DynamoDB checks against the same 400 KB.
	if size+len(consumers[0]) > store.MaxItemBytes {
		t.Fatalf("one more consumer makes %d bytes", size+len(consumers[0]))
	}
}

// ItemSize is DynamoDB's count: an item of exactly 400 KB by it, of each kind of attribute the
// store writes, is taken by DynamoDB Local, and one byte more is refused.
func TestItemSizeIsDynamoDBs(t *testing.T) {
	ctx := context.Background()
	table := testenv.NewTable(t)
	testenv.LeaveInvariants(t, table, "raw items of exact sizes, no tokens")
	cases := map[string]types.AttributeValue{
		"string": &types.AttributeValueMemberS{Value: "abc€"},
		"binary": &types.AttributeValueMemberB{Value: make([]byte, 100)},
		"number": &types.AttributeValueMemberN{Value: "1799143200"},
		"bool":   &types.AttributeValueMemberBOOL{Value: true},
		"set":    &types.AttributeValueMemberSS{Value: []string{"agent#a", "tool#bb"}},
		"map": &types.AttributeValueMemberM{Value: map[string]types.AttributeValue{
			"in": &types.AttributeValueMemberS{Value: "header"}, "hosts": &types.AttributeValueMemberL{Value: []types.AttributeValue{
				&types.AttributeValueMemberS{Value: "api.openai.com"}, &types.AttributeValueMemberS{Value: "x.example"}}}}},
	}
	for kind, v := range cases {
		t.Run(kind, func(t *testing.T) {
			for _, extra := range []int{0, 1} {
				item := map[string]types.AttributeValue{
					"pk": &types.AttributeValueMemberS{Value: "acme"}, "sk": &types.AttributeValueMemberS{Value: kind + fmt.Sprint(extra)},
					"attr": v, "pad": &types.AttributeValueMemberS{},
				}
				item["pad"] = &types.AttributeValueMemberS{Value: strings.Repeat("p", store.MaxItemBytes-store.ItemSize(item)+extra)}
				_, err := testenv.Client().PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(table), Item: item})
				if extra == 0 && err != nil {
					t.Fatalf("an item of %d bytes by ItemSize refused: %v", store.ItemSize(item), err)
				}
				if extra == 1 && err == nil {
					t.Fatalf("an item of %d bytes by ItemSize taken: ItemSize counts less than DynamoDB", store.ItemSize(item))
				}
			}
		})
	}
}

// The largest replacement (MaxReplaceUsages usages of the longest refIds, both tokens at their
// bounds) is one transaction within 100 actions and 4 MB: DynamoDB Local commits it.
func TestLargestReplaceFits(t *testing.T) {
	if n := 5 + 3*store.MaxReplaceUsages; n > 100 {
		t.Fatalf("a replacement of %d usages is %d actions, over DynamoDB's 100", store.MaxReplaceUsages, n)
	}
	ctx := context.Background()
	st := newStore(t)
	tenant := largest("t", maxLen(t, token.TenantPattern))
	oldID, newID := largest("o", maxLen(t, token.IDPattern)), largest("n", maxLen(t, token.IDPattern))
	old, sealed := worstToken(t, tenant, oldID)
	rid := func(i int) string { return fmt.Sprintf("c6af9ac6-7b61-11e6-9a41-%012d", i) } // a Lambda request id
	if err := st.Create(ctx, old, sealed, token.Event{RequestID: rid(0), Actor: largest("a", 1024)}); err != nil {
		t.Fatal(err)
	}
	for i := range store.MaxReplaceUsages {
		ref := fmt.Sprintf("%0*d", maxLen(t, token.RefIDPattern), i)
		if _, err := st.RegisterUsage(ctx, tenant, oldID, "oauth-client", ref, token.Event{RequestID: rid(i + 1)}); err != nil {
			t.Fatal(err)
		}
	}
	next, nextSealed := worstToken(t, tenant, newID)
	next.Replaces = oldID
	if err := st.Replace(ctx, next, nextSealed, time.Hour, token.Event{RequestID: rid(999), Actor: largest("a", 1024)}); err != nil {
		t.Fatalf("the largest replacement: %v", err)
	}
	got, err := st.Get(ctx, tenant, newID)
	if err != nil || got.UsageCount != store.MaxReplaceUsages {
		t.Fatalf("successor %+v %v, want %d usages", got, err, store.MaxReplaceUsages)
	}
}

// A transaction over any of DynamoDB's limits is refused before it is sent, with an internal
// error that names the limit (never AWS's ValidationException in production only); one at the
// limits passes.
func TestTransactionOverTheLimitsIsRefused(t *testing.T) {
	put := func(pad int) types.TransactWriteItem {
		item := map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: "acme"}, "sk": &types.AttributeValueMemberS{Value: "x"}}
		item["p"] = &types.AttributeValueMemberS{Value: strings.Repeat("p", pad-store.ItemSize(item)-1)}
		return types.TransactWriteItem{Put: &types.Put{TableName: aws.String("t"), Item: item}}
	}
	check := func(expr string) types.TransactWriteItem {
		return types.TransactWriteItem{ConditionCheck: &types.ConditionCheck{TableName: aws.String("t"), ConditionExpression: aws.String(expr),
			Key: map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: "acme"}, "sk": &types.AttributeValueMemberS{Value: "y"}}}}
	}
	n := func(k int, it types.TransactWriteItem) []types.TransactWriteItem {
		out := make([]types.TransactWriteItem, k)
		for i := range out {
			out[i] = it
		}
		return out
	}
	cases := []struct {
		name  string
		items []types.TransactWriteItem
		want  string // in the error; "" for none
	}{
		{"100 actions", n(100, check("attribute_exists(pk)")), ""},
		{"101 actions", n(101, check("attribute_exists(pk)")), "101 actions"},
		{"an item of 400 KB", []types.TransactWriteItem{put(store.MaxItemBytes)}, ""},
		{"an item of 400 KB + 1", []types.TransactWriteItem{put(store.MaxItemBytes + 1)}, "over DynamoDB's 409600"},
		{"an expression of 4 KB", []types.TransactWriteItem{check(largest("a", store.MaxExpressionBytes))}, ""},
		{"an expression of 4 KB + 1", []types.TransactWriteItem{check(largest("a", store.MaxExpressionBytes+1))}, "expression of 4097 bytes"},
		{"10 items of 400 KB", n(10, put(store.MaxItemBytes)), ""},
		{"11 items of 400 KB (4.3 MB)", n(11, put(store.MaxItemBytes)), "over DynamoDB's 4194304"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := store.CheckTransaction(c.items)
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case c.want != "" && (token.KindOf(err) != token.Internal || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("%v, want an internal error saying %q", err, c.want)
			}
		})
	}
}

// A token takes at most MaxUsages usages (here lowered to 3): one more is a 409 usage_limit that
// writes nothing; registering one it has still answers "already there"; two registrations that
// both read the last free place get one place between them; unregistering frees a place.
func TestUsageLimit(t *testing.T) {
	ctx := context.Background()
	table := testenv.NewTable(t)
	viaP, proxy := viaProxy(t, table)
	st, racer := store.New(testenv.Client(), table).WithMaxUsages(3), viaP.WithMaxUsages(3)
	create(t, st, "acme", "x", "req-0")
	register := func(st *store.Store, ref, rid string) (bool, error) {
		return st.RegisterUsage(ctx, "acme", "x", "agent", ref, token.Event{RequestID: rid, At: time.Now()})
	}
	for _, ref := range []string{"a", "b"} {
		if _, err := register(st, ref, "req-"+ref); err != nil {
			t.Fatal(err)
		}
	}
	// Both read 2 of 3 and stamp their events in this order; the first commits, then the second
	// (its event stamped after the first's, so only the count can stop it).
	first, second := proxy.PauseNext("TransactWriteItems"), proxy.PauseNext("TransactWriteItems")
	errs := make(chan error, 2)
	go func() { _, err := register(racer, "r1", "req-r1"); errs <- err }()
	waitFor(t, first.Reached)
	go func() { _, err := register(racer, "r2", "req-r2"); errs <- err }()
	waitFor(t, second.Reached)
	first.Release()
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	second.Release()
	if err := <-errs; token.As(err).Reason != token.UsageLimit {
		t.Fatalf("the registration that read the place the other took: %v, want usage_limit", err)
	}
	before := scan(t, table)
	_, err := register(st, "late", "req-late")
	var e *token.Error
	if !errors.As(err, &e) || e.Kind != token.Conflict || e.Reason != token.UsageLimit || e.Limit != 3 || e.ResourceID != "x" {
		t.Fatalf("a fourth usage: %v, want a usage_limit conflict of 3 on x", err)
	}
	if after := scan(t, table); after != before {
		t.Fatal("a refused registration changed the table")
	}
	// As the client sees it: the documented 409 ErrorMessage, naming the token and the bound.
	status, body := api.Render(err)
	if status != 409 || body.ResourceID != "x" || !strings.Contains(body.Message, "(3)") ||
		len(body.Details) != 1 || body.Details[0] != (api.Detail{Field: "usages", Type: "limit", Message: "at most 3 usages"}) {
		t.Fatalf("rendered %d %+v", status, body)
	}
	if created, err := register(st, "a", "req-again"); err != nil || created {
		t.Fatalf("registering one it has, when full: created %v, %v; want false, nil", created, err)
	}
	if err := st.UnregisterUsage(ctx, "acme", "x", "agent", "a", token.Event{RequestID: "req-u", At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if created, err := register(st, "late", "req-late2"); err != nil || !created {
		t.Fatalf("after an unregister: created %v, %v", created, err)
	}
	if got, _ := st.Get(ctx, "acme", "x"); got.UsageCount != 3 {
		t.Fatalf("usageCount %d, want 3", got.UsageCount)
	}
}

func waitFor(t *testing.T, c <-chan struct{}) {
	t.Helper()
	select {
	case <-c:
	case <-time.After(wait):
		t.Fatal("not reached in time")
	}
}

// scan is every item of table, as JSON lines in order.
func scan(t *testing.T, table string) string {
	t.Helper()
	var docs []map[string]any
	if err := attributevalue.UnmarshalListOfMaps(items(t, table, ""), &docs); err != nil {
		t.Fatal(err)
	}
	lines := make([]string, len(docs))
	for i, d := range docs {
		b, _ := json.Marshal(d) // sorted keys
		lines[i] = string(b)
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// BenchmarkTransactionCheck measures what transact's limit check costs: the check alone on the
// largest create's transaction (its token item at every bound, an event, a count update)
// against that create on DynamoDB Local (which includes the check), and their ratio.
func BenchmarkTransactionCheck(b *testing.B) {
	ctx := context.Background()
	st := store.New(testenv.Client(), testenv.NewTable(b))
	tenant := largest("t", maxLen(b, token.TenantPattern))
	tok, sealed := worstToken(b, tenant, "x")
	item, err := store.FullTokenItem(tok, sealed, nil, "", time.Now())
	if err != nil {
		b.Fatal(err)
	}
	key := map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: tenant}, "sk": &types.AttributeValueMemberS{Value: "count#07"}}
	items := []types.TransactWriteItem{
		{Put: &types.Put{TableName: aws.String("t"), Item: item, ConditionExpression: aws.String("attribute_not_exists(pk)")}},
		{Put: &types.Put{TableName: aws.String("t"), Item: key, ConditionExpression: aws.String("attribute_not_exists(pk)")}},
		{Update: &types.Update{TableName: aws.String("t"), Key: key, UpdateExpression: aws.String("ADD #n :d"),
			ExpressionAttributeValues: map[string]types.AttributeValue{":d": &types.AttributeValueMemberN{Value: "1"}}}},
	}
	var check, create time.Duration
	i := 0
	for b.Loop() {
		start := time.Now()
		if err := store.CheckTransaction(items); err != nil {
			b.Fatal(err)
		}
		check += time.Since(start)
		tok.ID = fmt.Sprint("t", i)
		start = time.Now()
		if err := st.Create(ctx, tok, sealed, token.Event{RequestID: tok.ID}); err != nil {
			b.Fatal(err)
		}
		create += time.Since(start)
		i++
	}
	b.ReportMetric(float64(check.Nanoseconds())/float64(b.N), "check-ns/op")
	b.ReportMetric(float64(create.Nanoseconds())/float64(b.N), "create-ns/op")
	b.ReportMetric(float64(check)/float64(create), "check/create")
}

// What the tests above lean on: DynamoDB Local refuses what AWS refuses at each of these
// limits, so a write that fits there fits in AWS. Should a DynamoDB Local release grow laxer,
// this fails rather than the others passing for nothing.
func TestDynamoDBLocalEnforcesTheLimits(t *testing.T) {
	ctx := context.Background()
	table := testenv.NewTable(t)
	testenv.LeaveInvariants(t, table, "raw items, no tokens")
	db := testenv.Client()
	raw := func(sk string, pad int) map[string]types.AttributeValue {
		return map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: "acme"}, "sk": &types.AttributeValueMemberS{Value: sk},
			"p": &types.AttributeValueMemberS{Value: strings.Repeat("p", pad)}}
	}
	tx := func(items ...map[string]types.AttributeValue) error {
		var actions []types.TransactWriteItem
		for _, it := range items {
			actions = append(actions, types.TransactWriteItem{Put: &types.Put{TableName: aws.String(table), Item: it}})
		}
		_, err := db.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: actions})
		return err
	}
	many := func(n, pad int) []map[string]types.AttributeValue {
		out := make([]map[string]types.AttributeValue, n)
		for i := range out {
			out[i] = raw(fmt.Sprint("m", n, "-", i), pad)
		}
		return out
	}
	if _, err := db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(table), Item: raw("grow", 300*1024)}); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		call func() error
	}{
		{"an item over 400 KB", func() error {
			_, err := db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(table), Item: raw("big", store.MaxItemBytes)})
			return err
		}},
		{"an update growing an item past 400 KB", func() error {
			_, err := db.UpdateItem(ctx, &dynamodb.UpdateItemInput{TableName: aws.String(table), Key: map[string]types.AttributeValue{
				"pk": &types.AttributeValueMemberS{Value: "acme"}, "sk": &types.AttributeValueMemberS{Value: "grow"}},
				UpdateExpression:          aws.String("SET q = :q"),
				ExpressionAttributeValues: map[string]types.AttributeValue{":q": &types.AttributeValueMemberS{Value: strings.Repeat("q", 101*1024)}}})
			return err
		}},
		{"101 actions", func() error { return tx(many(101, 1)...) }},
		{"a transaction over 4 MB", func() error { return tx(many(11, 390*1024)...) }},
		{"an expression over 4 KB", func() error {
			_, err := db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(table), Item: raw("e", 1),
				ConditionExpression: aws.String("attribute_not_exists(pk)" + strings.Repeat(" AND attribute_not_exists(pk)", 150))})
			return err
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var apiErr smithy.APIError
			if err := c.call(); !errors.As(err, &apiErr) || apiErr.ErrorCode() != "ValidationException" {
				t.Fatalf("%v, want a ValidationException", err)
			}
		})
	}
}
