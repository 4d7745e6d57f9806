package functions_test

import (
	"context"
	"flag"
	"fmt"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"aitokens/pkg/devtools/awsrecord"
	"aitokens/pkg/devtools/ebtest"
	"aitokens/pkg/devtools/testenv"
	"aitokens/pkg/store"
	"aitokens/pkg/token"
)

// IAM parity. DynamoDB Local, the test KMS and the test EventBridge enforce no IAM, so a role
// short of an action passes every local test and fails only in AWS. Every function binary the
// tests start (runtimeapi, whichever test starts it) reaches its endpoints through a recording
// proxy (pkg/devtools/awsrecord); after a whole run, TestMain compares what each function
// called with its role in template.yaml (roleProblems): every recorded action must be granted
// on its resource, scoped as today (the table's ARN, the index's ARN, the key with its
// encryption-context conditions), and every grant must have been recorded or be justified by
// a comment in its statement: `# iam: <action>[, <action>] — <why>` (README, "IAM parity").

// recorder holds the calls of every function the tests run.
var recorder = awsrecord.New()

// recordIsWhole reports whether this run ran every test, so that the record is all the code
// paths the tests know (a -run, -skip or -short run, or one without DynamoDB Local, is not).
func recordIsWhole(databaseUp bool) bool {
	for _, name := range []string{"test.run", "test.skip"} {
		if f := flag.Lookup(name); f != nil && f.Value.String() != "" {
			return false
		}
	}
	return databaseUp && !testing.Short()
}

// checkRecordAgainstRoles is TestMain's check after a whole run; it returns the exit code.
func checkRecordAgainstRoles() int {
	raw, err := os.ReadFile("../template.yaml")
	if err != nil {
		fmt.Fprintln(os.Stderr, "IAM parity:", err)
		return 1
	}
	problems, err := roleProblems(raw, recorder.Calls())
	if err != nil {
		fmt.Fprintln(os.Stderr, "IAM parity:", err)
		return 1
	}
	if len(problems) == 0 {
		return 0
	}
	fmt.Fprintln(os.Stderr, "--- FAIL: IAM parity (functions/iam_test.go): the roles of template.yaml do not match what the functions called in these tests:")
	for _, p := range problems {
		fmt.Fprintln(os.Stderr, "    "+p)
	}
	return 1
}

// grant is one action on one resource in a role's inline policy.
type statement struct {
	actions   []string
	resources []string // "TokensTable", "TokensTable/index/expiry", "TokenKey", "EventBus", ...
	keys      []string // kms:EncryptionContextKeys the statement admits (ForAllValues:StringEquals)
	required  []string // encryption context keys it requires (Null: 'false')
	justified map[string]string
	text      string // the Resource as written, for messages
}

// role is a function's role as the template has it.
type role struct {
	name       string
	statements []statement
	managed    []string
}

var justification = regexp.MustCompile(`iam:\s*(.+?)\s+—\s+(\S.*)`)

// comments is every comment on n and inside it.
func comments(n *yaml.Node) []string {
	out := []string{n.HeadComment, n.LineComment, n.FootComment}
	for _, c := range n.Content {
		out = append(out, comments(c)...)
	}
	return out
}

