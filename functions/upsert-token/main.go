// Command upsert-token is the Lambda function of the route "upsert-token" (see pkg/api.Routes),
// the only public route that seals values, hence the only one that links the KMS client.
package main

import (
	"aitokens/pkg/lambdafn"
	"aitokens/pkg/seal/kmsseal"
)

func main() { lambdafn.Start("upsert-token", kmsseal.FromConfig) }
