package relay_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"aitokens/pkg/devtools/emfcheck"
	"aitokens/pkg/devtools/kmstest"
	"aitokens/pkg/devtools/syncbuf"
	"aitokens/pkg/devtools/testenv"
	"aitokens/pkg/metrics"
	"aitokens/pkg/query"
	"aitokens/pkg/relay"
	"aitokens/pkg/service"
	"aitokens/pkg/token"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// secret is the value of every token of the suite: searched for in everything it writes.
const secret = "sk-relay-secret-0123456789abcdef"

// env is the relay on the real service: DynamoDB Local, the KMS sealer against the test KMS,
// behind the resolve cache, as the relay function runs it.
type env struct {
	t       *testing.T
	svc     *service.Service
	kms     *kmstest.Server
	table   string
	relay   *httptest.Server
	logs    *syncbuf.Buffer
	emf     *syncbuf.Buffer
	bodies  *syncbuf.Buffer
	headers *syncbuf.Buffer
	skip    *atomic.Int64
}

func newEnv(t *testing.T, dev bool) *env {
	t.Helper()
	// The clock runs ahead by skip, so that a test can let a token expire without sleeping.
	skip := &atomic.Int64{}
	now := func() time.Time { return time.Now().Add(time.Duration(skip.Load())) }
	svc, kms, cfg := testenv.KMSService(t, now)
	e := &env{t: t, svc: svc, skip: skip, kms: kms, table: cfg.TableName, logs: &syncbuf.Buffer{}, emf: &syncbuf.Buffer{},
		bodies: &syncbuf.Buffer{}, headers: &syncbuf.Buffer{}}
	h, err := relay.New(relay.Config{Grants: svc, Log: slog.New(slog.NewJSONHandler(e.logs, nil)), Metrics: e.emf,
		Dims: []metrics.Dimension{{Name: "Service", Value: "test"}, {Name: "Function", Value: "relay"}}, Dev: dev,
		HeaderTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	e.relay = httptest.NewServer(h)
	t.Cleanup(e.relay.Close)
	t.Cleanup(e.noLeaks)
	return e
}

// noLeaks searches every log line, metrics line, response and stored item (audit events
// included: what EventBridge is sent is made from them) for the value.
func (e *env) noLeaks() {
	t := e.t
	for what, b := range map[string][]byte{"log": e.logs.Bytes(), "EMF": e.emf.Bytes(), "response bodies": e.bodies.Bytes(),
		"response headers": e.headers.Bytes()} {
		if strings.Contains(string(b), secret) {
			t.Errorf("the value is in the %s:\n%s", what, b)
		}
	}
	for line := range strings.SplitSeq(strings.TrimSpace(string(e.emf.Bytes())), "\n") {
		if line != "" {
			if err := emfcheck.Check([]byte(line)); err != nil {
				t.Errorf("EMF line %s: %v", line, err)
			}
		}
	}
	out, err := testenv.Client().Scan(context.Background(), &dynamodb.ScanInput{TableName: aws.String(e.table)})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(out.Items)
	if strings.Contains(string(b), secret) {
		t.Errorf("the value is in a stored item")
	}
}

func (e *env) create(id string, egress *token.Egress, more func(*service.Upsert)) {
	e.t.Helper()
	in := service.Upsert{Tenant: "acme", ID: id, Name: aws.String(id), Value: aws.String(secret), Egress: egress,
		Meta: service.Meta{RequestID: "create-" + id}}
	if more != nil {
		more(&in)
	}
	if _, err := e.svc.Upsert(context.Background(), in); err != nil {
		e.t.Fatalf("create %s: %v", id, err)
	}
}

type answer struct {
	status int
	header http.Header
	body   string
	err    map[string]any
}

// do calls the relay and reads the whole answer.
func (e *env) do(method, path string, header map[string]string, body string) answer {
	e.t.Helper()
	req, err := http.NewRequest(method, e.relay.URL+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res, err := e.relay.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	e.bodies.Write(b)
	fmt.Fprintf(e.headers, "%v\n", res.Header)
	a := answer{status: res.StatusCode, header: res.Header, body: string(b)}
	if strings.HasPrefix(res.Header.Get("Content-Type"), "application/json") && res.Header.Get("X-Upstream") == "" {
		json.Unmarshal(b, &a.err)
	}
	return a
}

// upstream is an httptest server on 127.0.0.1 that records what it received.
type upstream struct {
	*httptest.Server
	mu       sync.Mutex
	requests []*http.Request
}

func newUpstream(t *testing.T, h http.HandlerFunc) *upstream {
	u := &upstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.requests = append(u.requests, r.Clone(context.Background()))
		u.mu.Unlock()
		h(w, r)
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *upstream) received() []*http.Request {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]*http.Request(nil), u.requests...)
}

// host is the upstream as a policy names it: "localhost:PORT" (IP literals are refused).
func (u *upstream) host() string {
	p, _ := url.Parse(u.URL)
	return "localhost:" + p.Port()
}

func bearer(hosts ...string) *token.Egress {
	return &token.Egress{AllowedHosts: hosts, Inject: token.Inject{In: token.InjectHeader, Name: "Authorization", Template: "Bearer {{value}}"}}
}

// The upstream gets the value in the injected header and none of the caller's credentials;
// what it echoes back of the value, in its body and a header, reaches the caller redacted.
func TestForwardsWithTheValueInjectedAndRedactsTheEcho(t *testing.T) {
	e := newEnv(t, true)
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Upstream", "echo")
		w.Header().Set("X-Echo", r.Header.Get("Authorization"))
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "auth=%s value=%s path=%s query=%s body=%s", r.Header.Get("Authorization"),
			strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "), r.URL.EscapedPath(), r.URL.RawQuery, b)
	})
	e.create("openai", bearer(up.host()), nil)
	a := e.do("POST", "/relay/acme/openai/"+up.host()+"/v1/chat%2Fx/completions?model=gpt&x=1", map[string]string{
		"Authorization": "Bearer caller-own", "Cookie": "session=1", "Proxy-Authorization": "Basic x", "X-Amz-Security-Token": "tok",
		"Connection": "X-Hop", "X-Hop": "1", "X-Kept": "kept", "X-Token-Consumer": "agent:support",
	}, `{"q":1}`)
	if a.status != 200 {
		t.Fatalf("relay: %d %s", a.status, a.body)
	}
	got := up.received()
	if len(got) != 1 {
		t.Fatalf("upstream got %d requests", len(got))
	}
	r := got[0]
	if r.Header.Get("Authorization") != "Bearer "+secret {
		t.Fatalf("upstream's Authorization: %q", r.Header.Get("Authorization"))
	}
	for _, h := range []string{"Cookie", "Proxy-Authorization", "X-Amz-Security-Token", "X-Hop", "X-Token-Consumer"} {
		if v := r.Header.Get(h); v != "" {
			t.Errorf("upstream got the caller's %s: %q", h, v)
		}
	}
	if r.Header.Get("X-Kept") != "kept" || r.Method != "POST" {
		t.Errorf("upstream lost the caller's request: %s %v", r.Method, r.Header)
	}
	want := "auth=" + relay.Redacted + " value=" + relay.Redacted + " path=/v1/chat%2Fx/completions query=model=gpt&x=1 body={\"q\":1}"
	if a.body != want {
		t.Fatalf("body:\n got %s\nwant %s", a.body, want)
	}
	if a.header.Get("X-Echo") != relay.Redacted {
		t.Fatalf("echoed header: %q", a.header.Get("X-Echo"))
	}
}

