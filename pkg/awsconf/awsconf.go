// Package awsconf makes the aws.Config of the service's AWS clients (DynamoDB, KMS).
//
// A Lambda function takes it from the environment Lambda gives it: the execution role's
// credentials in AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN, the region in
// AWS_REGION. That is the first link of the SDK's default chain, the one that answers in
// Lambda, read here the way the SDK reads it (FromEnv), so that the functions do not link the
// SDK's configuration loader: its SSO, SSO-OIDC, STS and sign-in clients cost every cold start
// their package initialisation (docs/benchmarks.md). The local server, which may run with a
// profile, SSO or an assumed role, sets the whole chain with SetLoader(sdkchain.Load).
package awsconf

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/smithy-go/logging"

	"aitokens/pkg/awsretry"
)

// Loader makes the aws.Config of a client that talks to AWS, with policy applied.
type Loader func(ctx context.Context, policy awsretry.Policy) (aws.Config, error)

var (
	mu     sync.Mutex
	loader Loader = func(_ context.Context, policy awsretry.Policy) (aws.Config, error) {
		return FromEnv(os.Getenv, policy)
	}
	sdkLog = defaultLog
)

// defaultLog is where the SDK's own lines go until SetLogger: JSON on stderr, as the local
// server logs.
var defaultLog = slog.New(slog.NewJSONHandler(os.Stderr, nil))

// SetLogger sends the SDK's own log lines to log (nil: back to JSON on stderr). The SDK's
// standard logger writes plain text ("SDK 2026/12/07 ... WARN failed to discard remaining HTTP
// response body, ...", when an attempt is cut mid-body): in a function's log, where every
// line is JSON with the function's fields, that line broke the stream. A main calls it once,
// before any client is made (a client keeps the logger of its configuration).
func SetLogger(log *slog.Logger) {
	if log == nil {
		log = defaultLog
	}
	mu.Lock()
	defer mu.Unlock()
	sdkLog = log
}

// Logger is the SDK logger of the clients made now: SetLogger's, or JSON on stderr.
func Logger() logging.Logger {
	mu.Lock()
	defer mu.Unlock()
	return sdkLogger{log: sdkLog, ctx: context.Background()}
}

// sdkLogger writes each SDK line as one slog record: its message as msg, at WARN (DEBUG for
// the SDK's DEBUG lines, which a function's INFO logger drops), with "logger":"aws-sdk". The SDK
// hands it the call's context (logging.ContextLogger), so a line within an invocation carries
// the invocation's fields. What the SDK logs unasked (a body it could not drain or close, a Date
// header it could not parse, a deprecated endpoint) names a network error or a header's
// date, never a body or a header's value: the lines that would (the wire dumps of
// aws.ClientLogMode) are never turned on here, and they are DEBUG.
type sdkLogger struct {
	log *slog.Logger
	ctx context.Context
}

func (l sdkLogger) WithContext(ctx context.Context) logging.Logger {
	return sdkLogger{log: l.log, ctx: ctx}
}

func (l sdkLogger) Logf(c logging.Classification, format string, v ...any) {
	level := slog.LevelWarn // WARN, or a classification the SDK may add one day: shown
	if c == logging.Debug {
		level = slog.LevelDebug
	}
	if !l.log.Enabled(l.ctx, level) {
		return
	}
	l.log.Log(l.ctx, level, fmt.Sprintf(format, v...), slog.String("logger", "aws-sdk"))
}

// SetLoader replaces FromEnv as the source of Load; a main calls it once, before any client
// is made.
func SetLoader(l Loader) {
	mu.Lock()
	defer mu.Unlock()
	loader = l
}

// Load makes the aws.Config of a client that talks to AWS: FromEnv, or what SetLoader set.
func Load(ctx context.Context, policy awsretry.Policy) (aws.Config, error) {
	mu.Lock()
	l := loader
	mu.Unlock()
	return l(ctx, policy)
}

// credentialsSource names the credentials as the SDK's loader names those it reads from the
// environment (the SDK reports the source in its user agent).
const credentialsSource = "EnvConfigCredentials"

// unsupported are the SDK's environment settings that would change how a client calls AWS and
// that FromEnv does not read: set on a function, they stop it at init rather than being
// ignored (Lambda sets none of them; with a profile the SDK's loader fails in Lambda too, for
// want of its files). The retry settings are the policy's; the other credential sources never
// count when the environment holds credentials.
var unsupported = []string{"AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_USE_FIPS_ENDPOINT", "AWS_USE_DUALSTACK_ENDPOINT", "AWS_DEFAULTS_MODE",
	"AWS_ENABLE_ENDPOINT_DISCOVERY", "AWS_ACCOUNT_ID_ENDPOINT_MODE", "AWS_REQUEST_CHECKSUM_CALCULATION",
	"AWS_RESPONSE_CHECKSUM_VALIDATION", "AWS_DISABLE_REQUEST_COMPRESSION", "AWS_REQUEST_MIN_COMPRESSION_SIZE_BYTES",
	"AWS_DISABLE_CLOCK_SKEW_CORRECTION", "AWS_SDK_UA_APP_ID", "AWS_AUTH_SCHEME_PREFERENCE"}

