// Package sdkchain is the AWS SDK's default configuration chain (environment, shared config
// and credentials files, SSO, assumed roles, container and instance credentials) for the local
// server. The Lambda functions do not link it (see pkg/awsconf).
package sdkchain

import (
	"context"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"

	"aitokens/pkg/awsconf"
	"aitokens/pkg/awsretry"
)

// Load is an awsconf.Loader: the SDK's default configuration with policy applied, and
// awsconf's logger (JSON lines) instead of the SDK's plain text.
func Load(ctx context.Context, policy awsretry.Policy) (aws.Config, error) {
	return config.LoadDefaultConfig(ctx, config.WithRetryer(policy.NewRetryer), config.WithHTTPClient(policy.HTTPClient()),
		config.WithLogger(awsconf.Logger()), config.WithAPIOptions(awsretry.APIOptions()))
}
