package service_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"aitokens/pkg/devtools/testenv"
	"aitokens/pkg/service"
	"aitokens/pkg/store"
	"aitokens/pkg/token"
)

// steppedClock is one clock for every writer of a test, a millisecond on at each reading: the
// writer that reads it later gets the later time, so an order of stamps is never a tie.
func steppedClock() func() time.Time {
	start, n := time.Now().UTC().Truncate(time.Second), atomic.Int64{}
	return func() time.Time { return start.Add(time.Duration(n.Add(1)) * time.Millisecond) }
}

// remind writes the 24h expiring reminder of token id (which expires within a day) with st,
// as the sweeper does for a token it found due.
func remind(ctx context.Context, st *store.Store, id, request string) error {
	found, _, err := st.ExpiringBetween(ctx, time.Now().Add(-time.Hour), time.Now().Add(48*time.Hour))
	if err != nil {
		return err
	}
	for _, f := range found {
		if f.ID == id {
			_, err := st.RecordReminder(ctx, store.Reminder{Tenant: f.Tenant, TokenID: f.ID, UID: f.UID, ExpiresAt: f.ExpiresAt, Lead: "24h"},
				token.Event{Actor: "sweep-expiring", RequestID: request})
			return err
		}
	}
	return nil
}

// A token's events sort in the order their writes committed (issue 30, 4 and 5). In each case a
// slow write reads the token and is held at its transaction while a fast one commits; the slow
// one is released, and the trail (by its key, the order of the audit route and the bus) must
// show the fast write's event before the slow one's, or the slow one's not at all: a write that
// read earlier but committed later is stamped later (or gives up, as a reminder on a token
// deleted meanwhile does). Before every write that records an event took part in one order
// (the token's eventAt), a usage change or a reminder, which leave the version alone, let a
// held write commit with its earlier stamp: create, patch, usage_register while the commits
// were create, register, patch; and a delete held while a reminder committed left `expiring`
// after `delete`.
func TestEventsSortInCommitOrder(t *testing.T) {
	t.Parallel()
	patch := func(ctx context.Context, svc *service.Service, _ *store.Store, id, r string) error {
		return svc.Patch(ctx, "acme", id, []service.PatchOp{{Op: "REPLACE", Path: "/name", Value: "patched " + r}}, meta(r))
	}
	register := func(ctx context.Context, svc *service.Service, _ *store.Store, id, r string) error {
		_, err := svc.RegisterUsage(ctx, "acme", id, "agent", "b", meta(r))
		return err
	}
	unregister := func(ctx context.Context, svc *service.Service, _ *store.Store, id, r string) error {
		return svc.UnregisterUsage(ctx, "acme", id, "agent", "a", meta(r))
	}
	put := func(ctx context.Context, svc *service.Service, _ *store.Store, id, r string) error {
		return upsert(ctx, svc, service.Upsert{Tenant: "acme", ID: id, Name: new("put " + r), Meta: meta(r)})
	}
	del := func(ctx context.Context, svc *service.Service, _ *store.Store, id, r string) error {
		return svc.Delete(ctx, "acme", id, true, meta(r))
	}
	reminder := func(ctx context.Context, _ *service.Service, st *store.Store, id, r string) error {
		return remind(ctx, st, id, r)
	}
	replace := func(ctx context.Context, svc *service.Service, _ *store.Store, id, r string) error {
		return upsert(ctx, svc, service.Upsert{Tenant: "acme", ID: id + "-next", Name: new("next"), Value: new("sk-next-value"),
			Replaces: &id, GraceSeconds: new(3600), Meta: meta(r)})
	}
	type write func(ctx context.Context, svc *service.Service, st *store.Store, id, r string) error
	cases := []struct {
		name       string
		slow, fast write
		// slowGone: the slow write must leave no event (it lost to the fast one, as a reminder
		// on a deleted token does); otherwise its event must come after the fast one's.
		slowGone bool
	}{
		{"patch held, register commits", patch, register, false},
		{"put held, register commits", put, register, false},
		{"patch held, unregister commits", patch, unregister, false},
		{"register held, unregister commits", register, unregister, false},
		{"unregister held, register commits", unregister, register, false},
		{"register held, patch commits", register, patch, false},
		{"reminder held, register commits", reminder, register, false},
		{"reminder held, patch commits", reminder, patch, false},
		{"register held, reminder commits", register, reminder, false},
		{"patch held, reminder commits", patch, reminder, false},
		{"replace held, reminder commits", replace, reminder, false},
		{"delete held, reminder commits", del, reminder, false},
		{"delete held, register commits", del, register, false},
		{"reminder held, delete commits", reminder, del, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			table := testenv.NewTable(t)
			clock := steppedClock()
			directStore := store.New(testenv.Client(), table).WithClock(clock)
			direct := newService(t, directStore)
			id := "x"
			soon := time.Now().Add(12 * time.Hour).UTC().Truncate(time.Second)
			if err := upsert(ctx, direct, service.Upsert{Tenant: "acme", ID: id, Name: new("X"), Value: new("sk-x-value"),
				ExpiresAt: &soon, Meta: meta("create")}); err != nil {
				t.Fatal(err)
			}
			if _, err := direct.RegisterUsage(ctx, "acme", id, "agent", "a", meta("setup-usage")); err != nil {
				t.Fatal(err)
			}
			proxy := testenv.NewFaultProxy(t)
			client, err := store.NewClient(ctx, proxy.URL, testenv.Policy)
			if err != nil {
				t.Fatal(err)
			}
			slowStore := store.New(client, table).WithClock(clock)
			slow := newService(t, slowStore)
			pause := proxy.PauseNext("TransactWriteItems")
			done := make(chan error, 1)
			go func() { done <- c.slow(ctx, slow, slowStore, id, "slow") }()
			waitFor(t, pause.Reached, "the slow write's transaction")
			if err := c.fast(ctx, direct, directStore, id, "fast"); err != nil {
				t.Fatalf("the fast write: %v", err)
			}
			pause.Release()
			select {
			case err = <-done:
			case <-time.After(wait):
				t.Fatal("the slow write did not end")
			}
			if err != nil && token.KindOf(err) != token.NotFound {
				t.Fatalf("the slow write: %v", err)
			}
			var order []string // request ids, oldest first (a replace's events on its successor are the successor's trail)
			for _, e := range reversed(trail(t, direct, id)) {
				if e.RequestID == "slow" || e.RequestID == "fast" {
					order = append(order, e.RequestID)
				}
			}
			want := "fast slow"
			if c.slowGone {
				want = "fast"
			}
			if got := strings.Join(order, " "); got != want {
				t.Fatalf("the trail of %s, oldest first, has %q; want %q (commit order)", id, got, want)
			}
		})
	}
}

func reversed(events []token.Event) []token.Event {
	out := make([]token.Event, len(events))
	for i, e := range events {
		out[len(events)-1-i] = e
	}
	return out
}
