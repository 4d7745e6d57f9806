package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"aitokens/pkg/auth"
	"aitokens/pkg/config"
	"aitokens/pkg/devtools/devkeys"
	"aitokens/pkg/devtools/syncbuf"
	"aitokens/pkg/devtools/testenv"
)

// hostileServe is what `serve` runs (devSetup for the database and keys, then buildServer with
// dev as --dev gives it), on a free loopback port, with REQUEST_TIMEOUT timeout. create makes a
// token through the API; logs is everything the server logged.
type hostileServe struct {
	base string
	logs *syncbuf.Buffer
	jwt  string
}

func startHostileServe(t *testing.T, dev bool, timeout time.Duration) *hostileServe {
	t.Helper()
	suffix := make([]byte, 6)
	rand.Read(suffix)
	vars := map[string]string{"DATA_DIR": t.TempDir(), "TABLE_NAME": "hostile-" + hex.EncodeToString(suffix),
		"DYNAMODB_ENDPOINT": testenv.EndpointFor(t), "REQUEST_TIMEOUT": timeout.String()}
	cfg, err := config.Load(func(k string) string { return vars[k] })
	if err != nil {
		t.Fatal(err)
	}
	cfg.AWS = testenv.Policy
	s := &hostileServe{logs: &syncbuf.Buffer{}}
	log := slog.New(slog.NewJSONHandler(s.logs, nil))
	stopDB, err := devSetup(context.Background(), log, &cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stopDB)
	srv, err := buildServer(context.Background(), cfg, log, dev)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	key, err := devkeys.Ensure(cfg.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	if s.jwt, err = devkeys.Mint(key, devkeys.Claims{Tenant: "acme", Scopes: []string{auth.ScopeRead, auth.ScopeManage}}); err != nil {
		t.Fatal(err)
	}
	s.base = "http://" + ln.Addr().String()
	t.Cleanup(func() {
		if strings.Contains(s.logs.String(), relaySecret) || strings.Contains(s.logs.String(), s.jwt) {
			t.Errorf("the value or the JWT is in the server's log")
		}
	})
	return s
}

func (s *hostileServe) create(t *testing.T, id, host string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPut, s.base+"/ai-service/acme/agentic/tokens/"+id, strings.NewReader(
		`{"name":"n","value":"`+relaySecret+`","egress":{"allowedHosts":["`+host+`"],"inject":{"in":"header","name":"Authorization","template":"Bearer {{value}}"}}}`))
	req.Header.Set("Authorization", "Bearer "+s.jwt)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil || res.StatusCode != http.StatusCreated {
		t.Fatalf("create %s: %v %v", id, res, err)
	}
	res.Body.Close()
}

// Forwarding headers are not addresses: a caller on another machine that claims to be loopback
// (X-Forwarded-For, X-Real-IP, Forwarded, True-Client-IP) is refused like any other, and so is a
// loopback caller that names the server by an address of the LAN, however it spells it.
func TestHostileLocalRelaySpoofedCallers(t *testing.T) {
	reached := 0
	h := localOnly(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { reached++ }), nil)
	spoof := map[string]string{"X-Forwarded-For": "127.0.0.1", "X-Real-IP": "127.0.0.1", "Forwarded": "for=127.0.0.1;host=localhost",
		"True-Client-IP": "::1", "X-Forwarded-Host": "localhost", "X-Original-Forwarded-For": "127.0.0.1"}
	for _, c := range []struct{ name, remote, host string }{
		{"another machine claiming loopback", "192.0.2.7:5000", "localhost:8080"},
		{"a LAN peer claiming loopback, by IPv6", "[fd00::7]:5000", "[::1]:8080"},
		{"an IPv4-mapped LAN peer", "[::ffff:10.0.0.3]:5000", "127.0.0.1:8080"},
		{"no port in the remote address", "127.0.0.1", "localhost"},
		{"loopback, Host an IPv4-mapped LAN address", "127.0.0.1:5000", "[::ffff:10.0.0.3]:8080"},
		{"loopback, Host 0.0.0.0", "127.0.0.1:5000", "0.0.0.0:8080"},
		{"loopback, Host localhost with userinfo", "127.0.0.1:5000", "evil@localhost"},
		{"loopback, Host empty", "127.0.0.1:5000", ""},
	} {
		reached = 0
		r := httptest.NewRequest(http.MethodGet, "/relay/acme/openai/api.openai.com/v1/models", nil)
		r.RemoteAddr, r.Host = c.remote, c.host
		for k, v := range spoof {
			r.Header.Set(k, v)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if reached != 0 || w.Code != http.StatusForbidden || w.Header().Get("Content-Type") != "application/json" {
			t.Errorf("%s: %d, reached the relay %d times", c.name, w.Code, reached)
		}
	}
}

