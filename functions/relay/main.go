// Command relay is the relay (pkg/relay) behind its own Lambda function URL: InvokeMode
// RESPONSE_STREAM, so an upstream's answer streams back as it comes, and AuthType AWS_IAM, so
// only principals granted lambda:InvokeFunctionUrl may call it (its counterpart of
// resolve-token's lambda:InvokeFunction). It opens values, so it links the KMS sealer.
package main

import (
	"aitokens/pkg/lambdafn"
	"aitokens/pkg/seal/kmsseal"
)

func main() { lambdafn.StartRelay(kmsseal.FromConfig) }
