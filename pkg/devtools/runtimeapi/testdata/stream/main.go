// Command stream is a function that answers a function URL event with a streamed response, for
// runtimeapi's own test: "first" at once, then, once a GET of $RELEASE_URL returns (the test
// answers it only after it has read "first"), "second"; with ?fail it then breaks off with an
// error, which the runtime reports in the stream's trailers.
package main

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
)

type body struct {
	step int
	fail bool
}

func (b *body) Read(p []byte) (int, error) {
	b.step++
	switch b.step {
	case 1:
		return copy(p, "first\n"), nil
	case 2:
		res, err := http.Get(os.Getenv("RELEASE_URL"))
		if err != nil {
			return 0, err
		}
		res.Body.Close()
		return copy(p, "second\n"), nil
	}
	if b.fail {
		return 0, errors.New("the upstream broke off")
	}
	return 0, io.EOF
}

func main() {
	lambda.Start(func(ctx context.Context, ev events.LambdaFunctionURLRequest) (*events.LambdaFunctionURLStreamingResponse, error) {
		return &events.LambdaFunctionURLStreamingResponse{StatusCode: 201, Headers: map[string]string{"Content-Type": "text/event-stream"},
			Body: &body{fail: strings.Contains(ev.RawQueryString, "fail")}}, nil
	})
}