// FromEnv is the configuration the SDK's default loader makes in Lambda, read from the same
// variables: credentials from AWS_ACCESS_KEY_ID (or AWS_ACCESS_KEY), AWS_SECRET_ACCESS_KEY (or
// AWS_SECRET_KEY), AWS_SESSION_TOKEN and AWS_ACCOUNT_ID; the region from AWS_REGION (or
// AWS_DEFAULT_REGION); endpoints from AWS_ENDPOINT_URL and AWS_ENDPOINT_URL_<SERVICE> unless
// AWS_IGNORE_CONFIGURED_ENDPOINT_URLS is true; the trusted CAs from AWS_CA_BUNDLE. Missing
// credentials or region, or a setting it does not read, are an error (at init), never a
// client that fails on its first call or behaves otherwise than the SDK's would.
func FromEnv(getenv func(string) string, policy awsretry.Policy) (aws.Config, error) {
	for _, name := range unsupported {
		if getenv(name) != "" {
			return aws.Config{}, fmt.Errorf("awsconf: %s is set, a setting of the AWS SDK that the functions do not read (see pkg/awsconf)", name)
		}
	}
	first := func(names ...string) string {
		for _, n := range names {
			if v := getenv(n); v != "" {
				return v
			}
		}
		return ""
	}
	creds := aws.Credentials{
		AccessKeyID:     first("AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY"),
		SecretAccessKey: first("AWS_SECRET_ACCESS_KEY", "AWS_SECRET_KEY"),
		Source:          credentialsSource,
	}
	if !creds.HasKeys() {
		return aws.Config{}, errors.New("awsconf: no AWS credentials in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY " +
			"(a function takes the credentials Lambda puts in its environment)")
	}
	creds.SessionToken, creds.AccountID = getenv("AWS_SESSION_TOKEN"), getenv("AWS_ACCOUNT_ID")
	region := first("AWS_REGION", "AWS_DEFAULT_REGION")
	if region == "" {
		return aws.Config{}, errors.New("awsconf: no AWS region in AWS_REGION (Lambda sets it)")
	}
	e := endpoints{getenv}
	cfg := base(policy, region, e)
	if path := getenv("AWS_CA_BUNDLE"); path != "" {
		if err := trustOnly(&cfg, path); err != nil {
			return aws.Config{}, err
		}
	}
	cfg.Credentials = aws.NewCredentialsCache(credentials.StaticCredentialsProvider{Value: creds})
	if v := getenv("AWS_ENDPOINT_URL"); v != "" && !e.ignored() {
		cfg.BaseEndpoint = aws.String(v)
	}
	return cfg, nil
}

// bundles are the CA bundles read so far, by path: a function with a DynamoDB and a KMS client
// parses one once (a system bundle takes milliseconds, at init).
var bundles sync.Map // string -> *x509.CertPool

// trustOnly makes the client trust the certificates of the PEM file at path and no others, as
// the SDK does with AWS_CA_BUNDLE.
func trustOnly(cfg *aws.Config, path string) error {
	pool, ok := bundles.Load(path)
	if !ok {
		pem, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("awsconf: AWS_CA_BUNDLE: %w", err)
		}
		p := x509.NewCertPool()
		if !p.AppendCertsFromPEM(pem) {
			return fmt.Errorf("awsconf: AWS_CA_BUNDLE %s holds no PEM certificate", path)
		}
		pool, _ = bundles.LoadOrStore(path, p)
	}
	cfg.HTTPClient = cfg.HTTPClient.(*awshttp.BuildableClient).WithTransportOptions(func(tr *http.Transport) {
		if tr.TLSClientConfig == nil {
			tr.TLSClientConfig = &tls.Config{}
		}
		tr.TLSClientConfig.RootCAs = pool.(*x509.CertPool)
	})
	return nil
}

// Local is the configuration of a client of DynamoDB Local, which takes any credentials: the
// region from AWS_REGION or AWS_DEFAULT_REGION, else us-east-1.
func Local(getenv func(string) string, policy awsretry.Policy) aws.Config {
	region := getenv("AWS_REGION")
	if region == "" {
		region = getenv("AWS_DEFAULT_REGION")
	}
	if region == "" {
		region = "us-east-1"
	}
	cfg := base(policy, region)
	cfg.Credentials = aws.NewCredentialsCache(credentials.NewStaticCredentialsProvider("local", "local", ""))
	return cfg
}

// base is what the SDK's loader sets whatever the source: a logger (SetLogger's, where the
// loader's is plain text on stderr), the legacy defaults mode, and the sources a client asks
// for its own endpoint.
func base(policy awsretry.Policy, region string, sources ...any) aws.Config {
	return aws.Config{
		Region:        region,
		Retryer:       policy.NewRetryer,
		HTTPClient:    policy.HTTPClient(),
		APIOptions:    awsretry.APIOptions(),
		Logger:        Logger(),
		DefaultsMode:  aws.DefaultsModeLegacy,
		ConfigSources: sources,
	}
}

// endpoints answers a client's question for its own endpoint (AWS_ENDPOINT_URL_KMS for the KMS
// client) as the SDK's environment configuration does; the client finds it in ConfigSources.
type endpoints struct{ getenv func(string) string }

func (e endpoints) ignored() bool {
	return strings.EqualFold(e.getenv("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"), "true")
}

// GetIgnoreConfiguredEndpoints implements the SDK's IgnoreConfiguredEndpointsProvider.
func (e endpoints) GetIgnoreConfiguredEndpoints(context.Context) (bool, bool, error) {
	return e.ignored(), e.getenv("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS") != "", nil
}

// GetServiceBaseEndpoint implements the SDK's ServiceBaseEndpointProvider.
func (e endpoints) GetServiceBaseEndpoint(_ context.Context, sdkID string) (string, bool, error) {
	v := e.getenv("AWS_ENDPOINT_URL_" + strings.ReplaceAll(strings.ToUpper(sdkID), " ", "_"))
	return v, v != "", nil
}
