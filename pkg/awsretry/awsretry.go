// Package awsretry is the one retry policy of the service's AWS clients (DynamoDB, KMS) and the
// one test of "this AWS call failed because the service is busy or out of reach".
package awsretry

import (
	"context"
	"errors"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// Retryer retries throttling and 5xx a few times with a short backoff, so that a request fails
// with a clear 503 well within API Gateway's 30 s instead of hanging.
func Retryer() aws.Retryer {
	return retry.NewStandard(func(o *retry.StandardOptions) {
		o.MaxAttempts = 4
		o.MaxBackoff = 400 * time.Millisecond
	})
}

// Cancelled reports whether err is the caller's context ending.
func Cancelled(err error) bool {
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
