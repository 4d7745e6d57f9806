package service_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"aitokens/pkg/devtools/testenv"
	"aitokens/pkg/query"
	"aitokens/pkg/service"
	"aitokens/pkg/store"
	"aitokens/pkg/token"
)

// waitFor fails the test unless ch is closed within the deadline.
func waitFor(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(wait):
		t.Fatalf("%s did not happen within %v", what, wait)
	}
}

func trail(t *testing.T, svc *service.Service, id string) []token.Event {
	t.Helper()
	events, total, err := svc.Events(context.Background(), "acme", id, query.Page{Number: 1, Size: query.MaxPageSize})
	if err != nil || len(events) != total {
		t.Fatalf("events of %s: %d of %d, %v", id, len(events), total, err)
	}
	return events
}

// A forced delete of more usages than one transaction holds, whose DynamoDB fails after the
// first transaction, answers 503 and keeps the token; every usage it did remove has its
// usage_unregister event (the invariant check of the table counts them against the count).
func TestForcedDeleteFailingHalfWayRecordsWhatItRemoved(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	table := testenv.NewTable(t)
	direct := newService(t, store.New(testenv.Client(), table))
	if err := upsert(ctx, direct, service.Upsert{Tenant: "acme", ID: "big", Name: new("Big"), Value: new("sk-big-value"), Meta: meta("c")}); err != nil {
		t.Fatal(err)
	}
	for i := range 150 {
		if _, err := direct.RegisterUsage(ctx, "acme", "big", "agent", fmt.Sprintf("a%03d", i), meta(fmt.Sprint("r", i))); err != nil {
			t.Fatal(err)
		}
	}
	viaProxy, proxy := viaProxy(t, table)
	first := proxy.PauseNext("TransactWriteItems")
	done := make(chan error, 1)
	go func() { done <- viaProxy.Delete(ctx, "acme", "big", true, meta("force")) }()
	waitFor(t, first.Reached, "the first transaction")
	// Every attempt of the next transaction fails, past the SDK's retries.
	proxy.FailNext("TransactWriteItems", "ProvisionedThroughputExceededException", testenv.Policy.MaxAttempts)
	first.Release()
	var err error
	select {
	case err = <-done:
	case <-time.After(wait):
		t.Fatal("the forced delete did not end")
	}
	if token.KindOf(err) != token.Unavailable {
		t.Fatalf("forced delete with DynamoDB failing half way: %v, want unavailable", err)
	}
	tok, err := direct.Get(ctx, "acme", "big")
	if err != nil || tok.UsageCount != 150-49 {
		t.Fatalf("after the failure: %+v, %v; want the token with %d usages", tok, err, 150-49)
	}
	removed := 0
	for _, e := range trail(t, direct, "big") {
		if e.Action == token.ActionUsageUnregister && e.RequestID == "force" {
			removed++
		}
	}
	if removed != 49 {
		t.Fatalf("%d removals recorded, want 49", removed)
	}
}

