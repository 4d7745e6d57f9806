// Command get-token is the Lambda function of the route "get-token" (see pkg/api.Routes).
package main

import "aitokens/pkg/lambdafn"

func main() { lambdafn.Start("get-token", nil) }
