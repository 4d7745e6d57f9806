package api_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"aitokens/pkg/testenv"
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
		req := httptest.NewRequest(http.MethodGet, base+"/openai", nil)
		req.Header.Set("Authorization", "Bearer "+jwt)
		rec := httptest.NewRecorder()
		h.handler.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatal(rec.Code)
		}
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
			req := httptest.NewRequest(http.MethodGet, base+"/openai", nil)
			req.Header.Set("Authorization", "Bearer "+jwt)
			rec := httptest.NewRecorder()
			h.handler.ServeHTTP(rec, req)
			if rec.Code != http.StatusOK {
				b.Fatal(rec.Code)
			}
		}
	})
	b.Run("raw-getitem", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			rawGetItem(b, h.table, true)
		}
	})
}