// child is the value of key in mapping node n.
func child(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// resourceName writes a statement's Resource the way the record names resources: the logical
// id of a GetAtt's .Arn, and the rest of a Sub after ${X.Arn}; anything else as written.
func resourceName(v any) string {
	switch x := v.(type) {
	case map[string]any:
		if s, ok := x["!GetAtt"].(string); ok {
			if id, ok := strings.CutSuffix(s, ".Arn"); ok {
				return id
			}
			return s
		}
		if s, ok := x["!Sub"].(string); ok {
			if rest, ok := strings.CutPrefix(s, "${"); ok {
				if id, tail, ok := strings.Cut(rest, ".Arn}"); ok {
					return id + tail
				}
			}
			return "!Sub " + s
		}
	case string:
		return x
	}
	return fmt.Sprint(v)
}

// rolesOf reads each function's role from the template's text.
func rolesOf(raw []byte) (map[string]role, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return nil, err
	}
	resources := child(doc.Content[0], "Resources")
	roles := map[string]role{}
	for _, fn := range functionNames() {
		ref, _ := dig(plain(child(resources, logicalID(fn))), "Properties", "Role", "!GetAtt").(string)
		roleName, _, _ := strings.Cut(ref, ".")
		props := child(child(resources, roleName), "Properties")
		if roleName == "" || props == nil {
			return nil, fmt.Errorf("template.yaml: %s has no Role: !GetAtt <Role>.Arn of its own", logicalID(fn))
		}
		r := role{name: roleName}
		if managed := child(props, "ManagedPolicyArns"); managed != nil {
			for _, m := range managed.Content {
				r.managed = append(r.managed, resourceName(plain(m)))
			}
		}
		policies := child(props, "Policies")
		if policies == nil {
			return nil, fmt.Errorf("template.yaml: %s has no Policies", roleName)
		}
		for _, policy := range policies.Content {
			for _, st := range child(child(policy, "PolicyDocument"), "Statement").Content {
				v := plain(st)
				if dig(v, "Effect") != "Allow" {
					return nil, fmt.Errorf("template.yaml: %s: a statement that is not Allow (%v): the parity check reads grants only", roleName, dig(v, "Effect"))
				}
				s := statement{actions: strs(dig(v, "Action")), justified: map[string]string{}}
				resource := dig(v, "Resource")
				if list, ok := resource.([]any); ok {
					for _, x := range list {
						s.resources = append(s.resources, resourceName(x))
					}
				} else {
					s.resources = []string{resourceName(resource)}
				}
				s.text = strings.Join(s.resources, ", ")
				s.keys = strs(dig(v, "Condition", "ForAllValues:StringEquals", "kms:EncryptionContextKeys"))
				if null, ok := dig(v, "Condition", "Null").(map[string]any); ok {
					for k, want := range null {
						if key, ok := strings.CutPrefix(k, "kms:EncryptionContext:"); ok && want == "false" {
							s.required = append(s.required, key)
						}
					}
				}
				for _, c := range comments(st) {
					for _, line := range strings.Split(c, "\n") {
						m := justification.FindStringSubmatch(line)
						if m == nil {
							continue
						}
						for _, a := range strings.FieldsFunc(m[1], func(r rune) bool { return r == ',' || r == ' ' }) {
							s.justified[a] = m[2]
						}
					}
				}
				r.statements = append(r.statements, s)
			}
		}
		roles[fn] = r
	}
	return roles, nil
}

// templateResource names a recorded resource as the template does: the stack has one table,
// one key and one bus, which the tests create under names of their own.
func templateResource(c awsrecord.Call) string {
	switch service, _, _ := strings.Cut(c.Action, ":"); service {
	case "dynamodb":
		if _, index, ok := strings.Cut(c.Resource, "/index/"); ok {
			return "TokensTable/index/" + index
		}
		return "TokensTable"
	case "kms":
		return "TokenKey"
	case "events":
		if c.Resource == ebtest.Bus {
			return "EventBus"
		}
	}
	return c.Resource
}

