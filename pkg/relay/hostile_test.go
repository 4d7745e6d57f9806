package relay_test

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"aitokens/pkg/relay"
	"aitokens/pkg/token"
)

// Hostile forms of {host}: each either reaches the listed upstream or is refused; the decoy (not
// listed) never receives anything.
func TestHostileHostForms(t *testing.T) {
	e := newEnv(t, true)
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {})
	decoy := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {})
	e.create("open", bearer(up.host()), nil)
	port := strings.TrimPrefix(up.host(), "localhost:")
	for _, h := range []string{
		"localhost." + ":" + port, "localhost", "localhost:0" + port, "user@" + up.host(), up.host() + "@" + decoy.host(),
		"localhost%2F:" + port, up.host() + "%2F..%2F" + decoy.host(), up.host() + "%23", decoy.host(), "localhost:" + port + "%00",
		"LOCALHOST:" + port, "%6cocalhost:" + port, "localhost%3A" + port, "[::1]:" + port, "127.0.0.1:" + port,
	} {
		a := e.do("GET", "/relay/acme/open/"+h+"/v1", nil, "")
		if a.status == 200 && len(up.received()) == 0 {
			t.Errorf("%s: 200 without the upstream", h)
		}
		if a.status != 200 && a.status != 400 && a.status != 403 && a.status != 502 && a.status != 404 {
			t.Errorf("%s: %d %s", h, a.status, a.body)
		}
	}
	if n := len(decoy.received()); n != 0 {
		t.Fatalf("the unlisted upstream got %d requests", n)
	}
}

// The caller's credentials, the headers named like the injected one (any case, or with _ for -,
// which CGI-style servers read as the same name), and its Host/forwarding headers never reach the
// upstream; a literal {{value}} in another header is not expanded.
func TestHostileCallerHeaders(t *testing.T) {
	e := newEnv(t, true)
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {})
	e.create("key", &token.Egress{AllowedHosts: []string{up.host()}, Inject: token.Inject{In: token.InjectHeader, Name: "X-Api-Key", Template: "{{value}}"}}, nil)
	req, _ := http.NewRequest("GET", e.relay.URL+"/relay/acme/key/"+up.host()+"/v1", nil)
	req.Host = "evil.example"
	for k, v := range map[string]string{"x-api-key": "mine", "X-API-KEY": "mine2", "X_Api_Key": "mine3", "x_api_key": "mine4",
		"Proxy-Foo": "p", "X-Forwarded-Host": "evil.example", "Forwarded": "host=evil.example", "Cookie": "a=1",
		"authorization": "Bearer mine", "X-Foo": "{{value}}"} {
		req.Header[k] = []string{v}
	}
	res, err := e.relay.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	r := up.received()[0]
	if got := r.Header.Values("X-Api-Key"); len(got) != 1 || got[0] != secret {
		t.Errorf("upstream's X-Api-Key: %q", got)
	}
	for k := range r.Header {
		if strings.EqualFold(strings.ReplaceAll(k, "_", "-"), "X-Api-Key") && k != "X-Api-Key" {
			t.Errorf("upstream got the caller's %s: %q", k, r.Header[k])
		}
	}
	for _, k := range []string{"Proxy-Foo", "X-Forwarded-Host", "Forwarded", "Cookie", "Authorization"} {
		if v := r.Header.Get(k); v != "" {
			t.Errorf("upstream got the caller's %s: %q", k, v)
		}
	}
	if r.Host != up.host() || r.Header.Get("X-Foo") != "{{value}}" {
		t.Errorf("upstream's Host %q, X-Foo %q", r.Host, r.Header.Get("X-Foo"))
	}
}

