package relay_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"aitokens/pkg/relay"
	"aitokens/pkg/service"
	"aitokens/pkg/token"
)

// raw sends one request as written (the Go client would not send CONNECT with a path, nor keep
// some paths as they are) and reads the relay's answer.
func (e *env) raw(request string) (*http.Response, string) {
	e.t.Helper()
	conn, err := net.DialTimeout("tcp", strings.TrimPrefix(e.relay.URL, "http://"), 5*time.Second)
	if err != nil {
		e.t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, request); err != nil {
		e.t.Fatal(err)
	}
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		e.t.Fatalf("%q: %v", request, err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	e.bodies.Write(b)
	fmt.Fprintf(e.headers, "%v\n", res.Header)
	return res, string(b)
}

// isError says whether an answer is the API's error body with the given status.
func isError(res *http.Response, body string, status int) bool {
	var m map[string]any
	return res.StatusCode == status && strings.HasPrefix(res.Header.Get("Content-Type"), "application/json") &&
		json.Unmarshal([]byte(body), &m) == nil && m["code"] == float64(status) && m["requestId"] != nil
}

// A path the ServeMux would clean (dot segments, plain or encoded, empty segments) is a JSON 400
// naming the path, never the mux's redirect to another token, tenant or host; the upstream and a
// second token's upstream receive nothing.
func TestHostile2DotSegments(t *testing.T) {
	e := newEnv(t, true)
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {})
	decoy := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {})
	e.create("open", bearer(up.host()), nil)
	e.create("other", bearer(decoy.host()), nil)
	h, d := up.host(), decoy.host()
	for _, p := range []string{
		"/relay/acme/open/" + h + "/v1/../../../other/" + d + "/x",
		"/relay/acme/open/" + h + "/v1/%2e%2e/%2E%2E/../other/" + d + "/x",
		"/relay/acme/open/" + h + "/./x",
		"/relay/acme/open/" + h + "/x/..",
		"/relay/acme/open/" + h + "//x",
		"/relay/acme/../acme/other/" + d + "/x",
		"/relay/../relay/acme/open/" + h + "/x",
		"/relay//acme/open/" + h + "/x",
	} {
		res, body := e.raw("GET " + p + " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
		if !isError(res, body, 400) || res.Header.Get("Location") != "" {
			t.Errorf("%s: %d Location %q %s, want a JSON 400", p, res.StatusCode, res.Header.Get("Location"), body)
		}
	}
	if n, m := len(up.received()), len(decoy.received()); n+m != 0 {
		t.Fatalf("the upstreams got %d and %d requests", n, m)
	}
}

// Encoded slashes (once or twice encoded) and dots in tenant and token id never name another
// token: each is a 4xx in the API's error shape and no upstream receives anything.
func TestHostile2EncodedIDs(t *testing.T) {
	e := newEnv(t, true)
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {})
	decoy := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {})
	e.create("open", bearer(up.host()), nil)
	e.create("other", bearer(decoy.host()), nil)
	h, d := up.host(), decoy.host()
	for _, p := range []string{
		"/relay/ac%2Fme/open/" + h + "/x", "/relay/acme%2Fopen/" + h + "/x/y", "/relay/acme/op%2Fen/" + h + "/x",
		"/relay/acme/op%252Fen/" + h + "/x", "/relay/acme/open%2F..%2Fother/" + d + "/x", "/relay/acme/open./" + h + "/x",
		"/relay/acme/%2e/" + h + "/x", "/relay/%2e%2e/open/" + h + "/x", "/relay/acme/open%23/" + h + "/x",
		"/relay/acme/open%00/" + h + "/x", "/relay/ACME/open/" + h + "/x", "/relay/acme/OPEN/" + h + "/x",
		"/relay/acme/open/" + d + "/x", "/relay/acme/other%2F..%2Fopen/" + h + "/x",
	} {
		res, body := e.raw("GET " + p + " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
		if res.StatusCode < 400 || res.StatusCode >= 500 || !isError(res, body, res.StatusCode) {
			t.Errorf("%s: %d %s, want a 4xx ErrorMessage", p, res.StatusCode, body)
		}
	}
	if n, m := len(up.received()), len(decoy.received()); n+m != 0 {
		t.Fatalf("the upstreams got %d and %d requests", n, m)
	}
}