// A slow PATCH that commits after a fast one is stamped when it commits: the token's modifiedAt
// goes forward with its version, and its event is the newest.
func TestSlowWriteIsStampedAtItsCommit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	table := testenv.NewTable(t)
	direct := newService(t, store.New(testenv.Client(), table))
	if err := upsert(ctx, direct, service.Upsert{Tenant: "acme", ID: "x", Name: new("X"), Value: new("sk-x-value"), Meta: meta("c")}); err != nil {
		t.Fatal(err)
	}
	slow, proxy := viaProxy(t, table)
	pause := proxy.PauseNext("TransactWriteItems")
	done := make(chan error, 1)
	go func() {
		done <- slow.Patch(ctx, "acme", "x", []service.PatchOp{{Op: "REPLACE", Path: "/name", Value: "slow"}}, meta("slow"))
	}()
	waitFor(t, pause.Reached, "the slow patch's transaction")
	if err := direct.Patch(ctx, "acme", "x", []service.PatchOp{{Op: "REPLACE", Path: "/name", Value: "fast"}}, meta("fast")); err != nil {
		t.Fatal(err)
	}
	fast, err := direct.Get(ctx, "acme", "x")
	if err != nil {
		t.Fatal(err)
	}
	pause.Release()
	select {
	case err = <-done:
	case <-time.After(wait):
		t.Fatal("the slow patch did not end")
	}
	if err != nil {
		t.Fatal(err)
	}
	last, err := direct.Get(ctx, "acme", "x")
	if err != nil {
		t.Fatal(err)
	}
	if last.Version != 3 || last.Name != "slow" || !last.ModifiedAt.After(fast.ModifiedAt) {
		t.Fatalf("after the slow patch: version %d, name %q, modifiedAt %v (the fast one's %v)", last.Version, last.Name, last.ModifiedAt, fast.ModifiedAt)
	}
	events := trail(t, direct, "x")
	if events[0].RequestID != "slow" || events[0].Version != 3 || !events[0].At.Equal(last.ModifiedAt) || events[1].RequestID != "fast" {
		t.Fatalf("newest events %+v, %+v: want the slow patch (version 3, at modifiedAt) first", events[0], events[1])
	}
}

