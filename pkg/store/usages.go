package store

import (
	"context"
	"errors"
	"strconv"
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
// usageCount (remove: takes them away), only if the token exists and, with version > 0, is at
// that version (the version its event records).
func (s *Store) countChange(tenant, id string, usageKeys []string, remove bool, version int) *types.Update {
	delta, expr := len(usageKeys), "ADD usageCount :d, consumers :k"
	if remove {
		delta, expr = -delta, "ADD usageCount :d DELETE consumers :k"
	}
	u := &types.Update{
		TableName:           aws.String(s.table),
		Key:                 key(tenant, id),
		UpdateExpression:    aws.String(expr),
		ConditionExpression: aws.String("attribute_exists(pk)"),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":d": &types.AttributeValueMemberN{Value: strconv.Itoa(delta)},
			":k": &types.AttributeValueMemberSS{Value: usageKeys},
		},
	}
	if version > 0 {
		u.ConditionExpression = aws.String("attribute_exists(pk) AND version = :v")
		u.ExpressionAttributeValues[":v"] = &types.AttributeValueMemberN{Value: strconv.Itoa(version)}
	}
	return u
}

// state is what a write that records an event reads first: the version its event records and
// conditions on, and the usage count.
type state struct {
	version, usageCount int
	found               bool
}

var stateProjection = projectionExpr{expr: aws.String("#v, #c"), names: map[string]string{"#v": attrVersion, "#c": "usageCount"}}

func (s *Store) state(ctx context.Context, tenant, id string) (state, error) {
	it, err := s.getItem(ctx, tenant, id, stateProjection)
	if token.KindOf(err) == token.NotFound {
		return state{}, nil
	}
	if err != nil {
		return state{}, err
	}
	return state{version: it.Version, usageCount: it.UsageCount, found: true}, nil
}

// errMoved is a round that lost to a concurrent change: the write reads again and retries.
var errMoved = &token.Error{Kind: token.Conflict, Reason: token.ConcurrentChange}

// retry runs one round of a write that records an event until it is not errMoved.
func retry(round func() error) error {
	for range transactionAttempts {
		if err := round(); err != errMoved {
			return err
		}
	}
	return errMoved
}

// transactionAttempts bounds the retries of a transaction that DynamoDB cancelled because a
// concurrent transaction touched the same items.
const transactionAttempts = 8

// transact runs items and returns, on a cancelled transaction, which items' conditions failed.
// A conflict with a concurrent transaction is retried.
func (s *Store) transact(ctx context.Context, items []types.TransactWriteItem) (failed []bool, err error) {
	for attempt := 0; ; attempt++ {
		_, err = s.db.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: items})
		var canceled *types.TransactionCanceledException
		if !errors.As(err, &canceled) {
			return nil, classify(err)
		}
		failed = make([]bool, len(items))
		conflict := false
		for i, r := range canceled.CancellationReasons {
			switch aws.ToString(r.Code) {
			case "ConditionalCheckFailed":
				failed[i] = true
			case "TransactionConflict":
				conflict = true
			}
		}
		if !conflict {
			return failed, nil
		}
		if attempt+1 == transactionAttempts {
			return nil, &token.Error{Kind: token.Conflict, Reason: token.ConcurrentChange, Cause: err}
		}
		select {
		case <-ctx.Done():
			return nil, classify(ctx.Err())
		case <-time.After(time.Duration(5*(attempt+1)) * time.Millisecond):
		}
	}
}

// RegisterUsage records that kind/refID uses the token and its event, in one transaction with
// the token's existence and version. created is false when the usage was already there (no
// change, no event).
func (s *Store) RegisterUsage(ctx context.Context, tenant, tokenID, kind, refID string, ev token.Event) (created bool, err error) {
	av, err := attributevalue.MarshalMap(usageItem{PK: tenant, SK: usageSKPrefix + tokenID + "#" + kind + "#" + refID,
		TokenID: tokenID, Kind: kind, RefID: refID, CreatedAt: token.FormatTime(ev.At)})
	if err != nil {
		return false, token.InternalError(err)
	}
	usageKey := token.Usage{Kind: kind, RefID: refID}.Key()
	already := false
	err = retry(func() error {
		st, err := s.state(ctx, tenant, tokenID)
		if err != nil {
			return err
		}
		if !st.found {
			return token.ErrNotFound(tokenID)
		}
		ev.TokenID, ev.Version, ev.Usage = tokenID, st.version, kind+"/"+refID
		event, err := s.eventPut(tenant, ev)
		if err != nil {
			return err
		}
		failed, err := s.transact(ctx, []types.TransactWriteItem{
			{Update: s.countChange(tenant, tokenID, []string{usageKey}, false, st.version)},
			{Put: &types.Put{TableName: aws.String(s.table), Item: av, ConditionExpression: aws.String("attribute_not_exists(pk)")}},
			event,
		})
		switch {
		case err != nil || failed == nil:
			return err
		case failed[1]:
			already = true // also a retry of our own transaction whose response was lost
			return nil
		}
		return errMoved // the token changed or went: read again
	})
	if err != nil || !already {
		return err == nil, err
	}
	// Already registered. A usage registered before tokens kept their consumers is added to
	// them now (idempotent), so that registering again lets it resolve a restricted token.
	_, err = s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName: aws.String(s.table), Key: key(tenant, tokenID),
		UpdateExpression:          aws.String("ADD consumers :k"),
		ConditionExpression:       aws.String("attribute_exists(pk)"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":k": &types.AttributeValueMemberSS{Value: []string{usageKey}}},
	})
	if isConditionFailed(err) {
		return false, token.ErrNotFound(tokenID)
	}
	return false, classify(err)
}

