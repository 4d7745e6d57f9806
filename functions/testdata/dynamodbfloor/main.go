// Command dynamodbfloor is the floor of any function that talks to DynamoDB with the AWS SDK:
// the hello-world function plus a DynamoDB client made at init (no call). Measured beside the
// functions and the hello-world (BenchmarkColdStartVersusHelloWorld), it shows which share of a
// cold start is the SDK's package initialisation rather than this service's.
package main

import (
	"os"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
)

func main() {
	client := dynamodb.NewFromConfig(aws.Config{Region: os.Getenv("AWS_REGION")})
	lambda.Start(func() (bool, error) { return client != nil, nil })
}
