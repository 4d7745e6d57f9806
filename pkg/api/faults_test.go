package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"aitokens/pkg/devtools/testenv"
	"aitokens/pkg/service"
	"aitokens/pkg/store"
)

// Deadlines of the stall test: short, so that the bound is proven without waiting long. The
// attempt deadline is the tests' roomy one, so what answers is the request's own deadline
// (pkg/store's tests prove the attempt deadline on its own).
const (
	stallRequestTimeout = time.Second
	stallAttemptTimeout = 20 * time.Second
	// stallAnswerBound is what a request may take while the database is stalled: its
	// deadline plus room for a busy 2-core machine under the race detector.
	stallAnswerBound = 3 * stallRequestTimeout
)

// stallDuration is how long the database stays stalled: STALL_SECONDS for the figures in
// docs/security.md (30), 3 s by default.
func stallDuration(t *testing.T) time.Duration {
	if raw := os.Getenv("STALL_SECONDS"); raw != "" {
		var s int
		if _, err := fmt.Sscan(raw, &s); err != nil || s < 1 {
			t.Fatalf("STALL_SECONDS=%q", raw)
		}
		return time.Duration(s) * time.Second
	}
	return 3 * time.Second
}

// proxiedHarness is the real handler stack whose DynamoDB calls pass through a fault proxy.
func proxiedHarness(t *testing.T, attemptTimeout, requestTimeout time.Duration) (*harness, *testenv.FaultProxy) {
	t.Helper()
	proxy := testenv.NewFaultProxy(t)
	policy := testenv.Policy
	policy.AttemptTimeout = attemptTimeout
	client, err := store.NewClient(context.Background(), proxy.URL, policy)
	if err != nil {
		t.Fatal(err)
	}
	h := newHarnessFrom(t, stack{client: client, sealer: newHarness(t).sealer, requestTimeout: requestTimeout})
	return h, proxy
}

// A frozen database (every request held, as with DynamoDB Local under SIGSTOP) gives every
// request a JSON 503 with Retry-After within its deadline, in waves for the whole stall; the
// goroutines do not pile up; nothing is half-written; and once the stall ends the service
// works again without a restart and every acknowledged write is there.
func TestStalledDatabaseAnswersInTime(t *testing.T) {
	h, proxy := proxiedHarness(t, stallAttemptTimeout, stallRequestTimeout)
	mgr := h.manager()
	// Made without the 1 s request deadline, which a loaded machine can miss before any stall.
	if _, err := h.svc.Upsert(context.Background(), service.Upsert{Tenant: "acme", ID: "before", Name: new("Before"),
		Value: new("sk-before-stall"), Meta: service.Meta{RequestID: "before", Actor: "test"}}); err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	goroutinesBefore := runtime.NumGoroutine()

	stall := stallDuration(t)
	proxy.Stall()
	stalledAt := time.Now()
	var slowest time.Duration
	requests, peak := 0, 0
	for wave := 0; time.Since(stalledAt) < stall; wave++ {
		const perWave = 20
		latencies := make([]time.Duration, perWave)
		responses := make([]response, perWave)
		var wg sync.WaitGroup
		for i := range perWave {
			wg.Add(1)
			go func() {
				defer wg.Done()
				start := time.Now()
				switch i % 4 {
				case 0:
					responses[i] = h.do("GET", base+"/before", "", mgr)
				case 1:
					responses[i] = h.do("PUT", fmt.Sprintf("%s/stalled-%d-%d", base, wave, i), `{"name":"n","value":"sk-stalled-value"}`, mgr)
				case 2:
					responses[i] = h.do("PATCH", base+"/before", `[{"op":"REPLACE","path":"/name","value":"stalled"}]`, mgr)
				default:
					responses[i] = h.do("GET", base+"?q=name:~B", "", mgr)
				}
				latencies[i] = time.Since(start)
			}()
		}
		wg.Wait()
		peak = max(peak, runtime.NumGoroutine())
		for i, res := range responses {
			requests++
			slowest = max(slowest, latencies[i])
			if res.status != http.StatusServiceUnavailable || res.header.Get("Retry-After") == "" || res.errorBody(t).Code != 503 {
				t.Fatalf("wave %d request %d during the stall: %d %s (Retry-After %q)", wave, i, res.status, res.body, res.header.Get("Retry-After"))
			}
			if latencies[i] > stallAnswerBound {
				t.Fatalf("wave %d request %d took %v, more than %v", wave, i, latencies[i], stallAnswerBound)
			}
		}
	}
	proxy.Release()
	for deadline := time.Now().Add(10 * time.Second); proxy.Held() != 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if proxy.Held() != 0 {
		t.Fatalf("%d requests still held after the stall", proxy.Held())
	}
	// A refused request that the database had already taken (or takes as the stall ends) may
	// still land, as with a real database: the table holds what it held, or whole writes.
	// Every change that landed has its event, and no event is without its change: a token's
	// events number its version (one for the create, one per update).
	landed := 0
	versions, events := map[string]string{}, map[string]int{}
	for _, it := range scanTable(t, h) {
		sk := it["sk"].(*types.AttributeValueMemberS).Value
		if strings.HasPrefix(sk, "event#") {
			events[it["tokenId"].(*types.AttributeValueMemberS).Value]++
			continue
		}
		if strings.HasPrefix(sk, "count#") {
			continue // the tenant's token count (the invariant check holds it to the tokens)
		}
		name := it["name"].(*types.AttributeValueMemberS).Value
		_, sealed := it["sealCiphertext"].(*types.AttributeValueMemberB)
		switch {
		case sk == "token#before" && (name == "Before" || name == "stalled") && sealed:
		case strings.HasPrefix(sk, "token#stalled-") && name == "n" && sealed:
			landed++
		default:
			t.Fatalf("after the stall the table holds a partial or unknown write: %v", it)
		}
		versions[strings.TrimPrefix(sk, "token#")] = it["version"].(*types.AttributeValueMemberN).Value
	}
	for id, v := range versions {
		if fmt.Sprint(events[id]) != v {
			t.Fatalf("token %s at version %s has %d events", id, v, events[id])
		}
	}
	if len(events) != len(versions) {
		t.Fatalf("events of %d tokens, %d tokens", len(events), len(versions))
	}

	// The same server works again, and what it acknowledged is there. A loaded machine may
	// miss the 1 s deadline once: a 503 is an answer to retry, as a client would (a retry of a
	// create that landed is an update of the same value, 204).
	after := h.do("PUT", base+"/after", `{"name":"After","value":"sk-after-stall"}`, mgr)
	for retries := 0; after.status == http.StatusServiceUnavailable && retries < 5; retries++ {
		after = h.do("PUT", base+"/after", `{"name":"After","value":"sk-after-stall"}`, mgr)
	}
	if after.status != http.StatusCreated && after.status != http.StatusNoContent {
		t.Fatalf("create after the stall: %d %s", after.status, after.body)
	}
	var docs []map[string]any
	res := h.do("GET", base+"?fields=id", "", mgr)
	res.json(t, &docs)
	if res.status != 200 || len(docs) != 2+landed {
		t.Fatalf("list after the stall: %d %s", res.status, res.body)
	}

	// The goroutines of the refused requests are gone (idle keep-alive connections aside).
	deadline := time.Now().Add(10 * time.Second)
	goroutinesAfter := runtime.NumGoroutine()
	for goroutinesAfter > goroutinesBefore+20 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		runtime.GC()
		goroutinesAfter = runtime.NumGoroutine()
	}
	if goroutinesAfter > goroutinesBefore+20 {
		t.Fatalf("goroutines: %d before the stall, %d after it", goroutinesBefore, goroutinesAfter)
	}
	t.Logf("stall of %v: %d requests, every one a 503, the slowest in %v (deadline %v); goroutines %d before, peak %d, %d after; %d refused creates landed whole",
		stall, requests, slowest.Round(time.Millisecond), stallRequestTimeout, goroutinesBefore, peak, goroutinesAfter, landed)
}

