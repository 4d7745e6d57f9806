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
		if err != nil && testing.Short() {
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

// Policy is the AWS client policy of tests: the production attempts without the real backoff
// sleeps (a test proves a bound with a small limit, not by waiting), and a roomy per-attempt
// deadline for DynamoDB Local on a busy 2-core machine under the race detector.
var Policy = awsretry.Policy{MaxAttempts: awsretry.DefaultPolicy.MaxAttempts, AttemptTimeout: 20 * time.Second, Backoff: awsretry.NoBackoff}

// Endpoint is the DynamoDB Local address of this package run.
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
