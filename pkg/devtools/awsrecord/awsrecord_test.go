package awsrecord

import (
	"reflect"
	"testing"
)

func TestActions(t *testing.T) {
	cases := []struct {
		name, target, body string
		want               []Call
	}{
		{"get", "DynamoDB_20120810.GetItem", `{"TableName":"t"}`, []Call{{Action: "dynamodb:GetItem", Resource: "t"}}},
		{"index", "DynamoDB_20120810.Query", `{"TableName":"t","IndexName":"expiry"}`, []Call{{Action: "dynamodb:Query", Resource: "t/index/expiry"}}},
		{"transaction", "DynamoDB_20120810.TransactWriteItems",
			`{"TransactItems":[{"Put":{"TableName":"t"}},{"Update":{"TableName":"t"}},{"Delete":{"TableName":"t"}},{"ConditionCheck":{"TableName":"t"}}]}`,
			[]Call{{Action: "dynamodb:PutItem", Resource: "t"}, {Action: "dynamodb:UpdateItem", Resource: "t"},
				{Action: "dynamodb:DeleteItem", Resource: "t"}, {Action: "dynamodb:ConditionCheckItem", Resource: "t"}}},
		{"transactional get", "DynamoDB_20120810.TransactGetItems", `{"TransactItems":[{"Get":{"TableName":"t"}}]}`,
			[]Call{{Action: "dynamodb:GetItem", Resource: "t"}}},
		{"batch", "DynamoDB_20120810.BatchGetItem", `{"RequestItems":{"t":{}}}`, []Call{{Action: "dynamodb:BatchGetItem", Resource: "t"}}},
		{"kms", "TrentService.Decrypt", `{"KeyId":"k","EncryptionContext":{"tokenId":"a","tenant":"b"}}`,
			[]Call{{Action: "kms:Decrypt", Resource: "k", ContextKeys: "tenant,tokenId"}}},
		{"bus", "AWSEvents.PutEvents", `{"Entries":[{"EventBusName":"b"},{}]}`,
			[]Call{{Action: "events:PutEvents", Resource: "b"}, {Action: "events:PutEvents", Resource: "default"}}},
		{"unknown", "Foo.Bar", `{}`, []Call{{Action: "unknown:Foo.Bar"}}},
		{"no target", "", ``, []Call{{Action: "unknown:"}}},
	}
	for _, c := range cases {
		if got := Actions(c.target, []byte(c.body)); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: %+v, want %+v", c.name, got, c.want)
		}
	}
}
