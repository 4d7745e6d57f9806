package testenv

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// EventKeys returns the key of every audit event item of table as "<pk>/<sk>" (the id its
// published event carries), sorted: what the event publisher must deliver.
func EventKeys(t testing.TB, table string) []string {
	t.Helper()
	pages := dynamodb.NewScanPaginator(client, &dynamodb.ScanInput{TableName: aws.String(table), ConsistentRead: aws.Bool(true),
		ProjectionExpression: aws.String("pk, sk")})
	var keys []string
	for pages.HasMorePages() {
		page, err := pages.NextPage(context.Background())
		if err != nil {
			t.Fatalf("scan %s: %v", table, err)
		}
		for _, it := range page.Items {
			pk, _ := it["pk"].(*types.AttributeValueMemberS)
			sk, _ := it["sk"].(*types.AttributeValueMemberS)
			if pk != nil && sk != nil && strings.HasPrefix(sk.Value, "event#") {
				keys = append(keys, pk.Value+"/"+sk.Value)
			}
		}
	}
	slices.Sort(keys)
	return keys
}
