package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"aitokens/pkg/token"
)

// The expiry index lets the reminder sweeper (pkg/reminders) find the tokens that expire in a
// window without reading the others. It is sparse: only a token with expiresAt has expiryDay
// (its UTC day, "YYYY-MM-DD"), written by the same Create and Update that set expiresAt and
// removed with it, so the index holds exactly the tokens that expire, one partition per day,
// sorted by expiresAt (fixed-width UTC, so string order is time order). It projects the token's
// identity (uid), which the reminder markers carry.
//
// All tenants' tokens of one day share a partition; the sweeper is its only reader, and a day's
// writes are those of tokens set to expire that day.
const (
	ExpiryIndex      = "expiry"
	attrExpiryDay    = "expiryDay"
	attrExpiresAt    = "expiresAt"
	reminderSKPrefix = "reminder#"
)

func expiryDay(t time.Time) string { return t.UTC().Format(time.DateOnly) }

func expiryIndexAttributes() []types.AttributeDefinition {
	return []types.AttributeDefinition{
		{AttributeName: aws.String(attrExpiryDay), AttributeType: types.ScalarAttributeTypeS},
		{AttributeName: aws.String(attrExpiresAt), AttributeType: types.ScalarAttributeTypeS},
	}
}

func expiryIndex() types.GlobalSecondaryIndex {
	return types.GlobalSecondaryIndex{
		IndexName: aws.String(ExpiryIndex),
		KeySchema: []types.KeySchemaElement{
			{AttributeName: aws.String(attrExpiryDay), KeyType: types.KeyTypeHash},
			{AttributeName: aws.String(attrExpiresAt), KeyType: types.KeyTypeRange},
		},
		Projection: &types.Projection{ProjectionType: types.ProjectionTypeInclude, NonKeyAttributes: []string{attrUID}},
	}
}

// tableStream is the table's stream: the new image of every written item, which the event
// publisher (pkg/eventbus) reads for the audit event items (the outbox).
func tableStream() *types.StreamSpecification {
	return &types.StreamSpecification{StreamEnabled: aws.Bool(true), StreamViewType: types.StreamViewTypeNewImage}
}

// upgradeTable gives a table made before the stream, the expiry index or the list indexes (a
// developer's .data/) what it lacks, one change at a time as DynamoDB requires, and fills
// expiryDay and the list keys (and counts) of its tokens.
func upgradeTable(ctx context.Context, db *dynamodb.Client, table string) error {
	desc, err := describeActive(ctx, db, table)
	if err != nil {
		return err
	}
	switch spec := desc.StreamSpecification; {
	case spec == nil || !aws.ToBool(spec.StreamEnabled):
		if _, err := db.UpdateTable(ctx, &dynamodb.UpdateTableInput{TableName: aws.String(table), StreamSpecification: tableStream()}); err != nil {
			return fmt.Errorf("enable the stream of %s: %w", table, err)
		}
		if desc, err = describeActive(ctx, db, table); err != nil {
			return err
		}
	case spec.StreamViewType != types.StreamViewTypeNewImage:
		return fmt.Errorf("table %s has a stream of %s; the event publisher needs NEW_IMAGE (disable the stream and start again)", table, spec.StreamViewType)
	}
	has := map[string]bool{}
	for _, gsi := range desc.GlobalSecondaryIndexes {
		has[aws.ToString(gsi.IndexName)] = true
	}
	if !has[ExpiryIndex] {
		if err := addIndex(ctx, db, table, expiryIndex(), expiryIndexAttributes()); err != nil {
			return err
		}
		if _, err := BackfillExpiryDays(ctx, db, table); err != nil {
			return err
		}
	}
	added := false
	for _, index := range listIndexes() {
		if !has[aws.ToString(index.IndexName)] {
			attrs := []types.AttributeDefinition{{AttributeName: aws.String(attrPK), AttributeType: types.ScalarAttributeTypeS},
				{AttributeName: index.KeySchema[1].AttributeName, AttributeType: types.ScalarAttributeTypeS}}
			if err := addIndex(ctx, db, table, index, attrs); err != nil {
				return err
			}
			added = true
		}
	}
	if added {
		_, err = BackfillListing(ctx, db, table)
	}
	return err
}

