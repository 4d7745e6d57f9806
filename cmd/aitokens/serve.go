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
	"aitokens/pkg/config"
	"aitokens/pkg/devtools/devkeys"
	"aitokens/pkg/seal/kmsseal"
	"aitokens/pkg/service"
	"aitokens/pkg/store"
)

// limits are the local server's connection limits: a client that sends its headers or body
// slowly, is slow to take its answer, or holds an idle connection is cut off, so it cannot hold
// a goroutine forever; and at most maxConcurrent requests are served at once.
type limits struct {
	readHeader, read, write, idle time.Duration
	maxConcurrent                 int
}

// limitsFor derives the limits from the configuration: the whole request must arrive within
// the request timeout, and the answer may take that plus five seconds to write.
func limitsFor(cfg config.Config) limits {
	return limits{readHeader: min(5*time.Second, cfg.RequestTimeout), read: cfg.RequestTimeout,
		write: cfg.RequestTimeout + 5*time.Second, idle: 60 * time.Second, maxConcurrent: cfg.MaxConcurrent}
}

func serve(args []string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return serveUntil(ctx, args)
}

// serveUntil is serve until ctx ends (a signal, or a test).
func serveUntil(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	dev := fs.Bool("dev", false, "development mode: DynamoDB Local (unless DYNAMODB_ENDPOINT is set), dev JWT keys and local sealer under DATA_DIR, CORS for any origin unless CORS_ALLOWED_ORIGINS is set")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := config.Load(os.Getenv)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	if *dev {
		stopDB, err := devSetup(ctx, log, &cfg)
		if err != nil {
			return err
		}
		defer stopDB()
		// The table's stream to EventBridge (or the log), as publish-events does in AWS.
		stopEvents, err := startEventReader(ctx, log, cfg)
		if err != nil {
			return err
		}
		defer stopEvents()
	}
	srv, err := buildServer(ctx, cfg, log)
	if err != nil {
		return err
	}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(shutdown)
	}()
	log.Info("serving", "addr", "http://localhost:"+cfg.Port, "table", cfg.TableName, "dynamodb", cfg.DynamoDBEndpoint, "corsAllowedOrigins", cfg.CORSAllowedOrigins)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// devSetup is what --dev adds to cfg: development keys and the JWT settings that accept them,
// the local sealer, CORS for any origin (a dashboard on its own dev server just works), and the
// local database with its table. stop ends a DynamoDB Local it started.
func devSetup(ctx context.Context, log *slog.Logger, cfg *config.Config) (stop func(), err error) {
	if _, err := devkeys.Ensure(cfg.DataDir); err != nil {
		return nil, err
	}
	if cfg.JWKSFile == "" && cfg.JWKSURL == "" {
		cfg.JWKSFile = devkeys.JWKSPath(cfg.DataDir)
	}
	cfg.JWTIssuer = cmp.Or(cfg.JWTIssuer, devkeys.Issuer)
	cfg.JWTAudience = cmp.Or(cfg.JWTAudience, devkeys.Audience)
	if cfg.KMSKeyID == "" && cfg.MasterKeyFile == "" {
		cfg.MasterKeyFile = filepath.Join(cfg.DataDir, "master.key")
	}
	if len(cfg.CORSAllowedOrigins) == 0 {
		cfg.CORSAllowedOrigins = []string{config.AnyOrigin}
	}
	cfg.DynamoDBEndpoint, stop, err = localDynamoDB(ctx, log, *cfg)
	return stop, err
}

// buildServer is the local server of cfg, the one composition `serve` runs: JWT verification
// as API Gateway's authorizer does it, the sealer, the store, every route, and newHTTPServer's
// limits and CORS.
func buildServer(ctx context.Context, cfg config.Config, log *slog.Logger) (*http.Server, error) {
	authn, err := jwtauth.New(ctx, jwtauth.Config{JWKSFile: cfg.JWKSFile, JWKSURL: cfg.JWKSURL,
		Issuer: cfg.JWTIssuer, Audience: cfg.JWTAudience, TenantClaim: cfg.TenantClaim,
		RefreshInterval: cfg.JWKSRefreshInterval, Log: log})
	if err != nil {
		return nil, fmt.Errorf("%w (refusing to start without authentication; use --dev for local development)", err)
	}
	sealer, err := kmsseal.FromConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	client, err := store.NewClient(ctx, cfg.DynamoDBEndpoint, cfg.AWS)
	if err != nil {
		return nil, err
	}
	svc, err := service.New(store.New(client, cfg.TableName).WithAuditRetention(cfg.AuditRetention), sealer, nil)
	if err != nil {
		return nil, err
	}
	handler, err := api.New(api.Config{Service: svc, Auth: authn, Log: log, RequestTimeout: cfg.RequestTimeout,
		MaxConcurrent: cfg.MaxConcurrent})
	if err != nil {
		return nil, err
	}
	return newHTTPServer(":"+cfg.Port, handler, limitsFor(cfg), cfg.CORSAllowedOrigins), nil
}

// newHTTPServer is the local server with its limits; requests beyond maxConcurrent get a JSON
// 503 with Retry-After. CORS for corsOrigins (none: off) wraps everything else, so that its
// preflights take no request slot and every answer, the limiter's 503 included, carries the
// headers a page on an allowed origin needs to read it.
func newHTTPServer(addr string, handler http.Handler, l limits, corsOrigins []string) *http.Server {
	return &http.Server{
		Addr:              addr,
		Handler:           api.WithCORS(handler, corsOrigins),
		ReadHeaderTimeout: l.readHeader,
		ReadTimeout:       l.read,
		WriteTimeout:      l.write,
		IdleTimeout:       l.idle,
	}
}
