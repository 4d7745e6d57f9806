package api_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go/middleware"

	"aitokens/pkg/auth"
	"aitokens/pkg/devtools/kmstest"
	"aitokens/pkg/devtools/testenv"
	"aitokens/pkg/seal/kmsseal"
	"aitokens/pkg/store"
)

// capacityMeter asks DynamoDB for the consumed capacity of every read the client makes and adds
// it up: what DynamoDB charges for the items' bytes it read (projection or not), independent of
// how the store reads.
type capacityMeter struct {
	mu    sync.Mutex
	units float64
}

func (m *capacityMeter) add(cs ...*types.ConsumedCapacity) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, c := range cs {
		if c != nil {
			m.units += aws.ToFloat64(c.CapacityUnits)
		}
	}
}

func (m *capacityMeter) take() float64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	u := m.units
	m.units = 0
	return u
}

func (m *capacityMeter) middleware(st *middleware.Stack) error {
	return st.Initialize.Add(middleware.InitializeMiddlewareFunc("capacityMeter", func(ctx context.Context, in middleware.InitializeInput,
		next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
		switch p := in.Parameters.(type) {
		case *dynamodb.QueryInput:
			p.ReturnConsumedCapacity = types.ReturnConsumedCapacityTotal
		case *dynamodb.GetItemInput:
			p.ReturnConsumedCapacity = types.ReturnConsumedCapacityTotal
		case *dynamodb.BatchGetItemInput:
			p.ReturnConsumedCapacity = types.ReturnConsumedCapacityTotal
		case *dynamodb.ScanInput:
			p.ReturnConsumedCapacity = types.ReturnConsumedCapacityTotal
		}
		out, md, err := next.HandleInitialize(ctx, in)
		switch r := out.Result.(type) {
		case *dynamodb.QueryOutput:
			m.add(r.ConsumedCapacity)
		case *dynamodb.GetItemOutput:
			m.add(r.ConsumedCapacity)
		case *dynamodb.BatchGetItemOutput:
			for i := range r.ConsumedCapacity {
				m.add(&r.ConsumedCapacity[i])
			}
		case *dynamodb.ScanOutput:
			m.add(r.ConsumedCapacity)
		}
		return out, md, err
	}), middleware.After)
}

// peakHeap runs fn with the collector running at every 1% of growth, so that the heap holds
// little more than what is live, and returns the most heap fn's run held above what was held
// before it (sampled every 100 µs): the memory a request needs, not what it allocates in all.
func peakHeap(fn func()) uint64 {
	defer debug.SetGCPercent(debug.SetGCPercent(1))
	runtime.GC()
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	read := func() uint64 { metrics.Read(sample); return sample[0].Value.Uint64() }
	base, peak := read(), uint64(0)
	done := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			peak = max(peak, read())
			select {
			case <-done:
				return
			case <-time.After(100 * time.Microsecond):
			}
		}
	}()
	fn()
	close(done)
	<-sampled
	if peak < base {
		return 0
	}
	return peak - base
}

// scaleTokens is the large tenant's size: AITOKENS_SCALE_TOKENS (100000 for the recorded
// figures; seeding that many takes minutes), 2,000 by default.
func scaleTokens(b *testing.B) int {
	n := 2000
	if s := os.Getenv("AITOKENS_SCALE_TOKENS"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil || n < 100 {
			b.Fatalf("AITOKENS_SCALE_TOKENS=%q: a whole number from 100", s)
		}
	}
	return n
}

// scaleName is token i's name: every tenth is a proxy (q=name:~x matches it) and exactly 20
// per tenant start with "Prefix" (q=name:~^Prefix reads the same few at any tenant size).
func scaleName(i int) string {
	switch {
	case i < 20:
		return fmt.Sprintf("Prefix bot %d", i)
	case i%10 == 0:
		return fmt.Sprintf("Proxy token %d", i)
	}
	return fmt.Sprintf("Token %d for agent %d", i, i%7)
}

// seedLikeAPI creates one token of tenant through the API (KMS-sealed, as in production) and
// writes n-1 copies of its item in bulk (BatchWriteItem), each with its own id, name, uid and
// times, sealed attributes included: the items are exactly as the API writes them.
func seedLikeAPI(b *testing.B, h *harness, tenant string, n int) {
	ctx := context.Background()
	value := "sk-proj-"
	for len(value) < 100 { // an OpenAI project key is longer still
		value += "abcdefghij"
	}
	body := `{"name":"` + scaleName(0) + `","value":"` + value + `"}`
	if res := h.do(http.MethodPut, "/ai-service/"+tenant+"/agentic/tokens/t000000", body, h.jwt(tenant, auth.ScopeRead, auth.ScopeManage)); res.status != http.StatusCreated {
		b.Fatalf("create: %d %s", res.status, res.body)
	}
	out, err := testenv.Client().GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(h.table), ConsistentRead: aws.Bool(true),
		Key: map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: tenant}, "sk": &types.AttributeValueMemberS{Value: "token#t000000"}}})
	if err != nil || out.Item == nil {
		b.Fatalf("read the created item: %v", err)
	}
	created, _ := time.Parse(time.RFC3339Nano, out.Item["createdAt"].(*types.AttributeValueMemberS).Value)
	ids := []string{"t000000"}
	var batch []map[string]types.AttributeValue
	for i := 1; i < n; i++ {
		id := fmt.Sprintf("t%06d", i)
		it := make(map[string]types.AttributeValue, len(out.Item))
		for k, v := range out.Item {
			it[k] = v
		}
		at := created.Add(time.Duration(i) * time.Millisecond).UTC().Format("2006-01-02T15:04:05.000Z")
		it["sk"] = &types.AttributeValueMemberS{Value: "token#" + id}
		it["id"] = &types.AttributeValueMemberS{Value: id}
		it["name"] = &types.AttributeValueMemberS{Value: scaleName(i)}
		it["uid"] = &types.AttributeValueMemberS{Value: fmt.Sprintf("%024x", i)}
		it["requestId"] = &types.AttributeValueMemberS{Value: fmt.Sprintf("seed-%d", i)}
		it["createdAt"] = &types.AttributeValueMemberS{Value: at}
		it["modifiedAt"] = &types.AttributeValueMemberS{Value: at}
		store.WithListKeys(it)
		batch, ids = append(batch, it), append(ids, id)
		if len(batch) == 1000 {
			batchPut(b, h.table, batch)
			batch = batch[:0]
		}
	}
	batchPut(b, h.table, append(batch, store.CountItems(tenant, ids)...))
}

