// Package lambdafn runs one route of the API as an AWS Lambda function behind API Gateway's
// HTTP API (payload 2.0), through aws-lambda-go-api-proxy's httpadapter. Everything costly
// (AWS clients, configuration) is made once, at init, and reused by every invocation.
package lambdafn

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/awslabs/aws-lambda-go-api-proxy/httpadapter"

	"aitokens/pkg/api"
	"aitokens/pkg/auth"
	"aitokens/pkg/seal"
	"aitokens/pkg/service"
	"aitokens/pkg/store"
)

// SealerFactory builds the sealer of a function that seals values (only upsert-token). It is
// an option so that the functions that never seal do not link a KMS client.
type SealerFactory func(ctx context.Context) (seal.Sealer, error)

// Handler builds the http.Handler of one function from the environment:
// TABLE_NAME, DYNAMODB_ENDPOINT (local only), TENANT_CLAIM.
func Handler(ctx context.Context, function string, sealer SealerFactory) (http.Handler, error) {
	route, ok := api.RouteByFunction(function)
	if !ok {
		return nil, fmt.Errorf("lambdafn: no route for function %q", function)
	}
	table := os.Getenv("TABLE_NAME")
	if table == "" {
		return nil, fmt.Errorf("lambdafn: TABLE_NAME is not set")
	}
	client, err := store.NewClient(ctx, os.Getenv("DYNAMODB_ENDPOINT"))
	if err != nil {
		return nil, err
	}
	svc := service.New(store.New(client, table), nil)
	if sealer != nil {
		if svc.Sealer, err = sealer(ctx); err != nil {
			return nil, err
		}
	}
	return api.New(svc, auth.APIGateway{TenantClaim: os.Getenv("TENANT_CLAIM")}, jsonLogger(), route), nil
}

// jsonLogger writes one JSON object per line to stdout, which Lambda sends to CloudWatch Logs.
// The request log line carries the Lambda request id itself (api uses it as the request id).
func jsonLogger() *slog.Logger { return slog.New(slog.NewJSONHandler(os.Stdout, nil)) }

// Start runs function until the Lambda runtime stops it.
func Start(function string, sealer SealerFactory) {
	h, err := Handler(context.Background(), function, sealer)
	if err != nil {
		slog.Error("init failed", "function", function, "error", err.Error())
		os.Exit(1)
	}
	lambda.Start(httpadapter.NewV2(h).ProxyWithContext)
}
