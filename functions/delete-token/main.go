// Command delete-token is the Lambda function of the route "delete-token" (see pkg/api.Routes).
package main

import "aitokens/pkg/lambdafn"

func main() { lambdafn.Start("delete-token", nil) }
