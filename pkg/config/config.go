// Package config is the service's one configuration: read from the environment once, in a
// main (cmd/aitokens, functions/*), checked there, and passed down. Libraries never read the
// environment themselves, so a function missing what it needs fails at init, not per request.
package config

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"aitokens/pkg/auth"
	"aitokens/pkg/awsretry"
	"aitokens/pkg/store"
)

// Defaults of what may be left unset. The tenant claim and the audit retention are defaults of
// the packages that fall back on them too (pkg/auth, pkg/store), so they are written there once.
const (
	DefaultTableName          = "ai-tokens"
	DefaultTenantClaim        = auth.DefaultTenantClaim
	DefaultRequestTimeout     = 5 * time.Second
	DefaultMaxConcurrent      = 64
	DefaultCacheSize          = 1000
	DefaultCacheTTL           = 5 * time.Minute
	DefaultAuditRetentionDays = int(store.DefaultAuditRetention / day)
	DefaultPort               = "8080"
)

// JWKS_REFRESH_INTERVAL (the local server only): how old the JWKS may get before it is read
// again. At least a second, so that requests cannot make the server hammer a JWKS URL; at most
// an hour, so that a removed key does not stay trusted for long.
const (
	DefaultJWKSRefreshInterval = 5 * time.Second
	MinJWKSRefreshInterval     = time.Second
	MaxJWKSRefreshInterval     = time.Hour
)

const day = 24 * time.Hour

// Floors and ceilings of the numeric settings. Load refuses a value outside them with an error
// that names the variable, the value and the range; template.yaml's parameters carry the same
// bounds (functions/template_test.go reads them from Ranges).
const (
	// A request needs a DynamoDB and often a KMS round trip; API Gateway's HTTP API drops an
	// integration after 30 s, so a longer deadline would only keep a request nobody awaits.
	MinRequestTimeout = 100 * time.Millisecond
	MaxRequestTimeout = 30 * time.Second
	// One attempt of one AWS call: a round trip at the least, never longer than a whole request.
	MinAttemptTimeout = 50 * time.Millisecond
	MaxAttemptTimeout = MaxRequestTimeout
	// Attempts per AWS call: 1 is no retry; more than 10 only burns the request's deadline.
	MinAttempts = 1
	MaxAttempts = 10
	// At least a day; at most ten years. Far larger values overflowed time.Duration (200000
	// days came out negative and would have given every event a TTL in the past).
	MinAuditRetentionDays = 1
	MaxAuditRetentionDays = 3653
	// Opened values one resolve function keeps: 10,000 values of at most token.MaxValueLength
	// (16 KiB) are 160 MiB, within the function's 256 MB.
	MinCacheSize = 1
	MaxCacheSize = 10_000
	// How long an opened value stays in memory: at most an hour, so that a disabled KMS key
	// stops a warm function's resolves within the hour too.
	MinCacheTTL = time.Second
	MaxCacheTTL = time.Hour
	// Requests the local server serves at once.
	MinConcurrent = 1
	MaxConcurrent = 10_000
	// A TCP port (0, "any free port", would leave the logged address wrong).
	MinPort = 1
	MaxPort = 65535
)

// Range is the floor and ceiling of one numeric setting, named by its environment variable: a
// whole number as it is, a duration (Duration set) in nanoseconds.
type Range struct {
	Name     string
	Min, Max int64
	Duration bool
}

var ranges = []Range{
	{Name: "REQUEST_TIMEOUT", Min: int64(MinRequestTimeout), Max: int64(MaxRequestTimeout), Duration: true},
	{Name: "AWS_ATTEMPT_TIMEOUT", Min: int64(MinAttemptTimeout), Max: int64(MaxAttemptTimeout), Duration: true},
	{Name: "AWS_MAX_ATTEMPTS", Min: MinAttempts, Max: MaxAttempts},
	{Name: "AUDIT_RETENTION_DAYS", Min: MinAuditRetentionDays, Max: MaxAuditRetentionDays},
	{Name: "RESOLVE_CACHE_SIZE", Min: MinCacheSize, Max: MaxCacheSize},
	{Name: "RESOLVE_CACHE_TTL", Min: int64(MinCacheTTL), Max: int64(MaxCacheTTL), Duration: true},
	{Name: "MAX_CONCURRENT_REQUESTS", Min: MinConcurrent, Max: MaxConcurrent},
	{Name: "PORT", Min: MinPort, Max: MaxPort},
	{Name: "JWKS_REFRESH_INTERVAL", Min: int64(MinJWKSRefreshInterval), Max: int64(MaxJWKSRefreshInterval), Duration: true},
}

// Ranges lists every bounded setting.
func Ranges() []Range { return slices.Clone(ranges) }

