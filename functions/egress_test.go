package functions_test

import (
	"encoding/json"
	"maps"
	"strings"
	"testing"

	"aitokens/pkg/devtools/kmstest"
	"aitokens/pkg/token"
)

// A token with an egress policy, through the real binaries and the test KMS (which refuses a
// context its grants would not admit): upsert-token seals it under {tenant, tokenId, egress},
// get-token shows the policy, resolve-token opens the value under the same context; a token
// without a policy keeps exactly {tenant, tokenId}.
func TestEgressThroughTheFunctions(t *testing.T) {
	t.Parallel() // waits on processes and a database, not on this machine's cores
	e := newEnv(t)
	keys := kmstest.New()
	defer keys.Close()
	for i, kv := range e.vars {
		if strings.HasPrefix(kv, "MASTER_KEY_FILE=") {
			e.vars[i] = "MASTER_KEY_FILE="
		}
	}
	e.vars = append(e.vars, "KMS_KEY_ID="+kmstest.KeyARN, "AWS_ENDPOINT_URL_KMS="+keys.URL)
	policy := token.Egress{AllowedHosts: []string{"api.openai.com"},
		Inject: token.Inject{In: "header", Name: "Authorization", Template: "Bearer {{value}}"}}
	withPolicy := func(ev map[string]any) {
		var body map[string]any
		json.Unmarshal([]byte(ev["body"].(string)), &body)
		body["egress"] = policy
		raw, _ := json.Marshal(body)
		ev["body"] = string(raw)
	}
	if res := e.call("upsert-token", event(t, "upsert-token", withPolicy)); res.StatusCode != 201 {
		t.Fatalf("create with a policy: %+v", res)
	}
	got := e.call("get-token", event(t, "get-token", nil))
	var doc struct {
		Egress *token.Egress `json:"egress"`
	}
	if json.Unmarshal([]byte(got.Body), &doc); doc.Egress == nil || doc.Egress.Digest() != policy.Digest() {
		t.Fatalf("get-token: %s, want the policy", got.Body)
	}
	if res := e.invoke("resolve-token", []byte(`{"tenant":"acme","tokenId":"openai"}`)); !strings.Contains(string(res.Response), `"value":"sk-example-not-a-real-key"`) {
		t.Fatalf("resolve-token: %s %s", res.Response, res.Error)
	}
	plain := func(ev map[string]any) {
		withPath("/ai-service/acme/agentic/tokens/plain", "plain")(ev)
	}
	if res := e.call("upsert-token", event(t, "upsert-token", plain)); res.StatusCode != 201 {
		t.Fatalf("create without a policy: %+v", res)
	}
	if res := e.invoke("resolve-token", []byte(`{"tenant":"acme","tokenId":"plain"}`)); !strings.Contains(string(res.Response), `"value":`) {
		t.Fatalf("resolve-token plain: %s %s", res.Response, res.Error)
	}
	bound := map[string]string{"tenant": "acme", "tokenId": "openai", "egress": policy.Digest()}
	free := map[string]string{"tenant": "acme", "tokenId": "plain"}
	calls := keys.Contexts()
	if len(calls) != 4 {
		t.Fatalf("%d KMS calls, want 2 for each token (seal, open): %v", len(calls), calls)
	}
	for i, c := range calls {
		if want := []map[string]string{bound, bound, free, free}[i]; !maps.Equal(c, want) {
			t.Errorf("KMS call %d: context %v, want %v", i, c, want)
		}
	}
}
