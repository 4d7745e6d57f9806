// Package awsretry is the one retry and deadline policy of the service's AWS clients (DynamoDB,
// KMS) and the one test of "this AWS call failed because the service is busy or out of reach".
package awsretry

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// Policy says how long one attempt of an AWS call may take and how often it is tried. The
// request's own context bounds the whole call on top of it (see pkg/api), so a stalled
// dependency costs at most the request's deadline, never a hang.
type Policy struct {
	MaxAttempts    int
	MaxBackoff     time.Duration
	AttemptTimeout time.Duration // one HTTP round trip, body included
	// Backoff replaces the SDK's jittered exponential backoff; tests set it to zero so that
	// a bound proven with a small limit does not cost real seconds of sleeping.
	Backoff retry.BackoffDelayer
}

// DefaultPolicy retries throttling, 5xx and transaction conflicts a few times with a short
// backoff, each attempt bounded to 2 s: a request fails with a clear 503 well within API
// Gateway's 30 s instead of hanging on a stalled connection.
var DefaultPolicy = Policy{MaxAttempts: 4, MaxBackoff: 400 * time.Millisecond, AttemptTimeout: 2 * time.Second}

// retryableCodes are retried on top of the SDK's defaults: DynamoDB's TransactionConflict (a
// concurrent transaction on the same item; real DynamoDB, not Local) passes once the other ends.
var retryableCodes = map[string]struct{}{"TransactionConflictException": {}}

// NewRetryer is the SDK retryer of the policy.
func (p Policy) NewRetryer() aws.Retryer {
	return retry.NewStandard(func(o *retry.StandardOptions) {
		o.MaxAttempts = p.MaxAttempts
		o.MaxBackoff = p.MaxBackoff
		if p.Backoff != nil {
			o.Backoff = p.Backoff
		}
		o.Retryables = append(o.Retryables, retry.RetryableErrorCode{Codes: retryableCodes})
	})
}

// HTTPClient is the SDK's HTTP client with the policy's deadline on every attempt.
func (p Policy) HTTPClient() *awshttp.BuildableClient {
	return awshttp.NewBuildableClient().WithTimeout(p.AttemptTimeout)
}

// APIOptions are the middleware every client of the service carries (aws.Config.APIOptions):
// readOnlyBody, so that one call is one request.
func APIOptions() []func(*middleware.Stack) error {
	return []func(*middleware.Stack) error{func(s *middleware.Stack) error {
		return s.Deserialize.Add(readOnlyBody, middleware.After)
	}}
}

// readOnlyBody hands net/http the request's body without its WriteTo. smithy-go closes the body
// as soon as the answer's headers are in (transport/http/client.go), and its closed body's
// WriteTo returns io.EOF, which io.Copy passes on as an error. net/http, after sending a body of
// known length, reads it once more for bytes beyond that length (transfer.go); when the answer
// came first (a loaded machine), that read fails, net/http closes the connection under the
// answer's body, and the SDK retries the read error: the service gets the call twice (a second
// GenerateDataKey or Decrypt; a conditional write whose second try fails its condition). Read
// alone ends on the closed body with a plain io.EOF. Retries still rewind the stream, which
// stays the SDK's own.
var readOnlyBody = middleware.DeserializeMiddlewareFunc("ReadOnlyRequestBody",
	func(ctx context.Context, in middleware.DeserializeInput, next middleware.DeserializeHandler) (middleware.DeserializeOutput, middleware.Metadata, error) {
		if req, ok := in.Request.(*smithyhttp.Request); ok {
			if _, ok := req.GetStream().(io.WriterTo); ok {
				r, err := req.SetStream(struct{ io.Reader }{req.GetStream()})
				if err != nil {
					return middleware.DeserializeOutput{}, middleware.Metadata{}, err
				}
				in.Request = r
			}
		}
		return next.HandleDeserialize(ctx, in)
	})

// NoBackoff is a Backoff that retries at once.
var NoBackoff = retry.BackoffDelayerFunc(func(int, error) (time.Duration, error) { return 0, nil })

// Cancelled reports whether err is the caller's context ending. An attempt cut by
// AttemptTimeout ends in a context deadline too, but once the SDK has spent every attempt on
// such timeouts (a MaxAttemptsError) the dependency is what failed, not the caller: that error
// is Unavailable and not Cancelled.
func Cancelled(err error) bool {
	var spent *retry.MaxAttemptsError
	if errors.As(err, &spent) {
		return false
	}
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// Unavailable reports whether err (after the retries) means the service was unreachable,
// throttling or failing: worth a 503 that the client may retry.
func Unavailable(err error) bool {
	var sendErr *smithyhttp.RequestSendError
	var respErr *smithyhttp.ResponseError
	var maxAttempts *retry.MaxAttemptsError
	return errors.As(err, &sendErr) || errors.As(err, &maxAttempts) ||
		(errors.As(err, &respErr) && (respErr.HTTPStatusCode() >= 500 || respErr.HTTPStatusCode() == 429)) ||
		retry.IsErrorThrottles(retry.DefaultThrottles).IsErrorThrottle(err).Bool()
}
