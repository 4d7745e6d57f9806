package store

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"aitokens/pkg/token"
)

// A usage item says that an agent, MCP server, tool or OAuth client uses a token. It lives in the
// tenant's partition beside the token (sk "usage#<tokenId>#<kind>#<refId>"), and the token's
// usageCount changes in the same transaction as every usage item, so a token whose count is 0 has
// no usage, and a usage can never be written for a token that does not exist.
const usageSKPrefix = "usage#"

type usageItem struct {
	PK        string `dynamodbav:"pk"`
	SK        string `dynamodbav:"sk"`
	TokenID   string `dynamodbav:"tokenId"`
	TokenUID  string `dynamodbav:"tokenUid,omitempty"` // the identity of the token it was registered on
	Kind      string `dynamodbav:"kind"`
	RefID     string `dynamodbav:"refId"`
	CreatedAt string `dynamodbav:"createdAt"`
}

func usageKey(tenant, tokenID, kind, refID string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{
		attrPK: &types.AttributeValueMemberS{Value: tenant},
		attrSK: &types.AttributeValueMemberS{Value: usageSKPrefix + tokenID + "#" + kind + "#" + refID},
	}
}

// countChange adds the usages (as Usage.Key) to a token's consumers and their number to its
// usageCount (remove: takes them away), only if the token is still the one st read. The
// consumers are a copy of the usage items that lets resolve decide on one read: they change
// only here, in the same transaction as the usage items they mirror.
// Its events are stamped at: it sets the token's eventAt to at, after every event committed before (eventsBefore).
func (s *Store) countChange(tenant, id string, st state, usageKeys []string, remove bool, at time.Time) *types.Update {
	delta, expr := len(usageKeys), "SET eventAt = :eventAt ADD usageCount :d, consumers :k"
	if remove {
		delta, expr = -delta, "SET eventAt = :eventAt ADD usageCount :d DELETE consumers :k"
	}
	cond, values := st.sameToken()
	cond += " AND " + eventsBefore(at, values)
	values[":d"] = &types.AttributeValueMemberN{Value: strconv.Itoa(delta)}
	values[":k"] = &types.AttributeValueMemberSS{Value: usageKeys}
	return &types.Update{TableName: aws.String(s.table), Key: key(tenant, id), UpdateExpression: aws.String(expr),
		ConditionExpression: aws.String(cond), ExpressionAttributeValues: values}
}

// usageOf is the condition that a usage item exists and belongs to the token st read.
func usageOf(st state) (string, map[string]types.AttributeValue) {
	if st.uid == "" {
		return "attribute_exists(pk) AND attribute_not_exists(tokenUid)", nil
	}
	return "attribute_exists(pk) AND tokenUid = :uid", map[string]types.AttributeValue{":uid": &types.AttributeValueMemberS{Value: st.uid}}
}

// usageDelete removes a usage item of the token st read.
func (s *Store) usageDelete(tenant, id string, st state, u token.Usage) types.TransactWriteItem {
	cond, values := usageOf(st)
	return types.TransactWriteItem{Delete: &types.Delete{TableName: aws.String(s.table), Key: usageKey(tenant, id, u.Kind, u.RefID),
		ConditionExpression: aws.String(cond), ExpressionAttributeValues: values}}
}

