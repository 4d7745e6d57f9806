package main

import (
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// startServer serves handler with limits l on a free loopback port, with CORS for corsOrigins.
func startServer(t *testing.T, handler http.Handler, l limits, corsOrigins ...string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := newHTTPServer("", handler, l, corsOrigins)
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// closedWithin sends raw to addr and reports how long the server took to close the
// connection (reading whatever it answers), failing after bound.
func closedWithin(t *testing.T, addr, raw string, bound time.Duration) time.Duration {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	if _, err := io.WriteString(conn, raw); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(start.Add(bound))
	_, err = io.Copy(io.Discard, conn)
	took := time.Since(start)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("the server still held the connection after %v", bound)
	}
	return took
}

func readsBody(w http.ResponseWriter, r *http.Request) {
	if _, err := io.ReadAll(r.Body); err != nil {
		http.Error(w, "body not read", http.StatusBadRequest)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// short are limits small enough to wait for, and apart by more than TestServerCutsOffSlowClients'
// tolerance: net/http uses ReadTimeout for a ReadHeaderTimeout or IdleTimeout left unset, and
// the test must see which limit acted.
var short = limits{readHeader: 200 * time.Millisecond, read: 800 * time.Millisecond, write: 300 * time.Millisecond,
	idle: 1400 * time.Millisecond}

// Each connection limit cuts off the client that would otherwise hold a goroutine forever, at
// that limit: not before it (so it is this limit that acts), and not much after it.
func TestServerCutsOffSlowClients(t *testing.T) {
	// early is how much sooner than the client's clock the server's may start (it starts at the
	// accept, the client's after its dial returns); late is room for timers and the race
	// detector on a busy 2-core machine.
	const early, late = 50 * time.Millisecond, 500 * time.Millisecond
	addr := startServer(t, http.HandlerFunc(readsBody), short)
	cases := []struct {
		name, raw string
		limit     time.Duration
	}{
		{"headers never finished", "PUT /x HTTP/1.1\r\nHost: x\r\nContent-Le", short.readHeader},
		{"a body declared and never sent", "PUT /x HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"na", short.read},
		{"idle after one request", "GET /x HTTP/1.1\r\nHost: x\r\n\r\n", short.idle},
	}
	for _, c := range cases {
		took := closedWithin(t, addr, c.raw, c.limit+late)
		if took < c.limit-early {
			t.Errorf("%s: closed after %v, before its limit %v", c.name, took.Round(time.Millisecond), c.limit)
		}
		t.Logf("%s: closed after %v (limit %v)", c.name, took.Round(time.Millisecond), c.limit)
	}
}

// An answer the handler is too slow to write is cut off at the write timeout.
func TestServerWriteTimeout(t *testing.T) {
	slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(4 * short.write)
		w.WriteHeader(http.StatusNoContent)
	})
	addr := startServer(t, slow, short)
	client := &http.Client{Timeout: 5 * time.Second}
	res, err := client.Get("http://" + addr + "/x")
	if err == nil {
		res.Body.Close()
		t.Fatalf("a response written after the write timeout arrived: %d", res.StatusCode)
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("the client timed out: the server did not close the connection: %v", err)
	}
}
