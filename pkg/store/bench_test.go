package store_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"aitokens/pkg/devtools/testenv"
	"aitokens/pkg/store"
	"aitokens/pkg/token"
)

// BenchmarkWriteWithEventVersusPlain alternates, on DynamoDB Local, a create and an update as
// the store makes them now (one transaction with the audit event) with the same write as it was
// made before the audit trail (one conditional PutItem, one conditional UpdateItem), and
// reports both and their ratio.
func BenchmarkWriteWithEventVersusPlain(b *testing.B) {
	ctx := context.Background()
	table := testenv.NewTable(b)
	st := store.New(testenv.Client(), table)
	db := testenv.Client()
	var withEvent, plain time.Duration
	i := 0
	for b.Loop() {
		now := time.Now()
		id := fmt.Sprintf("t%d", i)
		start := time.Now()
		if err := st.Create(ctx, token.Token{Tenant: "acme", ID: id, Name: "n", CreatedAt: now, ModifiedAt: now}, sealed, token.Event{At: now, RequestID: "c" + id}); err != nil {
			b.Fatal(err)
		}
		if err := st.Update(ctx, store.Update{Tenant: "acme", ID: id, Name: new("m"), Version: 1}, token.Event{At: now, RequestID: "u" + id}); err != nil {
			b.Fatal(err)
		}
		withEvent += time.Since(start)

		start = time.Now()
		key := map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: "acme"}, "sk": &types.AttributeValueMemberS{Value: "token#p" + id}}
		item := map[string]types.AttributeValue{"pk": key["pk"], "sk": key["sk"], "id": &types.AttributeValueMemberS{Value: "p" + id},
			"name": &types.AttributeValueMemberS{Value: "n"}, "version": &types.AttributeValueMemberN{Value: "1"},
			"createdAt": &types.AttributeValueMemberS{Value: token.FormatTime(now)}, "modifiedAt": &types.AttributeValueMemberS{Value: token.FormatTime(now)},
			"requestId": &types.AttributeValueMemberS{Value: "c" + id}, "sealCiphertext": &types.AttributeValueMemberB{Value: sealed.Ciphertext}}
		if _, err := db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(table), Item: item,
			ConditionExpression: aws.String("attribute_not_exists(pk)")}); err != nil {
			b.Fatal(err)
		}
		if _, err := db.UpdateItem(ctx, &dynamodb.UpdateItemInput{TableName: aws.String(table), Key: key,
			ConditionExpression:      aws.String("attribute_exists(pk) AND version = :v AND requestId <> :r"),
			UpdateExpression:         aws.String("SET #n = :n, modifiedAt = :m, requestId = :r ADD version :one"),
			ExpressionAttributeNames: map[string]string{"#n": "name"},
			ExpressionAttributeValues: map[string]types.AttributeValue{":v": &types.AttributeValueMemberN{Value: "1"},
				":r": &types.AttributeValueMemberS{Value: "u" + id}, ":n": &types.AttributeValueMemberS{Value: "m"},
				":m": &types.AttributeValueMemberS{Value: token.FormatTime(now)}, ":one": &types.AttributeValueMemberN{Value: strconv.Itoa(1)}},
		}); err != nil {
			b.Fatal(err)
		}
		plain += time.Since(start)
		i++
	}
	b.ReportMetric(float64(withEvent.Nanoseconds())/float64(b.N), "with-event-ns/op")
	b.ReportMetric(float64(plain.Nanoseconds())/float64(b.N), "plain-ns/op")
	b.ReportMetric(float64(withEvent)/float64(plain), "with-event/plain")
}
