package reminders_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"aitokens/pkg/config"
	"aitokens/pkg/devtools/testenv"
	"aitokens/pkg/reminders"
	"aitokens/pkg/store"
	"aitokens/pkg/token"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// clock is a test clock that the store and the sweeper share.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) set(t time.Time)     { c.mu.Lock(); c.t = t; c.mu.Unlock() }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

var defaults = config.Events{ReminderLeads: []time.Duration{720 * time.Hour, 168 * time.Hour, 24 * time.Hour}, ReminderLookback: 168 * time.Hour}

type env struct {
	t     *testing.T
	ctx   context.Context
	clock *clock
	table string
	st    *store.Store
	sw    *reminders.Sweeper
	n     int
}

func newEnv(t *testing.T, cfg config.Events) *env {
	c := &clock{t: time.Date(2027, 3, 1, 9, 30, 0, 0, time.UTC)}
	table := testenv.NewTable(t)
	st := store.New(testenv.Client(), table).WithClock(c.now)
	return &env{t: t, ctx: context.Background(), clock: c, table: table, st: st,
		sw: reminders.New(st, cfg, slog.New(slog.DiscardHandler)).WithClock(c.now)}
}

func (e *env) create(tenant, id string, expiresAt *time.Time) {
	e.t.Helper()
	if err := e.st.Create(e.ctx, token.Token{Tenant: tenant, ID: id, Name: id, ExpiresAt: expiresAt}, token.Sealed{},
		token.Event{RequestID: "create-" + id, Actor: "tester"}); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) sweep() reminders.Result {
	e.t.Helper()
	e.n++
	res, err := e.sw.Sweep(e.ctx, fmt.Sprintf("sweep-%d", e.n))
	if err != nil {
		e.t.Fatal(err)
	}
	return res
}

// trail is a token's events, oldest first, as "action[ lead]".
func (e *env) trail(tenant, id string) []string {
	e.t.Helper()
	evs, _, err := e.st.Events(e.ctx, tenant, id, 1, 1000, 1000)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for _, ev := range slices.Backward(evs) {
		s := ev.Action
		if ev.Lead != "" {
			s += " " + ev.Lead
		}
		out = append(out, s)
	}
	return out
}

// With the clock stepped through a token's life: exactly one reminder per lead time, then one
// expired, each in its window; repeated sweeps write nothing more; a PATCH of expiresAt re-arms
// them all; nothing after the lookback.
func TestOneReminderPerLeadAndRearmedByANewExpiry(t *testing.T) {
	e := newEnv(t, defaults)
	start := e.clock.now()
	exp := start.Add(40 * 24 * time.Hour)
	e.create("acme", "openai", new(exp))
	steps := []struct {
		at    time.Duration // before (negative: after) the expiry
		trail string        // the reminders so far
	}{
		{40 * 24 * time.Hour, ""},
		{720*time.Hour + time.Minute, ""},
		{720 * time.Hour, "expiring 720h"},
		{700 * time.Hour, "expiring 720h"},
		{169 * time.Hour, "expiring 720h"},
		{167 * time.Hour, "expiring 720h,expiring 168h"},
		{25 * time.Hour, "expiring 720h,expiring 168h"},
		{23 * time.Hour, "expiring 720h,expiring 168h,expiring 24h"},
		{time.Second, "expiring 720h,expiring 168h,expiring 24h"},
		{0, "expiring 720h,expiring 168h,expiring 24h,expired"},
		{-100 * time.Hour, "expiring 720h,expiring 168h,expiring 24h,expired"},
	}
	for _, s := range steps {
		e.clock.set(exp.Add(-s.at))
		e.sweep()
		e.sweep() // the same sweep again: nothing new
		if got := strings.Join(e.trail("acme", "openai")[1:], ","); got != s.trail {
			t.Fatalf("%v before expiry: reminders %q, want %q", s.at, got, s.trail)
		}
	}
	// A new expiresAt, 10 days ahead: its 720h window is the one it lies in, and its
	// reminders come again, one per lead.
	newExp := e.clock.now().Add(10 * 24 * time.Hour)
	if err := e.st.Update(e.ctx, store.Update{Tenant: "acme", ID: "openai", ExpiresAt: &newExp}, token.Event{RequestID: "patch", Actor: "tester", Action: token.ActionPatch}); err != nil {
		t.Fatal(err)
	}
	for _, before := range []time.Duration{240 * time.Hour, 100 * time.Hour, 10 * time.Hour, -time.Hour, -200 * time.Hour} {
		e.clock.set(newExp.Add(-before))
		e.sweep()
	}
	want := "create,expiring 720h,expiring 168h,expiring 24h,expired,patch,expiring 720h,expiring 168h,expiring 24h,expired"
	if got := strings.Join(e.trail("acme", "openai"), ","); got != want {
		t.Fatalf("trail %q, want %q", got, want)
	}
	// Each event names its expiry value and lead.
	evs, _, _ := e.st.Events(e.ctx, "acme", "openai", 1, 1, 1)
	if evs[0].Action != token.ActionExpired || evs[0].ExpiresAt == nil || !evs[0].ExpiresAt.Equal(newExp.Truncate(time.Millisecond)) ||
		evs[0].Actor != reminders.Actor || evs[0].Version != 2 {
		t.Fatalf("last event %+v", evs[0])
	}
}

