package service

import (
	"context"

	"aitokens/pkg/token"
)

// Reasons only the relay refuses with.
const (
	// ReasonNotRelayable: the token has no egress policy, so it may not leave through the relay.
	ReasonNotRelayable token.Reason = "not_relayable"
	// ReasonHostNotAllowed: the host asked for is not in the policy's allowedHosts.
	ReasonHostNotAllowed token.Reason = "host_not_allowed"
)

// RelayGrant is what the relay needs to forward one call to hostport: the value and the token's
// egress policy. It makes resolve's checks through resolve's path (exists, not expired or
// retired, a restricted token's consumer registered; the warm cache, so no KMS call when warm),
// then the relay's own: the token has a policy and the policy admits hostport, both decided from
// the token as read, before its value is opened or its use recorded, so that a refused host
// costs no KMS call and no write; then the value must be injectable. The policy is the one the
// value opened under (its digest is in the encryption context: a policy rewritten in the table
// to admit another host does not open). Every refusal and key-service failure is an audit
// event with action relay; the value is never in one.
func (s *Service) RelayGrant(ctx context.Context, tenant, id string, consumer *token.Consumer, hostport, requestID string) ([]byte, token.Egress, error) {
	admit := func(t token.Token) error {
		switch {
		case t.Egress == nil:
			return &token.Error{Kind: token.Forbidden, Reason: ReasonNotRelayable, ResourceID: id,
				Message: "The token " + id + " has no egress policy; it cannot be used through the relay."}
		case !t.Egress.AllowsHost(hostport):
			return &token.Error{Kind: token.Forbidden, Reason: ReasonHostNotAllowed, ResourceID: id,
				Message: "The token " + id + " may not be sent to this host; its egress policy does not list it."}
		}
		return nil
	}
	accept := func(value []byte) error {
		if !injectable(value) {
			return &token.Error{Kind: token.Forbidden, Reason: ReasonNotInjectable, ResourceID: id,
				Message: "The value of token " + id + " holds a control character or {{; the relay does not inject it."}
		}
		return nil
	}
	t, value, err := s.resolveWith(ctx, tenant, id, consumer, admit, accept)
	reason := refusal(err)
	if e := token.As(err); err != nil && (e.Reason == ReasonNotRelayable || e.Reason == ReasonHostNotAllowed || e.Reason == ReasonNotInjectable) {
		reason = string(e.Reason)
	}
	if reason != "" {
		actor := "unnamed"
		if consumer != nil {
			actor = consumer.Kind + "/" + consumer.ID
		}
		_ = s.store.RecordEvent(ctx, tenant, token.Event{At: s.now(), Action: token.ActionRelay, Actor: actor,
			RequestID: requestID, TokenID: id, Version: t.Version, Outcome: reason})
	}
	if err != nil {
		return nil, token.Egress{}, err
	}
	return value, *t.Egress, nil
}

// ReasonNotInjectable: the value holds what must never reach a header or query parameter
// (CR, LF, another control character, or "{{" that a template engine downstream might expand).
const ReasonNotInjectable token.Reason = "value_not_injectable"

// injectable says whether value may be put into a request as the policy's template says.
func injectable(value []byte) bool {
	for i, c := range value {
		if c < 0x20 || c == 0x7f || c == '{' && i+1 < len(value) && value[i+1] == '{' {
			return false
		}
	}
	return true
}