// A value injected into the query: the caller's own parameter of that name is replaced, and the
// value echoed URL-encoded is redacted too.
func TestQueryInjection(t *testing.T) {
	e := newEnv(t, true)
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Upstream", "echo")
		fmt.Fprint(w, r.URL.RawQuery)
	})
	e.create("maps", &token.Egress{AllowedHosts: []string{up.host()}, Inject: token.Inject{In: token.InjectQuery, Name: "key", Template: "k {{value}}"}}, nil)
	a := e.do("GET", "/relay/acme/maps/"+up.host()+"/geo?key=mine&q=a", nil, "")
	if got := up.received()[0].URL.Query(); got.Get("key") != "k "+secret || len(got["key"]) != 1 || got.Get("q") != "a" {
		t.Fatalf("upstream's query: %v", got)
	}
	if strings.Contains(a.body, url.QueryEscape(secret)) || !strings.Contains(a.body, relay.Redacted) {
		t.Fatalf("echoed query not redacted: %s", a.body)
	}
}

// A redirect goes back as it is, the value taken out of its Location, and is not followed.
func TestRedirectsAreNotFollowed(t *testing.T) {
	e := newEnv(t, true)
	second := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {})
	first := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, second.URL+"/landing?k="+url.QueryEscape(r.Header.Get("Authorization")), http.StatusFound)
	})
	e.create("redirecting", bearer(first.host(), second.host()), nil)
	req, _ := http.NewRequest("GET", e.relay.URL+"/relay/acme/redirecting/"+first.host()+"/start", nil)
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	e.headers.Write([]byte(fmt.Sprint(res.Header)))
	if res.StatusCode != http.StatusFound {
		t.Fatalf("status %d", res.StatusCode)
	}
	if loc := res.Header.Get("Location"); !strings.HasPrefix(loc, second.URL+"/landing?k="+relay.Redacted) {
		t.Fatalf("Location: %q", loc)
	}
	if n := len(second.received()); n != 0 {
		t.Fatalf("the second upstream got %d requests", n)
	}
}