// Every redirect status goes back unfollowed with the value out of its Location.
func TestHostileRedirects(t *testing.T) {
	e := newEnv(t, true)
	decoy := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {})
	code := 301
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		v := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		w.Header().Set("Location", decoy.URL+"/"+v+"?k="+v)
		w.WriteHeader(code)
	})
	e.create("open", bearer(up.host(), decoy.host()), nil)
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, code = range []int{301, 302, 303, 307, 308} {
		res, err := c.Post(e.relay.URL+"/relay/acme/open/"+up.host()+"/x", "text/plain", strings.NewReader("b"))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		fmt.Fprintf(e.headers, "%v\n", res.Header)
		if res.StatusCode != code || strings.Contains(res.Header.Get("Location"), "sk-") {
			t.Errorf("%d: got %d Location %q", code, res.StatusCode, res.Header.Get("Location"))
		}
	}
	if n := len(decoy.received()); n != 0 {
		t.Fatalf("the redirect was followed: %d requests", n)
	}
}

// The upstream's echoes in header values, header names, Set-Cookie, trailers, 1xx and a body
// written a byte at a time never reach the caller.
func TestHostileEchoes(t *testing.T) {
	e := newEnv(t, true)
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		v := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		w.Header().Set("Link", "</"+v+">; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Set("Trailer", "X-Tr")
		w.Header().Add("Set-Cookie", "k="+v)
		w.Header()["X-"+v] = []string{"1"}
		w.Header().Set("X-Upstream", "1")
		w.WriteHeader(200)
		rc := http.NewResponseController(w)
		for i := range len(v) {
			w.Write([]byte{v[i]})
			rc.Flush()
		}
		w.Header().Set("X-Tr", v)
		w.Header().Set(http.TrailerPrefix+"X-Tr2", v)
	})
	e.create("open", bearer(up.host()), nil)
	res, err := e.relay.Client().Get(e.relay.URL + "/relay/acme/open/" + up.host() + "/x")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	all := fmt.Sprintf("%v %v %s", res.Header, res.Trailer, b)
	e.bodies.Write([]byte(all))
	if strings.Contains(strings.ToLower(all), secret) {
		t.Fatalf("the value reached the caller: %s", all)
	}
	if string(b) != relay.Redacted {
		t.Fatalf("body %q", b)
	}
}

// A second Content-Encoding line cannot slip a compressed body (which cannot be searched) past
// the relay.
func TestHostileContentEncodingTwice(t *testing.T) {
	e := newEnv(t, true)
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Content-Encoding"] = []string{"identity", "gzip"}
		z := gzip.NewWriter(w)
		z.Write([]byte(r.Header.Get("Authorization")))
		z.Close()
	})
	e.create("open", bearer(up.host()), nil)
	a := e.do("GET", "/relay/acme/open/"+up.host()+"/x", nil, "")
	if z, err := gzip.NewReader(strings.NewReader(a.body)); err == nil {
		if b, _ := io.ReadAll(z); bytes.Contains(b, []byte(secret)) {
			t.Fatalf("the value reached the caller gzipped (status %d)", a.status)
		}
	}
	if a.status != 502 {
		t.Fatalf("%d %s", a.status, a.body)
	}
}

// An upstream that sends its headers and then falls silent does not hold the caller forever: the
// stream is aborted after HeaderTimeout of silence.
func TestHostileStallMidStream(t *testing.T) {
	e := newEnv(t, true)
	done := make(chan struct{})
	defer close(done)
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("data: one\n\n"))
		http.NewResponseController(w).Flush()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
		}
	})
	e.create("open", bearer(up.host()), nil)
	// newEnv's relay waits 5 s for headers; the body's silence gets the same bound.
	res, err := e.relay.Client().Get(e.relay.URL + "/relay/acme/open/" + up.host() + "/x")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	ended := make(chan error, 1)
	go func() { _, err := io.ReadAll(res.Body); ended <- err }()
	select {
	case err := <-ended:
		if err == nil {
			t.Fatal("a stalled stream ended as if complete")
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the relay held a silent upstream's stream open for 15 s")
	}
}
