package store_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"aitokens/pkg/awsretry"
	"aitokens/pkg/devtools/testenv"
	"aitokens/pkg/store"
	"aitokens/pkg/token"
)

// wait is the deadline of every wait in these tests.
const wait = 20 * time.Second

// viaProxy is a store on table whose DynamoDB calls pass through a fault proxy (with the tests'
// client policy unless one is given).
func viaProxy(t *testing.T, table string, policy ...awsretry.Policy) (*store.Store, *testenv.FaultProxy) {
	t.Helper()
	proxy := testenv.NewFaultProxy(t)
	p := testenv.Policy
	if len(policy) > 0 {
		p = policy[0]
	}
	client, err := store.NewClient(context.Background(), proxy.URL, p)
	if err != nil {
		t.Fatal(err)
	}
	return store.New(client, table), proxy
}

// items returns the items of a table whose sort key starts with one of prefixes (consistent scan).
func items(t *testing.T, table string, prefixes ...string) []map[string]types.AttributeValue {
	t.Helper()
	out, err := testenv.Client().Scan(context.Background(), &dynamodb.ScanInput{TableName: aws.String(table), ConsistentRead: aws.Bool(true)})
	if err != nil {
		t.Fatal(err)
	}
	var kept []map[string]types.AttributeValue
	for _, it := range out.Items {
		sk := it["sk"].(*types.AttributeValueMemberS).Value
		for _, p := range prefixes {
			if strings.HasPrefix(sk, p) {
				kept = append(kept, it)
				break
			}
		}
	}
	return kept
}

// A forced delete paused between its read of the usages and its transaction, while another
// request unregisters the usage it read and registers a new one (the count stays 1), must not
// commit and orphan the new usage: it goes round again and removes the token with the usage
// that is really there.
func TestForcedDeleteRacingUnregisterAndRegister(t *testing.T) {
	ctx := context.Background()
	table := testenv.NewTable(t)
	direct := store.New(testenv.Client(), table)
	deleter, proxy := viaProxy(t, table)
	create(t, direct, "acme", "x", "r1")
	now := time.Now()
	if _, err := direct.RegisterUsage(ctx, "acme", "x", "agent", "old", token.Event{At: now, RequestID: "reg-old"}); err != nil {
		t.Fatal(err)
	}

	pause := proxy.PauseNext("TransactWriteItems")
	done := make(chan error, 1)
	go func() { done <- deleter.ForceDelete(ctx, "acme", "x", token.Event{At: now, RequestID: "force"}) }()
	select {
	case <-pause.Reached:
	case <-time.After(wait):
		t.Fatal("the forced delete never reached its transaction")
	}
	if err := direct.UnregisterUsage(ctx, "acme", "x", "agent", "old", token.Event{At: now, RequestID: "unreg-old"}); err != nil {
		t.Fatal(err)
	}
	if _, err := direct.RegisterUsage(ctx, "acme", "x", "agent", "new", token.Event{At: now, RequestID: "reg-new"}); err != nil {
		t.Fatal(err)
	}
	pause.Release()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("forced delete: %v", err)
		}
	case <-time.After(wait):
		t.Fatal("the forced delete did not end")
	}
	if left := items(t, table, "token#", "usage#"); len(left) != 0 {
		t.Fatalf("%d items left after the forced delete (an orphaned usage): %v", len(left), left)
	}
}

// TransactionConflictException (real DynamoDB, when another transaction holds the item) is
// retried by the client and, when it lasts, a 409 the caller may retry: never an internal error.
func TestTransactionConflictIsAConflict(t *testing.T) {
	ctx := context.Background()
	table := testenv.NewTable(t)
	direct := store.New(testenv.Client(), table)
	st, proxy := viaProxy(t, table)
	create(t, direct, "acme", "x", "r1")

	proxy.FailNext("TransactWriteItems", "TransactionConflictException", 1)
	if err := st.Update(ctx, store.Update{Tenant: "acme", ID: "x", Name: new("once"), Version: 1}, token.Event{RequestID: "r2", At: time.Now()}); err != nil {
		t.Fatalf("one conflict is retried: %v", err)
	}
	proxy.FailNext("TransactWriteItems", "TransactionConflictException", testenv.Policy.MaxAttempts)
	err := st.Update(ctx, store.Update{Tenant: "acme", ID: "x", Name: new("lasting"), Version: 2}, token.Event{RequestID: "r3", At: time.Now()})
	if token.KindOf(err) != token.Conflict {
		t.Fatalf("a lasting transaction conflict: %v, want a conflict", err)
	}
	if got, _ := direct.Get(ctx, "acme", "x"); got.Name != "once" || got.Version != 2 {
		t.Fatalf("stored %+v", got)
	}
}