// A {host} in another case reaches the listed entry, named as the policy names it (the Host the
// upstream sees, the scheme --dev picks for localhost); an entry without a port is port 443 only,
// one with a port that port only.
func TestHostile2HostCaseAndPorts(t *testing.T) {
	e := newEnv(t, true)
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {})
	port := strings.TrimPrefix(up.host(), "localhost:")
	e.create("open", bearer(up.host(), "api.example.com"), nil)
	a := e.do("GET", "/relay/acme/open/LocalHost:"+port+"/x", nil, "")
	if a.status != 200 || len(up.received()) != 1 || up.received()[0].Host != up.host() {
		t.Fatalf("uppercase host: %d %s, upstream got %d", a.status, a.body, len(up.received()))
	}
	for h, status := range map[string]int{
		"api.example.com:8443": 403, "api.example.com:80": 403, "api.example.com:0443": 403, "localhost": 403,
		"localhost:443": 403, "localhost:" + port + ":" + port: 403, "localhost:+" + port: 403, "[::1]:" + port: 403,
		"user%40localhost:" + port: 403, "localhost.:" + port: 403, "%5B::1%5D:" + port: 403,
	} {
		if a := e.do("GET", "/relay/acme/open/"+h+"/x", nil, ""); a.status != status || a.err["code"] != float64(status) {
			t.Errorf("%s: %d %s, want %d", h, a.status, a.body, status)
		}
	}
	if n := len(up.received()); n != 1 {
		t.Fatalf("the upstream got %d requests, want the one", n)
	}
}

// CONNECT and TRACE are refused (405 in the API's error shape) before the upstream is called:
// CONNECT would turn the relay into a tunnel of unsearched bytes, TRACE asks the upstream to echo
// the injected header back. OPTIONS goes through like any method.
func TestHostile2Methods(t *testing.T) {
	e := newEnv(t, true)
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodTrace {
			w.Header().Set("Content-Type", "message/http")
			r.Header.Write(w)
		}
	})
	e.create("open", bearer(up.host()), nil)
	p := "/relay/acme/open/" + up.host() + "/x"
	for _, m := range []string{"CONNECT", "TRACE", "trace"} {
		res, body := e.raw(m + " " + p + " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
		if !isError(res, body, http.StatusMethodNotAllowed) {
			t.Errorf("%s: %d %s, want a JSON 405", m, res.StatusCode, body)
		}
	}
	if n := len(up.received()); n != 0 {
		t.Fatalf("the upstream got %d CONNECT/TRACE requests", n)
	}
	res, body := e.raw("OPTIONS " + p + " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
	if res.StatusCode != 200 || len(up.received()) != 1 || up.received()[0].Method != "OPTIONS" {
		t.Fatalf("OPTIONS: %d %s", res.StatusCode, body)
	}
	for k := range res.Header {
		if strings.HasPrefix(strings.ToLower(k), "access-control-") {
			t.Errorf("the relay added %s", k)
		}
	}
}

// A large request body reaches the upstream as the caller sends it: the upstream has read the
// first MiB before the caller sends the rest (the relay does not buffer it), and gets it whole.
func TestHostile2StreamsALargeRequestBody(t *testing.T) {
	e := newEnv(t, true)
	const first, total = 1 << 20, 32 << 20
	gotFirst := make(chan struct{})
	var got int64
	var readErr error
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		n, err := io.CopyN(io.Discard, r.Body, first)
		if err == nil {
			close(gotFirst)
			var m int64
			m, err = io.Copy(io.Discard, r.Body)
			n += m
		}
		got, readErr = n, err
	})
	e.create("open", bearer(up.host()), nil)
	pr, pw := io.Pipe()
	go func() {
		chunk := make([]byte, 64<<10)
		for sent := 0; sent < first; sent += len(chunk) {
			if _, err := pw.Write(chunk); err != nil {
				return
			}
		}
		select {
		case <-gotFirst:
		case <-time.After(10 * time.Second):
			pw.CloseWithError(errors.New("the upstream did not get the first MiB while the caller held the rest"))
			return
		}
		for sent := first; sent < total; sent += len(chunk) {
			if _, err := pw.Write(chunk); err != nil {
				return
			}
		}
		pw.Close()
	}()
	req, _ := http.NewRequest("POST", e.relay.URL+"/relay/acme/open/"+up.host()+"/upload", pr)
	res, err := e.relay.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 || readErr != nil || got != total {
		t.Fatalf("status %d; the upstream read %d of %d bytes: %v", res.StatusCode, got, total, readErr)
	}
}

