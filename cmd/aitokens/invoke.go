package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"

	"aitokens/pkg/config"
	"aitokens/pkg/devtools/runtimeapi"
)

// invoke builds a function's real binary for this machine and runs it against an in-process
// Lambda Runtime API with one event, on the same local database and sealer as `serve --dev`.
func invoke(args []string) error {
	if len(args) == 0 || args[0] == "" || args[0][0] == '-' {
		return fmt.Errorf("usage: aitokens invoke <function> [--event events/<function>.json]")
	}
	function := args[0]
	fs := flag.NewFlagSet("invoke", flag.ContinueOnError)
	eventPath := fs.String("event", filepath.Join("events", function+".json"), "event file")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join("functions", function, "main.go")); err != nil {
		return fmt.Errorf("no function %q under functions/ (run from the repository root)", function)
	}
	event, err := os.ReadFile(*eventPath)
	if err != nil {
		return err
	}
	ctx := context.Background()
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	cfg, err := config.Load(os.Getenv)
	if err != nil {
		return err
	}
	if cfg.DataDir, err = filepath.Abs(cfg.DataDir); err != nil {
		return err
	}
	dataDir, table := cfg.DataDir, cfg.TableName
	endpoint, stopDB, err := localDynamoDB(ctx, log, cfg)
	if err != nil {
		return err
	}
	defer stopDB()

	binDir, err := os.MkdirTemp("", "aitokens-invoke-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(binDir)
	binary := filepath.Join(binDir, "bootstrap")
	build := exec.Command("go", "build", "-tags", "lambda.norpc", "-o", binary, "./functions/"+function)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("build %s: %w", function, err)
	}
	env := []string{"TABLE_NAME=" + table, "DYNAMODB_ENDPOINT=" + endpoint, "TENANT_CLAIM=" + cfg.TenantClaim}
	if cfg.KMSKeyID == "" {
		env = append(env, "MASTER_KEY_FILE="+cmp.Or(cfg.MasterKeyFile, filepath.Join(dataDir, "master.key")))
	}
	res, err := runtimeapi.Invoke(ctx, runtimeapi.Invocation{Binary: binary, Function: function, Env: env, Event: event})
	os.Stderr.Write(res.Logs)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "init %s, invoke %s\n", res.InitDuration.Round(100_000), res.InvokeDuration.Round(100_000))
	out := res.Response
	if res.Streamed { // a function URL's stream (the relay): the prelude, a line, the body as sent
		if prelude, body, ok := bytes.Cut(out, make([]byte, 8)); ok {
			out = append(append(prelude, '\n'), body...)
		}
		if res.StreamErrorType != "" {
			fmt.Fprintf(os.Stderr, "the stream broke off: %s %s\n", res.StreamErrorType, res.StreamError)
		}
	}
	if out == nil {
		out = append(res.Error, res.InitError...)
	}
	var pretty bytes.Buffer
	if json.Indent(&pretty, out, "", "  ") == nil {
		out = pretty.Bytes()
	}
	fmt.Println(string(out))
	if res.Response == nil {
		return fmt.Errorf("the function reported an error")
	}
	return nil
}