// A write whose response is lost after DynamoDB applied it is retried by the SDK; the request
// id stored on the item tells that retry from a conflict, so the client gets its 2xx and the
// write is applied once. Each write gets exactly the status it would have got without the loss:
// the SDK sends its retry of a TransactWriteItems with the same ClientRequestToken, which
// DynamoDB (and DynamoDB Local) answers as the success it was, so the store sees its own
// transaction succeed, and a usage registered by this request is created: 201 (a client that
// repeats the whole PUT gets 204, registered already).
func TestLostResponsesAreAppliedOnce(t *testing.T) {
	t.Parallel()
	h, proxy := proxiedHarness(t, 5*time.Second, testRequestTimeout)
	mgr := h.manager()
	steps := []struct {
		name, op, method, path, body string
		status                       int
	}{
		{"create", "TransactWriteItems", "PUT", "/openai", `{"name":"OpenAI","value":"sk-lost-response"}`, 201},
		{"rename", "TransactWriteItems", "PUT", "/openai", `{"name":"Renamed","metadata":{"version":1}}`, 204},
		{"patch", "TransactWriteItems", "PATCH", "/openai", `[{"op":"REPLACE","path":"/name","value":"Patched"}]`, 204},
		{"register usage", "TransactWriteItems", "PUT", "/openai/usages/agent/a1", "", 201},
	}
	for _, s := range steps {
		proxy.DropNextResponse(s.op, 1)
		if res := h.do(s.method, base+s.path, s.body, mgr); res.status != s.status {
			t.Fatalf("%s with its response lost: %d %s", s.name, res.status, res.body)
		}
	}
	doc := h.getDoc("openai")
	meta := doc["metadata"].(map[string]any)
	if doc["name"] != "Patched" || meta["version"] != 3.0 || meta["usageCount"] != 1.0 {
		t.Fatalf("after lost responses: %v", doc)
	}
	raw, _ := json.Marshal(doc)
	t.Logf("after lost responses: %s", raw)
}