// A caller whose body breaks off (shorter than its Content-Length, or chunked without its last
// chunk) never gets a complete request to the upstream: the upstream's read of the body fails.
func TestHostile2RequestBodyBrokenOff(t *testing.T) {
	e := newEnv(t, true)
	results := make(chan error, 2)
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		_, err := io.ReadAll(r.Body)
		results <- err
	})
	e.create("open", bearer(up.host()), nil)
	for name, req := range map[string]string{
		"short of its length": "POST /relay/acme/open/" + up.host() + "/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n0123456789",
		"chunked, no end":     "POST /relay/acme/open/" + up.host() + "/x HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\n",
	} {
		conn, err := net.Dial("tcp", strings.TrimPrefix(e.relay.URL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(conn, req)
		time.Sleep(100 * time.Millisecond) // let the relay forward what it got before the drop
		conn.Close()
		select {
		case err := <-results:
			if err == nil {
				t.Errorf("%s: the upstream read a complete body", name)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: the upstream's read of the body did not end", name)
		}
	}
}

// An upstream that drops its connection mid-body (a declared length not reached, a chunked body
// without its end) leaves the caller with a broken stream, never one that ends as if complete.
func TestHostile2UpstreamDropsMidStream(t *testing.T) {
	e := newEnv(t, true)
	chunked := false
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if !chunked {
			w.Header().Set("Content-Length", "1000")
		}
		w.Write([]byte("data: first\n\n"))
		http.NewResponseController(w).Flush()
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
	})
	e.create("open", bearer(up.host()), nil)
	for _, chunked = range []bool{false, true} {
		res, err := e.relay.Client().Get(e.relay.URL + "/relay/acme/open/" + up.host() + "/x")
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(res.Body)
		res.Body.Close()
		e.bodies.Write(b)
		if err == nil {
			t.Errorf("chunked %v: the stream ended as if complete: %q", chunked, b)
		}
	}
}

// The value split across writes of an event stream (with a pause between them) is still
// removed; what precedes it goes on.
func TestHostile2ValueSplitAcrossChunks(t *testing.T) {
	e := newEnv(t, true)
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		rc := http.NewResponseController(w)
		v := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		for _, part := range []string{"data: " + v[:1], v[1:9], v[9 : len(v)-1], v[len(v)-1:] + "\n\n", "data: B", "earer " + v[:20], v[20:] + "\n\n"} {
			w.Write([]byte(part))
			rc.Flush()
			time.Sleep(20 * time.Millisecond)
		}
	})
	e.create("open", bearer(up.host()), nil)
	a := e.do("GET", "/relay/acme/open/"+up.host()+"/x", nil, "")
	if want := "data: " + relay.Redacted + "\n\ndata: " + relay.Redacted + "\n\n"; a.body != want {
		t.Fatalf("body %q, want %q", a.body, want)
	}
}

// encValue's base64 holds '+' and '/' (so its padded, unpadded, standard and URL alphabets all
// differ), and it holds '/' and '<' (which JSON encoders escape as "\/" and "\u003c").
const encValue = "sk-enc/val<ue?>>?0123456789abcd"

