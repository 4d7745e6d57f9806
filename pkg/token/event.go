package token

import "time"

// Actions of the audit trail.
const (
	ActionCreate          = "create"
	ActionUpdate          = "update" // a PUT on an existing token; Changes says what changed
	ActionPatch           = "patch"
	ActionDelete          = "delete"
	ActionForceDelete     = "force_delete"
	ActionUsageRegister   = "usage_register"
	ActionUsageUnregister = "usage_unregister"
	ActionResolve         = "resolve"  // only refused resolves and those the key service failed are recorded
	ActionReplaced        = "replaced" // on the old token, when a successor replaces it
	ActionRelay           = "relay"    // only refused relay calls are recorded (pkg/relay)
	// Reminders, written by the expiry sweeper (pkg/reminders): they change nothing.
	ActionExpiring = "expiring" // the token expires within Event.Lead
	ActionExpired  = "expired"  // the token's expiresAt has passed
)

// Actions is every action the service writes: what the bus's detail-types must cover.
var Actions = []string{ActionCreate, ActionUpdate, ActionPatch, ActionDelete, ActionForceDelete,
	ActionUsageRegister, ActionUsageUnregister, ActionResolve, ActionReplaced, ActionRelay,
	ActionExpiring, ActionExpired}

// Outcomes of an event: a change is recorded only when it happened; a resolve only when it
// was refused or failed on the key service, with the reason.
const OutcomeSuccess = "success"

// Event is one entry of a token's audit trail. It never holds a value, a hint, a digest, a
// ciphertext or a JWT: who, what, when, under which request, and the version it left.
type Event struct {
	At        time.Time
	Action    string
	Actor     string // the JWT's sub; for a resolve, the consumer ("agent/support") or "unnamed"
	RequestID string
	TokenID   string
	Version   int      // the token's version after the change (0 when there is no token)
	Outcome   string   // OutcomeSuccess, or the reason a resolve was refused or failed on the key service
	Changes   []string // what an update or patch changed: name, expiresAt, restricted
	Usage     string   // the usage a register or unregister concerns ("agent/support")
	// Replaces is on the create event of a token that replaces another (its id); ReplacedBy on
	// the replaced event of the old one (its successor's id).
	Replaces   string
	ReplacedBy string
	// Reminders only: the lead time an expiring event announces ("168h") and the expiresAt
	// it is about (an expired event too).
	Lead      string
	ExpiresAt *time.Time
}