// A transaction that DynamoDB cancels for a conflicting one (TransactionCanceledException with
// TransactionConflict among its reasons, as real DynamoDB answers under contention) is read
// again and retried within the one budget of a write, WriteRounds rounds: once, it is absorbed;
// for ever, every write path gives up after exactly WriteRounds transactions with a 409 to
// retry, and nothing is half-written.
func TestCancelledForAConflictIsRetriedWithinTheBudget(t *testing.T) {
	ctx := context.Background()
	table := testenv.NewTable(t)
	direct := store.New(testenv.Client(), table)
	st, proxy := viaProxy(t, table)
	create(t, direct, "acme", "x", "r1")
	if _, err := direct.RegisterUsage(ctx, "acme", "x", "agent", "a", token.Event{RequestID: "r2"}); err != nil {
		t.Fatal(err)
	}
	transactions := func() int {
		n := 0
		for _, op := range proxy.Calls() {
			if op == "TransactWriteItems" {
				n++
			}
		}
		return n
	}

	proxy.CancelNext("TransactWriteItems", 1, "None", "TransactionConflict")
	if err := st.Update(ctx, store.Update{Tenant: "acme", ID: "x", Name: new("once")}, token.Event{RequestID: "r3"}); err != nil {
		t.Fatalf("one cancellation for a conflict: %v", err)
	}
	if n := transactions(); n != 2 {
		t.Fatalf("%d transactions for one cancellation, want 2", n)
	}

	writes := []struct {
		name  string
		write func() error
	}{
		{"create", func() error {
			return st.Create(ctx, token.Token{Tenant: "acme", ID: "y", Name: "y"}, token.Sealed{}, token.Event{RequestID: "w1"})
		}},
		{"update", func() error {
			return st.Update(ctx, store.Update{Tenant: "acme", ID: "x", Name: new("lasting")}, token.Event{RequestID: "w2"})
		}},
		{"register", func() error {
			_, err := st.RegisterUsage(ctx, "acme", "x", "agent", "b", token.Event{RequestID: "w3"})
			return err
		}},
		{"unregister", func() error { return st.UnregisterUsage(ctx, "acme", "x", "agent", "a", token.Event{RequestID: "w4"}) }},
		{"forced delete", func() error { return st.ForceDelete(ctx, "acme", "x", token.Event{RequestID: "w5"}) }},
		{"replace", func() error {
			return st.Replace(ctx, token.Token{Tenant: "acme", ID: "z", Name: "z", Replaces: "x"}, token.Sealed{}, 0, token.Event{RequestID: "w6"})
		}},
	}
	for _, w := range writes {
		before := items(t, table, "token#", "usage#", "event#")
		start := transactions()
		proxy.CancelNext("TransactWriteItems", 1000, "TransactionConflict")
		err := w.write()
		spent := transactions() - start
		proxy.ClearFaults()
		if token.KindOf(err) != token.Conflict || spent != store.WriteRounds {
			t.Errorf("%s under lasting contention: %v after %d transactions, want a conflict after %d", w.name, err, spent, store.WriteRounds)
		}
		if after := items(t, table, "token#", "usage#", "event#"); len(after) != len(before) {
			t.Errorf("%s: %d items before, %d after", w.name, len(before), len(after))
		}
	}
}

// Each attempt of an AWS call has its own deadline, so even a caller without one (a
// background context) gets an unavailable error from a stalled database, after the attempts.
func TestStalledDatabaseAttemptsTimeOut(t *testing.T) {
	policy := testenv.Policy
	policy.AttemptTimeout, policy.MaxAttempts = 200*time.Millisecond, 2
	st, proxy := viaProxy(t, testenv.NewTable(t), policy)
	proxy.Stall()
	done := make(chan error, 1)
	go func() {
		_, err := st.Get(context.Background(), "acme", "x")
		done <- err
	}()
	select {
	case err := <-done:
		if token.KindOf(err) != token.Unavailable {
			t.Fatalf("a stalled Get: %v, want unavailable", err)
		}
	case <-time.After(wait):
		t.Fatal("a stalled Get did not end: the attempt deadline is not applied")
	}
}