// The forms of the value the relay promises to search for, in a body, a header and a redirect's
// Location: the value and the rendered header, URL-encoded (query and path), base64 in both
// alphabets, padded or not, and JSON-escaped as encoders write it.
func TestHostile2EncodedEchoes(t *testing.T) {
	e := newEnv(t, true)
	forms := func(v string) []string {
		out := []string{}
		for _, s := range []string{v, "Bearer " + v} {
			j, _ := json.Marshal(s)
			js := strings.Trim(string(j), `"`)
			out = append(out, s, url.QueryEscape(s), url.PathEscape(s), base64.StdEncoding.EncodeToString([]byte(s)),
				base64.RawStdEncoding.EncodeToString([]byte(s)), base64.URLEncoding.EncodeToString([]byte(s)),
				base64.RawURLEncoding.EncodeToString([]byte(s)), js, strings.ReplaceAll(js, "/", `\/`))
		}
		return out
	}
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		v := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		for i, f := range forms(v) {
			w.Header().Add("X-Echo", fmt.Sprintf("%d %s", i, f))
		}
		w.Header().Set("Location", "https://elsewhere.example/?k="+base64.RawStdEncoding.EncodeToString([]byte(v)))
		w.WriteHeader(http.StatusFound)
		for i, f := range forms(v) {
			fmt.Fprintf(w, "%d [%s]\n", i, f)
		}
	})
	if _, err := e.svc.Upsert(context.Background(), service.Upsert{Tenant: "acme", ID: "enc", Name: aws.String("enc"),
		Value: aws.String(encValue), Egress: bearer(up.host()), Meta: service.Meta{RequestID: "create-enc"}}); err != nil {
		t.Fatal(err)
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := c.Get(e.relay.URL + "/relay/acme/enc/" + up.host() + "/x")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	all := fmt.Sprintf("%v\n%s", res.Header, b)
	if res.StatusCode != http.StatusFound {
		t.Fatalf("%d %s", res.StatusCode, all)
	}
	for i, f := range forms(encValue) {
		if strings.Contains(all, f) {
			t.Errorf("form %d (%s) reached the caller", i, f)
		}
	}
	if strings.Count(string(b), relay.Redacted) < len(forms(encValue)) {
		t.Errorf("not every form redacted:\n%s", b)
	}
	if strings.Contains(e.logs.String(), encValue) || strings.Contains(e.emf.String(), encValue) {
		t.Errorf("the value is in a log or metrics line")
	}
}

// The token's state and owner decide, warm or not: another tenant's token of the same id, a
// token deleted or expired after a warm call, a consumer of another kind, two consumer headers
// (ambiguous: refused, whichever comes first) or two consumers in one are refused and the
// upstream gets nothing.
func TestHostile2TokenStates(t *testing.T) {
	e := newEnv(t, true)
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {})
	decoy := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {})
	ctx := context.Background()
	e.create("open", bearer(up.host()), nil)
	if _, err := e.svc.Upsert(ctx, service.Upsert{Tenant: "globex", ID: "open", Name: aws.String("g"), Value: aws.String(secret + "-g"),
		Egress: bearer(decoy.host()), Meta: service.Meta{RequestID: "create-g"}}); err != nil {
		t.Fatal(err)
	}
	soon := time.Now().Add(time.Hour)
	e.create("soon", bearer(up.host()), func(u *service.Upsert) { u.ExpiresAt = &soon })
	e.create("gone", bearer(up.host()), nil)
	e.create("restricted", bearer(up.host()), func(u *service.Upsert) { u.Restricted = aws.Bool(true) })
	if _, err := e.svc.RegisterUsage(ctx, "acme", "restricted", "agent", "support", service.Meta{RequestID: "u1"}); err != nil {
		t.Fatal(err)
	}
	warm := func(id, consumer string) {
		t.Helper()
		if a := e.do("GET", "/relay/acme/"+id+"/"+up.host()+"/x", map[string]string{"X-Token-Consumer": consumer}, ""); a.status != 200 {
			t.Fatalf("warm call of %s: %d %s", id, a.status, a.body)
		}
	}
	warm("gone", "")
	warm("soon", "")
	warm("restricted", "agent:support")
	before := len(up.received())
	if err := e.svc.Delete(ctx, "acme", "gone", false, service.Meta{RequestID: "del"}); err != nil {
		t.Fatal(err)
	}
	e.skip.Store(int64(2 * time.Hour))
	for _, c := range []struct {
		name, path string
		consumers  []string
		status     int
	}{
		{"another tenant's token of the same id, to this tenant's host", "/relay/globex/open/" + up.host() + "/x", nil, 403},
		{"this tenant's token, to the other tenant's host", "/relay/acme/open/" + decoy.host() + "/x", nil, 403},
		{"a tenant without the token", "/relay/initech/open/" + up.host() + "/x", nil, 404},
		{"deleted after a warm call", "/relay/acme/gone/" + up.host() + "/x", nil, 404},
		{"expired after a warm call", "/relay/acme/soon/" + up.host() + "/x", nil, 410},
		{"a consumer of another kind", "/relay/acme/restricted/" + up.host() + "/x", []string{"tool:support"}, 403},
		{"two consumer headers, the registered one first", "/relay/acme/restricted/" + up.host() + "/x", []string{"agent:support", "agent:other"}, 400},
		{"two consumer headers, the registered one last", "/relay/acme/restricted/" + up.host() + "/x", []string{"agent:other", "agent:support"}, 400},
		{"a consumer's JSON with a key twice", "/relay/acme/restricted/" + up.host() + "/x", []string{`{"kind":"agent","id":"other","id":"support"}`}, 400},
		{"a consumer's JSON with trailing data", "/relay/acme/restricted/" + up.host() + "/x", []string{`{"kind":"agent","id":"support"}{"id":"x"}`}, 400},
		{"a consumer's JSON with a closing brace after it", "/relay/acme/restricted/" + up.host() + "/x", []string{`{"kind":"agent","id":"support"}}`}, 400},
		{"two consumers in one header", "/relay/acme/restricted/" + up.host() + "/x", []string{"agent:support, agent:other"}, 400},
	} {
		req, _ := http.NewRequest("GET", e.relay.URL+c.path, nil)
		req.Header["X-Token-Consumer"] = c.consumers
		res, err := e.relay.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		e.bodies.Write(b)
		fmt.Fprintf(e.headers, "%v\n", res.Header)
		if !isError(res, string(b), c.status) {
			t.Errorf("%s: %d %s, want %d", c.name, res.StatusCode, b, c.status)
		}
	}
	if n := len(up.received()) - before; n != 0 || len(decoy.received()) != 0 {
		t.Fatalf("refused calls reached the upstreams: %d, %d", n, len(decoy.received()))
	}
	if strings.Contains(e.logs.String()+e.emf.String()+e.bodies.String(), secret+"-g") {
		t.Fatal("the other tenant's value leaked")
	}
}

