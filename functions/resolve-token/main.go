// Command resolve-token is the internal function that returns a token's value to the
// platform's own services. It is invoked directly (IAM lambda:InvokeFunction), has no API route,
// and is the only function allowed kms:Decrypt.
package main

import (
	"aitokens/pkg/lambdafn"
	"aitokens/pkg/seal/kmsseal"
)

func main() { lambdafn.StartResolve(kmsseal.FromConfig) }