// Parse reads raw as the setting's value (a Go duration or a whole number) and checks it
// against the range; the error names the variable, the value and the range.
func (r Range) Parse(raw string) (int64, error) {
	var n int64
	var err error
	if r.Duration {
		var d time.Duration
		d, err = time.ParseDuration(raw)
		n = int64(d)
	} else {
		n, err = strconv.ParseInt(raw, 10, 64)
	}
	if err != nil || n < r.Min || n > r.Max {
		return 0, fmt.Errorf("%s must be %s, not %q", r.Name, r.describe(), raw)
	}
	return n, nil
}

// describe is the rule in words: "a whole number from 1 to 10".
func (r Range) describe() string {
	if r.Duration {
		return fmt.Sprintf("a positive duration from %s to %s (Go syntax: ms, s, m, h)", short(r.Min), short(r.Max))
	}
	return fmt.Sprintf("a whole number from %d to %d", r.Min, r.Max)
}

// short writes a duration as a reader would: 1h, not 1h0m0s.
func short(n int64) string {
	s := time.Duration(n).String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

func rangeOf(name string) Range {
	i := slices.IndexFunc(ranges, func(r Range) bool { return r.Name == name })
	if i < 0 {
		panic("config: no range for " + name) // a setting read without a bound: a bug, caught by the tests
	}
	return ranges[i]
}

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
	// AuditRetention is how long audit events are kept (AUDIT_RETENTION_DAYS).
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
	// JWKSRefreshInterval is how old the JWKS may get before it is read again (JWKS_REFRESH_INTERVAL).
	JWKSRefreshInterval time.Duration

	// CORSAllowedOrigins is CORS_ALLOWED_ORIGINS, checked by ParseOrigins: nil = CORS off,
	// ["*"] = any origin, else exact origins. The local server applies it; in AWS the HTTP
	// API's CorsConfiguration does (its stack parameter CorsAllowedOrigins), and a function
	// given a malformed value still stops at init like for any other bad setting.
	CORSAllowedOrigins []string

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
		Port:             or("PORT", DefaultPort),
		DataDir:          or("DATA_DIR", ".data"),
		JWKSFile:         getenv("JWKS_FILE"),
		JWKSURL:          getenv("JWKS_URL"),
		JWTIssuer:        getenv("JWT_ISSUER"),
		JWTAudience:      getenv("JWT_AUDIENCE"),
		ServiceName:      or("SERVICE_NAME", "aitokens"),
	}
	var errs []error
	// bounded parses a set variable against its range; unset, it keeps the default.
	bounded := func(name string, fallback int64) int64 {
		raw := getenv(name)
		if raw == "" {
			return fallback
		}
		n, err := rangeOf(name).Parse(raw)
		if err != nil {
			errs = append(errs, err)
		}
		return n
	}
	duration := func(name string, fallback time.Duration) time.Duration {
		return time.Duration(bounded(name, int64(fallback)))
	}
	count := func(name string, fallback int) int { return int(bounded(name, int64(fallback))) }
	c.RequestTimeout = duration("REQUEST_TIMEOUT", DefaultRequestTimeout)
	c.AWS.AttemptTimeout = duration("AWS_ATTEMPT_TIMEOUT", c.AWS.AttemptTimeout)
	c.AWS.MaxAttempts = count("AWS_MAX_ATTEMPTS", c.AWS.MaxAttempts)
	c.MaxConcurrent = count("MAX_CONCURRENT_REQUESTS", DefaultMaxConcurrent)
	c.ResolveCacheSize = count("RESOLVE_CACHE_SIZE", DefaultCacheSize)
	c.ResolveCacheTTL = duration("RESOLVE_CACHE_TTL", DefaultCacheTTL)
	c.AuditRetention = time.Duration(count("AUDIT_RETENTION_DAYS", DefaultAuditRetentionDays)) * day
	c.JWKSRefreshInterval = duration("JWKS_REFRESH_INTERVAL", DefaultJWKSRefreshInterval)
	var err error
	if c.CORSAllowedOrigins, err = ParseOrigins(getenv("CORS_ALLOWED_ORIGINS")); err != nil {
		errs = append(errs, err)
	}
	if !validServiceName(c.ServiceName) {
		errs = append(errs, fmt.Errorf("SERVICE_NAME must be 1 to 128 letters, digits, '.', '_' or '-' (a CloudWatch dimension value), not %q", c.ServiceName))
	}
	if _, err := rangeOf("PORT").Parse(c.Port); err != nil {
		errs = append(errs, err)
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

func loadEvents(getenv func(string) string, retention time.Duration, errs []error) (Events, []error) {
	e := Events{EventBusName: getenv("EVENT_BUS_NAME"), EventSource: getenv("EVENT_SOURCE"), ReminderLookback: DefaultReminderLookback}
	if e.EventSource == "" {
		e.EventSource = DefaultEventSource
	}
	if !validEventSource(e.EventSource) {
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

// validEventSource: what EventBridge takes as an event's source (1 to 256 of A-Z a-z 0-9 . _ -),
// and not one of AWS's own (aws.*). (No regexp, as for validServiceName.)
func validEventSource(s string) bool {
	if s == "" || len(s) > 256 || strings.HasPrefix(s, "aws.") {
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