// A token created inside a later window gets that window's reminder only; one whose windows
// passed while the sweeper was not running gets the one due now; an expiry passed longer ago
// than the lookback gets none.
func TestMissedWindowsAreSkipped(t *testing.T) {
	e := newEnv(t, defaults)
	now := e.clock.now()
	e.create("acme", "soon", new(now.Add(48*time.Hour)))
	e.create("acme", "tomorrow", new(now.Add(3*time.Hour)))
	e.create("acme", "later", new(now.Add(60*24*time.Hour)))
	e.create("acme", "never", nil)
	res := e.sweep()
	if res.IndexItemsRead != 2 || res.Expiring != 2 || res.Expired != 0 {
		t.Fatalf("first sweep %+v", res)
	}
	e.clock.add(5 * 24 * time.Hour) // "soon" and "tomorrow" expired while nobody swept
	e.sweep()
	e.clock.add(200 * time.Hour) // beyond the lookback: no expired for anything new
	e.create("acme", "unseen", new(e.clock.now().Add(time.Hour)))
	e.clock.add(200 * time.Hour)
	e.sweep()
	for id, want := range map[string]string{
		"soon":     "create,expiring 168h,expired",
		"tomorrow": "create,expiring 24h,expired",
		"later":    "create",
		"never":    "create",
		"unseen":   "create",
	} {
		if got := strings.Join(e.trail("acme", id), ","); got != want {
			t.Errorf("%s: %q, want %q", id, got, want)
		}
	}
}

