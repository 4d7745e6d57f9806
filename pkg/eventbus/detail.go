// Package eventbus publishes the audit trail to EventBridge. The audit event items, written in
// the same DynamoDB transaction as each change, are the outbox: the table's stream (NEW_IMAGE)
// carries each new event item to Publisher.Handle (the publish-events Lambda, or the in-process
// stream reader of `aitokens serve --dev`), which puts it on the stack's bus. Delivery is at
// least once; the detail's id (the event item's key) lets a consumer drop repeats.
package eventbus

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"

	"github.com/aws/aws-lambda-go/events"

	"aitokens/pkg/token"
)

// DetailTypes maps each audit action to the detail-type of its event on the bus: the one
// place to extend when a new action is added (a test requires an entry for every action).
var DetailTypes = map[string]string{
	token.ActionCreate:          "AI Token Created",
	token.ActionUpdate:          "AI Token Updated",
	token.ActionPatch:           "AI Token Updated",
	token.ActionDelete:          "AI Token Deleted",
	token.ActionForceDelete:     "AI Token Deleted",
	token.ActionUsageRegister:   "AI Token Usage Registered",
	token.ActionUsageUnregister: "AI Token Usage Unregistered",
	token.ActionResolve:         "AI Token Resolve Refused", // only refused resolves are recorded
	token.ActionRelay:           "AI Token Relay Refused",   // only refused relay calls are recorded
	token.ActionExpiring:        "AI Token Expiring",
	token.ActionExpired:         "AI Token Expired",
	token.ActionReplaced:        "AI Token Replaced", // on the old token; the new one's create carries replaces
}

// DetailTypeOther is the detail-type of an action this publisher does not know (one written by
// a newer version of the service): published rather than held back, its action in the detail.
const DetailTypeOther = "AI Token Event"

// DetailType is the detail-type of an action's events.
func DetailType(action string) string {
	if dt, ok := DetailTypes[action]; ok {
		return dt
	}
	return DetailTypeOther
}

// eventSKPrefix is the sort key prefix of the audit event items (pkg/store/events.go): the only
// items published.
const eventSKPrefix = "event#"

// StreamFilterPattern is the event source mapping's filter (template.yaml holds the same
// pattern, checked by a test): new items whose sort key is an audit event's. Publishable is the
// same test in Go, applied by the function too and by the local stream reader.
const StreamFilterPattern = `{"eventName":["INSERT"],"dynamodb":{"Keys":{"sk":{"S":[{"prefix":"event#"}]}}}}`

// Publishable reports whether a stream record is a new audit event item.
func Publishable(r events.DynamoDBEventRecord) bool {
	sk, ok := r.Change.Keys["sk"]
	return r.EventName == "INSERT" && ok && sk.DataType() == events.DataTypeString && strings.HasPrefix(sk.String(), eventSKPrefix)
}

// Detail is an event's detail: the audit event's fields (the events route shows the same) and
// its key as id. It is built from named attributes only, so no other attribute of an item can
// reach the bus; an audit event never holds a value, hint, digest, ciphertext or JWT.
type Detail struct {
	// ID is the event item's key, "<tenant>/<sort key>": the same on every delivery of the
	// event, and unique per event. Consumers drop repeats by it.
	ID         string   `json:"id"`
	Tenant     string   `json:"tenant"`
	TokenID    string   `json:"tokenId"`
	At         string   `json:"at"`
	Action     string   `json:"action"`
	Actor      string   `json:"actor"`
	RequestID  string   `json:"requestId"`
	Version    int      `json:"version"`
	Outcome    string   `json:"outcome"`
	Changes    []string `json:"changes,omitempty"`
	Usage      string   `json:"usage,omitempty"`
	Replaces   string   `json:"replaces,omitempty"`   // a create that replaced another token: its id
	ReplacedBy string   `json:"replacedBy,omitempty"` // replaced: the successor's id
	Lead       string   `json:"lead,omitempty"`
	ExpiresAt  string   `json:"expiresAt,omitempty"`
}

// DetailOf reads the detail of a new audit event item's stream record.
func DetailOf(r events.DynamoDBEventRecord) (Detail, error) {
	img := r.Change.NewImage
	str := func(name string) string {
		if v, ok := img[name]; ok && v.DataType() == events.DataTypeString {
			return v.String()
		}
		return ""
	}
	d := Detail{Tenant: str("pk"), TokenID: str("tokenId"), At: str("at"), Action: str("action"), Actor: str("actor"),
		RequestID: str("requestId"), Outcome: str("outcome"), Usage: str("usage"), Replaces: str("replaces"), ReplacedBy: str("replacedBy"),
		Lead: str("lead"), ExpiresAt: str("expiresAt")}
	sk := str("sk")
	if d.Tenant == "" || !strings.HasPrefix(sk, eventSKPrefix) || d.Action == "" || d.TokenID == "" || d.At == "" {
		return Detail{}, errors.New("eventbus: the record's new image is not an audit event item (no NEW_IMAGE, or pk, sk, action, tokenId or at missing)")
	}
	d.ID = d.Tenant + "/" + sk
	if v, ok := img["version"]; ok && v.DataType() == events.DataTypeNumber {
		d.Version, _ = strconv.Atoi(v.Number())
	}
	if v, ok := img["changes"]; ok {
		switch v.DataType() {
		case events.DataTypeList:
			for _, c := range v.List() {
				if c.DataType() == events.DataTypeString {
					d.Changes = append(d.Changes, c.String())
				}
			}
		case events.DataTypeStringSet:
			d.Changes = v.StringSet()
		}
	}
	return d, nil
}

// JSON is the detail as the entry carries it.
func (d Detail) JSON() string {
	b, _ := json.Marshal(d) // strings, numbers and lists always marshal
	return string(b)
}