// addIndex creates index on table and waits until it is active.
func addIndex(ctx context.Context, db *dynamodb.Client, table string, index types.GlobalSecondaryIndex, attrs []types.AttributeDefinition) error {
	if _, err := db.UpdateTable(ctx, &dynamodb.UpdateTableInput{TableName: aws.String(table), AttributeDefinitions: attrs,
		GlobalSecondaryIndexUpdates: []types.GlobalSecondaryIndexUpdate{{Create: &types.CreateGlobalSecondaryIndexAction{
			IndexName: index.IndexName, KeySchema: index.KeySchema, Projection: index.Projection}}}}); err != nil {
		return fmt.Errorf("create the index %s of %s: %w", aws.ToString(index.IndexName), table, err)
	}
	_, err := describeActive(ctx, db, table)
	return err
}

// describeActive waits (a minute at most) until the table and its indexes are active.
func describeActive(ctx context.Context, db *dynamodb.Client, table string) (*types.TableDescription, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		out, err := db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(table)})
		if err != nil {
			return nil, err
		}
		active := out.Table.TableStatus == types.TableStatusActive
		for _, gsi := range out.Table.GlobalSecondaryIndexes {
			active = active && gsi.IndexStatus == types.IndexStatusActive
		}
		if active {
			return out.Table, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("table %s did not become active: %w", table, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// BackfillExpiryDays gives expiryDay to every token that has expiresAt without it (a token
// written before the expiry index existed), so that the sweeper sees it. It scans the whole
// table once, writes only the index key (conditioned on the expiresAt it read, so a concurrent
// change wins) and changes neither version nor modifiedAt: no change of the token, no event.
// It returns how many tokens it updated.
func BackfillExpiryDays(ctx context.Context, db *dynamodb.Client, table string) (int, error) {
	pages := dynamodb.NewScanPaginator(db, &dynamodb.ScanInput{TableName: aws.String(table),
		FilterExpression:          aws.String("begins_with(sk, :token) AND attribute_exists(expiresAt) AND attribute_not_exists(expiryDay)"),
		ProjectionExpression:      aws.String("pk, sk, expiresAt"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":token": &types.AttributeValueMemberS{Value: tokenSKPrefix}}})
	n := 0
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return n, err
		}
		for _, raw := range page.Items {
			var it struct {
				PK        string `dynamodbav:"pk"`
				SK        string `dynamodbav:"sk"`
				ExpiresAt string `dynamodbav:"expiresAt"`
			}
			if err := attributevalue.UnmarshalMap(raw, &it); err != nil {
				return n, err
			}
			at, err := time.Parse(time.RFC3339Nano, it.ExpiresAt)
			if err != nil {
				continue // not a date this service wrote: nothing to index
			}
			_, err = db.UpdateItem(ctx, &dynamodb.UpdateItemInput{TableName: aws.String(table),
				Key:                 map[string]types.AttributeValue{attrPK: raw[attrPK], attrSK: raw[attrSK]},
				UpdateExpression:    aws.String("SET expiryDay = :day"),
				ConditionExpression: aws.String("expiresAt = :exp"),
				ExpressionAttributeValues: map[string]types.AttributeValue{
					":day": &types.AttributeValueMemberS{Value: expiryDay(at)},
					":exp": &types.AttributeValueMemberS{Value: it.ExpiresAt},
				}})
			switch {
			case isConditionFailed(err):
			case err != nil:
				return n, err
			default:
				n++
			}
		}
	}
	return n, nil
}

// Expiring is a token found in the expiry index.
type Expiring struct {
	Tenant, ID string
	UID        string // "" for a token created before tokens had one
	ExpiresAt  time.Time
}

// IndexRead is what reading the expiry index cost: the items read and the read capacity
// units DynamoDB reported for them.
type IndexRead struct {
	Items   int
	Units   float64
	Queries int
}