// A deleted token gets no reminder, also when the sweep found it (in the index) just before the
// delete; a token deleted and created again with the same expiry is another token, re-armed.
func TestNoReminderAfterADelete(t *testing.T) {
	e := newEnv(t, defaults)
	exp := e.clock.now().Add(20 * time.Hour)
	e.create("acme", "gone", new(exp))
	e.create("acme", "back", new(exp))
	found, _, err := e.st.ExpiringBetween(e.ctx, e.clock.now(), exp)
	if err != nil || len(found) != 2 {
		t.Fatalf("%v %v", found, err)
	}
	e.clock.add(time.Minute)
	for _, id := range []string{"gone", "back"} {
		if err := e.st.DeleteUnused(e.ctx, "acme", id, token.Event{RequestID: "delete-" + id, Actor: "tester"}); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range found { // what a sweep that read the index before the delete would write
		written, err := e.st.RecordReminder(e.ctx, store.Reminder{Tenant: f.Tenant, TokenID: f.ID, UID: f.UID, ExpiresAt: f.ExpiresAt, Lead: "24h"},
			token.Event{Actor: reminders.Actor, RequestID: "late-sweep"})
		if err != nil || written {
			t.Fatalf("%s: a reminder for a deleted token: %v %v", f.ID, written, err)
		}
	}
	if res := e.sweep(); res.IndexItemsRead != 0 || res.Expiring+res.Expired != 0 {
		t.Fatalf("sweep after the deletes: %+v", res)
	}
	e.clock.add(time.Minute)
	e.create("acme", "back", new(exp))
	if res := e.sweep(); res.Expiring != 1 {
		t.Fatalf("the token created again: %+v", res)
	}
	if got := strings.Join(e.trail("acme", "back"), ","); got != "create,delete,create,expiring 24h" {
		t.Fatalf("trail %q", got)
	}
}

// Two sweeps at once write each reminder once.
func TestConcurrentSweepsWriteOnce(t *testing.T) {
	e := newEnv(t, defaults)
	for i := range 8 {
		e.create("acme", fmt.Sprintf("t%d", i), new(e.clock.now().Add(time.Duration(i+1)*time.Hour)))
	}
	var wg sync.WaitGroup
	results := make([]reminders.Result, 3)
	for i := range results {
		wg.Go(func() {
			res, err := e.sw.Sweep(e.ctx, fmt.Sprintf("concurrent-%d", i))
			if err != nil {
				t.Error(err)
			}
			results[i] = res
		})
	}
	wg.Wait()
	total := 0
	for _, r := range results {
		total += r.Expiring
	}
	if total != 8 {
		t.Fatalf("%d reminders written by three concurrent sweeps, want 8: %+v", total, results)
	}
	for i := range 8 {
		if got := strings.Join(e.trail("acme", fmt.Sprintf("t%d", i)), ","); got != "create,expiring 24h" {
			t.Errorf("t%d: %q", i, got)
		}
	}
}

// The invariant checker sees a reminder on no living token and a marker without its event.
func TestInvariantsCatchBadReminders(t *testing.T) {
	e := newEnv(t, defaults)
	testenv.LeaveInvariants(t, e.table, "lays down reminders no sweep would write, to show the checker sees them")
	put := func(item map[string]types.AttributeValue) {
		if _, err := testenv.Client().PutItem(e.ctx, &dynamodb.PutItemInput{TableName: aws.String(e.table), Item: item}); err != nil {
			t.Fatal(err)
		}
	}
	s := func(v string) types.AttributeValue { return &types.AttributeValueMemberS{Value: v} }
	put(map[string]types.AttributeValue{"pk": s("acme"), "sk": s("event#ghost#2027-03-01T00:00:00.000Z#r1#expired"), "at": s("2027-03-01T00:00:00.000Z"),
		"action": s("expired"), "tokenId": s("ghost"), "version": &types.AttributeValueMemberN{Value: "0"}})
	put(map[string]types.AttributeValue{"pk": s("acme"), "sk": s("reminder#ghost##2027-03-01T00:00:00.000Z#expiring-24h"), "tokenId": s("ghost"),
		"action": s("expiring"), "lead": s("24h"), "eventSk": s("event#ghost#2027-02-28T00:00:00.000Z#r2#expiring-24h")})
	got, err := testenv.Violations(e.ctx, testenv.Client(), e.table)
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(got, "\n")
	if !strings.Contains(joined, "expired reminder at 2027-03-01T00:00:00.000Z on no living token") || !strings.Contains(joined, "has no event") {
		t.Fatalf("violations:\n%s", joined)
	}
}

// A token given its expiry before the index existed has no expiryDay: the sweep does not see
// it until BackfillExpiryDays indexes it (what `aitokens backfill-expiry-days` runs once).
func TestBackfillIndexesOlderTokens(t *testing.T) {
	e := newEnv(t, defaults)
	e.create("acme", "old", new(e.clock.now().Add(30*time.Hour)))
	if _, err := testenv.Client().UpdateItem(e.ctx, &dynamodb.UpdateItemInput{TableName: aws.String(e.table),
		Key:              map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: "acme"}, "sk": &types.AttributeValueMemberS{Value: "token#old"}},
		UpdateExpression: aws.String("REMOVE expiryDay")}); err != nil {
		t.Fatal(err)
	}
	if res := e.sweep(); res.IndexItemsRead != 0 {
		t.Fatalf("an unindexed token was read: %+v", res)
	}
	n, err := store.BackfillExpiryDays(e.ctx, testenv.Client(), e.table)
	if err != nil || n != 1 {
		t.Fatalf("backfill: %d %v", n, err)
	}
	if n, _ := store.BackfillExpiryDays(e.ctx, testenv.Client(), e.table); n != 0 {
		t.Fatalf("a second backfill updated %d tokens", n)
	}
	if res := e.sweep(); res.Expiring != 1 {
		t.Fatalf("after the backfill: %+v", res)
	}
	if got := strings.Join(e.trail("acme", "old"), ","); got != "create,expiring 168h" {
		t.Fatalf("trail %q", got)
	}
}

// A replace retires the old token at now + grace: that expiry is indexed like any other, so the
// old token's reminders come, and the successor's own expiry has its own.
func TestReplacedTokenGetsItsRetirementReminders(t *testing.T) {
	e := newEnv(t, defaults)
	e.create("acme", "old", nil)
	e.clock.add(time.Minute)
	successorExp := e.clock.now().Add(20 * 24 * time.Hour)
	if err := e.st.Replace(e.ctx, token.Token{Tenant: "acme", ID: "new", Name: "new", Replaces: "old", ExpiresAt: &successorExp}, token.Sealed{},
		3*24*time.Hour, token.Event{RequestID: "replace", Actor: "tester"}); err != nil {
		t.Fatal(err)
	}
	e.sweep()
	e.clock.add(3*24*time.Hour + time.Hour)
	e.sweep()
	for id, want := range map[string]string{"old": "create,replaced,expiring 168h,expired", "new": "create,expiring 720h"} {
		if got := strings.Join(e.trail("acme", id), ","); got != want {
			t.Errorf("%s: %q, want %q", id, got, want)
		}
	}
}
