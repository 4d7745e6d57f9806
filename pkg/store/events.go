package store

import (
	"context"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"aitokens/pkg/token"
)

// An event item is one entry of a token's audit trail, in the tenant's partition beside the
// token (sk "event#<tokenId>#<at>#<requestId>": a token's events sort by time, and the key of
// one request's event is the same on every retry of it). A change writes its event in the same
// transaction as itself, conditioned on the event not existing yet, so a change never exists
// without its event, nor an event without its change, and a retried write records it once.
// Events outlive their token and go by DynamoDB TTL (attrTTL).
const (
	eventSKPrefix = "event#"
	attrTTL       = "ttl"
)

// DefaultAuditRetention is how long events are kept unless WithAuditRetention says otherwise.
const DefaultAuditRetention = 400 * 24 * time.Hour

type eventItem struct {
	PK         string   `dynamodbav:"pk"`
	SK         string   `dynamodbav:"sk"`
	At         string   `dynamodbav:"at"`
	Action     string   `dynamodbav:"action"`
	Actor      string   `dynamodbav:"actor"`
	RequestID  string   `dynamodbav:"requestId"`
	TokenID    string   `dynamodbav:"tokenId"`
	Version    int      `dynamodbav:"version"`
	Outcome    string   `dynamodbav:"outcome"`
	Changes    []string `dynamodbav:"changes,omitempty"`
	Usage      string   `dynamodbav:"usage,omitempty"`
	Replaces   string   `dynamodbav:"replaces,omitempty"`
	ReplacedBy string   `dynamodbav:"replacedBy,omitempty"`
	Lead       string   `dynamodbav:"lead,omitempty"`      // reminders: the lead time announced
	ExpiresAt  string   `dynamodbav:"expiresAt,omitempty"` // reminders: the expiry they are about
	TTL        int64    `dynamodbav:"ttl"`                 // epoch seconds: DynamoDB deletes the item after it
}

func eventPrefix(tokenID string) string { return eventSKPrefix + tokenID + "#" }

// eventPut is the Put of ev in a transaction; it fails if this request's event exists already.
// part tells apart the events one request writes on one token (a forced delete's usage removals:
// the usage key), "" for the one event of a request.
func (s *Store) eventPut(tenant string, ev token.Event, part string) types.TransactWriteItem {
	if ev.Outcome == "" {
		ev.Outcome = token.OutcomeSuccess // a change is recorded only when it happened
	}
	at := token.FormatTime(ev.At)
	sk := eventPrefix(ev.TokenID) + at + "#" + ev.RequestID
	if part != "" {
		sk += "#" + part
	}
	it := eventItem{PK: tenant, SK: sk,
		At: at, Action: ev.Action, Actor: ev.Actor, RequestID: ev.RequestID, TokenID: ev.TokenID, Version: ev.Version,
		Outcome: ev.Outcome, Changes: ev.Changes, Usage: ev.Usage, Replaces: ev.Replaces, ReplacedBy: ev.ReplacedBy, Lead: ev.Lead,
		TTL: ev.At.Add(s.retention).Unix()}
	if ev.ExpiresAt != nil {
		it.ExpiresAt = token.FormatTime(*ev.ExpiresAt)
	}
	av, err := attributevalue.MarshalMap(it)
	if err != nil {
		panic(err) // strings, numbers and a list of strings always marshal
	}
	return types.TransactWriteItem{Put: &types.Put{TableName: aws.String(s.table), Item: av,
		ConditionExpression: aws.String("attribute_not_exists(pk)")}}
}

// RecordEvent writes an event that goes with no change (a refused or failed resolve), once: a retry of
// the same request finds its event there and leaves it.
func (s *Store) RecordEvent(ctx context.Context, tenant string, ev token.Event) error {
	put := s.eventPut(tenant, ev, "")
	_, err := s.db.PutItem(ctx, &dynamodb.PutItemInput{TableName: put.Put.TableName, Item: put.Put.Item,
		ConditionExpression: put.Put.ConditionExpression})
	if isConditionFailed(err) {
		return nil
	}
	return classify(err)
}

// Events returns one page of a token's events, newest first, and how many it has; the token
// may be gone. It reads at most maxItems events to find the page.
func (s *Store) Events(ctx context.Context, tenant, tokenID string, pageNumber, pageSize, maxItems int) ([]token.Event, int, error) {
	keyCond := aws.String("pk = :tenant AND begins_with(sk, :prefix)")
	values := map[string]types.AttributeValue{
		":tenant": &types.AttributeValueMemberS{Value: tenant},
		":prefix": &types.AttributeValueMemberS{Value: eventPrefix(tokenID)},
	}
	total := 0
	counter := dynamodb.NewQueryPaginator(s.db, &dynamodb.QueryInput{TableName: aws.String(s.table), ConsistentRead: aws.Bool(true),
		KeyConditionExpression: keyCond, ExpressionAttributeValues: values, Select: types.SelectCount})
	for counter.HasMorePages() {
		page, err := counter.NextPage(ctx)
		if err != nil {
			return nil, 0, classify(err)
		}
		total += int(page.Count)
	}
	skip := (pageNumber - 1) * pageSize
	if skip >= total {
		return []token.Event{}, total, nil
	}
	if skip+pageSize > maxItems {
		return nil, 0, &token.Error{Kind: token.Invalid, Reason: token.TooDeepToPage, Limit: maxItems}
	}
	in := &dynamodb.QueryInput{TableName: aws.String(s.table), ConsistentRead: aws.Bool(true), ScanIndexForward: aws.Bool(false),
		KeyConditionExpression: keyCond, ExpressionAttributeValues: values, Limit: aws.Int32(int32(skip + pageSize))}
	var items []eventItem
	for len(items) < skip+pageSize {
		page, err := s.db.Query(ctx, in)
		if err != nil {
			return nil, 0, classify(err)
		}
		var got []eventItem
		if err := attributevalue.UnmarshalListOfMaps(page.Items, &got); err != nil {
			return nil, 0, token.InternalError(err)
		}
		items = append(items, got...)
		if len(page.LastEvaluatedKey) == 0 {
			break
		}
		in.ExclusiveStartKey = page.LastEvaluatedKey
		in.Limit = aws.Int32(int32(skip + pageSize - len(items)))
	}
	events := []token.Event{}
	for _, it := range items[min(skip, len(items)):min(skip+pageSize, len(items))] {
		ev := token.Event{Action: it.Action, Actor: it.Actor, RequestID: it.RequestID, TokenID: it.TokenID,
			Version: it.Version, Outcome: it.Outcome, Changes: it.Changes, Usage: it.Usage, Replaces: it.Replaces, ReplacedBy: it.ReplacedBy,
			Lead: it.Lead}
		ev.At, _ = time.Parse(time.RFC3339Nano, it.At)
		if it.ExpiresAt != "" {
			exp, _ := time.Parse(time.RFC3339Nano, it.ExpiresAt)
			ev.ExpiresAt = &exp
		}
		events = append(events, ev)
	}
	return events, total, nil
}

// WithAuditRetention is the store keeping events for d.
func (s *Store) WithAuditRetention(d time.Duration) *Store {
	c := *s
	c.retention = d
	return &c
}