// BenchmarkScale compares a tenant of AITOKENS_SCALE_TOKENS tokens with one of 100 in the same
// DynamoDB Local, alternating the same request on both: page 1 of the default list, of
// sort=name, of q=name:~^Prefix, the count alone (X-Total-Count), and q=name:~x; with the bytes
// DynamoDB charged for reading items (consumed capacity) per token of the tenant, and the memory
// one request allocates.
func BenchmarkScale(b *testing.B) {
	big, small := scaleTokens(b), 100
	srv := kmstest.New()
	b.Cleanup(srv.Close)
	srv.UseFromEnv(b)
	kms, err := kmsseal.NewClient(context.Background(), testenv.Policy)
	if err != nil {
		b.Fatal(err)
	}
	meter := &capacityMeter{}
	table := testenv.NewTable(b)
	testenv.LeaveInvariants(b, table, "tokens seeded in bulk have no audit trail")
	client, err := store.NewClient(context.Background(), testenv.Endpoint(), testenv.Policy, func(o *dynamodb.Options) {
		o.APIOptions = append(o.APIOptions, meter.middleware)
	})
	if err != nil {
		b.Fatal(err)
	}
	h := newHarnessFrom(b, stack{client: client, table: table, sealer: kmsseal.New(kms, "alias/ai-tokens"), requestTimeout: time.Minute})
	start := time.Now()
	seedLikeAPI(b, h, "big", big)
	seedLikeAPI(b, h, "small", small)
	b.Logf("seeded %d + %d tokens in %s", big, small, time.Since(start).Round(time.Second))
	tenants := map[string]int{"big": big, "small": small}
	jwts := map[string]string{"big": h.jwt("big", "ai.agent_read"), "small": h.jwt("small", "ai.agent_read")}
	get := func(b *testing.B, tenant, params string) (*httptest.ResponseRecorder, uint64, float64) {
		req := httptest.NewRequest(http.MethodGet, "/ai-service/"+tenant+"/agentic/tokens?"+params, nil)
		req.Header.Set("Authorization", "Bearer "+jwts[tenant])
		req.Header.Set("X-Total-Count", "true")
		rec := httptest.NewRecorder()
		meter.take()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		h.handler.ServeHTTP(rec, req)
		runtime.ReadMemStats(&after)
		if rec.Code != http.StatusOK {
			b.Fatalf("%s %s: %d %s", tenant, params, rec.Code, rec.Body.String())
		}
		return rec, after.TotalAlloc - before.TotalAlloc, meter.take()
	}
	for _, shape := range []struct{ name, params string }{
		{"default", "pageSize=20"},
		{"sort=name", "pageSize=20&sort=name"},
		{"q=name:~^Prefix", "pageSize=20&q=" + url.QueryEscape("name:~^Prefix")},
		{"count", "pageSize=1&fields=id"},
		{"q=name:~x", "pageSize=20&q=" + url.QueryEscape("name:~x")},
	} {
		b.Run(shape.name, func(b *testing.B) {
			for tenant, n := range tenants {
				rec, _, _ := get(b, tenant, shape.params)
				if shape.name == "default" || shape.name == "count" {
					if got := rec.Header().Get("X-Total-Count"); got != strconv.Itoa(n) {
						b.Fatalf("%s: X-Total-Count %s, want %d", tenant, got, n)
					}
				}
			}
			var bigTime, smallTime time.Duration
			var bigBytes, smallBytes uint64
			var bigUnits float64
			for b.Loop() {
				t0 := time.Now()
				_, mem, units := get(b, "big", shape.params)
				bigTime += time.Since(t0)
				bigBytes += mem
				bigUnits += units
				t0 = time.Now()
				_, mem, _ = get(b, "small", shape.params)
				smallTime += time.Since(t0)
				smallBytes += mem
			}
			b.ReportMetric(float64(bigTime.Nanoseconds())/float64(b.N), "big-ns/op")
			b.ReportMetric(float64(smallTime.Nanoseconds())/float64(b.N), "small-ns/op")
			b.ReportMetric(float64(bigTime)/float64(smallTime), "big/small")
			b.ReportMetric(float64(bigBytes)/float64(b.N), "big-alloc-B/op")
			b.ReportMetric(float64(smallBytes)/float64(b.N), "small-alloc-B/op")
			b.ReportMetric(float64(peakHeap(func() { get(b, "big", shape.params) })), "big-peak-heap-B")
			b.ReportMetric(float64(peakHeap(func() { get(b, "small", shape.params) })), "small-peak-heap-B")
			// An eventually consistent read unit is 8 KiB of items read.
			b.ReportMetric(bigUnits/float64(b.N)*8192/float64(big), "big-read-B/token")
		})
	}
}
