package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"

	"aitokens/pkg/config"
	"aitokens/pkg/devtools/ddblocal"
)

// withDynamoDBLocal runs a command with DYNAMODB_ENDPOINT set to a new in-memory DynamoDB Local
// and stops that database when the command ends. `make test` runs the whole suite in one: the
// test packages share one JVM instead of each starting and warming up its own (testenv.Main
// uses $DYNAMODB_ENDPOINT when it is set, and every test has tables of its own).
//
// It returns the command's exit code, so that `make` sees a failing test run fail.
func withDynamoDBLocal(args []string) (int, error) {
	if len(args) > 0 && args[0] == "--" {
		args = args[1:]
	}
	if len(args) == 0 {
		return 2, errors.New("usage: aitokens with-dynamodb-local [--] command [args...]")
	}
	cfg, err := config.Load(os.Getenv)
	if err != nil {
		return 1, err
	}
	env := os.Environ()
	if cfg.DynamoDBEndpoint == "" {
		db, err := ddblocal.Start(context.Background(), ddblocal.Options{Jar: cfg.DynamoDBLocalJar})
		if err != nil {
			return 1, err
		}
		defer db.Stop()
		env = append(env, "DYNAMODB_ENDPOINT="+db.Endpoint)
	}
	// Ctrl-C reaches the command too (same process group): wait for it to end, then stop the
	// database, rather than die first and leave a JVM behind.
	held := make(chan os.Signal, 1)
	signal.Notify(held, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(held)
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = env
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	err = cmd.Run()
	if exit := (*exec.ExitError)(nil); errors.As(err, &exit) {
		return exit.ExitCode(), nil
	}
	if err != nil {
		return 1, fmt.Errorf("%s: %w", args[0], err)
	}
	return 0, nil
}
