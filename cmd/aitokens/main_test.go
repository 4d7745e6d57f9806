package main

import (
	"context"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"

	"aitokens/pkg/config"
	"aitokens/pkg/devtools/testenv"
)

// The package's tests share one DynamoDB Local (the browser test and devSetup need one).
func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// Without JWT configuration the server must refuse to start: it never runs open.
func TestServeRefusesToRunOpen(t *testing.T) {
	for _, name := range []string{"JWKS_FILE", "JWKS_URL", "JWT_ISSUER", "JWT_AUDIENCE", "DYNAMODB_ENDPOINT"} {
		t.Setenv(name, "")
	}
	err := serve(nil)
	if err == nil || !strings.Contains(err.Error(), "refusing to start without authentication") {
		t.Fatalf("serve without auth configuration: %v", err)
	}
	t.Setenv("JWT_ISSUER", "https://issuer.example/")
	t.Setenv("JWT_AUDIENCE", "ai-tokens")
	t.Setenv("JWKS_FILE", t.TempDir()+"/missing.json")
	if err := serve(nil); err == nil {
		t.Fatal("serve with an unreadable JWKS started")
	}
}

func TestDevTokenNeedsATenant(t *testing.T) {
	if err := devToken([]string{"--scope", "ai.agent_read"}); err == nil {
		t.Fatal("dev-token without --tenant")
	}
}

// A malformed CORS_ALLOWED_ORIGINS stops the server at start, --dev or not.
func TestServeRefusesMalformedCORSOrigins(t *testing.T) {
	t.Setenv("CORS_ALLOWED_ORIGINS", "https://admin.example.com/")
	for _, args := range [][]string{nil, {"--dev"}} {
		err := serve(args)
		if err == nil || !strings.Contains(err.Error(), "CORS_ALLOWED_ORIGINS") || !strings.Contains(err.Error(), "trailing slash") {
			t.Errorf("serve %v with a trailing slash in an origin: %v", args, err)
		}
	}
}

// serve --dev allows any origin unless CORS_ALLOWED_ORIGINS names some.
func TestDevDefaultsToAnyOrigin(t *testing.T) {
	endpoint := testenv.EndpointFor(t) // devSetup would start a DynamoDB Local of its own without one
	for _, c := range []struct{ set, want string }{{"", "*"}, {"http://localhost:3000", "http://localhost:3000"}} {
		cfg, err := config.Load(func(k string) string {
			return map[string]string{"DATA_DIR": t.TempDir(), "DYNAMODB_ENDPOINT": endpoint, "CORS_ALLOWED_ORIGINS": c.set}[k]
		})
		if err != nil {
			t.Fatal(err)
		}
		stop, err := devSetup(context.Background(), slog.New(slog.DiscardHandler), &cfg)
		if err != nil {
			t.Fatal(err)
		}
		stop()
		if !slices.Equal(cfg.CORSAllowedOrigins, []string{c.want}) {
			t.Errorf("CORS_ALLOWED_ORIGINS=%q: serve --dev allows %q, want %q", c.set, cfg.CORSAllowedOrigins, c.want)
		}
	}
}
