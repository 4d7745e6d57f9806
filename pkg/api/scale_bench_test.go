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
	"strings"
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
	"aitokens/pkg/token"
)

// capacityMeter asks DynamoDB for the consumed capacity of every read the client makes and adds
// it up: what DynamoDB charges for the items' bytes it read (projection or not), independent of
// how the store reads. It also keeps what each read answered (operation, index, the attribute
// names of its items), so that a test can say what a request fetched.
type capacityMeter struct {
	mu    sync.Mutex
	units float64
	reads []readSeen
}

// readSeen is one read as the client saw its answer.
type readSeen struct {
	op, index string
	items     int
	attrs     map[string]bool // every attribute name any of its items carried
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

func (m *capacityMeter) saw(op, index string, items ...map[string]types.AttributeValue) {
	r := readSeen{op: op, index: index, items: len(items), attrs: map[string]bool{}}
	for _, it := range items {
		for k := range it {
			r.attrs[k] = true
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reads = append(m.reads, r)
}

// takeAll returns the units and reads since the last take.
func (m *capacityMeter) takeAll() (float64, []readSeen) {
	m.mu.Lock()
	defer m.mu.Unlock()
	u, r := m.units, m.reads
	m.units, m.reads = 0, nil
	return u, r
}

func (m *capacityMeter) middleware(st *middleware.Stack) error {
	return st.Initialize.Add(middleware.InitializeMiddlewareFunc("capacityMeter", func(ctx context.Context, in middleware.InitializeInput,
		next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
		index := ""
		switch p := in.Parameters.(type) {
		case *dynamodb.QueryInput:
			p.ReturnConsumedCapacity = types.ReturnConsumedCapacityTotal
			index = aws.ToString(p.IndexName)
		case *dynamodb.GetItemInput:
			p.ReturnConsumedCapacity = types.ReturnConsumedCapacityTotal
		case *dynamodb.BatchGetItemInput:
			p.ReturnConsumedCapacity = types.ReturnConsumedCapacityTotal
		case *dynamodb.ScanInput:
			p.ReturnConsumedCapacity = types.ReturnConsumedCapacityTotal
			index = aws.ToString(p.IndexName)
		}
		out, md, err := next.HandleInitialize(ctx, in)
		switch r := out.Result.(type) {
		case *dynamodb.QueryOutput:
			m.add(r.ConsumedCapacity)
			m.saw("Query", index, r.Items...)
		case *dynamodb.GetItemOutput:
			m.add(r.ConsumedCapacity)
			if r.Item != nil {
				m.saw("GetItem", index, r.Item)
			} else {
				m.saw("GetItem", index)
			}
		case *dynamodb.BatchGetItemOutput:
			for i := range r.ConsumedCapacity {
				m.add(&r.ConsumedCapacity[i])
			}
			var items []map[string]types.AttributeValue
			for _, got := range r.Responses {
				items = append(items, got...)
			}
			m.saw("BatchGetItem", index, items...)
		case *dynamodb.ScanOutput:
			m.add(r.ConsumedCapacity)
			m.saw("Scan", index, r.Items...)
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
// figures; seeding that many takes minutes), def without it.
func scaleTokens(tb testing.TB, def int) int {
	s := os.Getenv("AITOKENS_SCALE_TOKENS")
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 100 {
		tb.Fatalf("AITOKENS_SCALE_TOKENS=%q: a whole number from 100", s)
	}
	return n
}

// scaleName is token i's name: every tenth is a proxy (q=name:~x matches it) and exactly 20
// per tenant start with "Prefix" (q=name:~^Prefix reads the same few at any tenant size). The
// others come in runs of up to three equal names (ties the name index breaks by id).
func scaleName(i int) string {
	switch {
	case i < 20:
		return fmt.Sprintf("Prefix bot %d", i)
	case i%10 == 0:
		return fmt.Sprintf("Proxy token %d", i)
	}
	return fmt.Sprintf("Token %d for agent %d", i/3, i/3%7)
}

// scaleExpiry is token i's expiresAt: every third token expires, at one of 50 hours (so many
// share one), the others do not ("").
func scaleExpiry(i int) string {
	if i%3 != 1 {
		return ""
	}
	return token.FormatTime(time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i%50) * time.Hour))
}

// attrS is a string attribute of a raw item, "" when it has none.
func attrS(it map[string]types.AttributeValue, name string) string {
	if v, ok := it[name].(*types.AttributeValueMemberS); ok {
		return v.Value
	}
	return ""
}

// seeded is what a seeded token's listing shows, to compute a list's answer from.
type seeded struct{ id, name, createdAt, modifiedAt, expiresAt string }

// seedLikeAPI creates two tokens of tenant through the API (sealed as in production: one that
// does not expire, one that does) and writes n-2 copies of their items in bulk
// (BatchWriteItem), each with its own id, name, uid, times and expiry, sealed attributes
// included: the items are exactly as the API writes them. Token i (id t%06d) has createdAt
// i ms after the first's, modifiedAt shared by each run of four, scaleName(i) and
// scaleExpiry(i). It returns the tokens as seeded.
func seedLikeAPI(tb testing.TB, h *harness, tenant string, n int) []seeded {
	ctx := context.Background()
	value := "sk-proj-"
	for len(value) < 100 { // an OpenAI project key is longer still
		value += "abcdefghij"
	}
	read := func(id string) map[string]types.AttributeValue {
		out, err := testenv.Client().GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(h.table), ConsistentRead: aws.Bool(true),
			Key: map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: tenant}, "sk": &types.AttributeValueMemberS{Value: "token#" + id}}})
		if err != nil || out.Item == nil {
			tb.Fatalf("read the created item %s: %v", id, err)
		}
		return out.Item
	}
	var templates [2]map[string]types.AttributeValue // [0] does not expire, [1] does
	var tokens []seeded
	for i := range min(n, 2) {
		id := fmt.Sprintf("t%06d", i)
		body := `{"name":"` + scaleName(i) + `","value":"` + value + `"`
		if e := scaleExpiry(i); e != "" {
			body += `,"expiresAt":"` + e + `"`
		}
		if res := h.do(http.MethodPut, "/ai-service/"+tenant+"/agentic/tokens/"+id, body+"}", h.jwt(tenant, auth.ScopeRead, auth.ScopeManage)); res.status != http.StatusCreated {
			tb.Fatalf("create: %d %s", res.status, res.body)
		}
		templates[i] = read(id)
		tokens = append(tokens, seeded{id: id, name: scaleName(i), createdAt: attrS(templates[i], "createdAt"),
			modifiedAt: attrS(templates[i], "modifiedAt"), expiresAt: attrS(templates[i], "expiresAt")})
	}
	created, _ := time.Parse(time.RFC3339Nano, attrS(templates[0], "createdAt"))
	at := func(ms int) string { return token.FormatTime(created.Add(time.Duration(ms) * time.Millisecond)) }
	var ids []string // every token's, the two created too: CountItems writes the counters whole
	for _, tk := range tokens {
		ids = append(ids, tk.id)
	}
	var batch []map[string]types.AttributeValue
	for i := 2; i < n; i++ {
		id := fmt.Sprintf("t%06d", i)
		from := templates[0]
		exp := scaleExpiry(i)
		if exp != "" {
			from = templates[1]
		}
		it := make(map[string]types.AttributeValue, len(from))
		for k, v := range from {
			it[k] = v
		}
		tk := seeded{id: id, name: scaleName(i), createdAt: at(i), modifiedAt: at(i | 3), expiresAt: exp}
		it["sk"] = &types.AttributeValueMemberS{Value: "token#" + id}
		it["id"] = &types.AttributeValueMemberS{Value: id}
		it["name"] = &types.AttributeValueMemberS{Value: tk.name}
		it["uid"] = &types.AttributeValueMemberS{Value: fmt.Sprintf("%024x", i)}
		it["requestId"] = &types.AttributeValueMemberS{Value: fmt.Sprintf("seed-%d", i)}
		it["createdAt"] = &types.AttributeValueMemberS{Value: tk.createdAt}
		it["modifiedAt"] = &types.AttributeValueMemberS{Value: tk.modifiedAt}
		if exp != "" {
			it["expiresAt"] = &types.AttributeValueMemberS{Value: exp}
			it["expiryDay"] = &types.AttributeValueMemberS{Value: exp[:len(time.DateOnly)]}
		}
		store.WithListKeys(it)
		batch, ids, tokens = append(batch, it), append(ids, id), append(tokens, tk)
		if len(batch) == 1000 {
			batchPut(tb, h.table, batch)
			batch = batch[:0]
		}
	}
	batchPut(tb, h.table, append(batch, store.CountItems(tenant, ids)...))
	return tokens
}

// BenchmarkScale compares a tenant of AITOKENS_SCALE_TOKENS tokens with one of 100 in the same
// DynamoDB Local, alternating the same request on both: page 1 of the default list, of
// sort=name, of q=name:~^Prefix, the count alone (X-Total-Count), and q=name:~x; with the bytes
// DynamoDB charged for reading items (consumed capacity) per token of the tenant, and the memory
// one request allocates.
func BenchmarkScale(b *testing.B) {
	big, small := scaleTokens(b, 2000), 100
	srv := kmstest.New()
	b.Cleanup(srv.Close)
	srv.UseFromEnv(b)
	kms, err := kmsseal.NewClient(context.Background(), testenv.Policy)
	if err != nil {
		b.Fatal(err)
	}
	sealer := kmsseal.New(kms, "alias/ai-tokens")
	f := scaleTable(b, big, small, sealer)
	meter := &capacityMeter{}
	client, err := store.NewClient(context.Background(), testenv.Endpoint(), testenv.Policy, func(o *dynamodb.Options) {
		o.APIOptions = append(o.APIOptions, meter.middleware)
	})
	if err != nil {
		b.Fatal(err)
	}
	h := newHarnessFrom(b, stack{client: client, table: f.table, sealer: sealer, requestTimeout: 2 * time.Minute}) // as the walk: q=name:~x at 100,000 was refused at one minute under load
	tenants := map[string]int{"big": big, "small": small}
	jwts := map[string]string{"big": h.jwt("big", "ai.agent_read"), "small": h.jwt("small", "ai.agent_read")}
	// get sends one list request of tenant and returns its answer, the bytes it allocated, the
	// read units it consumed and what its reads fetched.
	get := func(b *testing.B, tenant, params string) (*httptest.ResponseRecorder, uint64, float64, []readSeen) {
		req := httptest.NewRequest(http.MethodGet, "/ai-service/"+tenant+"/agentic/tokens?"+params, nil)
		req.Header.Set("Authorization", "Bearer "+jwts[tenant])
		req.Header.Set("X-Total-Count", "true")
		rec := httptest.NewRecorder()
		meter.takeAll()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		h.handler.ServeHTTP(rec, req)
		runtime.ReadMemStats(&after)
		if rec.Code != http.StatusOK {
			b.Fatalf("%s %s: %d %s", tenant, params, rec.Code, rec.Body.String())
		}
		units, reads := meter.takeAll()
		return rec, after.TotalAlloc - before.TotalAlloc, units, reads
	}
	// lastPage is the pageNumber of the last page of 20 of a tenant of n: the deepest page.
	lastPage := func(n int) string { return strconv.Itoa((n + 19) / 20) }
	for _, shape := range []struct {
		name   string
		params func(n int) string
	}{
		{"default", func(int) string { return "pageSize=20" }},
		{"sort=name", func(int) string { return "pageSize=20&sort=name" }},
		{"q=name:~^Prefix", func(int) string { return "pageSize=20&q=" + url.QueryEscape("name:~^Prefix") }},
		{"count", func(int) string { return "pageSize=1&fields=id" }},
		{"q=name:~x", func(int) string { return "pageSize=20&q=" + url.QueryEscape("name:~x") }},
		// The deepest page: the entries before it are read from the index, never their items.
		{"deep default", func(n int) string { return "pageSize=20&pageNumber=" + lastPage(n) }},
		{"deep sort=name", func(n int) string { return "pageSize=20&sort=name&pageNumber=" + lastPage(n) }},
		{"deep sort=metadata.createdAt:desc", func(n int) string {
			return "pageSize=20&sort=metadata.createdAt:desc&pageNumber=" + lastPage(n)
		}},
	} {
		b.Run(shape.name, func(b *testing.B) {
			params := map[string]string{"big": shape.params(big), "small": shape.params(small)}
			for tenant, n := range tenants {
				rec, _, _, _ := get(b, tenant, params[tenant])
				if shape.name == "default" || shape.name == "count" || strings.HasPrefix(shape.name, "deep") {
					if got := rec.Header().Get("X-Total-Count"); got != strconv.Itoa(n) {
						b.Fatalf("%s: X-Total-Count %s, want %d", tenant, got, n)
					}
				}
			}
			var bigTime, smallTime time.Duration
			var bigBytes, smallBytes uint64
			var bigUnits float64
			var entries, whole, sealed int
			for b.Loop() {
				t0 := time.Now()
				_, mem, units, reads := get(b, "big", params["big"])
				bigTime += time.Since(t0)
				bigBytes += mem
				bigUnits += units
				for _, r := range reads {
					switch r.op {
					case "Query":
						if r.index != "" {
							entries += r.items
						}
					case "GetItem", "BatchGetItem":
						whole += r.items
					}
					for a := range r.attrs {
						if isSealed(a) {
							sealed++
						}
					}
				}
				t0 = time.Now()
				_, mem, _, _ = get(b, "small", params["small"])
				smallTime += time.Since(t0)
				smallBytes += mem
			}
			if sealed > 0 {
				b.Fatalf("%s: the reads fetched %d sealed attributes", shape.name, sealed)
			}
			b.ReportMetric(float64(bigTime.Nanoseconds())/float64(b.N), "big-ns/op")
			b.ReportMetric(float64(smallTime.Nanoseconds())/float64(b.N), "small-ns/op")
			b.ReportMetric(float64(bigTime)/float64(smallTime), "big/small")
			b.ReportMetric(float64(bigBytes)/float64(b.N), "big-alloc-B/op")
			b.ReportMetric(float64(smallBytes)/float64(b.N), "small-alloc-B/op")
			b.ReportMetric(float64(peakHeap(func() { get(b, "big", params["big"]) })), "big-peak-heap-B")
			b.ReportMetric(float64(peakHeap(func() { get(b, "small", params["small"]) })), "small-peak-heap-B")
			// An eventually consistent read unit is 8 KiB of items read.
			b.ReportMetric(bigUnits/float64(b.N)*8192/float64(big), "big-read-B/token")
			b.ReportMetric(float64(entries)/float64(b.N), "big-index-entries/op")
			b.ReportMetric(float64(whole)/float64(b.N), "big-items/op")
		})
	}
}
