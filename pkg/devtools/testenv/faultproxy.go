package testenv

import (
	"bytes"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// FaultProxy stands between a DynamoDB client and this run's DynamoDB Local and injects faults
// on demand, so that a race or a timeout is reproduced on every run rather than hoped for.
// Operations are named as in X-Amz-Target without the prefix ("TransactWriteItems").
type FaultProxy struct {
	URL string

	mu       sync.Mutex
	stall    chan struct{} // non-nil: every request waits for it to close
	pauses   map[string][]*Pause
	throttle int // the next n requests are throttled; -1 all
	errors   map[string][]string
	drops    map[string]int
	held     atomic.Int64
	forward  *httputil.ReverseProxy
	calls    []string       // the operation of every request so far, in arrival order
	pauseAt  map[int]*Pause // by the 1-based number of the request to hold
}

// NewFaultProxy starts a proxy to this run's DynamoDB Local, closed when t ends.
func NewFaultProxy(t testing.TB) *FaultProxy {
	target, err := url.Parse(Endpoint())
	if err != nil {
		t.Fatal(err)
	}
	p := &FaultProxy{pauses: map[string][]*Pause{}, errors: map[string][]string{}, drops: map[string]int{}, pauseAt: map[int]*Pause{},
		forward: httputil.NewSingleHostReverseProxy(target)}
	// A client that gave up is the point of these tests, not news.
	p.forward.ErrorLog = log.New(io.Discard, "", 0)
	srv := httptest.NewServer(p)
	t.Cleanup(func() {
		p.Release()
		srv.Close()
	})
	p.URL = srv.URL
	return p
}

// Pause holds one request until Release. Reached is closed when the request has arrived.
type Pause struct {
	Reached chan struct{}
	release chan struct{}
	once    sync.Once
}

// Release lets the paused request go on to DynamoDB Local.
func (p *Pause) Release() { p.once.Do(func() { close(p.release) }) }

// PauseNext holds the next request of operation until the returned Pause is released.
func (p *FaultProxy) PauseNext(operation string) *Pause {
	pause := &Pause{Reached: make(chan struct{}), release: make(chan struct{})}
	p.mu.Lock()
	p.pauses[operation] = append(p.pauses[operation], pause)
	p.mu.Unlock()
	return pause
}

// PauseCall holds the n-th request through the proxy (counting from 1, of any operation)
// until the returned Pause is released: an interleaving test stops a write at each of its
// DynamoDB calls in turn.
func (p *FaultProxy) PauseCall(n int) *Pause {
	pause := &Pause{Reached: make(chan struct{}), release: make(chan struct{})}
	p.mu.Lock()
	p.pauseAt[n] = pause
	p.mu.Unlock()
	return pause
}

// Calls returns the operations of the requests so far, in arrival order.
func (p *FaultProxy) Calls() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.calls...)
}

// Stall holds every request from now on (as a frozen database would) until Release; a held
// request ends early only when its client gives up.
func (p *FaultProxy) Stall() {
	p.mu.Lock()
	if p.stall == nil {
		p.stall = make(chan struct{})
	}
	p.mu.Unlock()
}

// Release ends a stall.
func (p *FaultProxy) Release() {
	p.mu.Lock()
	if p.stall != nil {
		close(p.stall)
		p.stall = nil
	}
	p.mu.Unlock()
}

// Held is the number of requests being held by a stall or a pause now.
func (p *FaultProxy) Held() int { return int(p.held.Load()) }

// Throttle answers the next n requests (all with -1, none with 0) with
// ProvisionedThroughputExceededException.
func (p *FaultProxy) Throttle(n int) {
	p.mu.Lock()
	p.throttle = n
	p.mu.Unlock()
}

// FailNext answers the next request of operation with the DynamoDB error errorType (e.g.
// "TransactionConflictException"), without reaching DynamoDB Local.
func (p *FaultProxy) FailNext(operation, errorType string, times int) {
	p.mu.Lock()
	for range times {
		p.errors[operation] = append(p.errors[operation], errorType)
	}
	p.mu.Unlock()
}

// CancelNext answers the next times requests of operation (a TransactWriteItems) as DynamoDB
// cancels a transaction, with one cancellation reason per code (e.g. "None",
// "TransactionConflict": what real DynamoDB returns under contention and DynamoDB Local never
// does), without reaching DynamoDB Local.
func (p *FaultProxy) CancelNext(operation string, times int, codes ...string) {
	reasons := make([]string, len(codes))
	for i, c := range codes {
		reasons[i] = `{"Code":"` + c + `"}`
	}
	body := `{"__type":"com.amazonaws.dynamodb.v20120810#TransactionCanceledException","Message":"Transaction cancelled, ` +
		`please refer cancellation reasons for specific reasons [` + strings.Join(codes, ", ") + `]","CancellationReasons":[` +
		strings.Join(reasons, ",") + `]}`
	p.mu.Lock()
	for range times {
		p.errors[operation] = append(p.errors[operation], "TransactionCanceledException\n"+body)
	}
	p.mu.Unlock()
}

// ClearFaults forgets the errors, cancellations and dropped responses still queued.
func (p *FaultProxy) ClearFaults() {
	p.mu.Lock()
	clear(p.errors)
	clear(p.drops)
	p.mu.Unlock()
}

// DropNextResponse lets the next n requests of operation reach DynamoDB Local (so a write is
// done) and then closes the connection without answering: the response is lost.
func (p *FaultProxy) DropNextResponse(operation string, n int) {
	p.mu.Lock()
	p.drops[operation] += n
	p.mu.Unlock()
}

func (p *FaultProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	op := strings.TrimPrefix(r.Header.Get("X-Amz-Target"), "DynamoDB_20120810.")
	p.mu.Lock()
	stall := p.stall
	p.calls = append(p.calls, op)
	pause := p.pauseAt[len(p.calls)]
	if q := p.pauses[op]; len(q) > 0 && pause == nil {
		pause, p.pauses[op] = q[0], q[1:]
	}
	throttled := p.throttle != 0
	if p.throttle > 0 {
		p.throttle--
	}
	var errType string
	if q := p.errors[op]; len(q) > 0 {
		errType, p.errors[op] = q[0], q[1:]
	}
	drop := p.drops[op] > 0
	if drop {
		p.drops[op]--
	}
	p.mu.Unlock()

	if stall != nil || pause != nil {
		// Read the body first: only then does net/http watch the connection and cancel the
		// request's context when the client gives up.
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		p.held.Add(1)
		if pause != nil {
			close(pause.Reached)
			stall = pause.release
		}
		select {
		case <-stall:
		case <-r.Context().Done():
		}
		p.held.Add(-1)
		if r.Context().Err() != nil {
			return // the client gave up: nothing reaches the database
		}
	}
	switch {
	case throttled:
		errType = "ProvisionedThroughputExceededException"
	case drop:
		rec := httptest.NewRecorder()
		p.forward.ServeHTTP(rec, r)
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				conn.Close()
			}
		}
		return
	}
	if errType != "" {
		errType, body, hasBody := strings.Cut(errType, "\n")
		if !hasBody {
			body = `{"__type":"com.amazonaws.dynamodb.v20120810#` + errType + `","message":"injected by the test proxy"}`
		}
		w.Header().Set("Content-Type", "application/x-amz-json-1.0")
		w.Header().Set("X-Amzn-ErrorType", errType)
		w.WriteHeader(http.StatusBadRequest)
		w.Write([]byte(body))
		return
	}
	p.forward.ServeHTTP(w, r)
}
