package service_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"aitokens/pkg/config"
	"aitokens/pkg/devtools/testenv"
	"aitokens/pkg/query"
	"aitokens/pkg/reminders"
	"aitokens/pkg/seal"
	"aitokens/pkg/service"
	"aitokens/pkg/store"
	"aitokens/pkg/token"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// wait is the deadline of every wait in these tests.
const wait = 30 * time.Second

var sealer = seal.NewLocalFromKey(bytes.Repeat([]byte{7}, 32))

func newService(t testing.TB, st *store.Store) *service.Service {
	t.Helper()
	svc, err := service.New(st, sealer, nil)
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

// viaProxy is a service on table whose DynamoDB calls go through a fault proxy.
func viaProxy(t testing.TB, table string) (*service.Service, *testenv.FaultProxy) {
	t.Helper()
	proxy := testenv.NewFaultProxy(t)
	client, err := store.NewClient(context.Background(), proxy.URL, testenv.Policy)
	if err != nil {
		t.Fatal(err)
	}
	return newService(t, store.New(client, table)), proxy
}

// viaProxyStore is viaProxy with its store.
func viaProxyStore(t testing.TB, table string) (*service.Service, *store.Store, *testenv.FaultProxy) {
	t.Helper()
	proxy := testenv.NewFaultProxy(t)
	client, err := store.NewClient(context.Background(), proxy.URL, testenv.Policy)
	if err != nil {
		t.Fatal(err)
	}
	st := store.New(client, table)
	return newService(t, st), st, proxy
}

func meta(request string) service.Meta { return service.Meta{RequestID: request, Actor: "tester"} }

// A write operation of the interleaving table, on token id.
type writeOp struct {
	name string
	run  func(ctx context.Context, svc *service.Service, st *store.Store, id, request string) error
}

func upsert(ctx context.Context, svc *service.Service, in service.Upsert) error {
	_, err := svc.Upsert(ctx, in)
	return err
}

// writeOps is every write path that touches a token, its usages, its consumers or its trail.
// A new write path joins this table.
var writeOps = []writeOp{
	{"register", func(ctx context.Context, svc *service.Service, st *store.Store, id, r string) error {
		_, err := svc.RegisterUsage(ctx, "acme", id, "agent", "b", meta(r))
		return err
	}},
	{"register again", func(ctx context.Context, svc *service.Service, st *store.Store, id, r string) error {
		_, err := svc.RegisterUsage(ctx, "acme", id, "agent", "a", meta(r)) // already there
		return err
	}},
	{"unregister", func(ctx context.Context, svc *service.Service, st *store.Store, id, r string) error {
		return svc.UnregisterUsage(ctx, "acme", id, "agent", "a", meta(r))
	}},
	{"delete", func(ctx context.Context, svc *service.Service, st *store.Store, id, r string) error {
		return svc.Delete(ctx, "acme", id, false, meta(r)) // in use: refused, unless a race freed it
	}},
	{"forced delete", func(ctx context.Context, svc *service.Service, st *store.Store, id, r string) error {
		return svc.Delete(ctx, "acme", id, true, meta(r))
	}},
	{"delete and re-create", func(ctx context.Context, svc *service.Service, st *store.Store, id, r string) error {
		if err := svc.Delete(ctx, "acme", id, true, meta(r+"-d")); err != nil {
			return err
		}
		// Under another egress policy: a replacement that decided on the old one must not commit.
		return upsert(ctx, svc, service.Upsert{Tenant: "acme", ID: id, Name: new("re-created"), Value: new("value-of-the-new-token"),
			Restricted: new(true), Egress: &recreatedEgress, Meta: meta(r + "-c")})
	}},
	{"patch expiry", func(ctx context.Context, svc *service.Service, st *store.Store, id, r string) error {
		return svc.Patch(ctx, "acme", id, []service.PatchOp{{Op: "REPLACE", Path: "/expiresAt", Value: "2000-01-01T00:00:00Z"}}, meta(r))
	}},
	{"patch expiry away", func(ctx context.Context, svc *service.Service, st *store.Store, id, r string) error {
		// Refused (retirement_final) once the token is replaced.
		return svc.Patch(ctx, "acme", id, []service.PatchOp{{Op: "REMOVE", Path: "/expiresAt"}}, meta(r))
	}},
	{"patch restriction", func(ctx context.Context, svc *service.Service, st *store.Store, id, r string) error {
		return svc.Patch(ctx, "acme", id, []service.PatchOp{{Op: "REPLACE", Path: "/restricted", Value: false}}, meta(r))
	}},
	{"upsert", func(ctx context.Context, svc *service.Service, st *store.Store, id, r string) error {
		return upsert(ctx, svc, service.Upsert{Tenant: "acme", ID: id, Name: new("renamed " + r), Meta: meta(r)})
	}},
	{"replace", func(ctx context.Context, svc *service.Service, st *store.Store, id, r string) error {
		// Retires the token at once and copies its usages to its successor.
		return upsert(ctx, svc, service.Upsert{Tenant: "acme", ID: id + "-next", Name: new("successor"), Value: new("value-of-the-successor"),
			Replaces: &id, GraceSeconds: new(0), Meta: meta(r)})
	}},
	{"sweep", func(ctx context.Context, svc *service.Service, st *store.Store, id, r string) error {
		// The expiry sweeper, at an hour before the token's own expiry (a day of its own, so no
		// other case's token is in its window): the 2h reminder is due.
		exp, ok := sweepExpiry.Load(id)
		if !ok {
			return fmt.Errorf("no expiry set up for %s", id)
		}
		sweeper := reminders.New(st, config.Events{ReminderLeads: []time.Duration{2 * time.Hour}, ReminderLookback: time.Hour},
			slog.New(slog.DiscardHandler)).WithClock(func() time.Time { return exp.(time.Time).Add(-time.Hour) })
		res, err := sweeper.Sweep(ctx, r)
		swept.Add(int64(res.Expiring))
		return err
	}},
}

// The egress policies of each case's token and of its re-creation: a replacement without one
// of its own carries the first over, which does not narrow the second (invariant 10).
var (
	setupEgress     = token.Egress{AllowedHosts: []string{"api.openai.com"}, Inject: token.Inject{In: "header", Name: "Authorization", Template: "Bearer {{value}}"}}
	recreatedEgress = token.Egress{AllowedHosts: []string{"api.anthropic.com"}, Inject: token.Inject{In: "header", Name: "X-Api-Key", Template: "{{value}}"}}
)

// sweepExpiry is the expiresAt each case's token is created with, by id: noon of a day no other
// case has (from 2100 on), so that a sweep at its time sees this token only.
var (
	sweepExpiry sync.Map
	sweepDays   atomic.Int64
	swept       atomic.Int64 // reminders the sweeps wrote: some must have
)

// acceptable is whether err is an answer a client may get from a write that lost a race:
// success, not found, in use, a conflict to retry (also: replaced already), or a body that no longer fits (an update
// without a value of a token deleted meanwhile is a create without one); never a 5xx.
func acceptable(err error) bool {
	if err == nil {
		return true
	}
	switch token.KindOf(err) {
	case token.NotFound, token.Conflict, token.Invalid:
		return true
	}
	return false
}

// The interleaving table: for every ordered pair of write operations (A, B), A is paused at
// each of its DynamoDB calls in turn while B runs to completion, then released. After each,
// the next resolve of each consumer must agree with the usages, restriction, expiry and
// existence that the store then holds, and at the end the table's invariants must hold
// (testenv checks them for every table).
//
// The whole table (every ordered pair) runs under INTERLEAVE=all (`make test-all`); `make test`
// runs a fixed sample of it (inSample), which keeps every write path, both as the one paused
// and as the one that runs.
func TestInterleavedWritesKeepTheInvariants(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	table := testenv.NewTable(t)
	directStore := store.New(testenv.Client(), table)
	direct := newService(t, directStore)
	// Each pair works on its own tokens, so pairs run side by side: the cost is DynamoDB Local's
	// round trips, not this machine's cores.
	var cases atomic.Int64
	var g errgroup.Group
	g.SetLimit(interleaveWorkers)
	all := os.Getenv("INTERLEAVE") == "all"
	pairs := 0
	for i, a := range writeOps {
		for j, b := range writeOps {
			if !all && !inSample(i, j) {
				continue
			}
			pairs++
			g.Go(func() error {
				for call := 1; ; call++ {
					id := strings.NewReplacer(" ", "-").Replace(fmt.Sprintf("%s_%s_%d", a.name, b.name, call))
					if !interleave(t, ctx, table, direct, directStore, a, b, id, call) {
						return nil // A makes fewer calls than this
					}
					cases.Add(1)
				}
			})
		}
	}
	g.Wait()
	if swept.Load() == 0 {
		t.Error("no sweep of the table wrote a reminder")
	}
	t.Logf("%d interleavings of %d ordered pairs of %d write operations (INTERLEAVE=all: %v)", cases.Load(), pairs, len(writeOps), all)
}

// inSample is the fixed sample of the table that `make test` runs: every write path against
// itself, every two paths in one order (of i < j: (i, j) when i+j is odd, (j, i) when even, i and
// j their indexes in writeOps), and in both orders the pairs where the sweeper or replace meets
// what most often races it (bothOrders). docs/benchmarks.md has its size and time.
func inSample(i, j int) bool {
	a, b := writeOps[i].name, writeOps[j].name
	return i == j || (i < j) == ((i+j)%2 == 1) || bothOrders[[2]string{a, b}] || bothOrders[[2]string{b, a}]
}

var bothOrders = map[[2]string]bool{
	{"sweep", "delete"}: true, {"sweep", "forced delete"}: true, {"sweep", "patch expiry"}: true,
	{"sweep", "patch expiry away"}: true, {"sweep", "replace"}: true,
	{"replace", "register"}: true, {"replace", "unregister"}: true, {"replace", "patch expiry"}: true,
	{"replace", "patch expiry away"}: true, {"replace", "patch restriction"}: true,
	{"replace", "delete and re-create"}: true, // the predecessor's egress policy changes under the replacement
}

// interleaveWorkers is how many pairs run at once.
const interleaveWorkers = 8

// interleave runs one case and reports whether A reached call.
func interleave(t *testing.T, ctx context.Context, table string, direct *service.Service, directStore *store.Store, a, b writeOp, id string, call int) bool {
	t.Helper()
	exp := time.Date(2100, 1, 1, 12, 0, 0, 0, time.UTC).AddDate(0, 0, int(sweepDays.Add(1)))
	sweepExpiry.Store(id, exp)
	if err := upsert(ctx, direct, service.Upsert{Tenant: "acme", ID: id, Name: new("n"), Value: new("value-of-the-old-token"),
		Restricted: new(true), ExpiresAt: &exp, Egress: &setupEgress, Meta: meta(id + "-setup")}); err != nil {
		t.Errorf("%s: setup: %v", id, err)
		return false
	}
	if _, err := direct.RegisterUsage(ctx, "acme", id, "agent", "a", meta(id+"-setup-usage")); err != nil {
		t.Errorf("%s: setup: %v", id, err)
		return false
	}
	viaA, viaStore, proxy := viaProxyStore(t, table)
	pause := proxy.PauseCall(call)
	done := make(chan error, 1)
	go func() { done <- a.run(ctx, viaA, viaStore, id, id+"-A") }()
	select {
	case <-pause.Reached:
	case err := <-done:
		if !acceptable(err) {
			t.Errorf("%s alone: %v", a.name, err)
		}
		return false
	case <-time.After(wait):
		t.Errorf("%s reached neither its call %d nor its end", a.name, call)
		return false
	}
	if err := b.run(ctx, direct, directStore, id, id+"-B"); !acceptable(err) {
		t.Errorf("%s while %s waits at call %d (%s): %v", b.name, a.name, call, proxy.Calls()[call-1], err)
	}
	pause.Release()
	select {
	case err := <-done:
		if !acceptable(err) {
			t.Errorf("%s released at call %d (%s) after %s: %v", a.name, call, proxy.Calls()[call-1], b.name, err)
		}
	case <-time.After(wait):
		t.Errorf("%s did not end after its release", a.name)
		return false
	}
	what := fmt.Sprintf("%s paused at call %d (%s), %s ran", a.name, call, proxy.Calls()[call-1], b.name)
	checkResolves(t, ctx, direct, id, what)
	if a.name == "replace" || b.name == "replace" {
		checkResolves(t, ctx, direct, id+"-next", what) // the successor a replace made, if it did
	}
	return true
}

// checkResolves asks resolve for each consumer and compares with what the store holds: the
// value resolves exactly when the token exists, has not expired and is either unrestricted or
// has the consumer among its usages; and then it is the value of the token that exists now.
func checkResolves(t *testing.T, ctx context.Context, svc *service.Service, id, what string) {
	t.Helper()
	tok, err := svc.Get(ctx, "acme", id)
	exists := err == nil
	if err != nil && token.KindOf(err) != token.NotFound {
		t.Errorf("%s: get %s: %v", what, id, err)
		return
	}
	registered := map[string]bool{}
	if exists {
		usages, _, err := svc.Usages(ctx, "acme", id, query.Page{Number: 1, Size: query.MaxPageSize})
		if err != nil {
			t.Errorf("%s: usages of %s: %v", what, id, err)
			return
		}
		for _, u := range usages {
			registered[u.Key()] = true
		}
	}
	for _, consumer := range []token.Consumer{{Kind: "agent", ID: "a"}, {Kind: "agent", ID: "b"}} {
		value, err := svc.Resolve(ctx, "acme", id, &consumer, id+"-resolve-"+consumer.ID)
		want := exists && !tok.Expired(time.Now()) && (!tok.Restricted || registered[consumer.Key()])
		if got := err == nil; got != want {
			t.Errorf("%s: resolve for %s: got value %v (err %v), want %v (exists %v, restricted %v, usages %v)",
				what, consumer.Key(), got, err, want, exists, tok.Restricted, registered)
		}
		if err == nil && tok.Name == "re-created" && string(value) != "value-of-the-new-token" ||
			err == nil && tok.Name == "successor" && string(value) != "value-of-the-successor" {
			t.Errorf("%s: resolve for %s gave another token's value", what, consumer.Key())
		}
		if want == false && exists && tok.ReplacedBy != "" && tok.Expired(time.Now()) && token.As(err).Reason != token.Replaced {
			t.Errorf("%s: resolve of a retired, replaced token: %v, want reason replaced", what, err)
		}
	}
}