// roleProblems compares the calls recorded with the roles in the template: each problem is one
// line that says what to change.
func roleProblems(raw []byte, calls []awsrecord.Call) ([]string, error) {
	roles, err := rolesOf(raw)
	if err != nil {
		return nil, err
	}
	var problems []string
	recorded := map[string]map[string]bool{} // function -> action+" "+resource
	recordedOn := map[string][]string{}
	for _, c := range calls {
		r, ok := roles[c.Function]
		if !ok {
			problems = append(problems, fmt.Sprintf("%s called %s, but template.yaml has no function %s: add it with a role of its own", c.Function, c, c.Function))
			continue
		}
		res := templateResource(c)
		if recorded[c.Function] == nil {
			recorded[c.Function] = map[string]bool{}
		}
		recorded[c.Function][c.Action+" "+res] = true
		recordedOn[c.Function] = append(recordedOn[c.Function], c.Action+" "+res)
		granted := false
		for _, s := range r.statements {
			if !slices.Contains(s.actions, c.Action) || !slices.ContainsFunc(s.resources, func(g string) bool { return covers(g, res) }) {
				continue
			}
			granted = true
			if !strings.HasPrefix(c.Action, "kms:") {
				continue
			}
			var keys []string
			if c.ContextKeys != "" {
				keys = strings.Split(c.ContextKeys, ",")
			}
			for _, k := range keys {
				if !slices.Contains(s.keys, k) {
					problems = append(problems, fmt.Sprintf("%s: %s's %s on %s sent encryption context key %q, which the statement's ForAllValues:StringEquals kms:EncryptionContextKeys %v does not admit: add it there (AWS refuses the call otherwise)", r.name, c.Function, c.Action, res, k, s.keys))
				}
			}
			if len(s.keys) == 0 || len(s.required) == 0 {
				problems = append(problems, fmt.Sprintf("%s: the statement granting %s on %s is not scoped by the encryption context: give it Condition ForAllValues:StringEquals kms:EncryptionContextKeys %s and Null kms:EncryptionContext:<key> 'false' for the keys every call sends", r.name, c.Action, res, c.ContextKeys))
			}
			for _, k := range s.required {
				if !slices.Contains(keys, k) {
					problems = append(problems, fmt.Sprintf("%s: the statement granting %s on %s requires encryption context key %q, which %s's call did not send (AWS refuses it): send it or drop the Null condition", r.name, c.Action, res, k, c.Function))
				}
			}
		}
		if !granted {
			problems = append(problems, fmt.Sprintf("%s lacks %s on %s, which %s called in the tests (AWS would refuse it with AccessDenied): add %s to the role's statement whose Resource is %s, or a statement with that Resource", r.name, c.Action, res, c.Function, c.Action, arnOf(res)))
		}
	}
	for _, fn := range sortedKeys(roles) {
		r := roles[fn]
		for _, m := range r.managed {
			if m != "!Sub arn:${AWS::Partition}:iam::aws:policy/AWSXRayDaemonWriteAccess" {
				problems = append(problems, fmt.Sprintf("%s: managed policy %s grants what no test can record: write its actions in the role's inline policy", r.name, m))
			}
		}
		for _, s := range r.statements {
			for a := range s.justified {
				if !slices.Contains(s.actions, a) {
					problems = append(problems, fmt.Sprintf("%s: the comment \"# iam: %s — ...\" justifies an action its statement (Resource %s) does not grant: fix or remove the comment", r.name, a, s.text))
				}
			}
			for _, a := range s.actions {
				if _, ok := s.justified[a]; ok {
					continue
				}
				for _, res := range s.resources {
					if !slices.ContainsFunc(recordedOn[fn], func(call string) bool {
						action, on, _ := strings.Cut(call, " ")
						return action == a && covers(res, on)
					}) {
						problems = append(problems, fmt.Sprintf("%s grants %s on %s, which no test saw %s call: remove it; or make a functions test run the code path that calls it (through the function's binary); or, when AWS itself uses the role for it (Lambda's logging, an event source mapping), justify it in that statement with a comment \"# iam: %s — <why>\" (README, \"IAM parity\")", r.name, a, res, fn, a))
					}
				}
			}
		}
	}
	sort.Strings(problems)
	return slices.Compact(problems), nil
}

// covers reports whether a granted resource (with IAM's wildcards * and ?) covers a recorded one.
func covers(grant, res string) bool {
	pattern := strings.NewReplacer(`\*`, `.*`, `\?`, `.`).Replace(regexp.QuoteMeta(grant))
	return regexp.MustCompile("^" + pattern + "$").MatchString(res)
}

