// Command patch-token is the Lambda function of the route "patch-token" (see pkg/api.Routes).
package main

import "aitokens/pkg/lambdafn"

func main() { lambdafn.Start("patch-token", nil) }
