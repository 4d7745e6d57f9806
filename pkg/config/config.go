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

// JWKS_REFRESH_INTERVAL (the local server only): how old the JWKS may get before it is read
// again. At least a second, so that requests cannot make the server hammer a JWKS URL; at most
// an hour, so that a removed key does not stay trusted for long.
const (
	DefaultJWKSRefreshInterval = 5 * time.Second
	MinJWKSRefreshInterval     = time.Second
	MaxJWKSRefreshInterval     = time.Hour
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

	// The local server only.
	Port          string // PORT
	DataDir       string // DATA_DIR
	JWKSFile      string // JWKS_FILE
	JWKSURL       string // JWKS_URL
	JWTIssuer     string // JWT_ISSUER
	JWTAudience   string // JWT_AUDIENCE
	MaxConcurrent int    // MAX_CONCURRENT_REQUESTS: requests served at once; more get a 503
	// JWKSRefreshInterval is how old the JWKS may get before it is read again (JWKS_REFRESH_INTERVAL).
	JWKSRefreshInterval time.Duration

	// CORSAllowedOrigins is CORS_ALLOWED_ORIGINS, checked by ParseOrigins: nil = CORS off,
	// ["*"] = any origin, else exact origins. The local server applies it; in AWS the HTTP
	// API's CorsConfiguration does (its stack parameter CorsAllowedOrigins), and a function
	// given a malformed value still stops at init like for any other bad setting.
	CORSAllowedOrigins []string
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
	c.JWKSRefreshInterval = duration("JWKS_REFRESH_INTERVAL", DefaultJWKSRefreshInterval)
	if d := c.JWKSRefreshInterval; d > 0 && (d < MinJWKSRefreshInterval || d > MaxJWKSRefreshInterval) {
		errs = append(errs, fmt.Errorf("JWKS_REFRESH_INTERVAL must be from %v to %v, not %v", MinJWKSRefreshInterval, MaxJWKSRefreshInterval, d))
	}
	var err error
	if c.CORSAllowedOrigins, err = ParseOrigins(getenv("CORS_ALLOWED_ORIGINS")); err != nil {
		errs = append(errs, err)
	}
	return c, errors.Join(errs...)
}

// RequireTable is the check of a Lambda function: in AWS the template always sets TABLE_NAME,
// and a function that would talk to a default-named table must not start.
func RequireTable(getenv func(string) string) error {
	if getenv("TABLE_NAME") == "" {
		return errors.New("TABLE_NAME is not set")
	}
	return nil
}
