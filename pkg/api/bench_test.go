package api_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"aitokens/pkg/devtools/testenv"
	"aitokens/pkg/query"
	"aitokens/pkg/service"
	"aitokens/pkg/store"
)

// rawGetItem reads the benchmark's token with the SDK alone; projected asks for the same
// attributes as the handler's read (DynamoDB Local spends measurably longer on a projection).
func rawGetItem(b *testing.B, table string, projected bool) {
	in := &dynamodb.GetItemInput{
		TableName: aws.String(table), ConsistentRead: aws.Bool(true),
		Key: map[string]types.AttributeValue{
			"pk": &types.AttributeValueMemberS{Value: "acme"}, "sk": &types.AttributeValueMemberS{Value: "token#openai"},
		},
	}
	if projected {
		in.ProjectionExpression = aws.String("#0, #1, #2, #3, #4, #5, #6")
		in.ExpressionAttributeNames = map[string]string{"#0": "id", "#1": "name", "#2": "version", "#3": "createdAt", "#4": "modifiedAt", "#5": "lastUsedAt", "#6": "usageCount"}
	}
	out, err := testenv.Client().GetItem(context.Background(), in)
	if err != nil || out.Item == nil {
		b.Fatal(err)
	}
}

// getThroughHandler sends one GET through the whole stack, without the harness's checks (which
// would be measured too).
func getThroughHandler(b *testing.B, h *harness, path, jwt string) {
	req := httptest.NewRequest(http.MethodGet, path, nil)
	req.Header.Set("Authorization", "Bearer "+jwt)
	rec := httptest.NewRecorder()
	h.handler.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		b.Fatal(rec.Code, rec.Body.String())
	}
}

// BenchmarkGetVersusRawGetItem rotates one GET through the full handler stack (JWT check,
// routing, store, JSON, log line) with two raw GetItems on the same DynamoDB Local, so all
// three see the same machine noise and JIT state: one with the handler's projection (the same
// read, so the ratio is this service's own overhead) and one plain (the ratio includes DynamoDB
// Local's cost of evaluating a projection).
func BenchmarkGetVersusRawGetItem(b *testing.B) {
	h := newHarness(b)
	h.create("openai", "OpenAI Token", "sk-bench")
	jwt := h.jwt("acme", "ai.agent_read")
	for range 200 { // warm DynamoDB Local's JIT before measuring
		rawGetItem(b, h.table, true)
	}
	var handlerTime, rawTime, plainTime time.Duration
	for b.Loop() {
		start := time.Now()
		getThroughHandler(b, h, base+"/openai", jwt)
		handlerTime += time.Since(start)
		start = time.Now()
		rawGetItem(b, h.table, true)
		rawTime += time.Since(start)
		start = time.Now()
		rawGetItem(b, h.table, false)
		plainTime += time.Since(start)
	}
	b.ReportMetric(float64(handlerTime.Nanoseconds())/float64(b.N), "handler-ns/op")
	b.ReportMetric(float64(rawTime.Nanoseconds())/float64(b.N), "raw-ns/op")
	b.ReportMetric(float64(plainTime.Nanoseconds())/float64(b.N), "plain-ns/op")
	b.ReportMetric(float64(handlerTime)/float64(rawTime), "handler/raw")
	b.ReportMetric(float64(handlerTime)/float64(plainTime), "handler/plain")
}

// BenchmarkGetToken is the memory per request of one GET through the full handler stack.
func BenchmarkGetToken(b *testing.B) {
	h := newHarness(b)
	h.create("openai", "OpenAI Token", "sk-bench")
	jwt := h.jwt("acme", "ai.agent_read")
	b.Run("handler", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			getThroughHandler(b, h, base+"/openai", jwt)
		}
	})
	b.Run("raw-getitem", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			rawGetItem(b, h.table, true)
		}
	})
}

// seedTokens writes n tokens of tenant acme straight into the table in the store's item layout
// (no sealing: list never reads the sealed attributes), with their list keys and the tenant's
// count, 25 per BatchWriteItem. Seeding again with a larger n adds the new ones.
func seedTokens(b testing.TB, table string, n int) { seedSizedTokens(b, table, n, 64) }