// Expiry dates at the edges: what cannot be stored and shown as sent is refused, naming the
// field; the zero time is a date like any other (a token meant to be switched off is). A
// fraction of up to 9 digits (Go's time.Time JSON; Python's isoformat writes 6) is kept to the
// millisecond, truncated, and q on the string as sent finds the token in every form.
func TestExpiryAtTheEdges(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	svc := newService(t, store.New(testenv.Client(), testenv.NewTable(t)))
	if err := upsert(ctx, svc, service.Upsert{Tenant: "acme", ID: "x", Name: new("X"), Value: new("sk-x-value"), Meta: meta("c")}); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		sent, shown string // shown "" = refused
		expired     bool
		refusal     string // part of the refusal's message, when it matters
	}{
		{"0001-01-01T00:00:00Z", "0001-01-01T00:00:00.000Z", true, ""},
		{"0000-01-01T00:00:00Z", "0000-01-01T00:00:00.000Z", true, ""},
		{"0000-01-01T00:00:00.000001Z", "0000-01-01T00:00:00.000Z", true, ""},
		{"9999-12-31T23:59:59.999Z", "9999-12-31T23:59:59.999Z", false, ""},
		{"9999-12-31T23:59:59.999999999Z", "9999-12-31T23:59:59.999Z", false, ""},
		{"9999-12-31T23:59:59-14:00", "", false, "years"},
		{"0000-01-01T00:00:00+01:00", "", false, "years"},
		// Offsets.
		{"2027-01-01T00:00:00+24:00", "", false, "offset"},
		{"2027-01-01T00:00:00-24:00", "", false, "offset"},
		{"2027-01-01T00:00:00+23:59", "2026-12-31T00:01:00.000Z", false, ""},
		{"2027-01-01T05:30:00.123456+05:30", "2027-01-01T00:00:00.123Z", false, ""},
		{"2026-12-31T19:00:00.987654321-05:00", "2027-01-01T00:00:00.987Z", false, ""},
		// 0, 1, 3, 4, 6, 9 and 10 fractional digits; cut, never rounded up.
		{"2027-01-01T00:00:00Z", "2027-01-01T00:00:00.000Z", false, ""},
		{"2027-01-01T00:00:00.Z", "", false, "RFC 3339"},
		{"2027-01-01T00:00:00.1Z", "2027-01-01T00:00:00.100Z", false, ""},
		{"2027-01-01T00:00:00.123Z", "2027-01-01T00:00:00.123Z", false, ""},
		{"2027-01-01T00:00:00.1234Z", "2027-01-01T00:00:00.123Z", false, ""},
		{"2027-01-01T00:00:00.999999Z", "2027-01-01T00:00:00.999Z", false, ""},
		{"2027-01-01T00:00:00.123456+00:00", "2027-01-01T00:00:00.123Z", false, ""},
		{"2027-01-01T00:00:00.123456789Z", "2027-01-01T00:00:00.123Z", false, ""},
		{"2027-01-01T00:00:00.120000000Z", "2027-01-01T00:00:00.120Z", false, ""},
		{"2027-01-01T00:00:00.1234567891Z", "", false, "at most 9 fractional digits"},
		{"2027-01-01T00:00:00.0000000000Z", "", false, "at most 9 fractional digits"},
		{"2027-01-01T00:00:00.12345678912345+01:00", "", false, "at most 9 fractional digits"},
		// Leap day and leap second.
		{"2028-02-29T12:00:00.5Z", "2028-02-29T12:00:00.500Z", false, ""},
		{"2027-02-29T00:00:00Z", "", false, "RFC 3339"},
		{"2027-12-31T23:59:60Z", "", false, "RFC 3339"},
		// Not a date-time.
		{"2027-01-01", "", false, "RFC 3339"},
		{"2027-01-01T00:00:00", "", false, "RFC 3339"},
		{"2027-01-01T00:00:00.123456", "", false, "RFC 3339"},
		{"tomorrow", "", false, "RFC 3339"},
	}
	for i, c := range cases {
		t.Run(c.sent, func(t *testing.T) {
			// Both ways of setting it: a PUT of the existing token and a PATCH.
			at, perr := service.ParseExpiry(c.sent)
			putErr := perr
			if perr == nil {
				putErr = upsert(ctx, svc, service.Upsert{Tenant: "acme", ID: "x", Name: new("X"), ExpiresAt: &at, Meta: meta(fmt.Sprint("put", i))})
			}
			patchErr := svc.Patch(ctx, "acme", "x", []service.PatchOp{{Op: "REPLACE", Path: "/expiresAt", Value: c.sent}}, meta(fmt.Sprint("patch", i)))
			for _, err := range []error{putErr, patchErr} {
				if c.shown == "" {
					if e := token.As(err); e.Kind != token.Invalid || len(e.Details) == 0 || e.Details[0].Field != "/expiresAt" && e.Details[0].Field != "expiresAt" ||
						!strings.Contains(e.Message+e.Details[0].Message, c.refusal) {
						t.Fatalf("%s: %v, want a 400 naming expiresAt and saying %q", c.sent, err, c.refusal)
					}
					continue
				}
				if err != nil {
					t.Fatalf("%s: %v", c.sent, err)
				}
			}
			if c.shown == "" {
				return
			}
			tok, err := svc.Get(ctx, "acme", "x")
			if err != nil {
				t.Fatal(err)
			}
			if got := tok.Document()["expiresAt"]; got != c.shown {
				t.Fatalf("%s is shown as %v, want %s", c.sent, got, c.shown)
			}
			// q finds it by the date as sent, in every form that holds for an equal instant (the
			// q date cut as the stored one was), and not by a strict comparison.
			for qs, want := range map[string]int{
				`expiresAt:"%s"`: 1, `expiresAt:%s`: 1, `expiresAt:>="%s"`: 1, `expiresAt:<=%s`: 1,
				`expiresAt:(>="%[1]s" AND <="%[1]s")`: 1, `expiresAt:(>=%[1]s AND <=%[1]s)`: 1,
				`expiresAt:>"%s"`: 0, `expiresAt:<%s`: 0, `expiresAt:("%s",2099-01-01T00:00:00Z)`: 1,
			} {
				q, err := query.Parse(fmt.Sprintf(qs, c.sent))
				if err != nil {
					t.Fatalf("q %s: %v", fmt.Sprintf(qs, c.sent), err)
				}
				res, err := svc.List(ctx, service.List{Tenant: "acme", Query: q, Page: query.Page{Number: 1, Size: 10}})
				if err != nil || res.Total != want {
					t.Fatalf("q %s: %d found, want %d, %v", fmt.Sprintf(qs, c.sent), res.Total, want, err)
				}
			}
			_, err = svc.Resolve(ctx, "acme", "x", nil, fmt.Sprint("resolve", i))
			if expired := token.As(err).Reason == token.Expired; expired != c.expired {
				t.Fatalf("%s: resolve %v, want expired %v", c.sent, err, c.expired)
			}
		})
	}
	// null removes the expiry; on create it is refused.
	if err := upsert(ctx, svc, service.Upsert{Tenant: "acme", ID: "x", Name: new("X"), RemoveExpiry: true, Meta: meta("null")}); err != nil {
		t.Fatal(err)
	}
	if tok, _ := svc.Get(ctx, "acme", "x"); tok.ExpiresAt != nil {
		t.Fatalf("null left expiresAt %v", tok.ExpiresAt)
	}
	err := upsert(ctx, svc, service.Upsert{Tenant: "acme", ID: "y", Name: new("Y"), Value: new("v"), RemoveExpiry: true, Meta: meta("y")})
	if token.KindOf(err) != token.Invalid {
		t.Fatalf("create with expiresAt null: %v", err)
	}
}