// arnOf is how the template writes the ARN of a resource the record names.
func arnOf(res string) string {
	if id, tail, ok := strings.Cut(res, "/"); ok {
		return "!Sub ${" + id + ".Arn}/" + tail
	}
	return "!GetAtt " + res + ".Arn"
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// callsGranted is the record a role check would pass with: each unjustified grant of the
// template as a call (KMS calls with the keys the statement requires).
func callsGranted(t *testing.T, raw []byte) []awsrecord.Call {
	t.Helper()
	roles, err := rolesOf(raw)
	if err != nil {
		t.Fatal(err)
	}
	var calls []awsrecord.Call
	for fn, r := range roles {
		for _, s := range r.statements {
			for _, a := range s.actions {
				if _, ok := s.justified[a]; ok {
					continue
				}
				for _, res := range s.resources {
					c := awsrecord.Call{Function: fn, Action: a, Resource: res}
					switch {
					case res == "EventBus":
						c.Resource = ebtest.Bus
					case strings.HasPrefix(a, "kms:"):
						c.ContextKeys = strings.Join(slices.Sorted(slices.Values(s.required)), ",")
					}
					calls = append(calls, c)
				}
			}
		}
	}
	return calls
}

// The check fails when any one action is removed from any role: for every action of every
// statement, a template without it, against a record that has it, is reported short.
func TestRoleCheckFailsWhenAnyActionIsRemoved(t *testing.T) {
	raw, err := os.ReadFile("../template.yaml")
	if err != nil {
		t.Fatal(err)
	}
	calls := callsGranted(t, raw)
	if problems, err := roleProblems(raw, calls); err != nil || len(problems) != 0 {
		t.Fatalf("the template against its own grants: %v %q", err, problems)
	}
	lines := strings.Split(string(raw), "\n")
	removed := 0
	for _, c := range calls {
		// Take the action out of the statement of its role that grants it on the call's resource.
		r, _ := rolesOf(raw)
		roleName := r[c.Function].name
		inRole := false
		done := false
		var edited []string
		for _, line := range lines {
			trimmed := strings.TrimSpace(line)
			if strings.HasPrefix(line, "  ") && !strings.HasPrefix(line, "    ") && strings.HasSuffix(trimmed, ":") {
				inRole = trimmed == roleName+":"
			}
			edited = append(edited, line)
			if inRole && !done && trimmed == "Resource: "+arnOf(templateResource(c)) {
				// The statement's Action line is above its Resource line (past comments).
				for k := len(edited) - 2; k >= 0 && !strings.Contains(edited[k], "- Effect:"); k-- {
					if a := strings.TrimSpace(edited[k]); strings.HasPrefix(a, "Action:") && slices.Contains(strs(actionList(a)), c.Action) {
						edited[k] = removeAction(edited[k], c.Action)
						done = true
						break
					}
				}
			}
		}
		if !done {
			t.Fatalf("%s: no Action line with %s", roleName, c.Action)
		}
		problems, err := roleProblems([]byte(strings.Join(edited, "\n")), calls)
		want := fmt.Sprintf("%s lacks %s on %s", roleName, c.Action, templateResource(c))
		if err != nil || !slices.ContainsFunc(problems, func(p string) bool { return strings.HasPrefix(p, want) }) {
			t.Errorf("%s without %s: %v %q, want a problem starting %q", roleName, c.Action, err, problems, want)
		}
		removed++
	}
	t.Logf("%d actions removed one at a time, each reported", removed)
}

// actionList is the actions of an Action line.
func actionList(line string) any {
	_, list, _ := strings.Cut(line, "Action:")
	var out []any
	for _, a := range strings.Split(strings.Trim(strings.TrimSpace(list), "[]"), ",") {
		out = append(out, strings.TrimSpace(a))
	}
	return out
}

// removeAction takes one action out of an Action line ([a, b] or a single one); a statement
// left with none keeps an empty list.
func removeAction(line, action string) string {
	head, list, _ := strings.Cut(line, "Action:")
	list = strings.Trim(strings.TrimSpace(list), "[]")
	var kept []string
	for _, a := range strings.Split(list, ",") {
		if a = strings.TrimSpace(a); a != action {
			kept = append(kept, a)
		}
	}
	return head + "Action: [" + strings.Join(kept, ", ") + "]"
}

// The check fails when code calls an action its role lacks, when a grant was not recorded and
// not justified, and when a KMS call sends a context key its grant does not admit.
func TestRoleCheckFailsOnACallTheRoleLacks(t *testing.T) {
	raw, err := os.ReadFile("../template.yaml")
	if err != nil {
		t.Fatal(err)
	}
	calls := callsGranted(t, raw)
	cases := []struct {
		name  string
		calls []awsrecord.Call
		want  string
	}{
		{"a new call", append(slices.Clone(calls), awsrecord.Call{Function: "get-token", Action: "dynamodb:DeleteItem", Resource: "t1"}),
			"GetTokenRole lacks dynamodb:DeleteItem on TokensTable, which get-token called"},
		{"an index", append(slices.Clone(calls), awsrecord.Call{Function: "list-tokens", Action: "dynamodb:Query", Resource: "t1/index/expiry"}),
			"ListTokensRole lacks dynamodb:Query on TokensTable/index/expiry"},
		{"the default bus", append(slices.Clone(calls), awsrecord.Call{Function: "publish-events", Action: "events:PutEvents", Resource: "default"}),
			"PublishEventsRole lacks events:PutEvents on default"},
		{"a context key", append(slices.Clone(calls), awsrecord.Call{Function: "resolve-token", Action: "kms:Decrypt", Resource: "k", ContextKeys: "other,tenant,tokenId"}),
			`ResolveTokenRole: resolve-token's kms:Decrypt on TokenKey sent encryption context key "other"`},
		{"a grant unrecorded", slices.DeleteFunc(slices.Clone(calls), func(c awsrecord.Call) bool {
			return c.Function == "get-token" && c.Action == "dynamodb:GetItem"
		}), "GetTokenRole grants dynamodb:GetItem on TokensTable, which no test saw get-token call"},
		{"an unknown function", append(slices.Clone(calls), awsrecord.Call{Function: "nope", Action: "dynamodb:GetItem", Resource: "t1"}),
			"nope called dynamodb:GetItem on t1, but template.yaml has no function nope"},
	}
	for _, c := range cases {
		problems, err := roleProblems(raw, c.calls)
		if err != nil || !slices.ContainsFunc(problems, func(p string) bool { return strings.HasPrefix(p, c.want) }) {
			t.Errorf("%s: %v %q, want a problem starting %q", c.name, err, problems, c.want)
		}
	}
}

// The code paths the other tests leave out, through the functions' binaries, so that the IAM
// record has every action (the role check above needs them): a replace of a token with a usage
// (Query for its usages, ConditionCheckItem for each), a usage registered again (the
// ConditionCheckItem of the consumer restore for data older than consumers), a list and a
// search by ids (GetItem), and a forced delete with more usages than one transaction takes
// (the UpdateItem of a chunk).
func TestCodePathsForTheIAMRecord(t *testing.T) {
	t.Parallel() // waits on processes and a database, not on this machine's cores
	e := newEnv(t)
	steps := []struct {
		fn     string
		change func(map[string]any)
		status int
	}{
		{"upsert-token", nil, 201},
		{"register-token-usage", nil, 201},
		{"register-token-usage", nil, 204}, // again: the restore of its consumer runs
		{"upsert-token", withBody("openai2", `{"name":"OpenAI (rotated)","value":"sk-rotated-not-real","replaces":"openai"}`), 201},
		{"list-tokens", func(ev map[string]any) { ev["rawQueryString"] = "q=id:(openai,openai2)" }, 200},
		{"search-tokens", func(ev map[string]any) { ev["body"] = `{"q":"id:openai2"}` }, 200},
	}
	for i, s := range steps {
		if res := e.call(s.fn, event(t, s.fn, s.change)); res.StatusCode != s.status {
			t.Fatalf("step %d %s: %d %s, want %d", i, s.fn, res.StatusCode, res.Body, s.status)
		}
	}
	// More usages than one transaction takes, written by the store directly (only the binary's
	// calls are recorded), then a forced delete through the binary.
	vars := map[string]string{}
	for _, kv := range e.vars {
		k, v, _ := strings.Cut(kv, "=")
		vars[k] = v
	}
	st := store.New(testenv.Client(), vars["TABLE_NAME"])
	for i := range 120 {
		if _, err := st.RegisterUsage(context.Background(), "acme", "openai2", "agent", fmt.Sprintf("a%03d", i), token.Event{Actor: "test"}); err != nil {
			t.Fatal(err)
		}
	}
	force := func(ev map[string]any) { withBody("openai2", "")(ev); ev["rawQueryString"] = "force=true" }
	if res := e.call("delete-token", event(t, "delete-token", force)); res.StatusCode != 204 {
		t.Fatalf("forced delete: %d %s", res.StatusCode, res.Body)
	}
}
