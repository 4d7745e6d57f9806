package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"aitokens/pkg/config"
	"aitokens/pkg/devtools/devkeys"
)

type multiFlag []string

func (m *multiFlag) String() string     { return fmt.Sprint(*m) }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// devToken prints only the JWT, so that `TOKEN=$(go run ./cmd/aitokens dev-token ...)` works.
func devToken(args []string) error {
	fs := flag.NewFlagSet("dev-token", flag.ContinueOnError)
	tenant := fs.String("tenant", "", "tenant claim (required)")
	ttl := fs.Duration("ttl", time.Hour, "lifetime of the token")
	subject := fs.String("sub", "dev-user", "subject claim")
	var scopes multiFlag
	fs.Var(&scopes, "scope", "scope to grant (repeat for several): ai.agent_read, ai.agent_manage")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *tenant == "" {
		return fmt.Errorf("dev-token: --tenant is required")
	}
	cfg, err := config.Load(os.Getenv)
	if err != nil {
		return err
	}
	key, err := devkeys.Ensure(cfg.DataDir)
	if err != nil {
		return err
	}
	jwt, err := devkeys.Mint(key, devkeys.Claims{Tenant: *tenant, TenantClaim: cfg.TenantClaim,
		Scopes: scopes, Subject: *subject, TTL: *ttl})
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(os.Stdout, jwt)
	return err
}