// Server-Sent Events reach the caller one by one: the first before the upstream sends the last.
func TestStreamsEventsAsTheyCome(t *testing.T) {
	e := newEnv(t, true)
	next := make(chan struct{})
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		rc := http.NewResponseController(w)
		fmt.Fprint(w, "data: first\n\n")
		rc.Flush()
		select {
		case <-next:
		case <-time.After(10 * time.Second):
			return // the test fails on its side
		}
		fmt.Fprintf(w, "data: last %s\n\n", r.Header.Get("Authorization"))
	})
	e.create("stream", bearer(up.host()), nil)
	res, err := e.relay.Client().Get(e.relay.URL + "/relay/acme/stream/" + up.host() + "/v1/stream")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	lines := make(chan string)
	go func() {
		s := bufio.NewScanner(res.Body)
		for s.Scan() {
			lines <- s.Text()
		}
		close(lines)
	}()
	read := func() string {
		select {
		case l := <-lines:
			e.bodies.Write([]byte(l))
			return l
		case <-time.After(10 * time.Second):
			t.Fatal("no event within 10 s: the relay holds the stream back")
			return ""
		}
	}
	if l := read(); l != "data: first" {
		t.Fatalf("first line %q", l)
	}
	close(next)
	read() // the blank line ending the first event
	if l := read(); l != "data: last Bearer "+relay.Redacted && l != "data: last "+relay.Redacted {
		t.Fatalf("last event %q", l)
	}
}

