// Command unregister-token-usage is the Lambda function of the route "unregister-token-usage" (see pkg/api.Routes).
package main

import "aitokens/pkg/lambdafn"

func main() { lambdafn.Start("unregister-token-usage", nil) }
