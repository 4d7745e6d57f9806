package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"aitokens/pkg/devtools/testenv"
	"aitokens/pkg/store"
)

// Requests over MAX_CONCURRENT_REQUESTS get a JSON 503 with Retry-After at once, and every one
// of them has its request log line, as any other answer does (issue 17, item 6).
func TestRefusedRequestsAreLogged(t *testing.T) {
	t.Parallel()
	const capacity, refused = 4, 36
	proxy := testenv.NewFaultProxy(t)
	client, err := store.NewClient(context.Background(), proxy.URL, testenv.Policy)
	if err != nil {
		t.Fatal(err)
	}
	h := newHarnessFrom(t, stack{client: client, sealer: newHarness(t).sealer, maxConcurrent: capacity})
	mgr := h.manager()
	h.create("held", "Held", "sk-held-value")

	// Fill every slot with a GET held at its DynamoDB read.
	pauses := make([]*testenv.Pause, capacity)
	for i := range pauses {
		pauses[i] = proxy.PauseNext("GetItem")
	}
	held := make(chan response, capacity)
	for range capacity {
		go func() { held <- h.do("GET", base+"/held", "", mgr) }()
	}
	deadline := time.After(10 * time.Second)
	for _, p := range pauses {
		select {
		case <-p.Reached:
		case <-deadline:
			t.Fatal("the first requests did not reach DynamoDB")
		}
	}

	// Every slot is taken: each of these is refused at once, concurrently.
	answers := make(chan response, refused)
	var wg sync.WaitGroup
	for i := range refused {
		wg.Add(1)
		go func() {
			defer wg.Done()
			answers <- h.do("PUT", fmt.Sprintf("%s/refused-%d", base, i), `{"name":"n","value":"sk-refused-value"}`, mgr)
		}()
	}
	waitOrFail(t, &wg, 10*time.Second, "the refused requests were not answered at once")
	close(answers)
	for res := range answers {
		if res.status != http.StatusServiceUnavailable || res.header.Get("Retry-After") == "" || res.errorBody(t).Code != 503 ||
			!strings.Contains(res.errorBody(t).Message, "busy") {
			t.Fatalf("a request over the cap: %d %s (Retry-After %q)", res.status, res.body, res.header.Get("Retry-After"))
		}
	}
	for _, p := range pauses {
		p.Release()
	}
	for range capacity {
		select {
		case res := <-held:
			if res.status != http.StatusOK {
				t.Fatalf("a request within the cap: %d %s", res.status, res.body)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a held request did not end after its release")
		}
	}

	// One line per answer: the refusals in the same format as every other request.
	ids := map[string]bool{}
	var busy, ok int
	for _, line := range strings.Split(strings.TrimSpace(h.logs.String()), "\n") {
		var l struct {
			Msg, RequestID, Method, Route, Tenant, ErrorKind string
			Status                                           int
			DurationMs                                       *float64
		}
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if l.Msg != "request" || l.RequestID == "" || ids[l.RequestID] || l.Tenant != "acme" || l.DurationMs == nil {
			t.Fatalf("log line without its request fields or with a repeated id: %s", line)
		}
		ids[l.RequestID] = true
		switch {
		case l.Status == 503 && l.Method == "PUT" && l.Route == "/ai-service/{tenant}/agentic/tokens/{tokenId}" && l.ErrorKind == "unavailable":
			busy++
		case l.Status == 200 && l.Method == "GET":
			ok++
		case l.Status == 201 && l.Method == "PUT": // the create before
		default:
			t.Fatalf("unexpected log line: %s", line)
		}
	}
	if busy != refused || ok != capacity {
		t.Fatalf("log lines: %d refusals of %d, %d served of %d", busy, refused, ok, capacity)
	}
}

// waitOrFail waits for wg, failing the test after bound.
func waitOrFail(t *testing.T, wg *sync.WaitGroup, bound time.Duration, msg string) {
	t.Helper()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(bound):
		t.Fatal(msg)
	}
}
