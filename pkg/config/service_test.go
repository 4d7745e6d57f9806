package config

import (
	"strings"
	"testing"
)

// SERVICE_NAME becomes a dimension value of every metric: a value CloudWatch would refuse
// (and with it the whole line of metrics) stops the function at init instead.
func TestServiceName(t *testing.T) {
	for _, c := range []struct {
		value, want string
		ok          bool
	}{
		{"", "aitokens", true},
		{"ai-tokens-prod", "ai-tokens-prod", true},
		{"Stack.v2_x", "Stack.v2_x", true},
		{strings.Repeat("a", 128), strings.Repeat("a", 128), true},
		{strings.Repeat("a", 129), "", false},
		{"two words", "", false},
		{"é", "", false},
		{":x", "", false},
	} {
		cfg, err := Load(env(map[string]string{"SERVICE_NAME": c.value}))
		if (err == nil) != c.ok || (c.ok && cfg.ServiceName != c.want) {
			t.Errorf("SERVICE_NAME=%q: %q %v", c.value, cfg.ServiceName, err)
		}
		if !c.ok && (err == nil || !strings.Contains(err.Error(), "SERVICE_NAME")) {
			t.Errorf("SERVICE_NAME=%q: error %v does not name it", c.value, err)
		}
	}
}