// RegisterUsage records that kind/refID uses the token and its event, in one transaction with
// the token's identity and version. created is false when the usage was already there (no
// change, no event).
func (s *Store) RegisterUsage(ctx context.Context, tenant, tokenID, kind, refID string, ev token.Event) (created bool, err error) {
	usage := token.Usage{Kind: kind, RefID: refID}
	var st state
	already := false
	err = s.rounds(ctx, func() error {
		if st, err = s.state(ctx, tenant, tokenID); err != nil {
			return err
		}
		if !st.found {
			return token.ErrNotFound(tokenID)
		}
		if st.usageCount >= s.maxUsages {
			// Full: refused, unless it is registered already (no change, a 204 as ever).
			there, err := s.usageExists(ctx, tenant, tokenID, kind, refID)
			switch {
			case err != nil:
				return err
			case there:
				already = true
				return nil
			}
			return &token.Error{Kind: token.Conflict, Reason: token.UsageLimit, ResourceID: tokenID, Limit: s.maxUsages}
		}
		at := s.stamp(st)
		av, err := attributevalue.MarshalMap(usageItem{PK: tenant, SK: usageSKPrefix + tokenID + "#" + kind + "#" + refID,
			TokenID: tokenID, TokenUID: st.uid, Kind: kind, RefID: refID, CreatedAt: token.FormatTime(at)})
		if err != nil {
			return token.InternalError(err)
		}
		ev.At, ev.Action, ev.TokenID, ev.Version, ev.Usage = at, token.ActionUsageRegister, tokenID, st.version, kind+"/"+refID
		event := s.eventPut(tenant, ev, usage.Key())
		count := s.countChange(tenant, tokenID, st, []string{usage.Key()}, false, at)
		// Registrations that read the same count race past the check above: the last free place
		// goes to one of them, the others read again and are refused.
		*count.ConditionExpression += " AND (attribute_not_exists(usageCount) OR usageCount < :max)"
		count.ExpressionAttributeValues[":max"] = &types.AttributeValueMemberN{Value: strconv.Itoa(s.maxUsages)}
		failed, err := s.transact(ctx, []types.TransactWriteItem{
			{Update: count},
			{Put: &types.Put{TableName: aws.String(s.table), Item: av, ConditionExpression: aws.String("attribute_not_exists(pk)")}},
			event,
		})
		switch {
		case err != nil || failed == nil:
			return err
		case failed[1]:
			already = true // registered before (a lost answer the SDK retried succeeds by its ClientRequestToken instead)
			return nil
		}
		return errMoved // the token changed or went: read again
	})
	if err != nil || !already {
		return err == nil, err
	}
	return false, s.restoreConsumer(ctx, tenant, tokenID, st, usage)
}

// restoreConsumer gives an already registered usage its place in the token's consumers when it
// lacks one (a usage registered before tokens kept their consumers), so that registering it
// again lets it resolve a restricted token. It writes only in one transaction with the usage
// item's existence on this very token, so a consumer can never outlive its usage: a usage
// unregistered meanwhile, or a token deleted and created again, makes it write nothing. It is
// no change of the token (version, usages and count stay), so it records no event.
func (s *Store) restoreConsumer(ctx context.Context, tenant, tokenID string, st state, usage token.Usage) error {
	usageCond, usageValues := usageOf(st)
	tokenCond, tokenValues := st.sameToken()
	tokenCond = strings.Replace(tokenCond, " AND version = :v", "", 1) + " AND NOT contains(consumers, :key)"
	delete(tokenValues, ":v")
	tokenValues[":key"] = &types.AttributeValueMemberS{Value: usage.Key()}
	tokenValues[":k"] = &types.AttributeValueMemberSS{Value: []string{usage.Key()}}
	return s.rounds(ctx, func() error {
		_, err := s.transact(ctx, []types.TransactWriteItem{
			{ConditionCheck: &types.ConditionCheck{TableName: aws.String(s.table), Key: usageKey(tenant, tokenID, usage.Kind, usage.RefID),
				ConditionExpression: aws.String(usageCond), ExpressionAttributeValues: usageValues}},
			{Update: &types.Update{TableName: aws.String(s.table), Key: key(tenant, tokenID), UpdateExpression: aws.String("ADD consumers :k"),
				ConditionExpression: aws.String(tokenCond), ExpressionAttributeValues: tokenValues}},
		})
		return err // committed, or nothing to restore (already there, or gone meanwhile)
	})
}