// A value injected into the query replaces every parameter of its name, however the caller
// spelled it (repeated, percent-encoded, empty, without "="); the upstream sees it exactly once.
func TestHostile2QueryParamsNamedLikeTheInjected(t *testing.T) {
	e := newEnv(t, true)
	var mu sync.Mutex
	var raws []string
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		raws = append(raws, r.URL.RawQuery)
		mu.Unlock()
	})
	e.create("q", &token.Egress{AllowedHosts: []string{up.host()}, Inject: token.Inject{In: token.InjectQuery, Name: "key", Template: "{{value}}"}}, nil)
	for _, q := range []string{"key=mine&key=mine2", "k%65y=mine", "key=mine&q=a&key=", "key", "a=1&key=mine;x=2", "key=mine%26key%3Dmine2", "%6B%65%79=mine"} {
		a := e.do("GET", "/relay/acme/q/"+up.host()+"/x?"+q, nil, "")
		if a.status != 200 {
			t.Fatalf("%s: %d %s", q, a.status, a.body)
		}
		mu.Lock()
		raw := raws[len(raws)-1]
		mu.Unlock()
		v, err := url.ParseQuery(raw)
		if err != nil || len(v["key"]) != 1 || v.Get("key") != secret || strings.Contains(raw, "mine") {
			t.Errorf("%s: the upstream's query %q", q, raw)
		}
	}
}

// With the value in the query, the URL holds it: the log line of an unreachable (502) or silent
// (504) upstream, and of a dial refused outside --dev, carries the error but not the value
// (noLeaks searches every line). The relay calls the transport, whose errors name no URL (a
// Client's would), and redacts the message besides.
func TestHostile2QueryValueInErrors(t *testing.T) {
	for _, dev := range []bool{true, false} {
		e := newEnv(t, dev)
		release := make(chan struct{})
		slow := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-release:
			case <-time.After(20 * time.Second):
			}
		})
		gone := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {})
		goneHost := gone.host()
		gone.Close()
		e.create("q", &token.Egress{AllowedHosts: []string{slow.host(), goneHost}, Inject: token.Inject{In: token.InjectQuery, Name: "key", Template: "k {{value}}"}}, nil)
		want := map[string]int{goneHost: 502, slow.host(): 504}
		if !dev {
			want[slow.host()] = 502 // refused at the dial
		}
		for h, status := range want {
			if a := e.do("GET", "/relay/acme/q/"+h+"/x?a=1", nil, ""); a.status != status {
				t.Errorf("dev %v, %s: %d %s, want %d", dev, h, a.status, a.body, status)
			}
		}
		close(release)
		if n := strings.Count(e.logs.String(), `"error":`); n != len(want) {
			t.Errorf("dev %v: %d log lines with the error, want %d:\n%s", dev, n, len(want), e.logs)
		}
	}
}

