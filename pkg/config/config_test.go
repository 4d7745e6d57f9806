package config

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// The documented defaults (README's configuration table), written out here on purpose: a
// changed default must be a decision that also changes the README.
func TestDefaults(t *testing.T) {
	c, err := Load(env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.TableName != "ai-tokens" || c.TenantClaim != "tenant" || c.RequestTimeout != 5*time.Second ||
		c.AWS.AttemptTimeout != 2*time.Second || c.AWS.MaxAttempts != 4 || c.MaxConcurrent != 64 || c.Port != "8080" ||
		c.AuditRetention != 400*24*time.Hour || c.ResolveCacheSize != 1000 || c.ResolveCacheTTL != 5*time.Minute ||
		c.JWKSRefreshInterval != DefaultJWKSRefreshInterval {
		t.Fatalf("defaults: %+v", c)
	}
}

func TestValuesAreParsed(t *testing.T) {
	c, err := Load(env(map[string]string{"REQUEST_TIMEOUT": "1500ms", "AWS_ATTEMPT_TIMEOUT": "300ms", "AWS_MAX_ATTEMPTS": "2",
		"MAX_CONCURRENT_REQUESTS": "8", "TABLE_NAME": "t", "TENANT_CLAIM": "org", "AUDIT_RETENTION_DAYS": "30",
		"RESOLVE_CACHE_SIZE": "10", "RESOLVE_CACHE_TTL": "90s", "PORT": "9090"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.RequestTimeout != 1500*time.Millisecond || c.AWS.AttemptTimeout != 300*time.Millisecond || c.AWS.MaxAttempts != 2 ||
		c.MaxConcurrent != 8 || c.TableName != "t" || c.TenantClaim != "org" || c.AuditRetention != 30*24*time.Hour ||
		c.ResolveCacheSize != 10 || c.ResolveCacheTTL != 90*time.Second || c.Port != "9090" {
		t.Fatalf("%+v", c)
	}
}

func TestBadValuesFailAtLoad(t *testing.T) {
	cases := []struct{ name, value string }{
		{"REQUEST_TIMEOUT", "soon"},
		{"REQUEST_TIMEOUT", "5"}, // a duration needs its unit
		{"AWS_ATTEMPT_TIMEOUT", "-1s"},
		{"AWS_MAX_ATTEMPTS", "0"},
		{"AWS_MAX_ATTEMPTS", "2.5"},
		{"MAX_CONCURRENT_REQUESTS", "many"},
		{"AUDIT_RETENTION_DAYS", "200000"}, // was a negative retention: every event deleted at once
		{"AUDIT_RETENTION_DAYS", "99999999999999999999"},
		{"RESOLVE_CACHE_SIZE", "-1"},
		{"RESOLVE_CACHE_TTL", "0"},
		{"PORT", "http"},
	}
	for _, tc := range cases {
		_, err := Load(env(map[string]string{tc.name: tc.value}))
		if err == nil || !strings.Contains(err.Error(), tc.name) || !strings.Contains(err.Error(), strconv.Quote(tc.value)) {
			t.Errorf("%s=%s: %v, want an error naming the variable and the value", tc.name, tc.value, err)
		}
	}
	if RequireTable(env(nil)) == nil {
		t.Error("a function without TABLE_NAME passed")
	}
}

// JWKS_REFRESH_INTERVAL is refused outside its bounds and accepted at them.
func TestJWKSRefreshIntervalBounds(t *testing.T) {
	cases := []struct {
		raw  string
		want time.Duration // 0: refused
	}{
		{"1s", time.Second},
		{"1h", time.Hour},
		{"30s", 30 * time.Second},
		{"999ms", 0},
		{"61m", 0},
		{"0s", 0},
		{"-5s", 0},
		{"often", 0},
	}
	for _, c := range cases {
		got, err := Load(env(map[string]string{"JWKS_REFRESH_INTERVAL": c.raw}))
		switch {
		case c.want == 0 && (err == nil || !strings.Contains(err.Error(), "JWKS_REFRESH_INTERVAL")):
			t.Errorf("JWKS_REFRESH_INTERVAL=%s: %v, want an error naming it", c.raw, err)
		case c.want != 0 && (err != nil || got.JWKSRefreshInterval != c.want):
			t.Errorf("JWKS_REFRESH_INTERVAL=%s: %v, %v; want %v", c.raw, got.JWKSRefreshInterval, err, c.want)
		}
	}
}

// Several bad values are all reported at once, so one deploy shows every mistake.
func TestEveryBadValueIsReported(t *testing.T) {
	_, err := Load(env(map[string]string{"AWS_MAX_ATTEMPTS": "0", "RESOLVE_CACHE_TTL": "2h"}))
	if err == nil || !strings.Contains(err.Error(), "AWS_MAX_ATTEMPTS") || !strings.Contains(err.Error(), "RESOLVE_CACHE_TTL") {
		t.Fatalf("%v, want both variables named", err)
	}
}

// loaded is the value Load gave each bounded setting, in the unit of its range.
func loaded(t *testing.T, c Config) map[string]int64 {
	t.Helper()
	port, err := strconv.ParseInt(c.Port, 10, 64)
	if err != nil {
		t.Fatalf("port %q", c.Port)
	}
	return map[string]int64{
		"REQUEST_TIMEOUT":         int64(c.RequestTimeout),
		"AWS_ATTEMPT_TIMEOUT":     int64(c.AWS.AttemptTimeout),
		"AWS_MAX_ATTEMPTS":        int64(c.AWS.MaxAttempts),
		"AUDIT_RETENTION_DAYS":    int64(c.AuditRetention / (24 * time.Hour)),
		"RESOLVE_CACHE_SIZE":      int64(c.ResolveCacheSize),
		"RESOLVE_CACHE_TTL":       int64(c.ResolveCacheTTL),
		"MAX_CONCURRENT_REQUESTS": int64(c.MaxConcurrent),
		"PORT":                    port,
		"JWKS_REFRESH_INTERVAL":   int64(c.JWKSRefreshInterval),
	}
}

// format writes n as an environment variable would hold it.
func format(r Range, n int64) string {
	if r.Duration {
		return time.Duration(n).String()
	}
	return strconv.FormatInt(n, 10)
}

// Every bounded setting, just below its floor, at it, at its ceiling and just above it (one
// nanosecond for a duration, one for a number): the bounds are inclusive, and a refusal names
// the variable, the value and the range.
func TestBounds(t *testing.T) {
	for _, r := range Ranges() {
		cases := []struct {
			edge  string
			value int64
			ok    bool
		}{
			{"below the floor", r.Min - 1, false},
			{"at the floor", r.Min, true},
			{"at the ceiling", r.Max, true},
			{"above the ceiling", r.Max + 1, false},
		}
		for _, tc := range cases {
			raw := format(r, tc.value)
			t.Run(r.Name+" "+tc.edge, func(t *testing.T) {
				c, err := Load(env(map[string]string{r.Name: raw}))
				switch {
				case tc.ok && err != nil:
					t.Fatalf("%s=%s refused: %v", r.Name, raw, err)
				case tc.ok:
					if got := loaded(t, c)[r.Name]; got != tc.value {
						t.Fatalf("%s=%s loaded as %d", r.Name, raw, got)
					}
				case err == nil:
					t.Fatalf("%s=%s accepted, want a refusal (range %s)", r.Name, raw, r.describe())
				default:
					for _, want := range []string{r.Name, strconv.Quote(raw), r.describe()} {
						if !strings.Contains(err.Error(), want) {
							t.Fatalf("%s=%s: %q does not say %q", r.Name, raw, err, want)
						}
					}
				}
			})
		}
	}
}

// Every setting Load reads has a range and every range a setting; the defaults lie within.
func TestRangesCoverTheSettings(t *testing.T) {
	c, err := Load(env(nil))
	if err != nil {
		t.Fatal(err)
	}
	values := loaded(t, c)
	for _, r := range Ranges() {
		v, ok := values[r.Name]
		if !ok {
			t.Errorf("range %s belongs to no setting of the test's list", r.Name)
			continue
		}
		if r.Min < 1 || r.Min > r.Max {
			t.Errorf("%s: range %d..%d", r.Name, r.Min, r.Max)
		}
		if v < r.Min || v > r.Max {
			t.Errorf("%s: default %s outside %s", r.Name, format(r, v), r.describe())
		}
		delete(values, r.Name)
	}
	for name := range values {
		t.Errorf("setting %s has no range", name)
	}
}

func TestRangeWords(t *testing.T) {
	cases := map[string]string{
		"REQUEST_TIMEOUT":      "a positive duration from 100ms to 30s",
		"RESOLVE_CACHE_TTL":    "a positive duration from 1s to 1h ",
		"AUDIT_RETENTION_DAYS": "a whole number from 1 to 3653",
	}
	for name, want := range cases {
		if got := rangeOf(name).describe(); !strings.HasPrefix(got, want) {
			t.Errorf("%s: %q, want it to start %q", name, got, want)
		}
	}
}