// usageExists reads (consistently) whether kind/refID is registered on the token.
func (s *Store) usageExists(ctx context.Context, tenant, tokenID, kind, refID string) (bool, error) {
	out, err := s.db.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(s.table), Key: usageKey(tenant, tokenID, kind, refID),
		ConsistentRead: aws.Bool(true), ProjectionExpression: aws.String("pk")})
	if err != nil {
		return false, classify(err)
	}
	return out.Item != nil, nil
}

// UnregisterUsage removes a usage with its event; a missing one is not an error (and no event).
func (s *Store) UnregisterUsage(ctx context.Context, tenant, tokenID, kind, refID string, ev token.Event) error {
	usage := token.Usage{Kind: kind, RefID: refID}
	return s.rounds(ctx, func() error {
		st, err := s.state(ctx, tenant, tokenID)
		if err != nil || !st.found {
			return err // no token, so no usage of it
		}
		ev.At, ev.Action, ev.TokenID, ev.Version, ev.Usage = s.stamp(st), token.ActionUsageUnregister, tokenID, st.version, kind+"/"+refID
		event := s.eventPut(tenant, ev, usage.Key())
		failed, err := s.transact(ctx, []types.TransactWriteItem{
			s.usageDelete(tenant, tokenID, st, usage),
			{Update: s.countChange(tenant, tokenID, st, []string{usage.Key()}, true, ev.At)},
			event,
		})
		switch {
		case err != nil || failed == nil:
			return err
		case failed[0] && !failed[1]:
			return nil // not registered (or our own earlier attempt removed it)
		}
		return errMoved
	})
}

// Usages lists a token's usages in key order (kind, then refId).
func (s *Store) Usages(ctx context.Context, tenant, tokenID string) ([]token.Usage, error) {
	pages := dynamodb.NewQueryPaginator(s.db, &dynamodb.QueryInput{
		TableName:              aws.String(s.table),
		KeyConditionExpression: aws.String("pk = :tenant AND begins_with(sk, :prefix)"),
		ConsistentRead:         aws.Bool(true),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":tenant": &types.AttributeValueMemberS{Value: tenant},
			":prefix": &types.AttributeValueMemberS{Value: usageSKPrefix + tokenID + "#"},
		},
	})
	usages := []token.Usage{}
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, classify(err)
		}
		var items []usageItem
		if err := attributevalue.UnmarshalListOfMaps(page.Items, &items); err != nil {
			return nil, token.InternalError(err)
		}
		for _, it := range items {
			u := token.Usage{Kind: it.Kind, RefID: it.RefID}
			u.CreatedAt, _ = time.Parse(time.RFC3339Nano, it.CreatedAt)
			usages = append(usages, u)
		}
	}
	return usages, nil
}

// ErrInUse is returned by DeleteUnused for a token that has usages.
var ErrInUse = errors.New("store: token in use")

// DeleteUnused deletes a token with its event only if no usage refers to it; a missing one is
// fine (and no event: nothing changed).
func (s *Store) DeleteUnused(ctx context.Context, tenant, id string, ev token.Event) error {
	return s.rounds(ctx, func() error {
		st, err := s.state(ctx, tenant, id)
		switch {
		case err != nil || !st.found:
			return err
		case st.usageCount > 0:
			return ErrInUse
		}
		ev.Action = token.ActionDelete
		failed, err := s.transact(ctx, s.tokenDelete(tenant, id, st, 0, ev))
		if err != nil || failed == nil {
			return err
		}
		return errMoved // gone, in use or changed meanwhile: read again
	})
}