// seedSizedTokens is seedTokens with ciphertextBytes of (zero) ciphertext per item: the size a
// DynamoDB page counts, projection or not.
func seedSizedTokens(b testing.TB, table string, n, ciphertextBytes int) {
	testenv.LeaveInvariants(b, table, "tokens seeded in bulk have no audit trail")
	var items []map[string]types.AttributeValue
	var ids []string
	for i := range n {
		id := fmt.Sprintf("token-%05d", i)
		name := fmt.Sprintf("Token %d for agent %d", i, i%7)
		if i%10 == 0 {
			name = fmt.Sprintf("Support bot %d", i)
		}
		it := map[string]types.AttributeValue{
			"pk": &types.AttributeValueMemberS{Value: "acme"}, "sk": &types.AttributeValueMemberS{Value: "token#" + id},
			"id": &types.AttributeValueMemberS{Value: id}, "name": &types.AttributeValueMemberS{Value: name},
			"version": &types.AttributeValueMemberN{Value: "1"}, "usageCount": &types.AttributeValueMemberN{Value: "0"},
			"createdAt":      &types.AttributeValueMemberS{Value: "2026-01-01T00:00:00.000Z"},
			"modifiedAt":     &types.AttributeValueMemberS{Value: "2026-01-01T00:00:00.000Z"},
			"sealCiphertext": &types.AttributeValueMemberB{Value: make([]byte, ciphertextBytes)},
			"sealWrappedKey": &types.AttributeValueMemberB{Value: make([]byte, 60)},
		}
		store.WithListKeys(it)
		items, ids = append(items, it), append(ids, id)
	}
	batchPut(b, table, append(items, store.CountItems("acme", ids)...))
}

// batchPut writes items with BatchWriteItem, 25 at a time.
func batchPut(b testing.TB, table string, items []map[string]types.AttributeValue) {
	ctx := context.Background()
	for start := 0; start < len(items); start += 25 {
		var writes []types.WriteRequest
		for _, it := range items[start:min(start+25, len(items))] {
			writes = append(writes, types.WriteRequest{PutRequest: &types.PutRequest{Item: it}})
		}
		req := map[string][]types.WriteRequest{table: writes}
		for len(req) > 0 {
			out, err := testenv.Client().BatchWriteItem(ctx, &dynamodb.BatchWriteItemInput{RequestItems: req})
			if err != nil {
				b.Fatal(err)
			}
			req = out.UnprocessedItems
		}
	}
}

// rawQuery reads the whole partition with the SDK's paginator and the list's projection.
func rawQuery(b *testing.B, table string) int {
	pages := dynamodb.NewQueryPaginator(testenv.Client(), &dynamodb.QueryInput{
		TableName:              aws.String(table),
		KeyConditionExpression: aws.String("pk = :t AND begins_with(sk, :p)"),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":t": &types.AttributeValueMemberS{Value: "acme"}, ":p": &types.AttributeValueMemberS{Value: "token#"},
		},
		ProjectionExpression:     aws.String("#0, #1, #2, #3, #4, #5, #6"),
		ExpressionAttributeNames: map[string]string{"#0": "id", "#1": "name", "#2": "version", "#3": "createdAt", "#4": "modifiedAt", "#5": "lastUsedAt", "#6": "usageCount"},
	})
	n := 0
	for pages.HasMorePages() {
		page, err := pages.NextPage(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		n += int(page.ScannedCount)
	}
	return n
}

// BenchmarkListRegex lists with a regex q over a tenant of n tokens, alternating with one raw
// paginated Query of the same partition, and reports time per request, items read and ratio.
func BenchmarkListRegex(b *testing.B) {
	for _, n := range []int{10, 100, 1000, 10000} {
		b.Run(fmt.Sprintf("tokens=%d", n), func(b *testing.B) {
			h := newHarness(b)
			seedTokens(b, h.table, n)
			jwt := h.jwt("acme", "ai.agent_read")
			path := base + "?q=" + url.QueryEscape("name:~(?i)support") + "&sort=name:desc"
			q, _ := query.Parse("name:~(?i)support")
			sortKeys, _ := query.ParseSort("name:desc")
			res, err := h.svc.List(context.Background(), service.List{Tenant: "acme", Query: q, Sort: sortKeys, Page: query.Page{Number: 1, Size: 60}})
			if err != nil || res.ItemsRead < n || res.Total != n/10 {
				b.Fatalf("items read %d, want %d and more, matched %d: %v", res.ItemsRead, n, res.Total, err)
			}
			for range 3 {
				rawQuery(b, h.table) // warm DynamoDB Local's JIT
			}
			var handlerTime, rawTime time.Duration
			for b.Loop() {
				start := time.Now()
				getThroughHandler(b, h, path, jwt)
				handlerTime += time.Since(start)
				start = time.Now()
				rawQuery(b, h.table)
				rawTime += time.Since(start)
			}
			b.ReportMetric(float64(handlerTime.Nanoseconds())/float64(b.N), "list-ns/op")
			b.ReportMetric(float64(rawTime.Nanoseconds())/float64(b.N), "raw-query-ns/op")
			b.ReportMetric(float64(handlerTime)/float64(rawTime), "list/raw")
			b.ReportMetric(float64(res.ItemsRead), "items-read")
		})
	}
}
