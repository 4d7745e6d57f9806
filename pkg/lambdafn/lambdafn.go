// Package lambdafn runs one route of the API as an AWS Lambda function behind API Gateway's
// HTTP API (payload 2.0), through aws-lambda-go-api-proxy's httpadapter. Everything costly
// (AWS clients, configuration) is made once, at init, and reused by every invocation.
package lambdafn

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/awslabs/aws-lambda-go-api-proxy/httpadapter"

	"aitokens/pkg/api"
	"aitokens/pkg/auth"
	"aitokens/pkg/awsconf"
	"aitokens/pkg/config"
	"aitokens/pkg/seal"
	"aitokens/pkg/service"
	"aitokens/pkg/store"
)

// SealerFactory builds the sealer of a function that seals or opens values (upsert-token and
// resolve-token). It is an argument so that the functions that never seal do not link a KMS
// client.
type SealerFactory func(ctx context.Context, cfg config.Config) (seal.Sealer, error)

// Handler builds the http.Handler of one function from its configuration.
func Handler(ctx context.Context, cfg config.Config, function string, sealer SealerFactory) (*api.Server, error) {
	return handler(ctx, cfg, function, sealer, newLogger(function, os.Stdout))
}

func handler(ctx context.Context, cfg config.Config, function string, sealer SealerFactory, log *slog.Logger) (*api.Server, error) {
	route, ok := api.RouteByFunction(function)
	if !ok {
		return nil, fmt.Errorf("lambdafn: no route for function %q", function)
	}
	svc, err := newService(ctx, cfg, sealer)
	if err != nil {
		return nil, err
	}
	return api.New(api.Config{Service: svc, Auth: auth.APIGateway{TenantClaim: cfg.TenantClaim}, Log: log,
		RequestTimeout: cfg.RequestTimeout, Routes: []api.Route{route}})
}

func newService(ctx context.Context, cfg config.Config, sealer SealerFactory) (*service.Service, error) {
	client, err := store.NewClient(ctx, cfg.DynamoDBEndpoint, cfg.AWS)
	if err != nil {
		return nil, err
	}
	var s seal.Sealer
	if sealer != nil {
		if s, err = sealer(ctx, cfg); err != nil {
			return nil, err
		}
	}
	return service.New(store.New(client, cfg.TableName).WithAuditRetention(cfg.AuditRetention), s, nil)
}

// loadConfig is the configuration of a function: the environment, with TABLE_NAME required.
func loadConfig() (config.Config, error) {
	if err := config.RequireTable(os.Getenv); err != nil {
		return config.Config{}, err
	}
	return config.Load(os.Getenv)
}

// initFailed logs why a function could not start, as one JSON line like every other, and exits.
func initFailed(function string, err error) {
	newLogger(function, os.Stdout).Error("init failed", "error", err.Error())
	os.Exit(1)
}

// Start runs function until the Lambda runtime stops it. Its output (stdout, which Lambda
// sends to CloudWatch Logs) is one JSON line per request and one metrics line per invocation.
func Start(function string, sealer SealerFactory) {
	cfg, err := loadConfig()
	if err != nil {
		initFailed(function, err)
	}
	o := NewObserver(function, cfg.ServiceName, os.Stdout)
	awsconf.SetLogger(o.Logger()) // the SDK's own lines too, before its clients are made
	h, err := handler(context.Background(), cfg, function, sealer, o.Logger())
	if err != nil {
		initFailed(function, err)
	}
	lambda.Start(o.HTTP(httpadapter.NewV2(h).ProxyWithContext))
}
