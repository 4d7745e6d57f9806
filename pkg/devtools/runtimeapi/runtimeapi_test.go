package runtimeapi

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// buildStream builds testdata/stream (a function URL function that streams) with the
// functions' build tag.
func buildStream(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "stream")
	if out, err := exec.Command("go", "build", "-tags", "lambda.norpc", "-o", bin, "./testdata/stream").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

// A streamed response reaches the caller as the function writes it: the test reads "first"
// while the function is still waiting to write "second" (it waits for the test's release,
// which comes only after "first" was read: a runtime API that buffered the stream would hold
// both until the deadline). The prelude comes first, 8 NUL bytes after it, then the body.
func TestStreamArrivesAsWritten(t *testing.T) {
	released := make(chan struct{})
	release := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-released:
		case <-time.After(20 * time.Second):
			http.Error(w, "not released", http.StatusGatewayTimeout)
		}
	}))
	defer release.Close()
	p, err := Start(Invocation{Binary: buildStream(t), Function: "stream", Env: []string{"RELEASE_URL=" + release.URL}, Timeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, st, err := p.InvokeStream(ctx, []byte(`{"rawPath":"/","rawQueryString":""}`))
	if err != nil || st == nil {
		t.Fatalf("no stream: %v %+v\n%s", err, res, p.Logs())
	}
	if st.ContentType != IntegrationResponse {
		t.Errorf("content type %q", st.ContentType)
	}
	// Prelude, delimiter and first chunk must come while the function waits for its release.
	r := bufio.NewReader(st)
	type head struct {
		prelude, first string
		delim          []byte
		err            error
	}
	got := make(chan head, 1)
	go func() {
		var h head
		if h.prelude, h.err = r.ReadString(0); h.err == nil {
			h.delim = make([]byte, 7)
			if _, h.err = io.ReadFull(r, h.delim); h.err == nil {
				h.first, h.err = r.ReadString('\n')
			}
		}
		got <- h
	}()
	select {
	case h := <-got:
		if h.err != nil || !strings.Contains(h.prelude, `"statusCode":201`) || !strings.Contains(h.prelude, `"text/event-stream"`) ||
			!bytes.Equal(h.delim, make([]byte, 7)) || h.first != "first\n" {
			t.Fatalf("prelude %q, then %q, first chunk %q (%v); want the prelude, 8 NUL bytes, first", h.prelude, h.delim, h.first, h.err)
		}
	case <-time.After(10 * time.Second): // the function waits for the release up to 20 s
		t.Fatal("the first chunk did not arrive while the function was still writing: the stream is buffered")
	}
	close(released)
	second, err := r.ReadString('\n')
	if err != nil || second != "second\n" {
		t.Fatalf("second chunk %q: %v", second, err)
	}
	if typ, body, err := st.Trailer(ctx); err != nil || typ != "" || body != nil {
		t.Errorf("a complete stream reports an error: %q %q %v", typ, body, err)
	}
}

// A function that breaks its stream off reports the error in the trailers, and Invoke reads
// a stream whole, with that error.
func TestStreamErrorInTrailers(t *testing.T) {
	release := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer release.Close()
	res, err := Invoke(context.Background(), Invocation{Binary: buildStream(t), Function: "stream", Env: []string{"RELEASE_URL=" + release.URL},
		Event: []byte(`{"rawPath":"/","rawQueryString":"fail"}`)})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Streamed || !bytes.HasSuffix(res.Response, []byte("\x00\x00\x00\x00\x00\x00\x00\x00first\nsecond\n")) {
		t.Errorf("response %q (streamed %v)", res.Response, res.Streamed)
	}
	if res.StreamErrorType == "" || !strings.Contains(string(res.StreamError), "the upstream broke off") {
		t.Errorf("trailers: %q %q, want the error", res.StreamErrorType, res.StreamError)
	}
}
