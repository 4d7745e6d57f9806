package relayclient_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"aitokens/pkg/devtools/syncbuf"
	"aitokens/pkg/devtools/testenv"
	"aitokens/pkg/relay"
	"aitokens/pkg/relayclient"
	"aitokens/pkg/service"
	"aitokens/pkg/token"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// secret is the value of the end-to-end tests' token.
const secret = "sk-client-secret-0123456789abcdef"

// realRelay is pkg/relay on the real service (DynamoDB Local, the KMS sealer against the test
// KMS), as `serve --dev` mounts it, behind an httptest server. With signed, the server first
// checks each request's SigV4 signature as a function URL with AWS_IAM does (403 otherwise).
type realRelay struct {
	url  string
	svc  *service.Service
	logs *syncbuf.Buffer
}

func newRealRelay(t *testing.T, signed bool) *realRelay {
	t.Helper()
	svc, _, _ := testenv.KMSService(t, time.Now)
	logs := &syncbuf.Buffer{}
	h, err := relay.New(relay.Config{Grants: svc, Log: slog.New(slog.NewJSONHandler(logs, nil)), Dev: true, HeaderTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var handler http.Handler = h
	if signed {
		handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, err := io.ReadAll(r.Body)
			if err == nil {
				err = verifySigV4(r, body)
			}
			if err != nil {
				t.Errorf("the relay got a request that does not verify: %v", err)
				http.Error(w, "signature", http.StatusForbidden)
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
			h.ServeHTTP(w, r)
		})
	}
	srv := httptest.NewServer(handler)
	t.Cleanup(srv.Close)
	rr := &realRelay{url: srv.URL, svc: svc, logs: logs}
	t.Cleanup(func() {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("the value is in the relay's log:\n%s", logs)
		}
	})
	return rr
}

func (rr *realRelay) create(t *testing.T, id string, hosts ...string) {
	t.Helper()
	_, err := rr.svc.Upsert(context.Background(), service.Upsert{Tenant: "acme", ID: id, Name: aws.String(id), Value: aws.String(secret),
		Egress: &token.Egress{AllowedHosts: hosts, Inject: token.Inject{In: token.InjectHeader, Name: "Authorization", Template: "Bearer {{value}}"}},
		Meta:   service.Meta{RequestID: "create-" + id}})
	if err != nil {
		t.Fatal(err)
	}
}

// localhost names an httptest server as an egress policy may (IP literals are refused).
func localhost(t *testing.T, srv *httptest.Server) string {
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	return "localhost:" + u.Port()
}

