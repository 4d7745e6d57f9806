package awsconf_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/smithy-go/logging"

	"aitokens/pkg/awsconf"
	"aitokens/pkg/awsconf/sdkchain"
	"aitokens/pkg/awsretry"
)

type ctxKey struct{}

// fromContext adds the context's value to each record, as a function's handler adds the
// invocation's trace id.
type fromContext struct{ slog.Handler }

func (h fromContext) Handle(ctx context.Context, r slog.Record) error {
	if v, ok := ctx.Value(ctxKey{}).(string); ok {
		r.AddAttrs(slog.String("fromContext", v))
	}
	return h.Handler.Handle(ctx, r)
}

func (h fromContext) WithAttrs(attrs []slog.Attr) slog.Handler {
	return fromContext{h.Handler.WithAttrs(attrs)}
}

// Every configuration awsconf makes (a function's, DynamoDB Local's, the local server's whole
// chain) logs the SDK's lines through SetLogger's logger: one JSON line each, with the logger's
// fields and the call's context, at WARN; DEBUG lines only where the logger wants DEBUG.
func TestTheSDKLogsThroughSetLogger(t *testing.T) {
	clearAWSEnv(t)
	env := map[string]string{"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b", "AWS_REGION": "eu-west-1"}
	for k, v := range env {
		t.Setenv(k, v)
	}
	configs := map[string]func() (aws.Config, error){
		"FromEnv": func() (aws.Config, error) { return awsconf.FromEnv(os.Getenv, awsretry.DefaultPolicy) },
		"Local":   func() (aws.Config, error) { return awsconf.Local(os.Getenv, awsretry.DefaultPolicy), nil },
		"sdkchain": func() (aws.Config, error) {
			return sdkchain.Load(context.Background(), awsretry.DefaultPolicy)
		},
	}
	cases := []struct {
		level slog.Level // the logger's
		class logging.Classification
		want  string // the line's level; "" for no line
	}{
		{slog.LevelInfo, logging.Warn, "WARN"},
		{slog.LevelInfo, logging.Debug, ""},
		{slog.LevelDebug, logging.Debug, "DEBUG"},
		{slog.LevelError, logging.Warn, ""},
		{slog.LevelInfo, "OTHER", "WARN"}, // a classification the SDK may add: shown
	}
	t.Cleanup(func() { awsconf.SetLogger(nil) })
	for name, load := range configs {
		for _, c := range cases {
			var buf bytes.Buffer
			awsconf.SetLogger(slog.New(fromContext{slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: c.level})}).With("function", "get-token"))
			cfg, err := load()
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.WithValue(context.Background(), ctxKey{}, "invocation")
			logging.WithContext(ctx, cfg.Logger).Logf(c.class, "failed to discard remaining HTTP response body: %v", "read tcp: timeout")
			if c.want == "" {
				if buf.Len() != 0 {
					t.Errorf("%s, %s at %v: %s, want no line", name, c.class, c.level, buf.Bytes())
				}
				continue
			}
			var line map[string]any
			if err := json.Unmarshal(buf.Bytes(), &line); err != nil || bytes.Count(buf.Bytes(), []byte("\n")) != 1 {
				t.Errorf("%s, %s: not one JSON line: %q", name, c.class, buf.Bytes())
				continue
			}
			for k, v := range map[string]any{"level": c.want, "msg": "failed to discard remaining HTTP response body: read tcp: timeout",
				"logger": "aws-sdk", "function": "get-token", "fromContext": "invocation"} {
				if line[k] != v {
					t.Errorf("%s, %s: %s = %#v, want %#v (%v)", name, c.class, k, line[k], v, line)
				}
			}
		}
	}
	// The SDK's wire dumps (request and response, headers and bodies) are never turned on.
	for name, load := range configs {
		if cfg, err := load(); err != nil || cfg.ClientLogMode != 0 {
			t.Errorf("%s: client log mode %v (%v), want none", name, cfg.ClientLogMode, err)
		}
	}
}
