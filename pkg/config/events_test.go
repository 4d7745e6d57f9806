package config

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestEventsDefaults(t *testing.T) {
	c, err := Load(env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.EventBusName != "" || c.EventSource != "aitokens" || c.ReminderLookback != 168*time.Hour ||
		!slices.Equal(c.ReminderLeads, []time.Duration{720 * time.Hour, 168 * time.Hour, 24 * time.Hour}) {
		t.Fatalf("%+v", c.Events)
	}
}

// Leads are parsed, sorted longest first, and refused outside their bounds, twice, or too many;
// the lookback stays within the audit retention; the source is one EventBridge accepts.
func TestEventsValues(t *testing.T) {
	cases := []struct {
		vars  map[string]string
		leads []time.Duration // nil: refused, naming the variable
		bad   string
	}{
		{map[string]string{"EXPIRY_REMINDER_LEADS": "24h, 2160h,1h"}, []time.Duration{2160 * time.Hour, 24 * time.Hour, time.Hour}, ""},
		{map[string]string{"EXPIRY_REMINDER_LEADS": "8760h"}, []time.Duration{8760 * time.Hour}, ""},
		{map[string]string{"EXPIRY_REMINDER_LEADS": "59m"}, nil, "EXPIRY_REMINDER_LEADS"},
		{map[string]string{"EXPIRY_REMINDER_LEADS": "8761h"}, nil, "EXPIRY_REMINDER_LEADS"},
		{map[string]string{"EXPIRY_REMINDER_LEADS": "24h,24h"}, nil, "EXPIRY_REMINDER_LEADS"},
		{map[string]string{"EXPIRY_REMINDER_LEADS": "24h,,1h"}, nil, "EXPIRY_REMINDER_LEADS"},
		{map[string]string{"EXPIRY_REMINDER_LEADS": "soon"}, nil, "EXPIRY_REMINDER_LEADS"},
		{map[string]string{"EXPIRY_REMINDER_LEADS": "1h,2h,3h,4h,5h,6h,7h,8h,9h,10h,11h"}, nil, "EXPIRY_REMINDER_LEADS"},
		{map[string]string{"EXPIRY_REMINDER_LOOKBACK": "30m"}, nil, "EXPIRY_REMINDER_LOOKBACK"},
		{map[string]string{"EXPIRY_REMINDER_LOOKBACK": "721h", "AUDIT_RETENTION_DAYS": "30"}, nil, "EXPIRY_REMINDER_LOOKBACK"},
		{map[string]string{"EXPIRY_REMINDER_LOOKBACK": "720h", "AUDIT_RETENTION_DAYS": "30"}, []time.Duration{720 * time.Hour, 168 * time.Hour, 24 * time.Hour}, ""},
		{map[string]string{"EVENT_SOURCE": "aws.tokens"}, nil, "EVENT_SOURCE"},
		{map[string]string{"EVENT_SOURCE": "acme tokens"}, nil, "EVENT_SOURCE"},
		{map[string]string{"EVENT_SOURCE": "com.acme.ai-tokens", "EVENT_BUS_NAME": "bus"}, []time.Duration{720 * time.Hour, 168 * time.Hour, 24 * time.Hour}, ""},
	}
	for _, c := range cases {
		got, err := Load(env(c.vars))
		switch {
		case c.leads == nil && (err == nil || !strings.Contains(err.Error(), c.bad)):
			t.Errorf("%v: %v, want an error naming %s", c.vars, err, c.bad)
		case c.leads != nil && (err != nil || !slices.Equal(got.ReminderLeads, c.leads)):
			t.Errorf("%v: %v %v, want %v", c.vars, got.ReminderLeads, err, c.leads)
		}
	}
}