// An agent's ordinary client, its transport the relay client, calls the upstream by its own
// URL with a dummy key: the upstream gets the token's value and not the dummy, no SigV4 header;
// what it echoes of the value comes back redacted. Locally (unsigned) and as in AWS (signed,
// the signature checked in front of the relay).
func TestAgentCallsThroughTheRealRelay(t *testing.T) {
	for _, signed := range []bool{false, true} {
		t.Run(fmt.Sprintf("signed=%v", signed), func(t *testing.T) {
			rr := newRealRelay(t, signed)
			got := make(chan *http.Request, 1)
			up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				body, _ := io.ReadAll(r.Body)
				got <- r.Clone(context.Background())
				w.Header().Set("Content-Type", "application/json")
				json.NewEncoder(w).Encode(map[string]string{"auth": r.Header.Get("Authorization"), "body": string(body), "path": r.URL.RequestURI()})
			}))
			defer up.Close()
			host := localhost(t, up)
			rr.create(t, "openai", host)
			cfg := relayclient.Config{RelayURL: rr.url, Tenant: "acme", TokenID: "openai", Consumer: "agent:support-agent", Hosts: []string{host}}
			if signed {
				cfg.Credentials, cfg.Region, cfg.Now = provider(), region, func() time.Time { return signedAt }
			}
			client := &http.Client{Transport: must(t, cfg), Timeout: 20 * time.Second}
			req, _ := http.NewRequest("POST", "http://"+host+"/v1/chat/completions?stream=false", strings.NewReader(`{"model":"gpt"}`))
			req.Header.Set("Authorization", "Bearer sk-dummy")
			req.Header.Set("Content-Type", "application/json")
			res, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			b, _ := io.ReadAll(res.Body)
			if res.StatusCode != 200 {
				t.Fatalf("%d %s", res.StatusCode, b)
			}
			var echo map[string]string
			if err := json.Unmarshal(b, &echo); err != nil {
				t.Fatalf("%v: %s", err, b)
			}
			if echo["auth"] != relay.Redacted || echo["body"] != `{"model":"gpt"}` || echo["path"] != "/v1/chat/completions?stream=false" {
				t.Fatalf("the echo: %v", echo)
			}
			if strings.Contains(string(b), secret) || strings.Contains(fmt.Sprint(res.Header), secret) {
				t.Fatal("the value reached the agent")
			}
			r := <-got
			if r.Header.Get("Authorization") != "Bearer "+secret {
				t.Fatalf("the upstream's Authorization %q", r.Header.Get("Authorization"))
			}
			for k := range r.Header {
				if lk := strings.ToLower(k); strings.HasPrefix(lk, "x-amz-") || lk == "x-token-consumer" {
					t.Errorf("the upstream got %s", k)
				}
			}
		})
	}
}

// A host the client lists but the policy does not: the relay's 403 reaches the agent in the
// API's error shape, and the upstream receives nothing.
func TestRelayRefusalReachesTheAgent(t *testing.T) {
	rr := newRealRelay(t, false)
	hits := make(chan struct{}, 1)
	up := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { hits <- struct{}{} }))
	defer up.Close()
	rr.create(t, "openai", "api.openai.com")
	host := localhost(t, up)
	client := &http.Client{Transport: must(t, relayclient.Config{RelayURL: rr.url, Tenant: "acme", TokenID: "openai", Hosts: []string{host}}), Timeout: 20 * time.Second}
	res, err := client.Get("http://" + host + "/v1/models")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var body struct {
		Code       int    `json:"code"`
		ResourceID string `json:"resourceId"`
		Message    string `json:"message"`
	}
	json.NewDecoder(res.Body).Decode(&body)
	if res.StatusCode != 403 || body.Code != 403 || body.ResourceID != "openai" || !strings.Contains(body.Message, "egress policy does not list it") {
		t.Fatalf("%d %+v", res.StatusCode, body)
	}
	select {
	case <-hits:
		t.Fatal("the upstream was called")
	default:
	}
}

// Server-Sent Events come to the agent one by one through client and relay: the first event
// arrives before the upstream sends the last.
func TestAgentReadsAStreamAsItComes(t *testing.T) {
	rr := newRealRelay(t, false)
	next := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "data: first\n\n")
		http.NewResponseController(w).Flush()
		select {
		case <-next:
		case <-time.After(10 * time.Second):
			return // the test fails on its side
		}
		fmt.Fprintf(w, "data: last %s\n\n", r.Header.Get("Authorization"))
	}))
	defer up.Close()
	host := localhost(t, up)
	rr.create(t, "stream", host)
	client := &http.Client{Transport: must(t, relayclient.Config{RelayURL: rr.url, Tenant: "acme", TokenID: "stream", Hosts: []string{host}})}
	res, err := client.Get("http://" + host + "/v1/stream")
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
			return l
		case <-time.After(10 * time.Second):
			t.Fatal("no line within 10 s: the stream is held back")
			return ""
		}
	}
	if l := read(); l != "data: first" {
		t.Fatalf("first line %q", l)
	}
	close(next)
	read() // the blank line ending the first event
	if l := read(); l != "data: last "+relay.Redacted {
		t.Fatalf("last event %q", l)
	}
}
