package service_test

import (
	"context"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"aitokens/pkg/devtools/testenv"
	"aitokens/pkg/service"
	"aitokens/pkg/store"
)

// The invariant check sees each broken promise of replace and of the order of events
// (docs/security.md, Promises): tokens written by the service, then changed behind its back one
// attribute each, are each reported, and the untouched pair is not.
func TestInvariantCheckSeesBrokenPromises(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	table := testenv.NewTable(t)
	svc := newService(t, store.New(testenv.Client(), table))
	cases := []struct {
		name, id, update string // id: the token changed, "<pair>" or "<pair>-next"
		want             string
	}{
		{"retirement removed", "a", "REMOVE retiresAt", "a replaced token must expire at its retirement"},
		{"expiry moved past the retirement", "b", "SET expiresAt = :later, byExpires = :laterKey", "a replaced token must expire at its retirement"},
		{"successor opened without a PATCH", "c-next", "REMOVE restricted", "open, but its predecessor c is restricted"},
		{"an event stamp not the last event's", "d", "SET eventAt = :later", "eventAt 2999-01-01T00:00:00.000Z, but its last event"},
		{"untouched", "e", "", ""},
	}
	for _, c := range cases {
		pair := strings.TrimSuffix(c.id, "-next")
		if err := upsert(ctx, svc, service.Upsert{Tenant: "acme", ID: pair, Name: new("old"), Value: new("sk-old-value"),
			Restricted: new(true), Meta: meta(pair + "-c")}); err != nil {
			t.Fatal(err)
		}
		if err := upsert(ctx, svc, service.Upsert{Tenant: "acme", ID: pair + "-next", Name: new("next"), Value: new("sk-next-value"),
			Replaces: &pair, Meta: meta(pair + "-r")}); err != nil {
			t.Fatal(err)
		}
		if c.update == "" {
			continue
		}
		in := &dynamodb.UpdateItemInput{TableName: aws.String(table), UpdateExpression: aws.String(c.update),
			Key: map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: "acme"}, "sk": &types.AttributeValueMemberS{Value: "token#" + c.id}}}
		if strings.Contains(c.update, ":later") {
			in.ExpressionAttributeValues = map[string]types.AttributeValue{":later": &types.AttributeValueMemberS{Value: "2999-01-01T00:00:00.000Z"}}
		}
		if strings.Contains(c.update, ":laterKey") { // the list key with it, so that only the promise is broken
			in.ExpressionAttributeValues[":laterKey"] = &types.AttributeValueMemberS{Value: "2999-01-01T00:00:00.000Z#" + c.id}
		}
		if _, err := testenv.Client().UpdateItem(ctx, in); err != nil {
			t.Fatal(err)
		}
	}
	violations, err := testenv.Violations(ctx, testenv.Client(), table)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		var found []string
		for _, v := range violations {
			if strings.HasPrefix(v, "acme: token "+c.id+":") {
				found = append(found, v)
			}
		}
		switch {
		case c.want == "" && len(found) > 0:
			t.Errorf("%s: reported %q", c.name, found)
		case c.want != "" && (len(found) != 1 || !strings.Contains(found[0], c.want)):
			t.Errorf("%s: reported %q, want one line with %q", c.name, found, c.want)
		}
	}
	testenv.LeaveInvariants(t, table, "it breaks each promise on purpose")
}