// ExpiringBetween returns the tokens whose expiresAt lies in [from, to], reading the expiry
// index one day (partition) at a time with the exact bounds on its sort key, so it reads only
// those tokens; and what that read cost.
func (s *Store) ExpiringBetween(ctx context.Context, from, to time.Time) ([]Expiring, IndexRead, error) {
	from, to = from.UTC(), to.UTC()
	var found []Expiring
	var read IndexRead
	for day := from.Truncate(24 * time.Hour); !day.After(to); day = day.Add(24 * time.Hour) {
		lo, hi := from, to
		if day.After(lo) {
			lo = day
		}
		if last := day.Add(24*time.Hour - time.Millisecond); last.Before(hi) {
			hi = last
		}
		pages := dynamodb.NewQueryPaginator(s.db, &dynamodb.QueryInput{TableName: aws.String(s.table), IndexName: aws.String(ExpiryIndex),
			KeyConditionExpression: aws.String("expiryDay = :day AND expiresAt BETWEEN :lo AND :hi"),
			ReturnConsumedCapacity: types.ReturnConsumedCapacityTotal,
			ExpressionAttributeValues: map[string]types.AttributeValue{
				":day": &types.AttributeValueMemberS{Value: expiryDay(day)},
				":lo":  &types.AttributeValueMemberS{Value: token.FormatTime(lo)},
				":hi":  &types.AttributeValueMemberS{Value: token.FormatTime(hi)},
			}})
		for pages.HasMorePages() {
			page, err := pages.NextPage(ctx)
			if err != nil {
				return nil, read, classify(err)
			}
			read.Items += int(page.ScannedCount)
			read.Queries++
			if c := page.ConsumedCapacity; c != nil {
				read.Units += aws.ToFloat64(c.CapacityUnits)
			}
			for _, raw := range page.Items {
				var it struct {
					PK        string `dynamodbav:"pk"`
					SK        string `dynamodbav:"sk"`
					UID       string `dynamodbav:"uid"`
					ExpiresAt string `dynamodbav:"expiresAt"`
				}
				if err := attributevalue.UnmarshalMap(raw, &it); err != nil {
					return nil, read, token.InternalError(err)
				}
				at, err := time.Parse(time.RFC3339Nano, it.ExpiresAt)
				if err != nil || len(it.SK) <= len(tokenSKPrefix) {
					continue // no token of this service
				}
				found = append(found, Expiring{Tenant: it.PK, ID: it.SK[len(tokenSKPrefix):], UID: it.UID, ExpiresAt: at})
			}
		}
	}
	return found, read, nil
}

// A Reminder is the expiring (Lead set) or expired (Lead "") event of one expiry value of one
// token. It is written at most once: with it goes a marker item whose key is the reminder's
// own (pk tenant, sk "reminder#<tokenId>#<uid>#<expiresAt>#<lead or expired>"), put only if it
// does not exist. A new expiresAt (or a new token under the same id) is another key: re-armed.
type Reminder struct {
	Tenant, TokenID, UID string
	ExpiresAt            time.Time
	Lead                 string // "168h"; "" for expired
}

func (r Reminder) kind() string {
	if r.Lead == "" {
		return token.ActionExpired
	}
	return token.ActionExpiring + "-" + r.Lead
}

func (r Reminder) markerKey() map[string]types.AttributeValue {
	return map[string]types.AttributeValue{
		attrPK: &types.AttributeValueMemberS{Value: r.Tenant},
		attrSK: &types.AttributeValueMemberS{Value: reminderSKPrefix + r.TokenID + "#" + r.UID + "#" + token.FormatTime(r.ExpiresAt) + "#" + r.kind()},
	}
}

// markerItem is the record that a reminder was written, and which event it is.
type markerItem struct {
	PK        string `dynamodbav:"pk"`
	SK        string `dynamodbav:"sk"`
	TokenID   string `dynamodbav:"tokenId"`
	Action    string `dynamodbav:"action"`
	Lead      string `dynamodbav:"lead,omitempty"`
	ExpiresAt string `dynamodbav:"expiresAt"`
	EventSK   string `dynamodbav:"eventSk"`
	TTL       int64  `dynamodbav:"ttl"` // with its event's
}

// Reminded reports which of rs were written already, with eventually consistent batch reads
// of their markers (cheaper than a write refused by its condition; RecordReminder's condition
// still decides), and how many items it read.
func (s *Store) Reminded(ctx context.Context, rs []Reminder) ([]bool, int, error) {
	done := make([]bool, len(rs))
	index := map[string]int{}
	read := 0
	for start := 0; start < len(rs); start += maxBatchGetKeys {
		var keys []map[string]types.AttributeValue
		for i := start; i < min(start+maxBatchGetKeys, len(rs)); i++ {
			k := rs[i].markerKey()
			index[rs[i].Tenant+"\x00"+k[attrSK].(*types.AttributeValueMemberS).Value] = i
			keys = append(keys, k)
		}
		req := map[string]types.KeysAndAttributes{s.table: {Keys: keys, ProjectionExpression: aws.String("pk, sk")}}
		for attempt := 0; len(req) > 0; attempt++ {
			if attempt > 0 {
				if err := s.pause(ctx, attempt); err != nil {
					return nil, read, err
				}
			}
			if attempt == WriteRounds {
				return nil, read, &token.Error{Kind: token.Unavailable, Reason: token.StoreUnavailable, Cause: errors.New("unprocessed keys")}
			}
			out, err := s.db.BatchGetItem(ctx, &dynamodb.BatchGetItemInput{RequestItems: req})
			if err != nil {
				return nil, read, classify(err)
			}
			for _, raw := range out.Responses[s.table] {
				read++
				pk, _ := raw[attrPK].(*types.AttributeValueMemberS)
				sk, _ := raw[attrSK].(*types.AttributeValueMemberS)
				if pk != nil && sk != nil {
					if i, ok := index[pk.Value+"\x00"+sk.Value]; ok {
						done[i] = true
					}
				}
			}
			req = out.UnprocessedKeys
		}
	}
	return done, read, nil
}