// tokenDelete is the delete of the token st read, required to have usages usages, with its event.
func (s *Store) tokenDelete(tenant, id string, st state, usages int, ev token.Event) []types.TransactWriteItem {
	ev.At, ev.TokenID, ev.Version = s.stamp(st), id, st.version
	cond, values := st.sameToken()
	cond += st.listedCond() + " AND " + eventsBefore(ev.At, values) // an event that committed before the delete is never stamped after it
	values[":n"] = &types.AttributeValueMemberN{Value: strconv.Itoa(usages)}
	event := s.eventPut(tenant, ev, "")
	items := []types.TransactWriteItem{{Delete: &types.Delete{TableName: aws.String(s.table), Key: key(tenant, id),
		ConditionExpression:       aws.String(cond + " AND (attribute_not_exists(usageCount) OR usageCount = :n)"),
		ExpressionAttributeValues: values}}, event}
	if st.listed { // counted: the count goes down with it (an unlisted token was never counted)
		items = append(items, s.tokenCountChange(tenant, id, -1))
	}
	return items
}

// The usages a forced delete removes in one transaction before the last: each with its event,
// beside the token's count update, within DynamoDB's 100 actions (limits.go).
const usagesPerChunk = (maxTransactionItems - 1) / 2

// ForceDelete deletes a token and all its usages. Up to the transaction limit it is one
// transaction, conditioned on the token it read, the usage count it saw and each usage it read
// still existing, so it removes exactly the set it read or nothing. Beyond it, usages go first,
// in transactions that lower the count with them and record each removal as a usage_unregister
// event, and the token last, only once its count is 0: at no moment does a usage exist without
// its token, nor a removal without its event, even when DynamoDB fails half way. A usage
// registered meanwhile makes it read again.
func (s *Store) ForceDelete(ctx context.Context, tenant, id string, ev token.Event) error {
	for moved := 0; ; {
		st, err := s.state(ctx, tenant, id)
		if err != nil || !st.found {
			return err // nothing to delete, nothing to record
		}
		usages, err := s.Usages(ctx, tenant, id)
		if err != nil {
			return err
		}
		var items []types.TransactWriteItem
		last := len(usages) <= maxTransactionItems-3 // the token, its event, its count and its usages
		if last {
			ev.Action = token.ActionForceDelete
			items = s.tokenDelete(tenant, id, st, len(usages), ev)
			// Every usage delete requires the usage to exist: with the count condition (the
			// count always equals the number of usage items), the transaction commits only if
			// the usages are exactly the set read, so a usage registered meanwhile is never orphaned.
			for _, u := range usages {
				items = append(items, s.usageDelete(tenant, id, st, u))
			}
		} else {
			items = s.usageChunk(tenant, id, st, usages[:usagesPerChunk], ev)
		}
		failed, err := s.transact(ctx, items)
		switch {
		case err != nil && err != errMoved:
			return err
		case err == nil && failed == nil && last:
			return nil
		case err == nil && failed == nil:
			continue // a chunk is gone: progress, which spends none of the rounds
		}
		// The token or its usages changed under us (or our own lost attempt went through): read again.
		if moved++; moved == WriteRounds {
			return &token.Error{Kind: token.Conflict, Reason: token.UsagesKeepMoving, ResourceID: id}
		}
		if err := s.pause(ctx, moved); err != nil {
			return err
		}
	}
}

// usageChunk removes usages of the token st read, each with its usage_unregister event (under
// the forced delete's request and actor), and lowers the token's count by as many.
func (s *Store) usageChunk(tenant, id string, st state, usages []token.Usage, ev token.Event) []types.TransactWriteItem {
	keys := make([]string, len(usages))
	for i, u := range usages {
		keys[i] = u.Key()
	}
	at := s.stamp(st)
	items := []types.TransactWriteItem{{Update: s.countChange(tenant, id, st, keys, true, at)}}
	for _, u := range usages {
		uev := token.Event{At: at, Action: token.ActionUsageUnregister, Actor: ev.Actor, RequestID: ev.RequestID, TokenID: id,
			Version: st.version, Outcome: token.OutcomeSuccess, Usage: u.Kind + "/" + u.RefID}
		event := s.eventPut(tenant, uev, u.Key())
		items = append(items, s.usageDelete(tenant, id, st, u), event)
	}
	return items
}
