// Package ebtest is a test Amazon EventBridge: an httptest server that answers the PutEvents
// JSON protocol (X-Amz-Target: AWSEvents.PutEvents, application/x-amz-json-1.1) as EventBridge
// does, checks each entry as EventBridge does (source, detail-type, a JSON object detail, the
// bus), records the entries it accepts, and on demand fails chosen entries, throttles, stalls,
// or accepts a call and then never answers it (a publisher killed, or a lost answer).
package ebtest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"
)

// Bus is the bus name tests use.
const Bus = "ai-tokens-test-bus"

// Entry is one entry of a PutEvents call.
type Entry struct {
	Source       string `json:"Source"`
	DetailType   string `json:"DetailType"`
	Detail       string `json:"Detail"`
	EventBusName string `json:"EventBusName"`
	// Time (epoch seconds, as the SDK sends it) and Resources count towards the entry's size.
	Time      json.RawMessage `json:"Time,omitempty"`
	Resources []string        `json:"Resources,omitempty"`
	// Call is the number (from 1) of the call that brought it; Arrived when that call arrived.
	Call    int       `json:"-"`
	Arrived time.Time `json:"-"`
}

// MaxRequestBytes is EventBridge's bound on one PutEvents call: its entries' total Size must
// be less than 256 KB ("Calculating Amazon EventBridge PutEvents event entry size",
// https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-putevent-size.html). The server
// refuses a call at or over it, as EventBridge does, so that a local run cannot pass what AWS
// refuses.
const MaxRequestBytes = 256 * 1024

// Size is the entry's size by the documented formula: 14 bytes for Time when given, and the
// UTF-8 bytes of Source, DetailType, Detail and each of Resources (not EventBusName, nor the
// request's JSON around them).
func (e Entry) Size() int {
	n := len(e.Source) + len(e.DetailType) + len(e.Detail)
	if len(e.Time) > 0 && string(e.Time) != "null" {
		n += 14
	}
	for _, r := range e.Resources {
		n += len(r)
	}
	return n
}

// ID is the "id" field of the entry's detail ("" if it has none).
func (e Entry) ID() string {
	var d struct {
		ID string `json:"id"`
	}
	json.Unmarshal([]byte(e.Detail), &d)
	return d.ID
}

// Server is a running test EventBridge.
type Server struct {
	*httptest.Server

	mu       sync.Mutex
	bus      string
	calls    [][]Entry // every call's entries as sent, accepted or not
	accepted []Entry
	throttle int // the next n calls are throttled; -1 all
	fails    []*failRule
	stall    chan struct{} // non-nil: calls wait for it to close
	holds    map[int]*Hold // by the number of the call to accept and then hold
	onCall   func(entries []Entry)
}

type failRule struct {
	match func(Entry) bool
	left  int
	code  string
}

// New starts a test EventBridge that accepts events for Bus (set the publisher's bus to it).
func New() *Server {
	s := &Server{bus: Bus, holds: map[int]*Hold{}}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

// Throttle answers the next n calls (every call with -1, none with 0) with ThrottlingException.
func (s *Server) Throttle(n int) { s.mu.Lock(); s.throttle = n; s.mu.Unlock() }

// FailEntries fails the next n entries for which match is true with InternalFailure (a
// retryable per-entry error: the call answers 200 with FailedEntryCount), or with code.
func (s *Server) FailEntries(n int, code string, match func(Entry) bool) {
	if code == "" {
		code = "InternalFailure"
	}
	s.mu.Lock()
	s.fails = append(s.fails, &failRule{match: match, left: n, code: code})
	s.mu.Unlock()
}

// Stall holds every call from now on before looking at it, as an EventBridge that does not
// answer, until Release; a held call whose client gave up is not processed.
func (s *Server) Stall() {
	s.mu.Lock()
	if s.stall == nil {
		s.stall = make(chan struct{})
	}
	s.mu.Unlock()
}

// Release ends a stall.
func (s *Server) Release() {
	s.mu.Lock()
	if s.stall != nil {
		close(s.stall)
		s.stall = nil
	}
	s.mu.Unlock()
}

// Hold is a call accepted (its entries are delivered) whose answer is held back.
type Hold struct {
	Reached chan struct{} // closed when the call has arrived and been accepted
	release chan struct{}
	once    sync.Once
}

// Release lets the held answer go.
func (h *Hold) Release() { h.once.Do(func() { close(h.release) }) }

// AcceptAndHold makes the n-th call (from 1, counting every call since New) deliver its
// entries and then hold its answer until the Hold is released or the client gives up: to the
// publisher, a call that never answered.
func (s *Server) AcceptAndHold(n int) *Hold {
	h := &Hold{Reached: make(chan struct{}), release: make(chan struct{})}
	s.mu.Lock()
	s.holds[n] = h
	s.mu.Unlock()
	return h
}

// OnCall runs f with the entries of every call as it arrives (before any fault applies).
func (s *Server) OnCall(f func(entries []Entry)) { s.mu.Lock(); s.onCall = f; s.mu.Unlock() }

// Calls returns every call's entries as sent, in arrival order.
func (s *Server) Calls() [][]Entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([][]Entry, len(s.calls))
	for i, c := range s.calls {
		out[i] = append([]Entry(nil), c...)
	}
	return out
}