// The relay's refusals: in the API's error shape, audited, and the upstream receives nothing.
func TestRefusals(t *testing.T) {
	e := newEnv(t, true)
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {})
	soon := time.Now().Add(time.Hour)
	e.create("open", bearer(up.host()), nil)
	e.create("plain", nil, nil)
	e.create("expired", bearer(up.host()), func(u *service.Upsert) { u.ExpiresAt = &soon })
	e.create("restricted", bearer(up.host()), func(u *service.Upsert) { u.Restricted = aws.Bool(true) })
	if _, err := e.svc.RegisterUsage(context.Background(), "acme", "restricted", "agent", "support", service.Meta{RequestID: "u1"}); err != nil {
		t.Fatal(err)
	}
	e.create("old", bearer(up.host()), nil)
	e.create("new", nil, func(u *service.Upsert) { u.Replaces, u.GraceSeconds = aws.String("old"), aws.Int(0) })
	e.skip.Store(int64(2 * time.Hour)) // "expired" has expired
	for _, c := range []struct {
		name, path, consumer string
		status               int
		reason               string // the audit event's outcome; "" when none is recorded
	}{
		{"host not listed", "/relay/acme/open/api.example.com/v1", "", 403, "host_not_allowed"},
		{"other port", "/relay/acme/open/localhost:1/v1", "", 403, "host_not_allowed"},
		{"CR LF in host", "/relay/acme/open/localhost%0d%0aX-Evil:%201/v1", "", 403, "host_not_allowed"},
		{"no policy", "/relay/acme/plain/" + up.host() + "/v1", "", 403, "not_relayable"},
		{"unknown token", "/relay/acme/nope/" + up.host() + "/v1", "", 404, "not_found"},
		{"expired", "/relay/acme/expired/" + up.host() + "/v1", "", 410, "expired"},
		{"replaced after grace", "/relay/acme/old/" + up.host() + "/v1", "", 410, "replaced"},
		{"restricted, no consumer", "/relay/acme/restricted/" + up.host() + "/v1", "", 403, "consumer_not_allowed"},
		{"restricted, other consumer", "/relay/acme/restricted/" + up.host() + "/v1", "agent:other", 403, "consumer_not_allowed"},
		{"bad consumer", "/relay/acme/restricted/" + up.host() + "/v1", "agent", 400, ""},
		{"bad consumer JSON", "/relay/acme/restricted/" + up.host() + "/v1", `{"kind":"agent","id":"support","x":1}`, 400, ""},
		{"no path", "/relay/acme/open", "", 404, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := len(e.events(t))
			a := e.do("GET", c.path, map[string]string{"X-Token-Consumer": c.consumer}, "")
			if a.status != c.status || a.err["code"] != float64(c.status) || a.err["message"] == "" || a.err["requestId"] == "" {
				t.Fatalf("%d %s", a.status, a.body)
			}
			ev := e.events(t)
			switch {
			case c.reason == "" && len(ev) != before:
				t.Fatalf("an event for a bad request: %+v", ev[before:])
			case c.reason != "" && (len(ev) != before+1 || ev[len(ev)-1].Action != token.ActionRelay || ev[len(ev)-1].Outcome != c.reason):
				t.Fatalf("audit: %+v", ev[before:])
			}
		})
	}
	if n := len(up.received()); n != 0 {
		t.Fatalf("the upstream got %d requests from refused calls", n)
	}
	for _, c := range []string{"agent:support", `{"kind":"agent","id":"support"}`} {
		if a := e.do("GET", "/relay/acme/restricted/"+up.host()+"/v1", map[string]string{"X-Token-Consumer": c}, ""); a.status != 200 {
			t.Fatalf("restricted token with its consumer %s: %d %s", c, a.status, a.body)
		}
	}
}

// events are the audit events of every token of the suite's tenant, oldest first.
func (e *env) events(t *testing.T) []token.Event {
	var all []token.Event
	for _, id := range []string{"open", "plain", "nope", "expired", "restricted", "old"} {
		ev, _, err := e.svc.Events(context.Background(), "acme", id, queryAll)
		if err != nil && token.KindOf(err) != token.NotFound {
			t.Fatal(err)
		}
		for _, x := range ev {
			if x.Action == token.ActionRelay {
				all = append(all, x)
			}
		}
	}
	slices.SortStableFunc(all, func(a, b token.Event) int { return a.At.Compare(b.At) })
	return all
}

