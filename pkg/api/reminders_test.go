package api_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"aitokens/pkg/config"
	"aitokens/pkg/reminders"
)

// The events route shows expiry reminders with their lead and expiry, as infra/openapi.yaml
// documents them (every response here is validated against it).
func TestEventsRouteShowsReminders(t *testing.T) {
	h := newHarness(t)
	exp := time.Now().Add(50 * time.Hour).UTC().Truncate(time.Second).Format(time.RFC3339)
	res := h.do("PUT", base+"/openai", `{"name":"OpenAI","value":"sk-reminder-value-0001","expiresAt":"`+exp+`"}`, h.manager())
	if res.status != 201 {
		t.Fatalf("create: %d %s", res.status, res.body)
	}
	sw := reminders.New(h.store, config.Events{ReminderLeads: []time.Duration{720 * time.Hour, 168 * time.Hour, 24 * time.Hour},
		ReminderLookback: 168 * time.Hour}, slog.New(slog.DiscardHandler))
	if r, err := sw.Sweep(context.Background(), "sweep-1"); err != nil || r.Expiring != 1 {
		t.Fatalf("sweep: %+v %v", r, err)
	}
	res = h.do("GET", base+"/openai/events", "", h.manager())
	body := string(res.body)
	if res.status != 200 || !strings.HasPrefix(body, `[{"at":`) || !strings.Contains(body, `"action":"expiring","actor":"sweep-expiring","requestId":"sweep-1"`) ||
		!strings.Contains(body, `"lead":"168h","expiresAt":"`+strings.TrimSuffix(exp, "Z")+`.000Z"`) {
		t.Fatalf("events: %d %s", res.status, body)
	}
}
