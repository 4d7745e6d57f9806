package main

import (
	"strings"
	"testing"
)

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
