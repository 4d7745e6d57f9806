package store_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go/middleware"

	"aitokens/pkg/devtools/testenv"
	"aitokens/pkg/store"
	"aitokens/pkg/token"
)

// Tokens written before the list indexes (no list keys, not counted) are listed and counted by
// BackfillListing, one transaction each: a run stopped half way leaves whole tokens done and
// the count right for them, a second run does the rest, a third finds nothing to do; the
// invariant check (list keys, counters) holds after it.
func TestBackfillListsAndCountsOlderTokens(t *testing.T) {
	ctx := context.Background()
	table := testenv.NewTable(t)
	db := testenv.Client()
	st := store.New(db, table)
	const tokens, older = 12, 9
	for i := range tokens {
		if err := st.Create(ctx, token.Token{Tenant: "acme", ID: fmt.Sprintf("t%02d", i), Name: fmt.Sprintf("Token %d", i)}, token.Sealed{},
			token.Event{RequestID: fmt.Sprint("c", i)}); err != nil {
			t.Fatal(err)
		}
	}
	// The first 9 as an older version wrote them: no list keys, and not in the count.
	for i := range older {
		id := fmt.Sprintf("t%02d", i)
		key := map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: "acme"}, "sk": &types.AttributeValueMemberS{Value: "token#" + id}}
		if _, err := db.UpdateItem(ctx, &dynamodb.UpdateItemInput{TableName: aws.String(table), Key: key,
			UpdateExpression: aws.String("REMOVE byName, byCreated, byModified, byExpires")}); err != nil {
			t.Fatal(err)
		}
		count := store.CountItems("acme", []string{id})[0]
		if _, err := db.UpdateItem(ctx, &dynamodb.UpdateItemInput{TableName: aws.String(table), Key: map[string]types.AttributeValue{"pk": count["pk"], "sk": count["sk"]},
			UpdateExpression: aws.String("ADD tokens :m"), ExpressionAttributeValues: map[string]types.AttributeValue{":m": &types.AttributeValueMemberN{Value: "-1"}}}); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := st.Count(ctx, "acme"); n != tokens-older || err != nil {
		t.Fatalf("count before the backfill %d (%v), want %d", n, err, tokens-older)
	}

	// A run that stops after its fourth transaction (the context cancelled as it returns).
	stopCtx, stop := context.WithCancel(ctx)
	transactions := 0
	stopping, err := store.NewClient(ctx, testenv.Endpoint(), testenv.Policy, func(o *dynamodb.Options) {
		o.APIOptions = append(o.APIOptions, func(s *middleware.Stack) error {
			return s.Initialize.Add(middleware.InitializeMiddlewareFunc("stop", func(ctx context.Context, in middleware.InitializeInput,
				next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
				out, md, err := next.HandleInitialize(ctx, in)
				if _, ok := in.Parameters.(*dynamodb.TransactWriteItemsInput); ok && err == nil {
					if transactions++; transactions == 4 {
						stop()
					}
				}
				return out, md, err
			}), middleware.After)
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	n, err := store.BackfillListing(stopCtx, stopping, table)
	if err == nil || n != 4 {
		t.Fatalf("the stopped run listed %d (%v), want 4 and an error", n, err)
	}
	if got, err := st.Count(ctx, "acme"); got != tokens-older+4 || err != nil {
		t.Fatalf("count after the stopped run %d (%v), want %d", got, err, tokens-older+4)
	}
	if n, err := store.BackfillListing(ctx, db, table); n != older-4 || err != nil {
		t.Fatalf("the second run listed %d (%v), want %d", n, err, older-4)
	}
	if n, err := store.BackfillListing(ctx, db, table); n != 0 || err != nil {
		t.Fatalf("the third run listed %d (%v), want none", n, err)
	}
	if got, err := st.Count(ctx, "acme"); got != tokens || err != nil {
		t.Fatalf("count after the backfill %d (%v), want %d", got, err, tokens)
	}
	// Listed, the older tokens sort by name like the rest.
	res, err := st.ListPage(ctx, "acme", store.ListOrder{Field: "name", Desc: true}, 0, 100)
	if err != nil || len(res.Tokens) != tokens || res.Tokens[0].ID != "t09" {
		t.Fatalf("by name, descending: %d tokens, first %v (%v)", len(res.Tokens), res.Tokens, err)
	}
}

// The invariant check sees a list key that does not follow its token and a counter that does
// not count its tokens (invariants 9 and 10).
func TestInvariantCheckSeesBrokenListing(t *testing.T) {
	ctx := context.Background()
	table := testenv.NewTable(t)
	testenv.LeaveInvariants(t, table, "it breaks the listing on purpose")
	db := testenv.Client()
	st := store.New(db, table)
	for _, id := range []string{"a", "b"} {
		if err := st.Create(ctx, token.Token{Tenant: "acme", ID: id, Name: "n"}, token.Sealed{}, token.Event{RequestID: "c" + id}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.UpdateItem(ctx, &dynamodb.UpdateItemInput{TableName: aws.String(table), UpdateExpression: aws.String("SET #n = :n"),
		ExpressionAttributeNames: map[string]string{"#n": "name"}, ExpressionAttributeValues: map[string]types.AttributeValue{":n": &types.AttributeValueMemberS{Value: "renamed"}},
		Key: map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: "acme"}, "sk": &types.AttributeValueMemberS{Value: "token#a"}}}); err != nil {
		t.Fatal(err)
	}
	count := store.CountItems("acme", []string{"b"})[0]
	if _, err := db.UpdateItem(ctx, &dynamodb.UpdateItemInput{TableName: aws.String(table), Key: map[string]types.AttributeValue{"pk": count["pk"], "sk": count["sk"]},
		UpdateExpression: aws.String("ADD tokens :one"), ExpressionAttributeValues: map[string]types.AttributeValue{":one": &types.AttributeValueMemberN{Value: "1"}}}); err != nil {
		t.Fatal(err)
	}
	violations, err := testenv.Violations(ctx, db, table)
	if err != nil {
		t.Fatal(err)
	}
	sk := count["sk"].(*types.AttributeValueMemberS).Value
	want := []string{
		"acme: counter " + sk + " says 2 tokens, 1 tokens fall to it",
		`acme: token a: list keys "n\x01a"`,
	}
	if len(violations) != len(want) {
		t.Fatalf("violations %q, want %d", violations, len(want))
	}
	for i, w := range want {
		if !strings.HasPrefix(violations[i], w) {
			t.Errorf("violation %q, want %q...", violations[i], w)
		}
	}
}
