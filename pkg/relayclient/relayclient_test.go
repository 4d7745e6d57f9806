package relayclient_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"aitokens/pkg/relay"
	"aitokens/pkg/relayclient"
)

// received is one request as a server got it, with its whole body.
type received struct {
	r    *http.Request
	body []byte
}

// recorder is an httptest server (standing in for the relay in the unit tests) that keeps what
// it receives and answers 200 "ok".
type recorder struct {
	*httptest.Server
	mu  sync.Mutex
	got []received
}

func newRecorder(t *testing.T) *recorder {
	rec := &recorder{}
	rec.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("reading the body: %v", err)
		}
		rec.mu.Lock()
		rec.got = append(rec.got, received{r.Clone(context.Background()), b})
		rec.mu.Unlock()
		io.WriteString(w, "ok")
	}))
	t.Cleanup(rec.Close)
	return rec
}

func (rec *recorder) received() []received {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return append([]received(nil), rec.got...)
}

func must(t *testing.T, cfg relayclient.Config) *relayclient.Transport {
	t.Helper()
	tr, err := relayclient.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// The client names the relay's path and header as pkg/relay serves them.
func TestMatchesTheRelaysNames(t *testing.T) {
	if relay.Prefix != "/relay/" || relay.ConsumerHeader != "X-Token-Consumer" {
		t.Fatalf("pkg/relay serves %q and reads %q; relayclient sends /relay/ and X-Token-Consumer", relay.Prefix, relay.ConsumerHeader)
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	ok := relayclient.Config{RelayURL: "http://localhost:8080", Tenant: "acme", TokenID: "openai", Hosts: []string{"api.openai.com"}}
	for _, c := range []struct {
		name string
		edit func(*relayclient.Config)
	}{
		{"no relay URL", func(c *relayclient.Config) { c.RelayURL = "" }},
		{"relay URL not http(s)", func(c *relayclient.Config) { c.RelayURL = "ftp://relay" }},
		{"relay URL without host", func(c *relayclient.Config) { c.RelayURL = "https:///x" }},
		{"relay URL with a query", func(c *relayclient.Config) { c.RelayURL = "https://relay/?a=1" }},
		{"relay URL with a user", func(c *relayclient.Config) { c.RelayURL = "https://me:pw@relay/" }},
		{"no tenant", func(c *relayclient.Config) { c.Tenant = "" }},
		{"tenant with a slash", func(c *relayclient.Config) { c.Tenant = "a/b" }},
		{"token id with a slash", func(c *relayclient.Config) { c.TokenID = "a/b" }},
		{"token id ..", func(c *relayclient.Config) { c.TokenID = ".." }},
		{"token id with a percent", func(c *relayclient.Config) { c.TokenID = "a%2F" }},
		{"consumer without kind", func(c *relayclient.Config) { c.Consumer = "support-agent" }},
		{"consumer of an unknown kind", func(c *relayclient.Config) { c.Consumer = "robot:x" }},
		{"consumer with a newline", func(c *relayclient.Config) { c.Consumer = "agent:a\r\nX-Evil: 1" }},
		{"host in uppercase", func(c *relayclient.Config) { c.Hosts = []string{"API.openai.com"} }},
		{"host with a scheme", func(c *relayclient.Config) { c.Hosts = []string{"https://api.openai.com"} }},
		{"host with a path", func(c *relayclient.Config) { c.Hosts = []string{"api.openai.com/v1"} }},
		{"host with a bad port", func(c *relayclient.Config) { c.Hosts = []string{"api.openai.com:0443"} }},
		{"credentials without a region", func(c *relayclient.Config) { c.Credentials = provider() }},
		{"region without credentials", func(c *relayclient.Config) { c.Region = region }},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := ok
			cfg.Hosts = append([]string(nil), ok.Hosts...)
			c.edit(&cfg)
			if tr, err := relayclient.New(cfg); err == nil {
				t.Fatalf("built a transport: %+v", tr)
			}
		})
	}
	if _, err := relayclient.New(ok); err != nil {
		t.Fatalf("the good config: %v", err)
	}
}

