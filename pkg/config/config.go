// Package config is the service's one configuration: read from the environment once, in a
// main (cmd/aitokens, functions/*), checked there, and passed down. Libraries never read the
// environment themselves, so a function missing what it needs fails at init, not per request.
package config

import (
	"cmp"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
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

	Events
}

// Events is the configuration of lifecycle events and expiry reminders (see loadEvents).
type Events struct {
	// EventBusName is the EventBridge bus the publisher puts events on (EVENT_BUS_NAME); empty:
	// one JSON line per event in the log instead (local development).
	EventBusName string
	EventSource  string // EVENT_SOURCE: the events' source, default "aitokens"
	// ReminderLeads are how long before a token's expiry an expiring event is written, longest
	// first (EXPIRY_REMINDER_LEADS, default 720h,168h,24h).
	ReminderLeads []time.Duration
	// ReminderLookback is how long after an expiry the sweeper still writes its expired event,
	// so that an expiry passed while the sweeper was not running is announced late rather than
	// never (EXPIRY_REMINDER_LOOKBACK, default 168h).
	ReminderLookback time.Duration
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
	c.Events, errs = loadEvents(getenv, c.AuditRetention, errs)
	return c, errors.Join(errs...)
}

// Defaults and bounds of the events configuration. A lead is at least the sweeper's period (an
// hour) and at most a year; the lookback at most the audit retention (a reminder's marker lives
// as long as its event, and must outlive the window in which it could be written again).
const (
	DefaultEventSource      = "aitokens"
	DefaultReminderLeads    = "720h,168h,24h"
	DefaultReminderLookback = 168 * time.Hour
	MinReminderLead         = time.Hour
	MaxReminderLead         = 8760 * time.Hour
	MaxReminderLeads        = 10
	MinReminderLookback     = time.Hour
)

var eventSourcePattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,256}$`)

func loadEvents(getenv func(string) string, retention time.Duration, errs []error) (Events, []error) {
	e := Events{EventBusName: getenv("EVENT_BUS_NAME"), EventSource: getenv("EVENT_SOURCE"), ReminderLookback: DefaultReminderLookback}
	if e.EventSource == "" {
		e.EventSource = DefaultEventSource
	}
	if !eventSourcePattern.MatchString(e.EventSource) || strings.HasPrefix(e.EventSource, "aws.") {
		errs = append(errs, fmt.Errorf("EVENT_SOURCE must be 1 to 256 of A-Z a-z 0-9 . _ - and not start with \"aws.\", not %q", e.EventSource))
	}
	raw := getenv("EXPIRY_REMINDER_LEADS")
	if raw == "" {
		raw = DefaultReminderLeads
	}
	for _, part := range strings.Split(raw, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(part))
		switch {
		case err != nil || d < MinReminderLead || d > MaxReminderLead:
			errs = append(errs, fmt.Errorf("EXPIRY_REMINDER_LEADS: each lead must be a duration from %v to %v such as 168h, not %q", MinReminderLead, MaxReminderLead, part))
			continue
		case slices.Contains(e.ReminderLeads, d):
			errs = append(errs, fmt.Errorf("EXPIRY_REMINDER_LEADS names %v twice", d))
			continue
		}
		e.ReminderLeads = append(e.ReminderLeads, d)
	}
	if len(e.ReminderLeads) > MaxReminderLeads {
		errs = append(errs, fmt.Errorf("EXPIRY_REMINDER_LEADS holds %d leads, at most %d", len(e.ReminderLeads), MaxReminderLeads))
	}
	slices.SortFunc(e.ReminderLeads, func(a, b time.Duration) int { return cmp.Compare(b, a) })
	if raw := getenv("EXPIRY_REMINDER_LOOKBACK"); raw != "" {
		d, err := time.ParseDuration(raw)
		if err != nil || d < MinReminderLookback || d > retention {
			errs = append(errs, fmt.Errorf("EXPIRY_REMINDER_LOOKBACK must be a duration from %v to the audit retention (%v), not %q", MinReminderLookback, retention, raw))
		}
		e.ReminderLookback = d
	}
	return e, errs
}

// RequireTable is the check of a Lambda function: in AWS the template always sets TABLE_NAME,
// and a function that would talk to a default-named table must not start.
func RequireTable(getenv func(string) string) error {
	if getenv("TABLE_NAME") == "" {
		return errors.New("TABLE_NAME is not set")
	}
	return nil
}