// Without --dev, serve still mounts the relay on its port (as issue 28 decided: make run serves
// it), but as the AWS function runs it: a token whose policy lists a plain-HTTP localhost upstream
// is a 502, and the upstream receives nothing.
func TestHostileRelayWithoutDevReachesNoLoopback(t *testing.T) {
	s := startHostileServe(t, false, 5*time.Second)
	up := newEchoUpstream(t)
	host := "localhost:" + port(t, up.URL)
	s.create(t, "openai", host)
	res, err := http.Get(s.base + "/relay/acme/openai/" + host + "/v1/models")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusBadGateway || !strings.Contains(string(b), `"code":502`) || strings.Contains(fmt.Sprint(res.Header)+string(b), relaySecret) {
		t.Fatalf("%d %s", res.StatusCode, b)
	}
	if got := up.taken(); len(got) != 0 {
		t.Fatalf("the upstream received %q", got)
	}
}

// A caller whose request body never ends does not hold the relay (nor the upstream) open: the
// local server's read limit (REQUEST_TIMEOUT) cuts the body off, the connection is closed soon
// after, and the upstream sees a broken body, not a complete one.
func TestHostileRelayBodyThatNeverEnds(t *testing.T) {
	const timeout = time.Second
	s := startHostileServe(t, true, timeout)
	bodyErr := make(chan error, 1)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := io.Copy(io.Discard, r.Body)
		bodyErr <- err
	}))
	t.Cleanup(up.Close)
	host := "localhost:" + port(t, up.URL)
	s.create(t, "openai", host)
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	fmt.Fprintf(conn, "POST /relay/acme/openai/%s/upload HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n", host)
	closed := make(chan struct{})
	go func() {
		// The caller trickles a chunk every 50 ms, forever, until the server hangs up.
		for {
			if _, err := io.WriteString(conn, "1\r\nx\r\n"); err != nil {
				close(closed)
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	go func() { io.Copy(io.Discard, conn) }()
	select {
	case err := <-bodyErr:
		if err == nil {
			t.Fatal("the upstream read a complete body from a caller that never finished it")
		}
	case <-time.After(10 * timeout):
		t.Fatalf("the upstream was still reading the body after %v", 10*timeout)
	}
	select {
	case <-closed:
	case <-time.After(10 * timeout):
		t.Fatalf("the connection of a body that never ends was still open after %v", time.Since(start))
	}
	if took := time.Since(start); took < timeout/2 {
		t.Fatalf("cut off after %v, before the read limit %v", took, timeout)
	}
}

// Through the local mount, a path that cleaning would move between the relay and the API is
// answered where it was sent, in the API's error shape: /relay/../ai-service/... is the relay's
// 400 (not the mux's redirect into the API), /ai-service/../relay/... the API's; neither
// reaches the upstream.
func TestHostileLocalMountDotSegments(t *testing.T) {
	s := startHostileServe(t, true, 5*time.Second)
	up := newEchoUpstream(t)
	host := "localhost:" + port(t, up.URL)
	s.create(t, "openai", host)
	for _, p := range []string{
		"/relay/../ai-service/acme/agentic/tokens",
		"/relay/acme/openai/" + host + "/../../../../ai-service/acme/agentic/tokens",
		"/ai-service/../relay/acme/openai/" + host + "/v1",
		"/relay/acme/openai/" + host + "/v1/%2e%2e/x",
	} {
		conn, err := net.Dial("tcp", strings.TrimPrefix(s.base, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n", p)
		b, _ := io.ReadAll(conn)
		conn.Close()
		head, body, _ := strings.Cut(string(b), "\r\n\r\n")
		if !strings.HasPrefix(head, "HTTP/1.1 400 ") || strings.Contains(head, "Location:") || !strings.Contains(body, `"code":400`) ||
			strings.Contains(string(b), relaySecret) {
			t.Errorf("%s: %s\n%s", p, head, body)
		}
	}
	if got := up.taken(); len(got) != 0 {
		t.Fatalf("the upstream received %q", got)
	}
}
