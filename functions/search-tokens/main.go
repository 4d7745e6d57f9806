// Command search-tokens is the Lambda function of the route "search-tokens" (see pkg/api.Routes).
package main

import "aitokens/pkg/lambdafn"

func main() { lambdafn.Start("search-tokens", nil) }