// Without --dev the relay neither speaks plain HTTP nor dials loopback: 502, nothing sent.
func TestLoopbackRefusedOutsideDev(t *testing.T) {
	e := newEnv(t, false)
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {})
	e.create("open", bearer(up.host()), nil)
	a := e.do("GET", "/relay/acme/open/"+up.host()+"/v1", nil, "")
	if a.status != http.StatusBadGateway || a.err["code"] != float64(502) {
		t.Fatalf("%d %s", a.status, a.body)
	}
	if n := len(up.received()); n != 0 {
		t.Fatalf("the upstream got %d requests", n)
	}
}

// An upstream that does not answer in time is a 504; one that is gone a 502.
func TestUpstreamTimeoutAndUnreachable(t *testing.T) {
	e := newEnv(t, true)
	release := make(chan struct{})
	slow := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-time.After(20 * time.Second):
		}
	})
	defer close(release)
	gone := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {})
	goneHost := gone.host()
	gone.Close()
	e.create("slow", bearer(slow.host(), goneHost), nil)
	if a := e.do("GET", "/relay/acme/slow/"+slow.host()+"/v1", nil, ""); a.status != 504 || a.err["code"] != float64(504) {
		t.Fatalf("slow upstream: %d %s", a.status, a.body)
	}
	if a := e.do("GET", "/relay/acme/slow/"+goneHost+"/v1", nil, ""); a.status != 502 || a.err["code"] != float64(502) {
		t.Fatalf("gone upstream: %d %s", a.status, a.body)
	}
}

// The relay opens a value with KMS once; warm calls make none.
func TestWarmRelayCallsNoKMS(t *testing.T) {
	e := newEnv(t, true)
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {})
	e.create("open", bearer(up.host()), nil)
	e.do("GET", "/relay/acme/open/"+up.host()+"/v1", nil, "")
	warm := e.kms.Calls()["Decrypt"]
	for range 20 {
		if a := e.do("GET", "/relay/acme/open/"+up.host()+"/v1", nil, ""); a.status != 200 {
			t.Fatalf("%d %s", a.status, a.body)
		}
	}
	if got := e.kms.Calls()["Decrypt"]; warm != 1 || got != warm {
		t.Fatalf("KMS Decrypt calls: %d for the first call, %d after 20 warm ones", warm, got)
	}
}

// Every call is one log line and one EMF line naming the token, consumer, host, status, bytes.
func TestOneLogAndMetricsLinePerCall(t *testing.T) {
	e := newEnv(t, true)
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "hello") })
	e.create("open", bearer(up.host()), nil)
	e.do("GET", "/relay/acme/open/"+up.host()+"/v1", map[string]string{"X-Token-Consumer": "agent:support"}, "")
	e.do("GET", "/relay/acme/open/api.example.com/v1", nil, "")
	logs := strings.Split(strings.TrimSpace(string(e.logs.Bytes())), "\n")
	emf := strings.Split(strings.TrimSpace(string(e.emf.Bytes())), "\n")
	if len(logs) != 2 || len(emf) != 2 {
		t.Fatalf("%d log lines, %d EMF lines for 2 calls:\n%s\n%s", len(logs), len(emf), e.logs.Bytes(), e.emf.Bytes())
	}
	var l, m map[string]any
	json.Unmarshal([]byte(logs[0]), &l)
	json.Unmarshal([]byte(emf[0]), &m)
	for k, v := range map[string]any{"tokenId": "open", "host": up.host(), "status": float64(200), "bytes": float64(5), "consumerId": "support"} {
		if l[k] != v {
			t.Errorf("log line %s = %v, want %v: %s", k, l[k], v, logs[0])
		}
	}
	for k, v := range map[string]any{"tokenId": "open", "host": up.host(), "status": "200", "bytes": "5", "consumer": "agent/support"} {
		if m[k] != v {
			t.Errorf("EMF line %s = %v, want %v: %s", k, m[k], v, emf[0])
		}
	}
	json.Unmarshal([]byte(logs[1]), &l)
	if l["status"] != float64(403) || l["outcome"] != "host_not_allowed" {
		t.Errorf("refusal's log line: %s", logs[1])
	}
}

var queryAll = query.Page{Number: 1, Size: 100}
