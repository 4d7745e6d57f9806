package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"aitokens/pkg/api"
	"aitokens/pkg/auth/jwtauth"
	"aitokens/pkg/devkeys"
	"aitokens/pkg/seal/kmsseal"
	"aitokens/pkg/service"
	"aitokens/pkg/store"
)

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	dev := fs.Bool("dev", false, "development mode: DynamoDB Local (unless DYNAMODB_ENDPOINT is set), dev JWT keys and local sealer under DATA_DIR")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))

	dataDir := envOr("DATA_DIR", ".data")
	jwtCfg := jwtauth.Config{
		JWKSFile: os.Getenv("JWKS_FILE"), JWKSURL: os.Getenv("JWKS_URL"),
		Issuer: os.Getenv("JWT_ISSUER"), Audience: os.Getenv("JWT_AUDIENCE"), TenantClaim: os.Getenv("TENANT_CLAIM"),
	}
	endpoint := os.Getenv("DYNAMODB_ENDPOINT")
	if *dev {
		if _, err := devkeys.Ensure(dataDir); err != nil {
			return err
		}
		if jwtCfg.JWKSFile == "" && jwtCfg.JWKSURL == "" {
			jwtCfg.JWKSFile = devkeys.JWKSPath(dataDir)
		}
		jwtCfg.Issuer = cmp.Or(jwtCfg.Issuer, devkeys.Issuer)
		jwtCfg.Audience = cmp.Or(jwtCfg.Audience, devkeys.Audience)
	}
	table := envOr("TABLE_NAME", "ai-tokens")
	if *dev {
		var stopDB func()
		var err error
		if endpoint, stopDB, err = localDynamoDB(ctx, log, dataDir, table); err != nil {
			return err
		}
		defer stopDB()
	}
	authn, err := jwtauth.New(ctx, jwtCfg)
	if err != nil {
		return fmt.Errorf("%w (refusing to start without authentication; use --dev for local development)", err)
	}
	if *dev && os.Getenv("KMS_KEY_ID") == "" && os.Getenv("MASTER_KEY_FILE") == "" {
		os.Setenv("MASTER_KEY_FILE", filepath.Join(dataDir, "master.key"))
	}
	sealer, err := kmsseal.FromEnv(ctx)
	if err != nil {
		return err
	}
	client, err := store.NewClient(ctx, endpoint)
	if err != nil {
		return err
	}
	handler := api.New(service.New(store.New(client, table), sealer), authn, log)
	addr := ":" + envOr("PORT", "8080")
	srv := &http.Server{Addr: addr, Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(shutdown)
	}()
	log.Info("serving", "addr", "http://localhost"+addr, "table", table, "dynamodb", endpoint)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
