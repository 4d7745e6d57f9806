package awsretry_test

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"aitokens/pkg/awsretry"
)

// fakeDynamoDB answers every call with the DynamoDB JSON protocol's error for code (HTTP status
// status), or stalls until the caller gives up when stall is set, and counts the attempts.
type fakeDynamoDB struct {
	status   int
	code     string
	stall    bool
	attempts atomic.Int32
}

func (f *fakeDynamoDB) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.attempts.Add(1)
	// Read the request to its end: only then does the server notice a client that hangs up
	// and end r.Context(), so that a stalled handler returns as soon as the attempt is cut.
	io.Copy(io.Discard, r.Body)
	if f.stall {
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second): // a deadline for the stall itself
		}
		return
	}
	body := fmt.Sprintf(`{"__type":"com.amazonaws.dynamodb.v20120810#%s","message":"from the test"}`, f.code)
	w.Header().Set("Content-Type", "application/x-amz-json-1.0")
	// DynamoDB signs its answers with a CRC32 that the client checks.
	w.Header().Set("X-Amz-Crc32", strconv.FormatUint(uint64(crc32.ChecksumIEEE([]byte(body))), 10))
	w.WriteHeader(f.status)
	io.WriteString(w, body)
}

// client is a real DynamoDB client with the policy applied, aimed at the fake.
func client(t *testing.T, p awsretry.Policy, fake http.Handler) *dynamodb.Client {
	t.Helper()
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	cfg := aws.Config{Region: "eu-central-1", Retryer: p.NewRetryer, HTTPClient: p.HTTPClient(),
		Credentials: credentials.NewStaticCredentialsProvider("test", "test", "")}
	return dynamodb.NewFromConfig(cfg, func(o *dynamodb.Options) { o.BaseEndpoint = aws.String(srv.URL) })
}

func getItem(ctx context.Context, c *dynamodb.Client) error {
	_, err := c.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String("t"),
		Key: map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: "k"}}})
	return err
}

// Which answers the policy tries again, and how the error it ends with is classified.
func TestPolicyRetries(t *testing.T) {
	t.Parallel()
	p := awsretry.Policy{MaxAttempts: 3, AttemptTimeout: 5 * time.Second, Backoff: awsretry.NoBackoff}
	cases := []struct {
		name        string
		status      int
		code        string
		attempts    int32
		unavailable bool // retries spent on it: the dependency is busy or failing
	}{
		{"a 500 is retried", 500, "InternalServerError", 3, true},
		{"a 503 is retried", 503, "ServiceUnavailable", 3, true},
		{"throttling is retried", 400, "ThrottlingException", 3, true},
		{"exceeded throughput is retried", 400, "ProvisionedThroughputExceededException", 3, true},
		// Real DynamoDB's answer to a write on an item inside another transaction; passes once it ends.
		{"a transaction conflict is retried", 400, "TransactionConflictException", 3, true},
		// A cancelled transaction says why in its reasons; the service decides, not the SDK.
		{"a cancelled transaction is not retried", 400, "TransactionCanceledException", 1, false},
		{"a failed condition is not retried", 400, "ConditionalCheckFailedException", 1, false},
		{"a bad request is not retried", 400, "ValidationException", 1, false},
		{"a missing table is not retried", 400, "ResourceNotFoundException", 1, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fake := &fakeDynamoDB{status: tc.status, code: tc.code}
			err := getItem(context.Background(), client(t, p, fake))
			if err == nil {
				t.Fatal("no error")
			}
			var apiErr smithy.APIError
			if !errors.As(err, &apiErr) || apiErr.ErrorCode() != tc.code {
				t.Errorf("error %v, want the code %s", err, tc.code)
			}
			if got := fake.attempts.Load(); got != tc.attempts {
				t.Errorf("%d attempts, want %d", got, tc.attempts)
			}
			if got := awsretry.Unavailable(err); got != tc.unavailable {
				t.Errorf("Unavailable(%v) = %v, want %v", err, got, tc.unavailable)
			}
			if awsretry.Cancelled(err) {
				t.Errorf("Cancelled(%v) = true", err)
			}
		})
	}
}

// A stalled endpoint costs AttemptTimeout per attempt, MaxAttempts times, then a 503-worthy error.
func TestAttemptTimeoutCutsAStall(t *testing.T) {
	t.Parallel()
	const attempt = 200 * time.Millisecond
	fake := &fakeDynamoDB{stall: true}
	c := client(t, awsretry.Policy{MaxAttempts: 2, AttemptTimeout: attempt, Backoff: awsretry.NoBackoff}, fake)
	start := time.Now()
	err := getItem(context.Background(), c)
	elapsed := time.Since(start)
	if !awsretry.Unavailable(err) || awsretry.Cancelled(err) {
		t.Fatalf("%v: want unavailable, not cancelled", err)
	}
	if got := fake.attempts.Load(); got != 2 {
		t.Errorf("%d attempts, want 2", got)
	}
	// Two attempts of 200 ms: not less, and far from the stall's 10 s.
	if elapsed < 2*attempt || elapsed > 5*time.Second {
		t.Errorf("took %s, want about %s", elapsed, 2*attempt)
	}
}

// The caller's deadline ends the call even inside a longer attempt, and says so.
func TestCallersDeadlineWins(t *testing.T) {
	t.Parallel()
	fake := &fakeDynamoDB{stall: true}
	c := client(t, awsretry.Policy{MaxAttempts: 4, AttemptTimeout: 5 * time.Second, Backoff: awsretry.NoBackoff}, fake)
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := getItem(ctx, c)
	if !awsretry.Cancelled(err) {
		t.Fatalf("%v: want Cancelled", err)
	}
	if elapsed := time.Since(start); elapsed > 3*time.Second {
		t.Errorf("took %s after a 150ms deadline", elapsed)
	}
}

