// Command aitokens is the developer tool of the AI Tokens service: a local server running the
// same handlers as the Lambdas, development JWTs, and local Lambda invocation.
package main

import (
	"fmt"
	"os"

	"aitokens/pkg/awsconf"
	"aitokens/pkg/awsconf/sdkchain"
)

const usage = `usage: aitokens <command> [flags]

commands:
  serve       run the HTTP API (serve --dev: DynamoDB Local, dev keys and local sealer under .data/)
  dev-token   print a development JWT that "serve --dev" accepts
  invoke      run one Lambda function's real binary with an event (invoke get-token --event events/get-token.json)
  backfill    once after deploying the expiry and list indexes: give the tokens written before
              them their index keys and count them (idempotent: run again after a stop)
              (TABLE_NAME, DYNAMODB_ENDPOINT or the AWS SDK's configuration)
  backfill-expiry-days
              the expiry index's part of backfill alone
  with-dynamodb-local -- command [args...]
              run a command with DYNAMODB_ENDPOINT set to a new in-memory DynamoDB Local (make test)
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	// The local server may run with a profile, SSO or an assumed role: the SDK's whole chain.
	awsconf.SetLoader(sdkchain.Load)
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2:])
	case "dev-token":
		err = devToken(os.Args[2:])
	case "invoke":
		err = invoke(os.Args[2:])
	case "backfill":
		err = backfill(true)
	case "backfill-expiry-days":
		err = backfill(false)
	case "with-dynamodb-local":
		code, err := withDynamoDBLocal(os.Args[2:])
		if err != nil {
			fmt.Fprintln(os.Stderr, "aitokens:", err)
		}
		os.Exit(code) // the command's own exit code, or 2 for a usage error
	default:
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "aitokens:", err)
		os.Exit(1)
	}
}
