// Command sweep-expiring is the internal function, run hourly by its schedule, that writes the
// expiring and expired audit events of tokens whose expiry is near or past (pkg/reminders).
// It has no API route.
package main

import "aitokens/pkg/lambdafn/eventfn"

func main() { eventfn.StartSweepExpiring() }
