// Package testenv gives a test package one DynamoDB Local for its whole run (the one of
// $DYNAMODB_ENDPOINT, which `make test` shares among all packages) and a fresh table
// per test, so tests use the real database engine without stepping on each other.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"aitokens/pkg/awsretry"
	"aitokens/pkg/config"
	"aitokens/pkg/devtools/ddblocal"
	"aitokens/pkg/store"
)

var (
	uncheckedMu sync.Mutex
	endpoint    string
	client      *dynamodb.Client
	// unavailable is why DynamoDB Local could not start in a -short run; the tests that need it
	// skip with it, the others run.
	unavailable error
	// stderr is where Main reports; its own test reads it.
	stderr io.Writer = os.Stderr
)

// Main runs a package's tests with DynamoDB Local started once (or the one at
// $DYNAMODB_ENDPOINT). Use it as: func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }.
//
// When DynamoDB Local cannot start (no Java, no jar) the run fails with the reason, so that CI
// never passes by skipping; only `go test -short` runs the package anyway, and then every test
// that asks for a table (NewTable, Require) skips with the reason.
func Main(m interface{ Run() int }) int {
	ctx := context.Background()
	if !flag.Parsed() {
		flag.Parse() // testing.Short reads the flags; m.Run would parse them only later
	}
	unavailable = nil
	cfg, err := config.Load(os.Getenv)
	if err != nil {
		fmt.Fprintln(stderr, "testenv:", err)
		return 1
	}
	endpoint = cfg.DynamoDBEndpoint
	if endpoint == "" {
		inst, err := ddblocal.Start(ctx, ddblocal.Options{Jar: cfg.DynamoDBLocalJar})
		if err != nil && withoutPart(testing.Short(), ci(), false) == skip {
			unavailable = err
			fmt.Fprintln(stderr, "testenv: -short: DynamoDB Local cannot start, the tests that need it skip:", err)
			return m.Run()
		}
		if err != nil {
			fmt.Fprintln(stderr, "testenv: cannot start DynamoDB Local for the tests:", err)
			fmt.Fprintln(stderr, "testenv: run `make deps` (Java 17 and the jar), or set DYNAMODB_ENDPOINT; `go test -short` runs only the tests that need no database")
			return 1
		}
		defer inst.Stop()
		endpoint = inst.Endpoint
	}
	if client, err = store.NewClient(ctx, endpoint, Policy); err != nil {
		fmt.Fprintln(stderr, "testenv:", err)
		return 1
	}
	return m.Run()
}

// Require skips t when this -short run has no DynamoDB Local, and stops it when Main did not run.
func Require(t testing.TB) {
	t.Helper()
	if unavailable != nil {
		t.Skip("no DynamoDB Local in this -short run:", unavailable)
	}
	if client == nil {
		t.Fatal("testenv: call testenv.Main from TestMain")
	}
}

// verdict is what a test run does when a part that a test needs is missing.
type verdict int

const (
	fail verdict = iota
	skip
)

// withoutPart decides what a run does without a part its tests need: DynamoDB Local (no Java,
// no jar) or an optional one such as Chromium. The fast tier, `go test -short`, must pass on any
// machine with Go, so it skips whatever is missing. A full run needs DynamoDB Local everywhere
// and fails without it; it fails without an optional part under CI=true too, where .ci/run
// installs it and a silent skip would hide that its test never ran, and skips elsewhere.
func withoutPart(short, ci, optional bool) verdict {
	if short || optional && !ci {
		return skip
	}
	return fail
}

func (v verdict) String() string { return map[verdict]string{fail: "fail", skip: "skip"}[v] }

func ci() bool { return os.Getenv("CI") == "true" }

// Missing ends t because an optional part it needs is missing (a browser), how saying how to
// get it: a skip in a -short run or outside CI, a failure in a full run under CI=true.
func Missing(t testing.TB, how string) {
	t.Helper()
	if withoutPart(testing.Short(), ci(), true) == skip {
		t.Skip(how)
	} else {
		t.Fatal(how + " (under CI=true a full run never skips this test)")
	}
}

// EndpointFor is Endpoint for a test that talks to DynamoDB Local without a table of NewTable's
// (it hands the address to code that makes its own): it skips t as Require does. Handing on
// Endpoint's empty address instead would make that code start a DynamoDB Local of its own,
// and fail on the very machine the -short run skipped it on.
func EndpointFor(t testing.TB) string {
	t.Helper()
	Require(t)
	return endpoint
}

// Policy is the AWS client policy of tests: the production attempts without the real backoff
// sleeps (a test proves a bound with a small limit, not by waiting), and a roomy per-attempt
// deadline for DynamoDB Local on a busy 2-core machine under the race detector.
var Policy = awsretry.Policy{MaxAttempts: awsretry.DefaultPolicy.MaxAttempts, AttemptTimeout: 20 * time.Second, Backoff: awsretry.NoBackoff}

// Endpoint is the DynamoDB Local address of this package run, for a test that holds a table
// (NewTable) or called Require; it is empty in a -short run without one (see EndpointFor).
func Endpoint() string { return endpoint }

// Client is a DynamoDB client for Endpoint.
func Client() *dynamodb.Client { return client }

// NewTable creates an empty table with a unique name and returns its name; without DynamoDB
// Local in a -short run it skips t (see Require). When the test ends, the table's invariants
// are checked (CheckInvariants), unless the test said LeaveInvariants.
//
// The table is the one store.CreateTable makes, with its stream disabled: DynamoDB Local keeps
// every stream record ever written, also of deleted tables, and each write to a table with a
// stream gets slower with their number (a transaction took 3.4 ms, then 16 ms once 3,000 had
// been written). The tests that read the stream ask for it: NewTableWithStream.
func NewTable(t testing.TB) string {
	t.Helper()
	return newTable(t, false)
}

// NewTableWithStream is NewTable with the table's stream, as the template declares it.
func NewTableWithStream(t testing.TB) string {
	t.Helper()
	return newTable(t, true)
}

func newTable(t testing.TB, stream bool) string {
	t.Helper()
	Require(t)
	b := make([]byte, 6)
	rand.Read(b)
	name := "test-" + hex.EncodeToString(b)
	if err := store.CreateTable(context.Background(), client, name); err != nil {
		t.Fatalf("create table: %v", err)
	}
	if !stream {
		if _, err := client.UpdateTable(context.Background(), &dynamodb.UpdateTableInput{TableName: aws.String(name),
			StreamSpecification: &types.StreamSpecification{StreamEnabled: aws.Bool(false)}}); err != nil {
			t.Fatalf("disable the stream of %s: %v", name, err)
		}
	}
	t.Cleanup(func() {
		uncheckedMu.Lock()
		skip := unchecked[name]
		uncheckedMu.Unlock()
		if !skip && !t.Skipped() {
			CheckInvariants(t, name)
		}
		// One DynamoDB Local serves a whole package run: tables left behind slow it down
		// (an index added to a table was seen to take over a minute after some hundred).
		client.DeleteTable(context.Background(), &dynamodb.DeleteTableInput{TableName: aws.String(name)})
	})
	return name
}

// unchecked are the tables whose test breaks an invariant on purpose (to show that a check
// sees it, or to lay down data as an older version wrote it).
var unchecked = map[string]bool{}

// LeaveInvariants says that table breaks an invariant on purpose, with why.
func LeaveInvariants(t testing.TB, table, why string) {
	t.Helper()
	if why == "" {
		t.Fatal("testenv.LeaveInvariants: say why")
	}
	uncheckedMu.Lock()
	unchecked[table] = true
	uncheckedMu.Unlock()
}
