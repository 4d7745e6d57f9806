// Package config is the service's one configuration: read from the environment once, in a
// main (cmd/aitokens, functions/*), checked there, and passed down. Libraries never read the
// environment themselves, so a function missing what it needs fails at init, not per request.
package config

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"aitokens/pkg/awsretry"
)

// Defaults of what may be left unset.
const (
	DefaultTableName          = "ai-tokens"
	DefaultTenantClaim        = "tenant"
	DefaultRequestTimeout     = 5 * time.Second
	DefaultMaxConcurrent      = 64
	DefaultCacheSize          = 1000
	DefaultCacheTTL           = 5 * time.Minute
	DefaultAuditRetentionDays = 400
)

// Config is every setting of the service. The names of the environment variables are in the
// README's configuration table.
type Config struct {
	TableName        string // TABLE_NAME
	DynamoDBEndpoint string // DYNAMODB_ENDPOINT: DynamoDB Local; empty means AWS
	TenantClaim      string // TENANT_CLAIM
	KMSKeyID         string // KMS_KEY_ID: seal with AWS KMS
	MasterKeyFile    string // MASTER_KEY_FILE: seal with the local development sealer
	DynamoDBLocalJar string // DYNAMODB_LOCAL_JAR: the jar, when not the one `make deps` installs

	// RequestTimeout bounds one request end to end (REQUEST_TIMEOUT); in Lambda the invocation's
	// own deadline less a margin bounds it further.
	RequestTimeout time.Duration
	// AWS is the retry and per-attempt deadline policy of the DynamoDB and KMS clients
	// (AWS_ATTEMPT_TIMEOUT, AWS_MAX_ATTEMPTS).
	AWS awsretry.Policy
	// ResolveCacheSize and ResolveCacheTTL bound the opened values the resolve function keeps
	// in memory (RESOLVE_CACHE_SIZE, RESOLVE_CACHE_TTL).
	ResolveCacheSize int
	ResolveCacheTTL  time.Duration
	// AuditRetention is how long audit events are kept (AUDIT_RETENTION_DAYS, default 400).
	AuditRetention time.Duration
	// ServiceName is the Service dimension of the functions' metrics (SERVICE_NAME; the
	// template sets the stack's name), so that two stacks in one account keep theirs apart.
	ServiceName string

	// The local server only.
	Port          string // PORT
	DataDir       string // DATA_DIR
	JWKSFile      string // JWKS_FILE
	JWKSURL       string // JWKS_URL
	JWTIssuer     string // JWT_ISSUER
	JWTAudience   string // JWT_AUDIENCE
	MaxConcurrent int    // MAX_CONCURRENT_REQUESTS: requests served at once; more get a 503
}

// Load reads the configuration through getenv (os.Getenv in a main, a map in a test) and
// checks every value it parses.
func Load(getenv func(string) string) (Config, error) {
	or := func(name, fallback string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return fallback
	}
	c := Config{
		TableName:        or("TABLE_NAME", DefaultTableName),
		DynamoDBEndpoint: getenv("DYNAMODB_ENDPOINT"),
		TenantClaim:      or("TENANT_CLAIM", DefaultTenantClaim),
		KMSKeyID:         getenv("KMS_KEY_ID"),
		MasterKeyFile:    getenv("MASTER_KEY_FILE"),
		DynamoDBLocalJar: getenv("DYNAMODB_LOCAL_JAR"),
		AWS:              awsretry.DefaultPolicy,
		Port:             or("PORT", "8080"),
		DataDir:          or("DATA_DIR", ".data"),
		JWKSFile:         getenv("JWKS_FILE"),
		JWKSURL:          getenv("JWKS_URL"),
		JWTIssuer:        getenv("JWT_ISSUER"),
		JWTAudience:      getenv("JWT_AUDIENCE"),
		ServiceName:      or("SERVICE_NAME", "aitokens"),
	}
	var errs []error
	duration := func(name string, fallback time.Duration) time.Duration {
		raw := getenv(name)
		if raw == "" {
			return fallback
		}
		d, err := time.ParseDuration(raw)
		if err != nil || d <= 0 {
			errs = append(errs, fmt.Errorf("%s must be a positive duration such as 5s, not %q", name, raw))
		}
		return d
	}
	count := func(name string, fallback int) int {
		raw := getenv(name)
		if raw == "" {
			return fallback
		}
		n, err := strconv.Atoi(raw)
		if err != nil || n < 1 {
			errs = append(errs, fmt.Errorf("%s must be a whole number of 1 or more, not %q", name, raw))
		}
		return n
	}
	c.RequestTimeout = duration("REQUEST_TIMEOUT", DefaultRequestTimeout)
	c.AWS.AttemptTimeout = duration("AWS_ATTEMPT_TIMEOUT", c.AWS.AttemptTimeout)
	c.AWS.MaxAttempts = count("AWS_MAX_ATTEMPTS", c.AWS.MaxAttempts)
	c.MaxConcurrent = count("MAX_CONCURRENT_REQUESTS", DefaultMaxConcurrent)
	c.ResolveCacheSize = count("RESOLVE_CACHE_SIZE", DefaultCacheSize)
	c.ResolveCacheTTL = duration("RESOLVE_CACHE_TTL", DefaultCacheTTL)
	c.AuditRetention = time.Duration(count("AUDIT_RETENTION_DAYS", DefaultAuditRetentionDays)) * 24 * time.Hour
	if !validServiceName(c.ServiceName) {
		errs = append(errs, fmt.Errorf("SERVICE_NAME must be 1 to 128 letters, digits, '.', '_' or '-' (a CloudWatch dimension value), not %q", c.ServiceName))
	}
	return c, errors.Join(errs...)
}

// validServiceName: what a stack name may be, and a metric's dimension value can hold. (No
// regexp: compiling one costs every cold start.)
func validServiceName(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// RequireTable is the check of a Lambda function: in AWS the template always sets TABLE_NAME,
// and a function that would talk to a default-named table must not start.
func RequireTable(getenv func(string) string) error {
	if getenv("TABLE_NAME") == "" {
		return errors.New("TABLE_NAME is not set")
	}
	return nil
}