// UnregisterUsage removes a usage with its event; a missing one is not an error (and no event).
func (s *Store) UnregisterUsage(ctx context.Context, tenant, tokenID, kind, refID string, ev token.Event) error {
	return retry(func() error {
		st, err := s.state(ctx, tenant, tokenID)
		if err != nil || !st.found {
			return err // no token, so no usage of it
		}
		ev.TokenID, ev.Version, ev.Usage = tokenID, st.version, kind+"/"+refID
		event, err := s.eventPut(tenant, ev)
		if err != nil {
			return err
		}
		failed, err := s.transact(ctx, []types.TransactWriteItem{
			{Delete: &types.Delete{TableName: aws.String(s.table), Key: usageKey(tenant, tokenID, kind, refID),
				ConditionExpression: aws.String("attribute_exists(pk)")}},
			{Update: s.countChange(tenant, tokenID, []string{token.Usage{Kind: kind, RefID: refID}.Key()}, true, st.version)},
			event,
		})
		switch {
		case err != nil || failed == nil:
			return err
		case failed[0]:
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
	return retry(func() error {
		st, err := s.state(ctx, tenant, id)
		switch {
		case err != nil || !st.found:
			return err
		case st.usageCount > 0:
			return ErrInUse
		}
		ev.TokenID, ev.Version = id, st.version
		event, err := s.eventPut(tenant, ev)
		if err != nil {
			return err
		}
		failed, err := s.transact(ctx, []types.TransactWriteItem{{Delete: &types.Delete{
			TableName:           aws.String(s.table),
			Key:                 key(tenant, id),
			ConditionExpression: aws.String("version = :v AND (attribute_not_exists(usageCount) OR usageCount = :zero)"),
			ExpressionAttributeValues: map[string]types.AttributeValue{
				":zero": &types.AttributeValueMemberN{Value: "0"},
				":v":    &types.AttributeValueMemberN{Value: strconv.Itoa(st.version)},
			},
		}}, event})
		if err != nil || failed == nil {
			return err
		}
		return errMoved // gone, in use or changed meanwhile: read again
	})
}

// maxTransactionItems is DynamoDB's limit of items in one TransactWriteItems.
const maxTransactionItems = 100

// ForceDelete deletes a token and all its usages. Up to the transaction limit it is one
// transaction, conditioned on the usage count it saw and on each usage it read still
// existing, so it removes exactly the set it read or nothing. Beyond it, usages go
// first, in transactions that lower the count with them, and the token last, only once its count
// is 0: at no moment does a usage exist without its token. A usage registered meanwhile makes it
// go round again.
func (s *Store) ForceDelete(ctx context.Context, tenant, id string, ev token.Event) error {
	for round := 0; round < transactionAttempts; round++ {
		st, err := s.state(ctx, tenant, id)
		if err != nil || !st.found {
			return err // nothing to delete, nothing to record
		}
		usages, err := s.Usages(ctx, tenant, id)
		if err != nil {
			return err
		}
		// The last transaction holds the token, its usages and its event.
		if len(usages) <= maxTransactionItems-2 {
			ev.TokenID, ev.Version = id, st.version
			event, err := s.eventPut(tenant, ev)
			if err != nil {
				return err
			}
			items := []types.TransactWriteItem{{Delete: &types.Delete{
				TableName: aws.String(s.table), Key: key(tenant, id),
				ConditionExpression: aws.String("version = :v AND (attribute_not_exists(usageCount) OR usageCount = :n)"),
				ExpressionAttributeValues: map[string]types.AttributeValue{
					":n": &types.AttributeValueMemberN{Value: strconv.Itoa(len(usages))},
					":v": &types.AttributeValueMemberN{Value: strconv.Itoa(st.version)},
				},
			}}, event}
			// Every usage delete requires the usage to exist: with the count condition above
			// (the count always equals the number of usage items), the transaction commits only
			// if the usages are exactly the set read. A usage unregistered and another
			// registered in between leave the count alone but fail this check, so the new one
			// can never be orphaned.
			for _, u := range usages {
				items = append(items, types.TransactWriteItem{Delete: &types.Delete{
					TableName: aws.String(s.table), Key: usageKey(tenant, id, u.Kind, u.RefID),
					ConditionExpression: aws.String("attribute_exists(pk)")}})
			}
			failed, err := s.transact(ctx, items)
			if err != nil {
				return err
			}
			if failed == nil {
				return nil
			}
			continue // the token or its usages changed under us: read again
		}
		// Too many for one transaction: remove a batch of usages with the count, then go round.
		batch := usages[:maxTransactionItems-1]
		keys := make([]string, len(batch))
		for i, u := range batch {
			keys[i] = u.Key()
		}
		items := []types.TransactWriteItem{{Update: s.countChange(tenant, id, keys, true, 0)}}
		for _, u := range batch {
			items = append(items, types.TransactWriteItem{Delete: &types.Delete{
				TableName: aws.String(s.table), Key: usageKey(tenant, id, u.Kind, u.RefID),
				ConditionExpression: aws.String("attribute_exists(pk)")}})
		}
		failed, err := s.transact(ctx, items)
		if err != nil {
			return err
		}
		if failed == nil {
			round-- // the batch is gone: large deletes are not limited by the round count
		}
		// A cancelled batch (a usage in it was unregistered meanwhile) removed nothing and
		// counts as a round: the usages are read again.
	}
	return &token.Error{Kind: token.Conflict, Reason: token.UsagesKeepMoving, ResourceID: id}
}