// A request for a listed host goes to the relay's path with its path (as escaped) and query,
// the consumer header, and without the agent's own key; the caller's request is unchanged.
func TestRewritesListedHosts(t *testing.T) {
	for _, c := range []struct {
		name, relayURL, url, wantPath, wantQuery string
		hosts                                    []string
		noConsumer                               bool
	}{
		{"https, default port", "", "https://api.openai.com/v1/chat/completions?model=gpt&x=1", "/relay/acme/openai/api.openai.com/v1/chat/completions", "model=gpt&x=1", []string{"api.openai.com"}, false},
		{"explicit :443 is the listed host", "", "https://api.openai.com:443/v1/models", "/relay/acme/openai/api.openai.com/v1/models", "", []string{"api.openai.com"}, false},
		{"host in another case", "", "https://API.OpenAI.com/v1/models", "/relay/acme/openai/api.openai.com/v1/models", "", []string{"api.openai.com"}, false},
		{"host with a port", "", "http://localhost:9999/v1/messages", "/relay/acme/openai/localhost:9999/v1/messages", "", []string{"localhost:9999"}, false},
		{"escaped slash stays escaped", "", "https://api.openai.com/v1/files/a%2Fb?q=a+b%26c", "/relay/acme/openai/api.openai.com/v1/files/a%2Fb", "q=a+b%26c", []string{"api.openai.com"}, false},
		{"no path", "", "https://api.openai.com", "/relay/acme/openai/api.openai.com/", "", []string{"api.openai.com"}, false},
		{"relay URL with a path prefix", "/base/", "https://mcp.example.com/mcp", "/base/relay/acme/openai/mcp.example.com/mcp", "", []string{"api.openai.com", "mcp.example.com"}, false},
		{"no consumer configured: the agent's own is dropped", "", "https://api.openai.com/v1/models", "/relay/acme/openai/api.openai.com/v1/models", "", []string{"api.openai.com"}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			rec := newRecorder(t)
			consumer := "agent:support-agent"
			if c.noConsumer {
				consumer = ""
			}
			tr := must(t, relayclient.Config{RelayURL: rec.URL + c.relayURL, Tenant: "acme", TokenID: "openai", Consumer: consumer,
				Hosts: c.hosts, StripHeaders: []string{"x-api-key"}})
			req, _ := http.NewRequest("POST", c.url, strings.NewReader(`{"q":1}`))
			req.Header.Set("Authorization", "Bearer sk-dummy")
			req.Header.Set("X-Api-Key", "dummy")
			req.Header.Set("X-Token-Consumer", "agent:someone-else")
			req.Header.Set("X-Stainless-Lang", "go")
			before, beforeHost := req.URL.String(), req.Host
			res, err := (&http.Client{Transport: tr}).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			got := rec.received()
			if len(got) != 1 {
				t.Fatalf("the relay got %d requests", len(got))
			}
			r := got[0].r
			if r.URL.EscapedPath() != c.wantPath || r.URL.RawQuery != c.wantQuery {
				t.Errorf("relay got %s ? %s, want %s ? %s", r.URL.EscapedPath(), r.URL.RawQuery, c.wantPath, c.wantQuery)
			}
			if want := strings.TrimPrefix(rec.URL, "http://"); r.Host != want {
				t.Errorf("Host %q, want the relay's %q", r.Host, want)
			}
			if r.Method != "POST" || string(got[0].body) != `{"q":1}` || r.Header.Get("X-Stainless-Lang") != "go" {
				t.Errorf("the request changed: %s %v %s", r.Method, r.Header, got[0].body)
			}
			if v := r.Header.Values("X-Token-Consumer"); consumer == "" && len(v) != 0 || consumer != "" && (len(v) != 1 || v[0] != consumer) {
				t.Errorf("consumer header %q", v)
			}
			for _, h := range []string{"Authorization", "X-Api-Key"} {
				if v := r.Header.Get(h); v != "" {
					t.Errorf("the relay got the agent's %s: %q", h, v)
				}
			}
			if req.URL.String() != before || req.Header.Get("Authorization") != "Bearer sk-dummy" || req.Header.Get("X-Token-Consumer") != "agent:someone-else" || req.Host != beforeHost {
				t.Errorf("the caller's request was modified: %s %v host %q", req.URL, req.Header, req.Host)
			}
		})
	}
}

