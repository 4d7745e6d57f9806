package lambdafn

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/aws/aws-lambda-go/events"

	"aitokens/pkg/devtools/syncbuf"
)

// The relay aborts a stream its upstream broke off (http.ErrAbortHandler, as net/http takes
// it); behind lambdaurl, which runs the handler unrecovered in a goroutine, that would end the
// process. streaming recovers it and ends the stream with an error (which the runtime reports
// in its trailers, so Lambda cuts the caller's response), after what was already sent; a stream
// that ends normally ends with EOF; any other panic is logged as well.
func TestStreamingTurnsAnAbortIntoAStreamError(t *testing.T) {
	cases := []struct {
		name    string
		panicV  any
		wantErr error
		logged  bool
	}{
		{"complete", nil, nil, false},
		{"aborted", http.ErrAbortHandler, errStreamAborted, false},
		{"another panic", "boom", errStreamAborted, true},
	}
	for _, c := range cases {
		logs := &syncbuf.Buffer{}
		o := NewObserver("relay", "test", io.Discard)
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/event-stream")
			w.WriteHeader(http.StatusOK)
			w.Write([]byte("data: partial\n\n"))
			if c.panicV != nil {
				panic(c.panicV)
			}
		})
		handler := streaming(h, slog.New(slog.NewJSONHandler(logs, nil)), o)
		res, err := handler(context.Background(), &events.LambdaFunctionURLRequest{RawPath: "/relay/acme/t/h/x",
			RequestContext: events.LambdaFunctionURLRequestContext{HTTP: events.LambdaFunctionURLRequestContextHTTPDescription{Method: "GET"}}})
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		body, err := io.ReadAll(res.Body)
		if !errors.Is(err, c.wantErr) || !bytes.Equal(body, []byte("data: partial\n\n")) || res.StatusCode != 200 {
			t.Errorf("%s: %d %q, %v; want what was sent, then %v", c.name, res.StatusCode, body, err, c.wantErr)
		}
		if got := strings.Contains(logs.String(), "relay panicked"); got != c.logged {
			t.Errorf("%s: logged %v: %s", c.name, got, logs)
		}
	}
}
