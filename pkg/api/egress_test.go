package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"aitokens/pkg/devtools/testenv"
	"aitokens/pkg/seal"
	"aitokens/pkg/token"
)

const (
	openaiEgress = `{"allowedHosts":["api.openai.com","api.openai.com:8443"],"inject":{"in":"header","name":"Authorization","template":"Bearer {{value}}"}}`
	egressValue  = "sk-egress-bound-value-0001"
)

func egressDoc(t *testing.T, raw string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(raw), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// expectInvalid checks a 400 naming field, with the message containing want.
func expectInvalid(t *testing.T, what string, res response, field, want string) {
	t.Helper()
	if res.status != 400 {
		t.Errorf("%s: %d %s, want 400", what, res.status, res.body)
		return
	}
	e := res.errorBody(t)
	if len(e.Details) == 0 || e.Details[0].Field != field || !strings.Contains(e.Details[0].Message, want) {
		t.Errorf("%s: details %+v, want field %s saying %q", what, e.Details, field, want)
	}
}

// A policy is set by the create, shown by GET, list, search and fields=egress (never the
// value), sent again unchanged on an update (204), and refused changed (400, nothing written),
// like the value; an update without it leaves it as it is.
func TestEgressSetOnCreateAndImmutable(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	res := h.do("PUT", base+"/openai", `{"name":"OpenAI","value":"`+egressValue+`","egress":`+openaiEgress+`}`, h.manager())
	if res.status != 201 {
		t.Fatalf("create: %d %s", res.status, res.body)
	}
	want := egressDoc(t, openaiEgress)
	if got := h.getDoc("openai")["egress"]; !reflect.DeepEqual(got, want) {
		t.Fatalf("GET egress %v, want %v", got, want)
	}
	var list []map[string]any
	h.do("GET", base, "", h.manager()).json(t, &list)
	if len(list) != 1 || !reflect.DeepEqual(list[0]["egress"], want) {
		t.Fatalf("list %v", list)
	}
	var only map[string]any
	h.do("GET", base+"/openai?fields=egress", "", h.manager()).json(t, &only)
	if !reflect.DeepEqual(only, map[string]any{"egress": want}) {
		t.Fatalf("fields=egress: %v", only)
	}
	var found []map[string]any
	h.do("POST", base+"/search?fields=id,egress", `{"q":"id:openai"}`, h.manager()).json(t, &found)
	if len(found) != 1 || !reflect.DeepEqual(found[0]["egress"], want) {
		t.Fatalf("search with fields=id,egress: %v", found)
	}

	// The same policy again (hosts in another order is the same policy): an update.
	same := `{"allowedHosts":["api.openai.com:8443","api.openai.com"],"inject":{"in":"header","name":"Authorization","template":"Bearer {{value}}"}}`
	if res := h.do("PUT", base+"/openai", `{"name":"Renamed","egress":`+same+`}`, h.manager()); res.status != 204 {
		t.Fatalf("same policy: %d %s", res.status, res.body)
	}
	if res := h.do("PUT", base+"/openai", `{"name":"Renamed","egress":null}`, h.manager()); res.status != 204 {
		t.Fatalf("egress null on an update (left as it is): %d %s", res.status, res.body)
	}
	before := h.getDoc("openai")
	for name, other := range map[string]string{
		"a host added":      `{"allowedHosts":["api.openai.com","api.openai.com:8443","evil.example"],"inject":{"in":"header","name":"Authorization","template":"Bearer {{value}}"}}`,
		"a host removed":    `{"allowedHosts":["api.openai.com"],"inject":{"in":"header","name":"Authorization","template":"Bearer {{value}}"}}`,
		"another template":  `{"allowedHosts":["api.openai.com","api.openai.com:8443"],"inject":{"in":"header","name":"Authorization","template":"{{value}}"}}`,
		"into the query":    `{"allowedHosts":["api.openai.com","api.openai.com:8443"],"inject":{"in":"query","name":"key","template":"{{value}}"}}`,
		"invalid and other": `{"allowedHosts":["*.openai.com"],"inject":{"in":"header","name":"Authorization","template":"Bearer {{value}}"}}`,
	} {
		res := h.do("PUT", base+"/openai", `{"name":"Changed","egress":`+other+`}`, h.manager())
		field := "egress"
		if name == "invalid and other" {
			field = "egress.allowedHosts[0]" // checked before the token is read
		}
		expectInvalid(t, name, res, field, "")
		if name != "invalid and other" && !strings.Contains(res.errorBody(t).Details[0].Message, "replaces") {
			t.Errorf("%s: the message does not say to replace the token: %s", name, res.body)
		}
	}
	if after := h.getDoc("openai"); !reflect.DeepEqual(after, before) {
		t.Fatalf("a refused change changed the token: %v, was %v", after, before)
	}
	if v, err := h.resolve("openai", nil); err != nil || v != egressValue {
		t.Fatalf("resolve: %q %v", v, err)
	}
	if bytes.Contains(h.bodies.Bytes(), []byte(egressValue)) {
		t.Fatal("the value appears in a response")
	}
	// A token created without a policy shows none, and cannot be given one by an update.
	h.create("plain", "Plain", "sk-plain-value-000001")
	if _, ok := h.getDoc("plain")["egress"]; ok {
		t.Fatal("a token without a policy shows egress")
	}
	expectInvalid(t, "a policy added by an update", h.do("PUT", base+"/plain", `{"name":"Plain","egress":`+openaiEgress+`}`, h.manager()), "egress", "cannot be changed")
	if _, ok := h.getDoc("plain")["egress"]; ok {
		t.Fatal("a refused update gave the token a policy")
	}
}

// Every invalid policy is a 400 naming its field, and no token is created.
func TestEgressInvalidRefused(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	inject := `"inject":{"in":"header","name":"Authorization","template":"Bearer {{value}}"}`
	for _, c := range []struct {
		name, egress, field, says string
	}{
		{"not an object", `"api.openai.com"`, "egress", "object"},
		{"hosts not a list", `{"allowedHosts":"api.openai.com",` + inject + `}`, "egress.allowedHosts", "array"},
		{"a host not a string", `{"allowedHosts":[1],` + inject + `}`, "egress.allowedHosts", "string"},
		{"an unknown key", `{"allowedHosts":["a.example"],"methods":["GET"],` + inject + `}`, "egress", "unknown field"},
		{"an unknown inject key", `{"allowedHosts":["a.example"],"inject":{"in":"header","name":"X-Key","template":"{{value}}","encode":"b64"}}`, "egress", "unknown field"},
		{"no hosts", `{"allowedHosts":[],` + inject + `}`, "egress.allowedHosts", "at least one"},
		{"hosts absent", `{` + inject + `}`, "egress.allowedHosts", "at least one"},
		{"seventeen hosts", `{"allowedHosts":["a1.example","a2.example","a3.example","a4.example","a5.example","a6.example","a7.example","a8.example","a9.example","b1.example","b2.example","b3.example","b4.example","b5.example","b6.example","b7.example","b8.example"],` + inject + `}`, "egress.allowedHosts", "at most 16"},
		{"a wildcard", `{"allowedHosts":["a.example","b.example","*.example"],` + inject + `}`, "egress.allowedHosts[2]", "wildcard"},
		{"a scheme", `{"allowedHosts":["https://a.example"],` + inject + `}`, "egress.allowedHosts[0]", "host name"},
		{"a path", `{"allowedHosts":["a.example/v1"],` + inject + `}`, "egress.allowedHosts[0]", "host name"},
		{"uppercase", `{"allowedHosts":["A.example"],` + inject + `}`, "egress.allowedHosts[0]", "lowercase"},
		{"an IP address", `{"allowedHosts":["169.254.169.254"],` + inject + `}`, "egress.allowedHosts[0]", "IP address"},
		{"a bad port", `{"allowedHosts":["a.example:99999"],` + inject + `}`, "egress.allowedHosts[0]", "port"},
		{"a duplicate", `{"allowedHosts":["a.example","a.example"],` + inject + `}`, "egress.allowedHosts[1]", "repeats"},
		{"no inject", `{"allowedHosts":["a.example"]}`, "egress.inject.in", "header"},
		{"in body", `{"allowedHosts":["a.example"],"inject":{"in":"body","name":"k","template":"{{value}}"}}`, "egress.inject.in", "header"},
		{"header Host", `{"allowedHosts":["a.example"],"inject":{"in":"header","name":"Host","template":"{{value}}"}}`, "egress.inject.name", "hop-by-hop"},
		{"header with CRLF", `{"allowedHosts":["a.example"],"inject":{"in":"header","name":"X-Key\r\nX-Evil","template":"{{value}}"}}`, "egress.inject.name", "header name"},
		{"header with braces", `{"allowedHosts":["a.example"],"inject":{"in":"header","name":"{{value}}","template":"{{value}}"}}`, "egress.inject.name", "header name"},
		{"query key with &", `{"allowedHosts":["a.example"],"inject":{"in":"query","name":"a&b","template":"{{value}}"}}`, "egress.inject.name", "query key"},
		{"no placeholder", `{"allowedHosts":["a.example"],"inject":{"in":"header","name":"X-Key","template":"static"}}`, "egress.inject.template", "exactly once"},
		{"two placeholders", `{"allowedHosts":["a.example"],"inject":{"in":"header","name":"X-Key","template":"{{value}}{{value}}"}}`, "egress.inject.template", "exactly once"},
		{"template with CRLF", `{"allowedHosts":["a.example"],"inject":{"in":"header","name":"X-Key","template":"{{value}}\r\nX-Evil: 1"}}`, "egress.inject.template", "CR"},
		{"template with another {{", `{"allowedHosts":["a.example"],"inject":{"in":"header","name":"X-Key","template":"{{value}} {{tenant}}"}}`, "egress.inject.template", "{{"},
	} {
		res := h.do("PUT", base+"/bad", `{"name":"Bad","value":"sk-never-stored-000001","egress":`+c.egress+`}`, h.manager())
		expectInvalid(t, c.name, res, c.field, c.says)
	}
	if res := h.do("GET", base+"/bad", "", h.manager()); res.status != 404 {
		t.Fatalf("a refused create left a token: %d %s", res.status, res.body)
	}
	// null is no policy.
	if res := h.do("PUT", base+"/none", `{"name":"None","value":"sk-no-policy-000001","egress":null}`, h.manager()); res.status != 201 {
		t.Fatalf("egress null on create: %d %s", res.status, res.body)
	}
	if _, ok := h.getDoc("none")["egress"]; ok {
		t.Fatal("egress null made a policy")
	}
}

// A PATCH of /egress, or of anything under it, is refused with a 400 saying to replace the
// token, and changes nothing (the other operations of the patch neither).
func TestEgressPatchRefused(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	if res := h.do("PUT", base+"/openai", `{"name":"OpenAI","value":"`+egressValue+`","egress":`+openaiEgress+`}`, h.manager()); res.status != 201 {
		t.Fatalf("create: %d %s", res.status, res.body)
	}
	before := h.getDoc("openai")
	for _, path := range []string{"/egress", "/egress/allowedHosts", "/egress/allowedHosts/0", "/egress/inject/template"} {
		for _, op := range []string{"REPLACE", "ADD", "REMOVE"} {
			body := `[{"op":"REPLACE","path":"/name","value":"Renamed"},{"op":"` + op + `","path":"` + path + `","value":["evil.example"]}]`
			expectInvalid(t, op+" "+path, h.do("PATCH", base+"/openai", body, h.manager()), path, "replace the token")
		}
	}
	if after := h.getDoc("openai"); !reflect.DeepEqual(after, before) {
		t.Fatalf("a refused patch changed the token: %v, was %v", after, before)
	}
	// Paths that merely begin with the same letters are not egress paths.
	expectInvalid(t, "/egressX", h.do("PATCH", base+"/openai", `[{"op":"REPLACE","path":"/egressX","value":1}]`, h.manager()), "/egressX", "only /name")
}

// A replacement without a policy of its own carries its predecessor's over; one with its own
// may narrow the predecessor's hosts, never widen them (400 naming the host, nothing written);
// a predecessor without a policy takes any valid one.
func TestEgressReplace(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	if res := h.do("PUT", base+"/old", `{"name":"Old","value":"sk-old-egress-value-01","egress":`+openaiEgress+`}`, h.manager()); res.status != 201 {
		t.Fatalf("create: %d %s", res.status, res.body)
	}
	wider := `{"allowedHosts":["api.openai.com","evil.example"],"inject":{"in":"header","name":"Authorization","template":"Bearer {{value}}"}}`
	res := h.do("PUT", base+"/wide", `{"name":"Wide","value":"sk-wide-egress-value-1","replaces":"old","egress":`+wider+`}`, h.manager())
	expectInvalid(t, "a wider successor", res, "egress.allowedHosts[1]", "only narrow")
	if res := h.do("GET", base+"/wide", "", h.manager()); res.status != 404 {
		t.Fatalf("a refused replacement was created: %d", res.status)
	}
	if _, ok := h.getDoc("old")["replacedBy"]; ok {
		t.Fatal("a refused replacement linked the old token")
	}

	// Carried over.
	if res := h.do("PUT", base+"/next", `{"name":"Next","value":"sk-next-egress-value-1","replaces":"old","graceSeconds":0}`, h.manager()); res.status != 201 {
		t.Fatalf("replace: %d %s", res.status, res.body)
	}
	if got := h.getDoc("next")["egress"]; !reflect.DeepEqual(got, egressDoc(t, openaiEgress)) {
		t.Fatalf("carried policy %v, want the old one's", got)
	}
	if v, err := h.resolve("next", nil); err != nil || v != "sk-next-egress-value-1" {
		t.Fatalf("resolve of the successor (sealed under the carried policy): %q %v", v, err)
	}
	// The repeated replacing create (its answer lost) is still the 204 update.
	if res := h.do("PUT", base+"/next", `{"name":"Next","value":"sk-next-egress-value-1","replaces":"old","graceSeconds":0}`, h.manager()); res.status != 204 {
		t.Fatalf("repeated replace: %d %s", res.status, res.body)
	}

	// Narrowed, with another way of injecting.
	narrow := `{"allowedHosts":["api.openai.com"],"inject":{"in":"header","name":"X-Api-Key","template":"{{value}}"}}`
	if res := h.do("PUT", base+"/third", `{"name":"Third","value":"sk-third-egress-val-1","replaces":"next","egress":`+narrow+`}`, h.manager()); res.status != 201 {
		t.Fatalf("narrowing replace: %d %s", res.status, res.body)
	}
	if got := h.getDoc("third")["egress"]; !reflect.DeepEqual(got, egressDoc(t, narrow)) {
		t.Fatalf("narrowed policy %v", got)
	}

	// A predecessor without a policy: the successor may set one (that narrows "anywhere").
	h.create("plain", "Plain", "sk-plain-value-000001")
	if res := h.do("PUT", base+"/bound", `{"name":"Bound","value":"sk-bound-egress-val-1","replaces":"plain","egress":`+wider+`}`, h.manager()); res.status != 201 {
		t.Fatalf("replace a token without a policy: %d %s", res.status, res.body)
	}
	if res := h.do("PUT", base+"/unbound", `{"name":"Unbound","value":"sk-unbound-value-0001","replaces":"bound"}`, h.manager()); res.status != 201 {
		t.Fatalf("replace: %d %s", res.status, res.body)
	}
	if got := h.getDoc("unbound")["egress"]; !reflect.DeepEqual(got, egressDoc(t, wider)) {
		t.Fatalf("carried policy %v", got)
	}
}

// rewriteEgress changes a token's stored policy behind the service's back, as someone with
// write access to the table (and none to the key) could.
func rewriteEgress(t *testing.T, table, id string, hosts ...string) {
	t.Helper()
	list := make([]types.AttributeValue, len(hosts))
	for i, h := range hosts {
		list[i] = &types.AttributeValueMemberS{Value: h}
	}
	_, err := testenv.Client().UpdateItem(context.Background(), &dynamodb.UpdateItemInput{
		TableName: aws.String(table),
		Key: map[string]types.AttributeValue{
			"pk": &types.AttributeValueMemberS{Value: "acme"}, "sk": &types.AttributeValueMemberS{Value: "token#" + id}},
		UpdateExpression:          aws.String("SET egress.allowedHosts = :h"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":h": &types.AttributeValueMemberL{Value: list}},
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A policy rewritten in the table does not open: the value is bound to the digest of the policy
// as created, and resolve computes it from the policy as read. Through the warm cache too (a
// value opened under the old policy is not served under the new one), with the local sealer
// and with KMS (whose refusal is the key service's).
func TestEgressRewrittenInTheTableDoesNotOpen(t *testing.T) {
	kms, _ := newKMSHarness(t)
	for name, h := range map[string]*harness{
		"local, cached": newHarnessWith(t, seal.NewCache(seal.NewLocalFromKey(bytes.Repeat([]byte{9}, 32)), 16, time.Minute)),
		"kms":           kms,
	} {
		if res := h.do("PUT", base+"/openai", `{"name":"OpenAI","value":"`+egressValue+`","egress":`+openaiEgress+`}`, h.manager()); res.status != 201 {
			t.Fatalf("%s: create: %d %s", name, res.status, res.body)
		}
		if v, err := h.resolve("openai", nil); err != nil || v != egressValue {
			t.Fatalf("%s: resolve: %q %v", name, v, err)
		}
		rewriteEgress(t, h.table, "openai", "api.openai.com", "evil.example")
		v, err := h.resolve("openai", nil)
		if err == nil || v != "" {
			t.Fatalf("%s: a rewritten policy resolved: %q %v", name, v, err)
		}
		if k := token.KindOf(err); k != token.Internal && k != token.Dependency {
			t.Errorf("%s: %v, want the value not to open", name, err)
		}
		// Put back as it was, it opens again: the binding is to the policy, nothing else changed.
		rewriteEgress(t, h.table, "openai", "api.openai.com", "api.openai.com:8443")
		if v, err := h.resolve("openai", nil); err != nil || v != egressValue {
			t.Fatalf("%s: the policy put back: %q %v", name, v, err)
		}
	}
}
