package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"aitokens/pkg/relay"
)

const relaySecret = "sk-serve-relay-secret-0123456789"

// echoUpstream answers every call with what it received of the injected header, so that the
// test sees the value arrive and its echo come back redacted; calls counts what reached it.
type echoUpstream struct {
	*httptest.Server
	mu    sync.Mutex
	calls []string // "METHOD path Authorization"
}

func newEchoUpstream(t *testing.T) *echoUpstream {
	u := &echoUpstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.calls = append(u.calls, r.Method+" "+r.URL.Path+" "+r.Header.Get("Authorization"))
		u.mu.Unlock()
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(w, "you sent %s to %s", r.Header.Get("Authorization"), r.URL.Path)
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *echoUpstream) taken() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	out := u.calls
	u.calls = nil
	return out
}

// What `serve --dev` (make run) runs serves the relay on the API's port: a token created through
// the API with an egress policy is relayed to an httptest upstream (plain HTTP to localhost,
// which only --dev allows) with its value injected, and the value echoed back is redacted; a
// host the policy does not list, a token without a policy and an unknown token are refused
// before the upstream is called; a browser (Origin, Sec-Fetch-Site) is refused, preflight
// included, with no CORS header, though the API's CORS allows any origin.
func TestServeDevMountsTheRelay(t *testing.T) {
	api, manager, mint := startDevServer(t, nil) // nil: serve --dev's default, CORS for any origin
	base := api + "/ai-service/acme/agentic/tokens"
	jwt := mint(*manager)
	up := newEchoUpstream(t)
	other := newEchoUpstream(t)
	upHost, otherHost := "localhost:"+port(t, up.URL), "localhost:"+port(t, other.URL)
	put := func(id, body string) {
		req, _ := http.NewRequest(http.MethodPut, base+"/"+id, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+jwt)
		req.Header.Set("Content-Type", "application/json")
		res, err := http.DefaultClient.Do(req)
		if err != nil || res.StatusCode != http.StatusCreated {
			t.Fatalf("create %s: %v %v", id, res, err)
		}
		res.Body.Close()
	}
	put("openai", `{"name":"OpenAI","value":"`+relaySecret+`","egress":{"allowedHosts":["`+upHost+`"],`+
		`"inject":{"in":"header","name":"Authorization","template":"Bearer {{value}}"}}}`)
	put("plain", `{"name":"No policy","value":"`+relaySecret+`"}`)

	cases := []struct {
		name     string
		path     string
		headers  map[string]string
		method   string
		status   int
		contains string
		upstream []string // the calls the upstream received
	}{
		{"relayed, value injected and echo redacted", "/relay/acme/openai/" + upHost + "/v1/models", nil, "GET", 200,
			"you sent " + relay.Redacted + " to /v1/models", []string{"GET /v1/models Bearer " + relaySecret}},
		{"the caller's own Authorization is replaced", "/relay/acme/openai/" + upHost + "/x", map[string]string{"Authorization": "Bearer caller"}, "POST", 200,
			"you sent " + relay.Redacted + " to /x", []string{"POST /x Bearer " + relaySecret}},
		{"host not allowed", "/relay/acme/openai/" + otherHost + "/v1/models", nil, "GET", 403, `"code":403`, nil},
		{"token without a policy", "/relay/acme/plain/" + upHost + "/v1/models", nil, "GET", 403, `"code":403`, nil},
		{"unknown token", "/relay/acme/nope/" + upHost + "/v1/models", nil, "GET", 404, `"code":404`, nil},
		{"a browser's request", "/relay/acme/openai/" + upHost + "/v1/models", map[string]string{"Origin": "https://evil.example"}, "GET", 403,
			"no browser page", nil},
		{"a browser's no-cors request", "/relay/acme/openai/" + upHost + "/v1/models", map[string]string{"Sec-Fetch-Site": "cross-site"}, "GET", 403,
			"no browser page", nil},
		{"a browser's preflight", "/relay/acme/openai/" + upHost + "/v1/models",
			map[string]string{"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}, "OPTIONS", 403, "no browser page", nil},
	}
	for _, c := range cases {
		req, _ := http.NewRequest(c.method, api+c.path, strings.NewReader("{}"))
		for k, v := range c.headers {
			req.Header.Set(k, v)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != c.status || !strings.Contains(string(body), c.contains) {
			t.Errorf("%s: %d %s, want %d containing %q", c.name, res.StatusCode, body, c.status, c.contains)
		}
		if strings.Contains(string(body), relaySecret) || strings.Contains(fmt.Sprint(res.Header), relaySecret) {
			t.Errorf("%s: the value reached the caller: %v %s", c.name, res.Header, body)
		}
		for k := range res.Header {
			if strings.HasPrefix(strings.ToLower(k), "access-control-") {
				t.Errorf("%s: the relay's answer carries %s: the API's CORS must not apply to it", c.name, k)
			}
		}
		if res.StatusCode >= 400 && res.Header.Get("Content-Type") != "application/json" {
			t.Errorf("%s: error with Content-Type %q", c.name, res.Header.Get("Content-Type"))
		}
		if got := up.taken(); strings.Join(got, "|") != strings.Join(c.upstream, "|") {
			t.Errorf("%s: the upstream received %q, want %q", c.name, got, c.upstream)
		}
		if got := other.taken(); len(got) != 0 {
			t.Errorf("%s: the unlisted upstream received %q", c.name, got)
		}
	}
	// The API's CORS is untouched: its preflight still answers any origin.
	req, _ := http.NewRequest(http.MethodOptions, base, nil)
	req.Header.Set("Origin", "https://admin.example")
	req.Header.Set("Access-Control-Request-Method", "GET")
	res, err := http.DefaultClient.Do(req)
	if err != nil || res.StatusCode != http.StatusNoContent || res.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Fatalf("the API's preflight: %v %v", res, err)
	}
	res.Body.Close()
}

func port(t *testing.T, rawURL string) string {
	t.Helper()
	_, p, err := net.SplitHostPort(strings.TrimPrefix(rawURL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// The local stand-in for the function URL's AWS_IAM: only a loopback caller, addressed by a
// loopback name, and not a browser, reaches the relay; every other is a 403 in the API's error
// shape that never reaches it.
func TestLocalRelayAnswersOnlyLocalCallers(t *testing.T) {
	reached := 0
	h := localOnly(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { reached++ }), nil)
	cases := []struct {
		name, remote, host string
		headers            map[string]string
		ok                 bool
	}{
		{"IPv4 loopback, localhost", "127.0.0.1:5000", "localhost:8080", nil, true},
		{"IPv6 loopback, [::1]", "[::1]:5000", "[::1]:8080", nil, true},
		{"127.0.0.2, 127.0.0.1", "127.0.0.2:5000", "127.0.0.1:8080", nil, true},
		{"LOCALHOST, trailing dot", "127.0.0.1:5000", "LOCALHOST.:8080", nil, true},
		{"another machine", "192.0.2.7:5000", "localhost:8080", nil, false},
		{"a LAN peer", "10.0.0.3:5000", "localhost:8080", nil, false},
		{"IPv4-mapped remote", "[::ffff:192.0.2.7]:5000", "localhost:8080", nil, false},
		{"a DNS-rebound name", "127.0.0.1:5000", "evil.example:8080", nil, false},
		{"a name ending in localhost", "127.0.0.1:5000", "localhost.evil.example", nil, false},
		{"a LAN address as host", "127.0.0.1:5000", "10.0.0.3:8080", nil, false},
		{"a page's fetch", "127.0.0.1:5000", "localhost:8080", map[string]string{"Origin": "https://evil.example"}, false},
		{"a page's img or no-cors fetch", "127.0.0.1:5000", "localhost:8080", map[string]string{"Sec-Fetch-Site": "cross-site"}, false},
		{"a page of this origin", "127.0.0.1:5000", "localhost:8080", map[string]string{"Sec-Fetch-Site": "same-origin"}, false},
	}
	for _, c := range cases {
		reached = 0
		r := httptest.NewRequest(http.MethodGet, "/relay/acme/openai/api.openai.com/v1/models", nil)
		r.RemoteAddr, r.Host = c.remote, c.host
		for k, v := range c.headers {
			r.Header.Set(k, v)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if c.ok != (reached == 1) {
			t.Errorf("%s: reached the relay %d times, want %v", c.name, reached, c.ok)
		}
		if c.ok {
			continue
		}
		var body struct {
			Code      int
			Message   string
			RequestID string
		}
		if w.Code != http.StatusForbidden || json.Unmarshal(w.Body.Bytes(), &body) != nil || body.Code != 403 || body.RequestID == "" ||
			body.RequestID != w.Header().Get("X-Request-Id") || w.Header().Get("Content-Type") != "application/json" {
			t.Errorf("%s: %d %s %v, want a 403 ErrorMessage with its request id", c.name, w.Code, w.Body, w.Header())
		}
	}
}

// A relayed stream may outlast the server's read and write timeouts (the API's, a few seconds):
// the relay's answer is bounded by relayStreamLimit instead, and its context is not cancelled
// on the way. The API keeps its write timeout (TestServerWriteTimeout).
func TestRelayStreamOutlastsTheServerTimeouts(t *testing.T) {
	const chunks, gap = 6, 300 * time.Millisecond // 1.8 s: past short's read (0.8 s) and write (0.3 s) timeouts
	cancelled := make(chan error, 1)
	stream := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		for i := range chunks {
			select {
			case <-r.Context().Done():
				cancelled <- r.Context().Err()
				return
			case <-time.After(gap):
			}
			fmt.Fprintf(w, "chunk %d\n", i)
			rc.Flush()
		}
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := newLocalServer("", http.NotFoundHandler(), stream, short, nil, nil)
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+ln.Addr().String()+"/relay/acme/t/h/x", nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil || strings.Count(string(body), "chunk ") != chunks {
		t.Fatalf("the stream was cut: %q %v", body, err)
	}
	select {
	case err := <-cancelled:
		t.Fatalf("the relay's context was cancelled mid-stream: %v", err)
	default:
	}
}
