// Command helloworld is the floor the functions' cold start is measured against: the smallest
// aws-lambda-go function, built with the same flags as the real ones (BenchmarkColdStartVersusHelloWorld).
package main

import "github.com/aws/aws-lambda-go/lambda"

func main() { lambda.Start(func() (string, error) { return "hello", nil }) }
