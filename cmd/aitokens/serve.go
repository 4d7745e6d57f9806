package main

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"aitokens/pkg/api"
	"aitokens/pkg/auth/jwtauth"
	"aitokens/pkg/config"
	"aitokens/pkg/devtools/devkeys"
	"aitokens/pkg/relay"
	"aitokens/pkg/seal"
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
	srv, err := buildServer(ctx, cfg, log, *dev)
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
// as API Gateway's authorizer does it, the sealer, the store, every route, the relay under
// relay.Prefix (dev: plain HTTP to localhost upstreams too), and newLocalServer's limits, CORS
// and local caller check.
func buildServer(ctx context.Context, cfg config.Config, log *slog.Logger, dev bool) (*http.Server, error) {
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
	// The relay opens values as resolve-token does: through the resolve cache, so a warm call
	// makes no KMS call. The API's service never opens one and keeps the plain sealer.
	relaySvc, err := service.New(store.New(client, cfg.TableName).WithAuditRetention(cfg.AuditRetention),
		seal.NewCache(sealer, cfg.ResolveCacheSize, cfg.ResolveCacheTTL), nil)
	if err != nil {
		return nil, err
	}
	rl, err := relay.New(relay.Config{Grants: relaySvc, Log: log, Dev: dev})
	if err != nil {
		return nil, err
	}
	return newLocalServer(":"+cfg.Port, handler, rl, limitsFor(cfg), cfg.CORSAllowedOrigins, log), nil
}

// newHTTPServer is newLocalServer without the relay.
func newHTTPServer(addr string, handler http.Handler, l limits, corsOrigins []string) *http.Server {
	return newLocalServer(addr, handler, nil, l, corsOrigins, nil)
}

// newLocalServer is the local server with its limits; requests beyond maxConcurrent get a JSON
// 503 with Retry-After. CORS for corsOrigins (none: off) wraps the API, so that its preflights
// take no request slot and every answer, the limiter's 503 included, carries the headers a page
// on an allowed origin needs to read it. The relay (nil: none) is under relay.Prefix, outside
// CORS and the API's request cap, behind localOnly.
func newLocalServer(addr string, handler, rl http.Handler, l limits, corsOrigins []string, log *slog.Logger) *http.Server {
	root := api.WithCORS(handler, corsOrigins)
	if rl != nil {
		apiH, local := root, localOnly(rl, log)
		// A prefix test, not a ServeMux: the relay's path goes on exactly as the caller wrote it.
		root = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasPrefix(r.URL.Path, relay.Prefix) {
				local.ServeHTTP(w, r)
				return
			}
			apiH.ServeHTTP(w, r)
		})
	}
	return &http.Server{
		Addr:              addr,
		Handler:           root,
		ReadHeaderTimeout: l.readHeader,
		ReadTimeout:       l.read,
		WriteTimeout:      l.write,
		IdleTimeout:       l.idle,
	}
}

// relayStreamLimit bounds the writing of one relay answer on the local server, as Lambda bounds
// a function URL's response stream (15 minutes, the longest a function runs). The server's own
// write timeout is the API's (REQUEST_TIMEOUT + 5 s), far too short for an LLM's streamed
// answer. The request itself (headers and body) must still arrive within REQUEST_TIMEOUT.
const relayStreamLimit = 15 * time.Minute

// localOnly is the local stand-in for the function URL's AWS_IAM auth: the relay spends the
// tenant's keys for whoever reaches it, so locally it answers only a caller on this machine,
// addressed by a loopback name (a page's DNS-rebound name is refused), and not a browser
// (a request with Origin or Sec-Fetch-Site, which browsers send and curl and SDKs do not): a
// page on any site must not drive it from the developer's browser. Anything else is a 403 in
// the API's error shape, with one log line, and never reaches the relay.
func localOnly(next http.Handler, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if why := notLocal(r); why != "" {
			b := make([]byte, 16)
			rand.Read(b)
			rid := hex.EncodeToString(b)
			log.Info("relay", "requestId", rid, "route", "relay", "method", r.Method, "status", http.StatusForbidden, "outcome", "not_local_caller", "why", why)
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Cache-Control", "no-store")
			w.Header().Set("X-Request-Id", rid)
			w.WriteHeader(http.StatusForbidden)
			json.NewEncoder(w).Encode(api.ErrorMessage{Code: http.StatusForbidden, Status: http.StatusText(http.StatusForbidden),
				Message: "The local relay answers only callers on this machine (loopback address and name), and no browser page.", RequestID: rid})
			return
		}
		http.NewResponseController(w).SetWriteDeadline(time.Now().Add(relayStreamLimit))
		next.ServeHTTP(w, r)
	})
}

// notLocal says why r is not a local, non-browser caller ("" when it is one).
func notLocal(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if ip, perr := netip.ParseAddr(host); err != nil || perr != nil || !ip.Unmap().IsLoopback() {
		return "remote address"
	}
	name := r.Host
	if h, _, err := net.SplitHostPort(name); err == nil {
		name = h
	}
	name = strings.TrimSuffix(strings.Trim(name, "[]"), ".")
	if ip, err := netip.ParseAddr(name); !strings.EqualFold(name, "localhost") && (err != nil || !ip.Unmap().IsLoopback()) {
		return "host name"
	}
	if r.Header.Get("Origin") != "" || r.Header.Get("Sec-Fetch-Site") != "" {
		return "browser"
	}
	return ""
}