// The classifiers alone, over the error shapes the SDK produces.
func TestClassifiers(t *testing.T) {
	t.Parallel()
	response := func(status int) error {
		return &smithyhttp.ResponseError{Response: &smithyhttp.Response{Response: &http.Response{StatusCode: status}}, Err: errors.New("x")}
	}
	cases := []struct {
		name                   string
		err                    error
		unavailable, cancelled bool
	}{
		{"nil", nil, false, false},
		{"plain error", errors.New("boom"), false, false},
		{"cancelled", context.Canceled, false, true},
		{"deadline", context.DeadlineExceeded, false, true},
		{"wrapped deadline", fmt.Errorf("get: %w", context.DeadlineExceeded), false, true},
		{"connection refused", &smithyhttp.RequestSendError{Err: errors.New("connection refused")}, true, false},
		{"retries spent", &retry.MaxAttemptsError{Attempt: 4, Err: errors.New("x")}, true, false},
		// Every attempt cut by AttemptTimeout: the dependency stalled, the caller did not give up.
		{"retries spent on attempt timeouts", &retry.MaxAttemptsError{Attempt: 4, Err: &smithyhttp.RequestSendError{Err: context.DeadlineExceeded}}, true, false},
		{"500", response(500), true, false},
		{"503", response(503), true, false},
		{"429", response(429), true, false},
		{"400", response(400), false, false},
		{"404", response(404), false, false},
		{"throttling code", &smithy.GenericAPIError{Code: "ThrottlingException"}, true, false},
		{"condition code", &smithy.GenericAPIError{Code: "ConditionalCheckFailedException"}, false, false},
		{"wrapped send error", fmt.Errorf("store: %w", &smithyhttp.RequestSendError{Err: errors.New("reset")}), true, false},
	}
	for _, tc := range cases {
		if got := awsretry.Unavailable(tc.err); got != tc.unavailable {
			t.Errorf("%s: Unavailable = %v, want %v", tc.name, got, tc.unavailable)
		}
		if got := awsretry.Cancelled(tc.err); got != tc.cancelled {
			t.Errorf("%s: Cancelled = %v, want %v", tc.name, got, tc.cancelled)
		}
	}
}

// The default policy: a few attempts, each bounded, well within API Gateway's 30 s in total.
func TestDefaultPolicyFitsARequest(t *testing.T) {
	p := awsretry.DefaultPolicy
	if p.MaxAttempts < 2 || p.AttemptTimeout <= 0 || p.MaxBackoff <= 0 || p.Backoff != nil {
		t.Fatalf("%+v", p)
	}
	if worst := time.Duration(p.MaxAttempts) * (p.AttemptTimeout + p.MaxBackoff); worst >= 30*time.Second {
		t.Errorf("worst case %s reaches API Gateway's 30 s", worst)
	}
	if d, err := awsretry.NoBackoff.BackoffDelay(3, errors.New("x")); d != 0 || err != nil {
		t.Errorf("NoBackoff waits %s (%v)", d, err)
	}
}

// bodyCatcher is an HTTP client that keeps the body of every request it sends.
type bodyCatcher struct {
	inner  aws.HTTPClient
	bodies []io.ReadCloser
}

func (b *bodyCatcher) Do(r *http.Request) (*http.Response, error) {
	b.bodies = append(b.bodies, r.Body)
	return b.inner.Do(r)
}

// The SDK closes a request's body once the answer's headers are in, while net/http may still
// read it for bytes beyond its length (transfer.go); that read must end as a body's end does,
// or net/http closes the connection under the answer and the SDK sends the call again (the
// extra KMS calls of functions/egress_test.go on a loaded machine). net/http reads that rest
// with io.Copy, so the test does too, after the call.
func TestClosedRequestBodyReadsAsItsEnd(t *testing.T) {
	t.Parallel()
	p := awsretry.Policy{MaxAttempts: 1, AttemptTimeout: 5 * time.Second}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/x-amz-json-1.0")
		w.Header().Set("X-Amz-Crc32", strconv.FormatUint(uint64(crc32.ChecksumIEEE([]byte("{}"))), 10))
		io.WriteString(w, "{}")
	}))
	defer srv.Close()
	catcher := &bodyCatcher{inner: p.HTTPClient()}
	for _, tc := range []struct {
		name    string
		options []func(*middleware.Stack) error
		clean   bool
	}{
		// The premise: should this case fail, smithy-go no longer ends a closed body in io.EOF
		// and readOnlyBody can go.
		{"the SDK's own body", nil, false},
		{"with awsretry.APIOptions", awsretry.APIOptions(), true},
	} {
		catcher.bodies = nil
		cfg := aws.Config{Region: "eu-central-1", Retryer: p.NewRetryer, HTTPClient: catcher, APIOptions: tc.options,
			Credentials: credentials.NewStaticCredentialsProvider("test", "test", "")}
		c := dynamodb.NewFromConfig(cfg, func(o *dynamodb.Options) { o.BaseEndpoint = aws.String(srv.URL) })
		if err := getItem(context.Background(), c); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if len(catcher.bodies) != 1 || catcher.bodies[0] == nil {
			t.Fatalf("%s: %d requests sent, want 1 with a body", tc.name, len(catcher.bodies))
		}
		_, err := io.Copy(io.Discard, catcher.bodies[0])
		if clean := err == nil; clean != tc.clean {
			t.Errorf("%s: reading the closed body ends in %v, want clean %v", tc.name, err, tc.clean)
		}
	}
}
