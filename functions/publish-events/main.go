// Command publish-events is the internal function that publishes the audit trail: the table's
// DynamoDB stream (new audit event items only, filtered by its event source mapping) to the
// stack's EventBridge bus. It has no API route and reads no token.
package main

import "aitokens/pkg/lambdafn/eventfn"

func main() { eventfn.StartPublishEvents() }
