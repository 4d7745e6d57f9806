package service_test

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"aitokens/pkg/devtools/testenv"
	"aitokens/pkg/seal"
	"aitokens/pkg/service"
	"aitokens/pkg/store"
	"aitokens/pkg/token"
)

// The invariant check sees each broken egress promise (docs/security.md, Egress): a policy
// rewritten without its digest, a digest without a policy, an invalid policy, and a successor
// that widens (or drops) its predecessor's policy; the untouched pair is not reported.
func TestInvariantCheckSeesBrokenEgressPromises(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	table := testenv.NewTable(t)
	svc := newService(t, store.New(testenv.Client(), table))
	hosts := func(h ...string) types.AttributeValue {
		l := &types.AttributeValueMemberL{}
		for _, x := range h {
			l.Value = append(l.Value, &types.AttributeValueMemberS{Value: x})
		}
		return l
	}
	cases := []struct {
		name, id, update string
		value            types.AttributeValue
		want             string
	}{
		{"policy rewritten", "a", "SET egress.allowedHosts = :x", hosts("evil.example"), "but its value was bound to"},
		{"policy removed", "b", "REMOVE egress", nil, "but no egress policy"},
		{"policy made invalid", "c", "SET egress.allowedHosts = :x", hosts("*.example"), "invalid"},
		{"successor widened", "d-next", "SET egress.allowedHosts = :x", hosts("api.openai.com", "evil.example"), "widens its predecessor"},
		{"successor without a policy", "e-next", "REMOVE egress, egressDigest", nil, "no egress policy, but its predecessor"},
		{"untouched", "f", "", nil, ""},
	}
	for _, c := range cases {
		pair := strings.TrimSuffix(c.id, "-next")
		if err := upsert(ctx, svc, service.Upsert{Tenant: "acme", ID: pair, Name: new("old"), Value: new("sk-old-value"),
			Egress: &setupEgress, Meta: meta(pair + "-c")}); err != nil {
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
		if c.value != nil {
			in.ExpressionAttributeValues = map[string]types.AttributeValue{":x": c.value}
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
		case c.want != "" && (len(found) == 0 || !strings.Contains(strings.Join(found, "\n"), c.want)):
			t.Errorf("%s: reported %q, want a line with %q", c.name, found, c.want)
		}
	}
	testenv.LeaveInvariants(t, table, "it breaks each egress promise on purpose")
}

// The store's replace refuses a successor whose policy does not narrow the predecessor it finds
// (the service decided on an earlier read: the predecessor was deleted and created again under
// another policy meanwhile), with a conflict to retry and nothing written.
func TestStoreReplaceRefusesAPolicyDecidedOnAnotherPredecessor(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	table := testenv.NewTable(t)
	st := store.New(testenv.Client(), table)
	svc := newService(t, st)
	if err := upsert(ctx, svc, service.Upsert{Tenant: "acme", ID: "old", Name: new("old"), Value: new("sk-old-value"),
		Egress: &setupEgress, Meta: meta("old-c")}); err != nil {
		t.Fatal(err)
	}
	for name, e := range map[string]*token.Egress{"no policy": nil, "another policy": &recreatedEgress} {
		next := token.Token{Tenant: "acme", ID: "next", Name: "next", Version: 1, Replaces: "old", Egress: e}
		sealed, err := sealer.Seal(ctx, seal.BindingOf(next), []byte("sk-next-value"))
		if err != nil {
			t.Fatal(err)
		}
		err = st.Replace(ctx, next, sealed, time.Hour, token.Event{RequestID: "r-" + name, Actor: "tester", Outcome: token.OutcomeSuccess})
		if e := token.As(err); err == nil || e.Kind != token.Conflict || e.Reason != token.ConcurrentChange {
			t.Errorf("%s: %v, want a conflict to retry", name, err)
		}
	}
	if _, err := st.Get(ctx, "acme", "next"); token.KindOf(err) != token.NotFound {
		t.Fatalf("a refused replace wrote the successor: %v", err)
	}
	if old, err := st.Get(ctx, "acme", "old"); err != nil || old.ReplacedBy != "" || old.Version != 1 {
		t.Fatalf("a refused replace changed the predecessor: %+v %v", old, err)
	}
}

// The token the relay gets from resolve carries the policy its value was opened under; a token
// without a policy carries none.
func TestPolicyReadBackAndValueOpens(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	svc := newService(t, store.New(testenv.Client(), testenv.NewTable(t)))
	for id, e := range map[string]*token.Egress{"bound": &setupEgress, "free": nil} {
		if err := upsert(ctx, svc, service.Upsert{Tenant: "acme", ID: id, Name: new(id), Value: new("sk-value-of-" + id),
			Egress: e, Meta: meta(id)}); err != nil {
			t.Fatal(err)
		}
		got, err := svc.Get(ctx, "acme", id)
		if err != nil || !reflect.DeepEqual(got.Egress, e) {
			t.Errorf("%s: Get egress %+v (%v), want %+v", id, got.Egress, err, e)
		}
		v, err := svc.Resolve(ctx, "acme", id, nil, "resolve-"+id)
		if err != nil || string(v) != "sk-value-of-"+id {
			t.Errorf("%s: resolve %q %v", id, v, err)
		}
	}
}
