package service_test

import (
	"context"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/kms"

	"aitokens/pkg/awsconf"
	"aitokens/pkg/awsretry"
	"aitokens/pkg/devtools/kmstest"
	"aitokens/pkg/devtools/testenv"
	"aitokens/pkg/seal/kmsseal"
	"aitokens/pkg/service"
	"aitokens/pkg/store"
	"aitokens/pkg/token"
)

// A relay grant refused on what the token's item says (a host its policy does not list, no
// policy, a consumer a restricted token does not know) opens nothing and writes nothing: no
// KMS call, lastUsedAt as it was (issue 28). A granted host makes the one Decrypt and the touch,
// so the counts can move; a policy rewritten in the table to admit another host passes the host
// check and still does not open (its digest is in the encryption context).
func TestRelayGrantRefusesBeforeOpening(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	keys := kmstest.New()
	defer keys.Close()
	cfg := awsconf.Local(func(string) string { return "" }, awsretry.Policy{MaxAttempts: 1, AttemptTimeout: awsretry.DefaultPolicy.AttemptTimeout})
	client := kms.NewFromConfig(cfg, func(o *kms.Options) { o.BaseEndpoint = aws.String(keys.URL) })
	table := testenv.NewTable(t)
	st := store.New(testenv.Client(), table)
	svc, err := service.New(st, kmsseal.New(client, kmstest.KeyARN), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range []service.Upsert{
		{ID: "openai", Egress: &setupEgress},
		{ID: "plain"},
		{ID: "closed", Egress: &setupEgress, Restricted: new(true)},
		{ID: "tampered", Egress: &setupEgress},
	} {
		in.Tenant, in.Name, in.Value, in.Meta = "acme", new(in.ID), new("sk-value-of-"+in.ID), meta("create-"+in.ID)
		if err := upsert(ctx, svc, in); err != nil {
			t.Fatal(err)
		}
	}
	decrypts := func() int { return keys.Calls()["Decrypt"] }
	lastUsed := func(id string) string {
		t.Helper()
		got, err := svc.Get(ctx, "acme", id)
		if err != nil {
			t.Fatal(err)
		}
		return got.LastUsedAt.String()
	}
	agent := &token.Consumer{Kind: "agent", ID: "support"}
	for _, c := range []struct {
		name, id, host string
		reason         token.Reason
	}{
		{"an unlisted host", "openai", "evil.example", service.ReasonHostNotAllowed},
		{"a listed name on another port", "openai", "api.openai.com:8443", service.ReasonHostNotAllowed},
		{"a token without a policy", "plain", "api.openai.com", service.ReasonNotRelayable},
		{"a consumer the restricted token does not know", "closed", "api.openai.com", token.ConsumerRefused},
	} {
		before, touched := decrypts(), lastUsed(c.id)
		value, _, err := svc.RelayGrant(ctx, "acme", c.id, agent, c.host, "relay-"+c.id)
		if e := token.As(err); err == nil || e.Reason != c.reason || value != nil {
			t.Errorf("%s: %q %v, want refused with %s", c.name, value, err, c.reason)
		}
		if n := decrypts() - before; n != 0 {
			t.Errorf("%s: %d KMS Decrypt calls, want none", c.name, n)
		}
		if got := lastUsed(c.id); got != touched {
			t.Errorf("%s: lastUsedAt %s, was %s", c.name, got, touched)
		}
	}

	before, touched := decrypts(), lastUsed("openai")
	value, egress, err := svc.RelayGrant(ctx, "acme", "openai", agent, "api.openai.com", "relay-ok")
	if err != nil || string(value) != "sk-value-of-openai" || egress.Digest() != setupEgress.Digest() {
		t.Fatalf("listed host: %q %+v %v", value, egress, err)
	}
	if n := decrypts() - before; n != 1 {
		t.Errorf("listed host: %d KMS Decrypt calls, want 1", n)
	}
	if lastUsed("openai") == touched {
		t.Errorf("listed host: lastUsedAt still %s", touched)
	}

	if _, err := testenv.Client().UpdateItem(ctx, &dynamodb.UpdateItemInput{TableName: aws.String(table),
		UpdateExpression: aws.String("SET egress.allowedHosts = :x"),
		Key:              map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: "acme"}, "sk": &types.AttributeValueMemberS{Value: "token#tampered"}},
		ExpressionAttributeValues: map[string]types.AttributeValue{":x": &types.AttributeValueMemberL{Value: []types.AttributeValue{
			&types.AttributeValueMemberS{Value: "evil.example"}}}}}); err != nil {
		t.Fatal(err)
	}
	testenv.LeaveInvariants(t, table, "a policy rewritten behind the service's back, on purpose")
	if value, _, err := svc.RelayGrant(ctx, "acme", "tampered", agent, "evil.example", "relay-tampered"); err == nil || value != nil ||
		token.As(err).Reason != token.KeysRefused {
		t.Errorf("tampered policy: %q %v, want the key service's refusal", value, err)
	}
}
