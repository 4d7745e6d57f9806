package config

import (
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestDefaults(t *testing.T) {
	c, err := Load(env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.TableName != DefaultTableName || c.TenantClaim != "tenant" || c.RequestTimeout != 5*time.Second ||
		c.AWS.AttemptTimeout != 2*time.Second || c.AWS.MaxAttempts != 4 || c.MaxConcurrent != 64 || c.Port != "8080" ||
		c.JWKSRefreshInterval != DefaultJWKSRefreshInterval {
		t.Fatalf("defaults: %+v", c)
	}
}

func TestValuesAreParsed(t *testing.T) {
	c, err := Load(env(map[string]string{"REQUEST_TIMEOUT": "1500ms", "AWS_ATTEMPT_TIMEOUT": "300ms", "AWS_MAX_ATTEMPTS": "2",
		"MAX_CONCURRENT_REQUESTS": "8", "TABLE_NAME": "t", "TENANT_CLAIM": "org"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.RequestTimeout != 1500*time.Millisecond || c.AWS.AttemptTimeout != 300*time.Millisecond || c.AWS.MaxAttempts != 2 ||
		c.MaxConcurrent != 8 || c.TableName != "t" || c.TenantClaim != "org" {
		t.Fatalf("%+v", c)
	}
}

func TestBadValuesFailAtLoad(t *testing.T) {
	cases := map[string]string{
		"REQUEST_TIMEOUT":         "soon",
		"AWS_ATTEMPT_TIMEOUT":     "-1s",
		"AWS_MAX_ATTEMPTS":        "0",
		"MAX_CONCURRENT_REQUESTS": "many",
	}
	for name, value := range cases {
		_, err := Load(env(map[string]string{name: value}))
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s=%s: %v, want an error naming it", name, value, err)
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
