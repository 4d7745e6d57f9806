package main

import (
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"aitokens/pkg/devtools/testenv"
)

// with-dynamodb-local runs the command with DYNAMODB_ENDPOINT set, hands back its exit code,
// and stops the database it started once the command has ended.
func TestWithDynamoDBLocal(t *testing.T) {
	if testing.Short() {
		t.Skip("starts DynamoDB Local")
	}
	testenv.Require(t)
	seen := filepath.Join(t.TempDir(), "endpoint")
	record := []string{"sh", "-c", `printf %s "$DYNAMODB_ENDPOINT" > "$0"; exit 3`, seen}

	t.Run("starts one, and stops it after the command", func(t *testing.T) {
		t.Setenv("DYNAMODB_ENDPOINT", "")
		code, err := withDynamoDBLocal(append([]string{"--"}, record...))
		if err != nil || code != 3 {
			t.Fatalf("got exit %d, %v; want the command's exit code 3", code, err)
		}
		raw, _ := os.ReadFile(seen)
		u, err := url.Parse(string(raw))
		if err != nil || u.Hostname() != "127.0.0.1" || u.Port() == "" {
			t.Fatalf("the command saw DYNAMODB_ENDPOINT=%q, want a loopback DynamoDB Local", raw)
		}
		if conn, err := net.DialTimeout("tcp", u.Host, time.Second); err == nil {
			conn.Close()
			t.Errorf("DynamoDB Local still listens on %s after the command ended", u.Host)
		}
	})
	t.Run("uses the one of DYNAMODB_ENDPOINT", func(t *testing.T) {
		t.Setenv("DYNAMODB_ENDPOINT", testenv.Endpoint())
		if code, err := withDynamoDBLocal(record); err != nil || code != 3 {
			t.Fatalf("got exit %d, %v; want 3", code, err)
		}
		if raw, _ := os.ReadFile(seen); string(raw) != testenv.Endpoint() {
			t.Errorf("the command saw %q, want %q", raw, testenv.Endpoint())
		}
	})
	for _, c := range []struct {
		name string
		args []string
		code int
		err  string
	}{
		{"no command", nil, 2, "usage"},
		{"only the separator", []string{"--"}, 2, "usage"},
		{"a command that does not exist", []string{"/nonexistent/command"}, 1, "/nonexistent/command"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv("DYNAMODB_ENDPOINT", testenv.Endpoint()) // no database to start
			code, err := withDynamoDBLocal(c.args)
			if code != c.code || err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("got exit %d, %v; want %d and an error naming %q", code, err, c.code, c.err)
			}
		})
	}
}
