// Command list-tokens is the Lambda function of the route "list-tokens" (see pkg/api.Routes).
package main

import "aitokens/pkg/lambdafn"

func main() { lambdafn.Start("list-tokens", nil) }