// An unversioned PUT or PATCH whose transaction loses its condition to a concurrent writer
// reads the token again and applies on top of that write (store.WriteRounds): the client gets
// its success, never a conflict, and neither change is lost.
func TestUnversionedWritesLosingTheirConditionApplyOnTop(t *testing.T) {
	t.Parallel()
	later := "2999-01-01T00:00:00Z"
	cases := []struct {
		name  string
		write func(ctx context.Context, svc *service.Service, id string) error
		check func(tok token.Token) bool
	}{
		{"PUT", func(ctx context.Context, svc *service.Service, id string) error {
			return upsert(ctx, svc, service.Upsert{Tenant: "acme", ID: id, Name: new("renamed by the slow PUT"), Meta: meta("slow")})
		}, func(tok token.Token) bool { return tok.Name == "renamed by the slow PUT" }},
		{"PATCH", func(ctx context.Context, svc *service.Service, id string) error {
			return svc.Patch(ctx, "acme", id, []service.PatchOp{{Op: "REPLACE", Path: "/restricted", Value: false}}, meta("slow"))
		}, func(tok token.Token) bool { return !tok.Restricted }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			table := testenv.NewTable(t)
			direct := newService(t, store.New(testenv.Client(), table))
			if err := upsert(ctx, direct, service.Upsert{Tenant: "acme", ID: "t", Name: new("n"), Value: new("sk-value"),
				Restricted: new(true), Meta: meta("create")}); err != nil {
				t.Fatal(err)
			}
			slow, proxy := viaProxy(t, table)
			pause := proxy.PauseNext("TransactWriteItems")
			done := make(chan error, 1)
			go func() { done <- c.write(ctx, slow, "t") }()
			waitFor(t, pause.Reached, "the slow write's transaction")
			// The concurrent writer moves the token on while the slow write's transaction waits.
			if err := direct.Patch(ctx, "acme", "t", []service.PatchOp{{Op: "REPLACE", Path: "/expiresAt", Value: later}}, meta("fast")); err != nil {
				t.Fatal(err)
			}
			pause.Release()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("the unversioned %s after losing its condition: %v, want success", c.name, err)
				}
			case <-time.After(wait):
				t.Fatal("the slow write did not end")
			}
			transactions := 0
			for _, call := range proxy.Calls() {
				if call == "TransactWriteItems" {
					transactions++
				}
			}
			if transactions != 2 {
				t.Errorf("the slow write sent %d transactions, want 2 (one lost its condition, one applied)", transactions)
			}
			tok, err := direct.Get(ctx, "acme", "t")
			if err != nil {
				t.Fatal(err)
			}
			if !c.check(tok) || tok.ExpiresAt == nil || tok.ExpiresAt.Format(time.RFC3339) != later || tok.Version != 3 {
				t.Errorf("after both writes: %+v; want the slow %s's change on top of the fast PATCH's, version 3", tok, c.name)
			}
		})
	}
}