// Requests for any other host, port or scheme reach Base as they were, credentials and all;
// no Hosts at all means nothing is rewritten.
func TestLeavesOtherRequestsAlone(t *testing.T) {
	rec := newRecorder(t)
	relaySrv := newRecorder(t)
	port := strings.TrimPrefix(rec.URL, "http://127.0.0.1:")
	for _, c := range []struct {
		name  string
		hosts []string
		url   string
	}{
		{"no hosts", nil, "http://localhost:" + port + "/v1"},
		{"another host", []string{"api.openai.com"}, "http://localhost:" + port + "/v1"},
		{"the listed host on another port", []string{"localhost:1"}, "http://localhost:" + port + "/v1"},
		{"the listed name, port 443 only", []string{"localhost"}, "http://localhost:" + port + "/v1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			tr := must(t, relayclient.Config{RelayURL: relaySrv.URL, Tenant: "acme", TokenID: "openai", Consumer: "agent:a", Hosts: c.hosts})
			req, _ := http.NewRequest("GET", c.url, nil)
			req.Header.Set("Authorization", "Bearer own")
			res, err := (&http.Client{Transport: tr}).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			got := rec.received()
			r := got[len(got)-1].r
			if r.URL.Path != "/v1" || r.Header.Get("Authorization") != "Bearer own" || r.Header.Get("X-Token-Consumer") != "" {
				t.Errorf("the upstream got %s %v", r.URL, r.Header)
			}
		})
	}
	if n := len(relaySrv.received()); n != 0 {
		t.Fatalf("the relay got %d requests", n)
	}
}

// With Credentials, a rewritten request carries a SigV4 signature for "lambda" in Region that
// verifies against what arrived, body hash included, and none of the agent's Authorization.
func TestSignsWithSigV4(t *testing.T) {
	for _, c := range []struct {
		name, method, url, body string
		streamed                bool
	}{
		{"GET without a body", "GET", "https://api.openai.com/v1/models", "", false},
		{"POST with JSON", "POST", "https://api.openai.com/v1/chat/completions", `{"model":"gpt","messages":[]}`, false},
		{"POST of unknown length", "POST", "https://api.openai.com/v1/chat/completions", strings.Repeat("x", 100_000), true},
		{"query out of order, escaped", "GET", "https://api.openai.com/v1/files/a%2Fb?z=1&a=b+c&m=%7E", "", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			rec := newRecorder(t)
			tr := must(t, relayclient.Config{RelayURL: rec.URL, Tenant: "acme", TokenID: "openai", Consumer: "agent:support-agent",
				Hosts: []string{"api.openai.com"}, Credentials: provider(), Region: region, Now: func() time.Time { return signedAt }})
			var body io.Reader = strings.NewReader(c.body)
			if c.streamed {
				pr, pw := io.Pipe()
				go func() { io.WriteString(pw, c.body); pw.Close() }()
				body = pr
			}
			req, _ := http.NewRequest(c.method, c.url, body)
			req.Header.Set("Authorization", "Bearer sk-dummy")
			req.Header.Set("Content-Type", "application/json")
			res, err := (&http.Client{Transport: tr}).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			got := rec.received()[0]
			if string(got.body) != c.body {
				t.Fatalf("body: %d bytes arrived, %d sent", len(got.body), len(c.body))
			}
			if err := verifySigV4(got.r, got.body); err != nil {
				t.Fatal(err)
			}
			if got.r.Header.Get("X-Amz-Date") != "20261207T030405Z" || strings.Contains(got.r.Header.Get("Authorization"), "sk-dummy") {
				t.Fatalf("headers: %v", got.r.Header)
			}
			for _, h := range []string{"content-type", "host", "x-token-consumer", "x-amz-content-sha256"} {
				if !strings.Contains(got.r.Header.Get("Authorization"), h) {
					t.Errorf("%s is not signed: %s", h, got.r.Header.Get("Authorization"))
				}
			}
			// The verifier itself: the same request with another body does not verify.
			if err := verifySigV4(got.r, append(got.body, '!')); err == nil {
				t.Fatal("a changed body verifies")
			}
		})
	}
}

