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
// usageCount (remove: takes them away), only if the token exists.
func (s *Store) countChange(tenant, id string, usageKeys []string, remove bool) *types.Update {
	delta, expr := len(usageKeys), "ADD usageCount :d, consumers :k"
	if remove {
		delta, expr = -delta, "ADD usageCount :d DELETE consumers :k"
	}
	return &types.Update{
		TableName:           aws.String(s.table),
		Key:                 key(tenant, id),
		UpdateExpression:    aws.String(expr),
		ConditionExpression: aws.String("attribute_exists(pk)"),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":d": &types.AttributeValueMemberN{Value: strconv.Itoa(delta)},
			":k": &types.AttributeValueMemberSS{Value: usageKeys},
		},
	}
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

// RegisterUsage records that kind/refID uses the token, in one transaction with the token's
// existence check. created is false when the usage was already there.
func (s *Store) RegisterUsage(ctx context.Context, tenant, tokenID, kind, refID string, now time.Time) (created bool, err error) {
	av, err := attributevalue.MarshalMap(usageItem{PK: tenant, SK: usageSKPrefix + tokenID + "#" + kind + "#" + refID,
		TokenID: tokenID, Kind: kind, RefID: refID, CreatedAt: token.FormatTime(now)})
	if err != nil {
		return false, token.InternalError(err)
	}
	usageKey := token.Usage{Kind: kind, RefID: refID}.Key()
	failed, err := s.transact(ctx, []types.TransactWriteItem{
		{Update: s.countChange(tenant, tokenID, []string{usageKey}, false)},
		{Put: &types.Put{TableName: aws.String(s.table), Item: av, ConditionExpression: aws.String("attribute_not_exists(pk)")}},
	})
	switch {
	case err != nil:
		return false, err
	case failed == nil:
		return true, nil
	case failed[0]:
		return false, token.ErrNotFound(tokenID)
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

// UnregisterUsage removes a usage; a missing one is not an error.
func (s *Store) UnregisterUsage(ctx context.Context, tenant, tokenID, kind, refID string) error {
	_, err := s.transact(ctx, []types.TransactWriteItem{
		{Delete: &types.Delete{TableName: aws.String(s.table), Key: usageKey(tenant, tokenID, kind, refID),
			ConditionExpression: aws.String("attribute_exists(pk)")}},
		{Update: s.countChange(tenant, tokenID, []string{token.Usage{Kind: kind, RefID: refID}.Key()}, true)},
	})
	return err
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

// DeleteUnused deletes a token only if no usage refers to it (missing is fine).
func (s *Store) DeleteUnused(ctx context.Context, tenant, id string) error {
	_, err := s.db.DeleteItem(ctx, &dynamodb.DeleteItemInput{
		TableName:           aws.String(s.table),
		Key:                 key(tenant, id),
		ConditionExpression: aws.String("attribute_not_exists(usageCount) OR usageCount = :zero"),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":zero": &types.AttributeValueMemberN{Value: "0"},
		},
	})
	if isConditionFailed(err) {
		return ErrInUse
	}
	return classify(err)
}

// maxTransactionItems is DynamoDB's limit of items in one TransactWriteItems.
const maxTransactionItems = 100

// ForceDelete deletes a token and all its usages. Up to the transaction limit it is one
// transaction, conditioned on the usage count it saw and on each usage it read still
// existing, so it removes exactly the set it read or nothing. Beyond it, usages go
// first, in transactions that lower the count with them, and the token last, only once its count
// is 0: at no moment does a usage exist without its token. A usage registered meanwhile makes it
// go round again.
func (s *Store) ForceDelete(ctx context.Context, tenant, id string) error {
	for round := 0; round < transactionAttempts; round++ {
		usages, err := s.Usages(ctx, tenant, id)
		if err != nil {
			return err
		}
		if len(usages) < maxTransactionItems {
			items := []types.TransactWriteItem{{Delete: &types.Delete{
				TableName: aws.String(s.table), Key: key(tenant, id),
				ConditionExpression: aws.String("attribute_not_exists(pk) OR attribute_not_exists(usageCount) OR usageCount = :n"),
				ExpressionAttributeValues: map[string]types.AttributeValue{
					":n": &types.AttributeValueMemberN{Value: strconv.Itoa(len(usages))},
				},
			}}}
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
			continue // the count changed under us: read the usages again
		}
		// Too many for one transaction: remove a batch of usages with the count, then go round.
		batch := usages[:maxTransactionItems-1]
		keys := make([]string, len(batch))
		for i, u := range batch {
			keys[i] = u.Key()
		}
		items := []types.TransactWriteItem{{Update: s.countChange(tenant, id, keys, true)}}
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
