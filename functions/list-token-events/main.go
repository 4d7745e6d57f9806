// Command list-token-events is the Lambda function of the route "list-token-events" (see pkg/api.Routes).
package main

import "aitokens/pkg/lambdafn"

func main() { lambdafn.Start("list-token-events", nil) }