// The upstream's reason phrase is not passed on (the caller gets the standard one for the
// status), so a value put there never reaches the caller.
func TestHostile2ValueInTheReasonPhrase(t *testing.T) {
	e := newEnv(t, true)
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		conn, buf, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		fmt.Fprintf(buf, "HTTP/1.1 418 %s\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok", r.Header.Get("Authorization"))
		buf.Flush()
	})
	e.create("open", bearer(up.host()), nil)
	res, body := e.raw("GET /relay/acme/open/" + up.host() + "/x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
	if res.StatusCode != 418 || res.Status != "418 I'm a teapot" || body != "ok" {
		t.Fatalf("%q %q", res.Status, body)
	}
}

// CR/LF percent-encoded in the path or query stays encoded on the wire (no header is made of
// it), and a caller's literal {{value}} in the path or query is not expanded, with the value in
// a header or in the query.
func TestHostile2EncodedCRLFAndPlaceholders(t *testing.T) {
	e := newEnv(t, true)
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {})
	e.create("h", bearer(up.host()), nil)
	e.create("q", &token.Egress{AllowedHosts: []string{up.host()}, Inject: token.Inject{In: token.InjectQuery, Name: "key", Template: "{{value}}"}}, nil)
	for i, id := range []string{"h", "q"} {
		a := e.do("GET", "/relay/acme/"+id+"/"+up.host()+"/x%0d%0aX-Injected:%201/%7B%7Bvalue%7D%7D?a=%0d%0aX-Injected:%202&b=%7B%7Bvalue%7D%7D&c={{value}}", nil, "")
		if a.status != 200 {
			t.Fatalf("%s: %d %s", id, a.status, a.body)
		}
		r := up.received()[i]
		if len(r.Header.Values("X-Injected")) != 0 || strings.Count(r.URL.RawQuery+r.URL.EscapedPath(), secret) != i {
			t.Errorf("%s: the upstream got headers %v, path %q, query %q", id, r.Header, r.URL.EscapedPath(), r.URL.RawQuery)
		}
		if q := r.URL.Query(); q.Get("b") != "{{value}}" || q.Get("c") != "{{value}}" || q.Get("a") != "\r\nX-Injected: 2" {
			t.Errorf("%s: the upstream's query %v", id, q)
		}
	}
}

// A caller's Range cannot cut an echo of the value inside it (bytes=15- from the middle of the
// value, bytes=0-40 ending inside it: a part of the value matches no secret and would pass): the
// caller's Range and If-Range do not reach the upstream, which answers the whole echo, redacted.
// No 12-byte piece of the value reaches the caller.
func TestHostile2RangeCannotCutTheValue(t *testing.T) {
	e := newEnv(t, true)
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "echo.txt", time.Time{}, strings.NewReader("auth="+r.Header.Get("Authorization")+"\n"))
	})
	e.create("open", bearer(up.host()), nil)
	for _, rg := range []string{"bytes=15-", "bytes=0-40", "bytes=20-30", "bytes=-20"} {
		a := e.do("GET", "/relay/acme/open/"+up.host()+"/echo.txt", map[string]string{"Range": rg}, "")
		for i := 0; i+12 <= len(secret); i++ {
			if strings.Contains(a.body, secret[i:i+12]) {
				t.Errorf("Range %s: %d %q holds %q of the value", rg, a.status, a.body, secret[i:i+12])
				break
			}
		}
		if r := up.received(); r[len(r)-1].Header.Get("Range") != "" || r[len(r)-1].Header.Get("If-Range") != "" {
			t.Errorf("Range %s reached the upstream", rg)
		}
	}
	e.do("GET", "/relay/acme/open/"+up.host()+"/echo.txt", map[string]string{"Range": "bytes=15-", "If-Range": `"etag"`}, "")
	if r := up.received(); r[len(r)-1].Header.Get("If-Range") != "" {
		t.Errorf("If-Range reached the upstream")
	}
}