// Unsigned, a body is streamed: the relay has the first chunk while the agent still writes.
func TestStreamsTheBodyWhenUnsigned(t *testing.T) {
	first := make(chan string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b := make([]byte, 5)
		if _, err := io.ReadFull(r.Body, b); err != nil {
			t.Errorf("first chunk: %v", err)
		}
		first <- string(b)
		io.Copy(io.Discard, r.Body)
	}))
	defer srv.Close()
	tr := must(t, relayclient.Config{RelayURL: srv.URL, Tenant: "acme", TokenID: "openai", Hosts: []string{"api.openai.com"}})
	pr, pw := io.Pipe()
	req, _ := http.NewRequest("POST", "https://api.openai.com/v1/upload", pr)
	done := make(chan error, 1)
	go func() {
		res, err := (&http.Client{Transport: tr}).Do(req)
		if err == nil {
			res.Body.Close()
		}
		done <- err
	}()
	io.WriteString(pw, "chunk")
	select {
	case got := <-first:
		if got != "chunk" {
			t.Fatalf("first chunk %q", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the relay had no byte of the body within 10 s while the agent was still writing: the body is held back")
	}
	io.WriteString(pw, " and the rest")
	pw.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no answer within 10 s")
	}
}

// A signed body beyond a function URL's payload limit, or credentials that fail, is an error
// before anything is sent.
func TestSigningErrorsSendNothing(t *testing.T) {
	for _, c := range []struct {
		name  string
		creds aws.CredentialsProvider
		body  []byte
	}{
		{"body over the limit", provider(), bytes.Repeat([]byte("x"), relayclient.MaxSignedBody+1)},
		{"credentials fail", aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{}, io.ErrUnexpectedEOF
		}), []byte("{}")},
	} {
		t.Run(c.name, func(t *testing.T) {
			rec := newRecorder(t)
			tr := must(t, relayclient.Config{RelayURL: rec.URL, Tenant: "acme", TokenID: "openai", Hosts: []string{"api.openai.com"},
				Credentials: c.creds, Region: region})
			closed := &closeRecorder{Reader: bytes.NewReader(c.body)}
			req, _ := http.NewRequest("POST", "https://api.openai.com/v1/x", closed)
			if res, err := (&http.Client{Transport: tr}).Do(req); err == nil {
				res.Body.Close()
				t.Fatalf("sent: %d", res.StatusCode)
			}
			if n := len(rec.received()); n != 0 {
				t.Fatalf("the relay got %d requests", n)
			}
			if !closed.closed {
				t.Fatal("the request's body was not closed")
			}
		})
	}
	// Just at the limit it is sent.
	rec := newRecorder(t)
	tr := must(t, relayclient.Config{RelayURL: rec.URL, Tenant: "acme", TokenID: "openai", Hosts: []string{"api.openai.com"},
		Credentials: provider(), Region: region})
	res, err := (&http.Client{Transport: tr}).Post("https://api.openai.com/v1/x", "application/octet-stream", bytes.NewReader(make([]byte, relayclient.MaxSignedBody)))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if got := rec.received(); len(got) != 1 || len(got[0].body) != relayclient.MaxSignedBody {
		t.Fatalf("at the limit: %d requests", len(got))
	}
}

type closeRecorder struct {
	io.Reader
	closed bool
}

func (c *closeRecorder) Close() error { c.closed = true; return nil }

// The README's Go example is ExampleNew as compiled here, word for word.
func TestREADMEQuotesTheExample(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile("example_test.go")
	if err != nil {
		t.Fatal(err)
	}
	start := bytes.Index(src, []byte("func ExampleNew() {"))
	end := bytes.Index(src[start:], []byte("\n}\n"))
	if start < 0 || end < 0 {
		t.Fatal("no ExampleNew in example_test.go")
	}
	if example := src[start : start+end+3]; !bytes.Contains(readme, []byte("```go\n"+string(example)+"```")) {
		t.Fatalf("README.md does not quote ExampleNew as it is:\n%s", example)
	}
}

// closeCounter is a base transport that counts CloseIdleConnections calls.
type closeCounter struct {
	http.RoundTripper
	closed int
}

func (c *closeCounter) CloseIdleConnections() { c.closed++ }

// http.Client.CloseIdleConnections reaches the base transport through the relay's.
func TestCloseIdleConnectionsReachesBase(t *testing.T) {
	base := &closeCounter{RoundTripper: http.DefaultTransport}
	(&http.Client{Transport: must(t, relayclient.Config{RelayURL: "http://localhost:8080", Tenant: "acme", TokenID: "openai", Base: base})}).CloseIdleConnections()
	if base.closed != 1 {
		t.Fatalf("base closed %d times", base.closed)
	}
}