// Entries returns the entries EventBridge accepted (delivered to the bus), repeats included.
func (s *Server) Entries() []Entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Entry(nil), s.accepted...)
}

// Close releases what is held and stops the server.
func (s *Server) Close() {
	s.Release()
	s.mu.Lock()
	for _, h := range s.holds {
		h.Release()
	}
	s.mu.Unlock()
	s.Server.Close()
}

type resultEntry struct {
	EventID      string `json:"EventId,omitempty"`
	ErrorCode    string `json:"ErrorCode,omitempty"`
	ErrorMessage string `json:"ErrorMessage,omitempty"`
}

func fail(w http.ResponseWriter, status int, errorType, message string) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"__type": errorType, "message": message})
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.Header.Get("X-Amz-Target") != "AWSEvents.PutEvents" ||
		!strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-amz-json-1.1") {
		fail(w, 400, "UnknownOperationException", "only AWSEvents.PutEvents (application/x-amz-json-1.1) is served")
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 16<<20)) // JSON escaping makes 256 KB of entries up to 6 times longer
	if err != nil {
		return
	}
	arrived := time.Now()
	var req struct {
		Entries []Entry `json:"Entries"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		fail(w, 400, "SerializationException", "bad JSON")
		return
	}
	s.mu.Lock()
	s.calls = append(s.calls, req.Entries)
	call := len(s.calls)
	for i := range req.Entries {
		req.Entries[i].Call, req.Entries[i].Arrived = call, arrived
	}
	onCall, stall := s.onCall, s.stall
	s.mu.Unlock()
	if onCall != nil {
		onCall(req.Entries)
	}
	if stall != nil {
		select {
		case <-stall:
		case <-r.Context().Done():
			return // the client gave up: nothing was processed
		}
	}
	switch {
	case len(req.Entries) == 0 || len(req.Entries) > 10:
		fail(w, 400, "ValidationException", "1 validation error detected: Value at 'entries' failed to satisfy constraint: Member must have length less than or equal to 10")
		return
	}
	total := 0
	for _, e := range req.Entries {
		total += e.Size()
	}
	if total >= MaxRequestBytes {
		fail(w, 400, "ValidationException", "Total size of the entries in the request is over the limit.")
		return
	}
	s.mu.Lock()
	throttled := s.throttle != 0
	if s.throttle > 0 {
		s.throttle--
	}
	s.mu.Unlock()
	if throttled {
		fail(w, 400, "ThrottlingException", "Rate exceeded")
		return
	}
	results := make([]resultEntry, len(req.Entries))
	failed := 0
	var hold *Hold
	s.mu.Lock()
	for i, e := range req.Entries {
		results[i] = s.check(e)
		if results[i].ErrorCode != "" {
			failed++
			continue
		}
		s.accepted = append(s.accepted, e)
	}
	hold = s.holds[call]
	delete(s.holds, call)
	s.mu.Unlock()
	if hold != nil {
		close(hold.Reached)
		select {
		case <-hold.release:
		case <-r.Context().Done():
			return // accepted, and the client never learns it
		}
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	json.NewEncoder(w).Encode(map[string]any{"FailedEntryCount": failed, "Entries": results})
}

// check is EventBridge's answer to one entry (s.mu held): an event id, or why it failed.
func (s *Server) check(e Entry) resultEntry {
	var detail map[string]any
	switch {
	case e.Source == "" || e.DetailType == "" || e.Detail == "":
		return resultEntry{ErrorCode: "InvalidArgument", ErrorMessage: "Parameter(s) Source, DetailType and Detail are required."}
	case json.Unmarshal([]byte(e.Detail), &detail) != nil:
		return resultEntry{ErrorCode: "MalformedDetail", ErrorMessage: "Detail is malformed."}
	case e.EventBusName != s.bus:
		return resultEntry{ErrorCode: "InvalidArgument", ErrorMessage: "Event bus " + e.EventBusName + " does not exist."}
	}
	for _, f := range s.fails {
		if f.left != 0 && f.match(e) {
			if f.left > 0 {
				f.left--
			}
			return resultEntry{ErrorCode: f.code, ErrorMessage: "failed by the test EventBridge"}
		}
	}
	id := make([]byte, 16)
	rand.Read(id)
	return resultEntry{EventID: hex.EncodeToString(id)}
}

// UseFromEnv points the SDK's standard configuration at this server for the rest of the test
// (AWS_ENDPOINT_URL_EVENTBRIDGE, region, dummy credentials, no shared config files), and names
// Bus as the publisher's bus (EVENT_BUS_NAME).
func (s *Server) UseFromEnv(t interface{ Setenv(key, value string) }) {
	for _, kv := range s.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
}

// Env is the environment (KEY=VALUE) that points a process at this server: for a function
// binary run by a test.
func (s *Server) Env() []string {
	return []string{"AWS_ENDPOINT_URL_EVENTBRIDGE=" + s.URL, "EVENT_BUS_NAME=" + Bus, "AWS_REGION=us-east-1",
		"AWS_ACCESS_KEY_ID=test", "AWS_SECRET_ACCESS_KEY=test", "AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null"}
}
