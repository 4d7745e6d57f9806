// Command register-token-usage is the Lambda function of the route "register-token-usage" (see pkg/api.Routes).
package main

import "aitokens/pkg/lambdafn"

func main() { lambdafn.Start("register-token-usage", nil) }