var reminderProjection = projectionExpr{expr: aws.String("#v, #u, #m, #e, #ea"), names: map[string]string{
	"#v": attrVersion, "#u": attrUID, "#m": "modifiedAt", "#e": attrExpiresAt, "#ea": attrEventAt}}

// RecordReminder writes r's event (ev gives its actor and request id) with its marker, in one
// transaction that also requires the token to exist with r's identity and expiresAt, at the
// version and last event it read (and sets its eventAt to the reminder's stamp): a deleted token,
// or one whose expiry changed, gets none, and the reminder sorts in commit order among the
// token's events (never after its delete). written is false
// when nothing was due any more (gone, changed, or written already, also by a concurrent sweep).
func (s *Store) RecordReminder(ctx context.Context, r Reminder, ev token.Event) (written bool, err error) {
	exp := token.FormatTime(r.ExpiresAt)
	err = s.rounds(ctx, func() error {
		it, err := s.getItem(ctx, r.Tenant, r.TokenID, reminderProjection)
		switch {
		case token.KindOf(err) == token.NotFound:
			return nil
		case err != nil:
			return err
		case it.ExpiresAt != exp || it.UID != r.UID:
			return nil // changed meanwhile: the new expiry value has reminders of its own
		}
		st := state{found: true, uid: it.UID, version: it.Version, eventAt: it.EventAt}
		st.modifiedAt, _ = time.Parse(time.RFC3339Nano, it.ModifiedAt)
		ev.At, ev.TokenID, ev.Version, ev.Lead, ev.ExpiresAt = s.stamp(st), r.TokenID, st.version, r.Lead, &r.ExpiresAt
		cond, values := st.sameToken()
		cond += " AND " + eventsBefore(ev.At, values)
		values[":exp"] = &types.AttributeValueMemberS{Value: exp}
		ev.Action = token.ActionExpired
		if r.Lead != "" {
			ev.Action = token.ActionExpiring
		}
		event := s.eventPut(r.Tenant, ev, r.kind())
		marker, err := attributevalue.MarshalMap(markerItem{PK: r.Tenant, SK: r.markerKey()[attrSK].(*types.AttributeValueMemberS).Value,
			TokenID: r.TokenID, Action: ev.Action, Lead: r.Lead, ExpiresAt: exp,
			EventSK: event.Put.Item[attrSK].(*types.AttributeValueMemberS).Value, TTL: ev.At.Add(s.retention).Unix()})
		if err != nil {
			return token.InternalError(err)
		}
		failed, err := s.transact(ctx, []types.TransactWriteItem{
			// Not a change of the token (version and modifiedAt stay), but an event on it: it takes
			// its place in the token's order of events (eventAt), so that it never sorts after a
			// delete or a change that committed before it.
			{Update: &types.Update{TableName: aws.String(s.table), Key: key(r.Tenant, r.TokenID), UpdateExpression: aws.String("SET eventAt = :eventAt"),
				ConditionExpression: aws.String(cond + " AND expiresAt = :exp"), ExpressionAttributeValues: values}},
			{Put: &types.Put{TableName: aws.String(s.table), Item: marker, ConditionExpression: aws.String("attribute_not_exists(pk)")}},
			event,
		})
		switch {
		case err != nil:
			return err
		case failed == nil:
			written = true
			return nil
		case failed[1] || failed[2]:
			return nil // written already (by a concurrent sweep, or our own attempt whose answer was lost)
		}
		return errMoved // the token changed: read again
	})
	return written, err
}
