package store_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"aitokens/pkg/devtools/testenv"
	"aitokens/pkg/store"
	"aitokens/pkg/token"
)

// A table made before the stream and the expiry index (a developer's .data/) gets both from
// CreateTable, and its tokens with expiresAt are indexed; tokens written afterwards keep
// expiryDay in step with expiresAt.
func TestCreateTableUpgradesAnOlderTable(t *testing.T) {
	testenv.Require(t)
	ctx := context.Background()
	db := testenv.Client()
	b := make([]byte, 6)
	rand.Read(b)
	table := "old-" + hex.EncodeToString(b)
	_, err := db.CreateTable(ctx, &dynamodb.CreateTableInput{TableName: aws.String(table), BillingMode: types.BillingModePayPerRequest,
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String("pk"), AttributeType: types.ScalarAttributeTypeS},
			{AttributeName: aws.String("sk"), AttributeType: types.ScalarAttributeTypeS}},
		KeySchema: []types.KeySchemaElement{{AttributeName: aws.String("pk"), KeyType: types.KeyTypeHash},
			{AttributeName: aws.String("sk"), KeyType: types.KeyTypeRange}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.DeleteTable(context.Background(), &dynamodb.DeleteTableInput{TableName: aws.String(table)}) })
	s := func(v string) types.AttributeValue { return &types.AttributeValueMemberS{Value: v} }
	exp := time.Date(2027, 1, 2, 23, 59, 0, 0, time.UTC)
	if _, err := db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(table), Item: map[string]types.AttributeValue{
		"pk": s("acme"), "sk": s("token#old"), "id": s("old"), "expiresAt": s(token.FormatTime(exp))}}); err != nil {
		t.Fatal(err)
	}
	if err := store.CreateTable(ctx, db, table); err != nil {
		t.Fatal(err)
	}
	desc, err := db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(table)})
	if err != nil {
		t.Fatal(err)
	}
	if spec := desc.Table.StreamSpecification; spec == nil || !aws.ToBool(spec.StreamEnabled) || spec.StreamViewType != types.StreamViewTypeNewImage {
		t.Fatalf("stream %+v", desc.Table.StreamSpecification)
	}
	var indexes []string
	for _, gsi := range desc.Table.GlobalSecondaryIndexes {
		indexes = append(indexes, aws.ToString(gsi.IndexName))
	}
	slices.Sort(indexes)
	if want := []string{store.ExpiryIndex, store.ListIndexByCreated, store.ListIndexByExpires, store.ListIndexByID,
		store.ListIndexByIDKeys, store.ListIndexByModified, store.ListIndexByName}; !slices.Equal(indexes, want) {
		t.Fatalf("indexes %v, want %v", indexes, want)
	}
	st := store.New(db, table)
	if n, err := st.Count(ctx, "acme"); n != 1 || err != nil {
		t.Fatalf("count after the upgrade: %d %v, want the old token counted", n, err)
	}
	found, read, err := st.ExpiringBetween(ctx, exp.Add(-time.Hour), exp)
	if err != nil || len(found) != 1 || found[0].ID != "old" || found[0].Tenant != "acme" || read.Items != 1 || read.Queries != 1 {
		t.Fatalf("%+v %+v %v", found, read, err)
	}
	// Again: nothing to do. And the index follows expiresAt through create, update and removal.
	if err := store.CreateTable(ctx, db, table); err != nil {
		t.Fatal(err)
	}
	if err := st.Create(ctx, token.Token{Tenant: "acme", ID: "new", Name: "new", ExpiresAt: &exp}, token.Sealed{}, token.Event{RequestID: "r1"}); err != nil {
		t.Fatal(err)
	}
	if n, err := st.Count(ctx, "acme"); n != 2 || err != nil {
		t.Fatalf("count after a create on the upgraded table: %d %v, want 2", n, err)
	}
	later := exp.Add(48 * time.Hour)
	days := func() []string {
		found, _, err := st.ExpiringBetween(ctx, exp.Add(-72*time.Hour), exp.Add(72*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, f := range found {
			ids = append(ids, f.ID+"@"+token.FormatTime(f.ExpiresAt))
		}
		return ids
	}
	if err := st.Update(ctx, store.Update{Tenant: "acme", ID: "new", ExpiresAt: &later}, token.Event{RequestID: "r3"}); err != nil {
		t.Fatal(err)
	}
	if got := days(); !slices.Contains(got, "new@"+token.FormatTime(later)) || slices.Contains(got, "new@"+token.FormatTime(exp)) {
		t.Fatalf("after moving new's expiry: %v", got)
	}
	if err := st.Update(ctx, store.Update{Tenant: "acme", ID: "new", RemoveExpiry: true}, token.Event{RequestID: "r4"}); err != nil {
		t.Fatal(err)
	}
	if got := days(); len(got) != 1 || got[0] != "old@"+token.FormatTime(exp) {
		t.Fatalf("after removing new's expiry: %v, want old's alone", got)
	}
}
