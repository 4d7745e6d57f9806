package store

import (
	"context"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"aitokens/pkg/token"
)

// MaxReplaceUsages is the most usages a replacement carries over in its one transaction: the new
// token, its create event, its count, the old token's update and its event (5 items), and per
// usage its copy, the copy's usage_register event and the check that the old usage is still there (3).
const MaxReplaceUsages = (maxTransactionItems - 5) / 3

// Replace creates t as the successor of the token t.Replaces, in one transaction: t with a
// copy of every usage (and so every consumer) of the old token, each with its usage_register
// event; the old token linked to t by replacedBy and set to expire at the earlier of its own
// expiry and now + grace (its retiresAt, which only ever moves earlier after); and a create event
// on t and a replaced event on the old one. t is restricted when the old token is (a replacement
// never widens who may resolve); t's egress policy (the service carried the old one over or
// checked that t's narrows it) must narrow the old token's. It is conditioned on the old token
// being exactly what it read (identity, version, restriction, egress policy, not replaced yet,
// its usages the set copied), so it copies
// all of them or writes nothing. The old value is
// never touched. A retry of the same request whose response was lost is recognised.
func (s *Store) Replace(ctx context.Context, t token.Token, sealed token.Sealed, grace time.Duration, ev token.Event) error {
	uid, old := newUID(), t.Replaces
	return s.rounds(ctx, func() error {
		st, err := s.state(ctx, t.Tenant, old)
		switch {
		case err != nil:
			return err
		case !st.found:
			return token.ErrNotFound(old)
		case st.replacedBy == t.ID && st.requestID == ev.RequestID:
			return nil // our own earlier attempt went through and its response was lost
		case st.replacedBy != "":
			return &token.Error{Kind: token.Conflict, Reason: token.AlreadyReplaced, ResourceID: old, Successor: st.replacedBy}
		}
		// The successor's policy was decided (and bound into its sealed value) from the
		// predecessor the service read: if the token found here has another policy (deleted and
		// created again meanwhile), the decision does not hold; the client asks again.
		if st.egress != nil && (t.Egress == nil || t.Egress.CheckNarrows(*st.egress) != nil) {
			return &token.Error{Kind: token.Conflict, Reason: token.ConcurrentChange, ResourceID: old}
		}
		usages, err := s.Usages(ctx, t.Tenant, old)
		switch {
		case err != nil:
			return err
		case len(usages) != st.usageCount:
			return errMoved // a usage came or went between the two reads
		case len(usages) > MaxReplaceUsages:
			return &token.Error{Kind: token.Conflict, Reason: token.TooManyUsages, ResourceID: old, Limit: MaxReplaceUsages}
		}
		at := s.stamp(st)
		retire := at.Add(grace)
		changes := []string{"replacedBy"}
		if st.expiresAt != nil && st.expiresAt.Before(retire) {
			retire = *st.expiresAt // it retires earlier by itself
		} else {
			changes = append([]string{"expiresAt"}, changes...)
		}

		keys := make([]string, len(usages))
		for i, u := range usages {
			keys[i] = u.Key()
		}
		now := token.FormatTime(at)
		it := newItem(t, sealed, uid, ev.RequestID, at)
		it.Restricted, it.Replaces, it.UsageCount, it.Consumers = t.Restricted || st.restricted, old, len(usages), keys
		av, err := attributevalue.MarshalMap(it)
		if err != nil {
			return token.InternalError(err)
		}
		created := ev
		created.At, created.Action, created.TokenID, created.Version, created.Replaces = at, token.ActionCreate, t.ID, 1, old
		createdEvent := s.eventPut(t.Tenant, created, "")
		replaced := ev
		replaced.At, replaced.Action, replaced.TokenID, replaced.Version = at, token.ActionReplaced, old, st.version+1
		replaced.ReplacedBy, replaced.Changes = t.ID, changes
		replacedEvent := s.eventPut(t.Tenant, replaced, "")
		cond, values := st.sameToken()
		cond += st.listedCond()
		set := "SET expiresAt = :exp, expiryDay = :day, retiresAt = :exp, replacedBy = :new, modifiedAt = :now, eventAt = :eventAt, requestId = :req"
		if st.listed {
			set += ", byExpires = :bexp, byModified = :bmod"
			values[":bexp"] = &types.AttributeValueMemberS{Value: expiresKey(token.FormatTime(retire), old)}
			values[":bmod"] = &types.AttributeValueMemberS{Value: now + "#" + old}
		}
		values[":n"] = &types.AttributeValueMemberN{Value: strconv.Itoa(len(usages))}
		values[":exp"] = &types.AttributeValueMemberS{Value: token.FormatTime(retire)}
		values[":day"] = &types.AttributeValueMemberS{Value: expiryDay(retire)}
		values[":new"] = &types.AttributeValueMemberS{Value: t.ID}
		values[":now"] = &types.AttributeValueMemberS{Value: now}
		values[":req"] = &types.AttributeValueMemberS{Value: ev.RequestID}
		values[":one"] = &types.AttributeValueMemberN{Value: "1"}
		egressCond := "attribute_not_exists(egressDigest)" // the policy as read: the successor's was checked against it
		if st.egressDigest != "" {
			egressCond = "egressDigest = :egd"
			values[":egd"] = &types.AttributeValueMemberS{Value: st.egressDigest}
		}
		restrictedCond := "attribute_not_exists(restricted)"
		if st.restricted {
			restrictedCond = "restricted = :true"
			values[":true"] = &types.AttributeValueMemberBOOL{Value: true}
		}
		eventsCond := eventsBefore(at, values)
		items := []types.TransactWriteItem{
			{Put: &types.Put{TableName: aws.String(s.table), Item: av, ConditionExpression: aws.String("attribute_not_exists(pk)")}},
			createdEvent,
			{Update: &types.Update{TableName: aws.String(s.table), Key: key(t.Tenant, old),
				UpdateExpression: aws.String(set + " ADD version :one"),
				// The restriction as read: the successor's was decided from it.
				ConditionExpression: aws.String(cond + " AND attribute_not_exists(replacedBy)" +
					" AND (attribute_not_exists(usageCount) OR usageCount = :n) AND " + restrictedCond + " AND " + egressCond + " AND " + eventsCond),
				ExpressionAttributeValues: values}},
			replacedEvent,
			s.tokenCountChange(t.Tenant, t.ID, 1),
		}
		usageCond, usageValues := usageOf(st)
		for _, u := range usages {
			copied, err := attributevalue.MarshalMap(usageItem{PK: t.Tenant, SK: usageSKPrefix + t.ID + "#" + u.Kind + "#" + u.RefID,
				TokenID: t.ID, TokenUID: uid, Kind: u.Kind, RefID: u.RefID, CreatedAt: now})
			if err != nil {
				return token.InternalError(err)
			}
			registered := ev
			registered.At, registered.Action, registered.TokenID, registered.Version = at, token.ActionUsageRegister, t.ID, 1
			registered.Usage = u.Kind + "/" + u.RefID
			registeredEvent := s.eventPut(t.Tenant, registered, u.Key())
			items = append(items,
				types.TransactWriteItem{Put: &types.Put{TableName: aws.String(s.table), Item: copied,
					ConditionExpression: aws.String("attribute_not_exists(pk)")}},
				registeredEvent,
				types.TransactWriteItem{ConditionCheck: &types.ConditionCheck{TableName: aws.String(s.table),
					Key: usageKey(t.Tenant, old, u.Kind, u.RefID), ConditionExpression: aws.String(usageCond),
					ExpressionAttributeValues: usageValues}})
		}
		failed, err := s.transact(ctx, items)
		if err != nil || failed == nil {
			return err
		}
		if failed[0] {
			writer, _, err := s.lastWriter(ctx, t.Tenant, t.ID)
			switch {
			case err != nil:
				return err
			case writer == ev.RequestID:
				return nil // our own earlier attempt went through and its response was lost
			}
			return &token.Error{Kind: token.Conflict, Reason: token.AlreadyExists, ResourceID: t.ID}
		}
		return errMoved // the old token or its usages changed: read again
	})
}
