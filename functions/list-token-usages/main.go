// Command list-token-usages is the Lambda function of the route "list-token-usages" (see pkg/api.Routes).
package main

import "aitokens/pkg/lambdafn"

func main() { lambdafn.Start("list-token-usages", nil) }
