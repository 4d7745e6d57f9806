package functions_test

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"aitokens/pkg/api"
	"aitokens/pkg/config"
	"aitokens/pkg/relay"
	"aitokens/pkg/seal"
)

// plain turns a YAML node into maps, lists and strings, keeping CloudFormation's short tags
// (!Ref X becomes {"!Ref": "X"}) so the test can read them.
func plain(n *yaml.Node) any {
	switch n.Kind {
	case yaml.DocumentNode:
		return plain(n.Content[0])
	case yaml.MappingNode:
		m := map[string]any{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			m[n.Content[i].Value] = plain(n.Content[i+1])
		}
		return tagged(n, m)
	case yaml.SequenceNode:
		var l []any
		for _, c := range n.Content {
			l = append(l, plain(c))
		}
		return tagged(n, l)
	case yaml.AliasNode:
		return plain(n.Alias)
	}
	return tagged(n, n.Value)
}

func tagged(n *yaml.Node, v any) any {
	if strings.HasPrefix(n.Tag, "!") && !strings.HasPrefix(n.Tag, "!!") {
		return map[string]any{n.Tag: v}
	}
	return v
}

func dig(v any, path ...string) any {
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[p]
	}
	return v
}

func strs(v any) []string {
	var out []string
	switch x := v.(type) {
	case []any:
		for _, e := range x {
			out = append(out, strs(e)...)
		}
	case string:
		out = append(out, x)
	}
	return out
}

// logicalID is the template resource of a function: list-tokens -> ListTokensFunction.
func logicalID(function string) string {
	var b strings.Builder
	for _, part := range strings.Split(function, "-") {
		b.WriteString(strings.ToUpper(part[:1]) + part[1:])
	}
	return b.String() + "Function"
}

// actionsOf lists the IAM actions a function's role allows, and those on KMS.
func actionsOf(t *testing.T, resources map[string]any, function string) (all, kms []string) {
	t.Helper()
	roleRef := dig(resources, logicalID(function), "Properties", "Role", "!GetAtt")
	roleName, _, _ := strings.Cut(roleRef.(string), ".")
	for _, policy := range dig(resources, roleName, "Properties", "Policies").([]any) {
		for _, st := range dig(policy, "PolicyDocument", "Statement").([]any) {
			for _, a := range strs(dig(st, "Action")) {
				all = append(all, a)
				if strings.HasPrefix(a, "kms:") {
					kms = append(kms, a)
				}
			}
		}
	}
	return all, kms
}

// loadYAML reads a YAML file of the repository: its text and its plain form.
func loadYAML(t *testing.T, path string) ([]byte, any) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	return raw, plain(&doc)
}

// loadTemplate reads template.yaml: its text, its plain form and its resources.
func loadTemplate(t *testing.T) ([]byte, any, map[string]any) {
	t.Helper()
	raw, tpl := loadYAML(t, "../template.yaml")
	return raw, tpl, dig(tpl, "Resources").(map[string]any)
}

func TestTemplateMatchesRouteTable(t *testing.T) {
	_, tpl, resources := loadTemplate(t)
	globals := dig(tpl, "Globals", "Function")
	if dig(globals, "Runtime") != "provided.al2023" || !slices.Equal(strs(dig(globals, "Architectures")), []string{"arm64"}) {
		t.Fatalf("functions must run on provided.al2023, arm64: %v", globals)
	}
	if dig(resources, "HttpApi", "Type") != "AWS::Serverless::HttpApi" || dig(resources, "HttpApi", "Properties", "Auth", "Authorizers", "JwtAuthorizer", "JwtConfiguration") == nil {
		t.Fatal("the HttpApi with its JWT authorizer is missing")
	}
	for _, fn := range functionNames() {
		id := logicalID(fn)
		res := resources[id]
		if dig(res, "Type") != "AWS::Serverless::Function" || dig(res, "Metadata", "BuildMethod") != "makefile" || dig(res, "Properties", "CodeUri") != "." {
			t.Errorf("%s: want a makefile-built AWS::Serverless::Function with CodeUri '.', got %v", id, res)
		}
		// sam build runs `make build-<LogicalId>`: it must build this function's directory.
		out, err := exec.Command("make", "-s", "-n", "-C", "..", "build-"+id, "ARTIFACTS_DIR=/artifacts").Output()
		if err != nil || !strings.HasSuffix(strings.TrimSpace(string(out)), "-o /artifacts/bootstrap ./functions/"+fn) {
			t.Errorf("make build-%s: %q %v, want a build of ./functions/%s", id, out, err, fn)
		}
		if !strings.Contains(string(out), " build "+shellWords(buildFlags)+" ") {
			t.Errorf("make build-%s: %q, want the flags the tests build with (buildFlags %q)", id, out, buildFlags)
		}
		if _, err := os.Stat(filepath.Join(fn, "main.go")); err != nil {
			t.Errorf("functions/%s/main.go: %v", fn, err)
		}
		if _, err := os.Stat(filepath.Join("..", "events", fn+".json")); err != nil {
			t.Errorf("events/%s.json: %v", fn, err)
		}
	}
	_, spec := loadYAML(t, "../infra/openapi.yaml")
	for _, r := range api.Routes {
		if dig(spec, "paths", r.Path, strings.ToLower(r.Method)) == nil {
			t.Errorf("infra/openapi.yaml has no operation %s %s for route %s", r.Method, r.Path, r.Function)
		}
		id := logicalID(r.Function)
		ev := dig(resources, id, "Properties", "Events", "Api", "Properties")
		if dig(resources, id, "Properties", "Events", "Api", "Type") != "HttpApi" || dig(ev, "Method") != r.Method || dig(ev, "Path") != r.Path ||
			!slices.Equal(strs(dig(ev, "Auth", "AuthorizationScopes")), []string{r.Scope}) || dig(ev, "Auth", "Authorizer") != "JwtAuthorizer" {
			t.Errorf("%s: event %v does not match route %s %s scope %s", id, ev, r.Method, r.Path, r.Scope)
		}
		var sample struct {
			RouteKey       string `json:"routeKey"`
			RequestContext struct {
				Authorizer struct {
					JWT struct {
						Scopes []string `json:"scopes"`
					} `json:"jwt"`
				} `json:"authorizer"`
			} `json:"requestContext"`
		}
		raw, _ := os.ReadFile(filepath.Join("..", "events", r.Function+".json"))
		if err := json.Unmarshal(raw, &sample); err != nil || sample.RouteKey != r.Method+" "+r.Path || !slices.Contains(sample.RequestContext.Authorizer.JWT.Scopes, r.Scope) {
			t.Errorf("events/%s.json: routeKey %q scopes %v (%v)", r.Function, sample.RouteKey, sample.RequestContext.Authorizer.JWT.Scopes, err)
		}
		all, kms := actionsOf(t, resources, r.Function)
		switch {
		case r.Scope == "ai.agent_read" && len(kms) > 0:
			t.Errorf("%s is a read function with KMS permissions %v", r.Function, kms)
		case r.Scope == "ai.agent_read":
			for _, a := range all {
				if strings.HasPrefix(a, "dynamodb:") && a != "dynamodb:GetItem" && a != "dynamodb:Query" && a != "dynamodb:BatchGetItem" {
					t.Errorf("read function %s may %s", r.Function, a)
				}
			}
		case r.Function == "upsert-token" && !slices.Equal(kms, []string{"kms:GenerateDataKey"}):
			t.Errorf("upsert-token KMS permissions %v, want only kms:GenerateDataKey", kms)
		case r.Function != "upsert-token" && len(kms) > 0:
			t.Errorf("%s has KMS permissions %v", r.Function, kms)
		}
	}
	for _, fn := range internalFunctions {
		_, kms := actionsOf(t, resources, fn)
		if want := map[string][]string{"resolve-token": {"kms:Decrypt"}, "relay": {"kms:Decrypt"}}[fn]; !slices.Equal(kms, want) {
			t.Errorf("%s KMS permissions %v, want %v", fn, kms, want)
		}
		evs, _ := dig(resources, logicalID(fn), "Properties", "Events").(map[string]any)
		for name, ev := range evs {
			if dig(ev, "Type") == "HttpApi" {
				t.Errorf("%s must not be routed through API Gateway (event %s)", fn, name)
			}
		}
	}
	if dig(resources, "ResolveTokenFunction", "Properties", "Events") != nil {
		t.Error("resolve-token is invoked directly, by nothing in the stack")
	}
	// No other function directories than the route table's and the internal ones.
	dirs, _ := filepath.Glob("*/main.go")
	if len(dirs) != len(functionNames()) {
		t.Errorf("functions/ holds %v, the route table names %v", dirs, functionNames())
	}
}

// The functions that never seal or open a value must not link the KMS client, and none links
// the local-development and test tooling of pkg/devtools.
func TestReadFunctionsDoNotLinkKMS(t *testing.T) {
	for _, fn := range functionNames() {
		if links(t, fn, "aitokens/pkg/devtools") {
			t.Errorf("%s links local-development or test tooling (pkg/devtools)", fn)
		}
		kms := links(t, fn, "github.com/aws/aws-sdk-go-v2/service/kms")
		if want := fn == "upsert-token" || fn == "resolve-token" || fn == "relay"; kms != want {
			t.Errorf("%s links the KMS client: %v, want %v", fn, kms, want)
		}
	}
}

// A plain `sam deploy` gives a stack that is safe by default: stage throttling, issuer and
// audience from samconfig.toml, function names that fit Lambda's 64 characters for any stack
// name (CloudFormation makes them), log permissions on the log groups' own ARNs (GetAtt's ARN
// already ends in ":*"), and the request deadline in every function's environment.
func TestTemplateIsSafeByDefault(t *testing.T) {
	raw, tpl, resources := loadTemplate(t)
	routeSettings := dig(resources, "HttpApi", "Properties", "DefaultRouteSettings")
	if dig(routeSettings, "ThrottlingBurstLimit") == nil || dig(routeSettings, "ThrottlingRateLimit") == nil {
		t.Errorf("the API has no stage throttling: %v", routeSettings)
	}
	for id, res := range resources {
		if dig(res, "Type") == "AWS::Serverless::Function" && dig(res, "Properties", "FunctionName") != nil {
			t.Errorf("%s names its function: with a long stack name it would pass 64 characters", id)
		}
	}
	if strings.Contains(string(raw), ".Arn}:*") {
		t.Error("a policy appends :* to a log group ARN that already ends in :*")
	}
	if dig(tpl, "Globals", "Function", "Environment", "Variables", "REQUEST_TIMEOUT") == nil {
		t.Error("the functions get no REQUEST_TIMEOUT")
	}
	samconfig, err := os.ReadFile("../samconfig.toml")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"JwtIssuer=", "JwtAudience="} {
		if !strings.Contains(string(samconfig), p) {
			t.Errorf("samconfig.toml's parameter_overrides lack %s: a plain sam deploy would stop to ask", p)
		}
	}
}

// The HTTP API's CorsConfiguration is pkg/api.CORS(), the policy the local server applies, with
// its origins from the CorsAllowedOrigins parameter (checked like CORS_ALLOWED_ORIGINS, set in
// samconfig.toml) and no configuration at all when that is empty. A change to either side that
// the other lacks fails here.
func TestTemplateCORSMatchesTheServer(t *testing.T) {
	_, tpl, resources := loadTemplate(t)
	param := dig(tpl, "Parameters", "CorsAllowedOrigins")
	if dig(param, "Type") != "CommaDelimitedList" || dig(param, "Default") != "" || dig(param, "AllowedPattern") != config.CloudFormationOriginPattern {
		t.Errorf("parameter CorsAllowedOrigins %v: want a CommaDelimitedList, empty by default, with AllowedPattern %s",
			param, config.CloudFormationOriginPattern)
	}
	// CORS is on exactly when the parameter is not empty.
	want := map[string]any{"!Not": []any{map[string]any{"!Equals": []any{map[string]any{"!Join": []any{"", map[string]any{"!Ref": "CorsAllowedOrigins"}}}, ""}}}}
	if got := dig(tpl, "Conditions", "CorsOn"); !reflect.DeepEqual(got, want) {
		t.Errorf("condition CorsOn %v, want %v", got, want)
	}
	branches, _ := dig(resources, "HttpApi", "Properties", "CorsConfiguration", "!If").([]any)
	if len(branches) != 3 || branches[0] != "CorsOn" || !reflect.DeepEqual(branches[2], map[string]any{"!Ref": "AWS::NoValue"}) {
		t.Fatalf("HttpApi CorsConfiguration must be !If [CorsOn, {...}, !Ref AWS::NoValue]: %v", branches)
	}
	cors := branches[1]
	p := api.CORS()
	for _, c := range []struct {
		key  string
		want []string
	}{{"AllowMethods", p.AllowMethods}, {"AllowHeaders", p.AllowHeaders}, {"ExposeHeaders", p.ExposeHeaders}} {
		if got := strs(dig(cors, c.key)); !slices.Equal(got, c.want) {
			t.Errorf("CorsConfiguration %s %q, pkg/api.CORS() %q", c.key, got, c.want)
		}
	}
	if got := dig(cors, "MaxAge"); got != strconv.Itoa(p.MaxAge) {
		t.Errorf("CorsConfiguration MaxAge %v, pkg/api.CORS() %d", got, p.MaxAge)
	}
	if !reflect.DeepEqual(dig(cors, "AllowOrigins"), map[string]any{"!Ref": "CorsAllowedOrigins"}) || dig(cors, "AllowCredentials") != "false" {
		t.Errorf("CorsConfiguration: origins %v, credentials %v; want !Ref CorsAllowedOrigins and false", dig(cors, "AllowOrigins"), dig(cors, "AllowCredentials"))
	}
	samconfig, err := os.ReadFile("../samconfig.toml")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`CorsAllowedOrigins=\\"([^"\\]*)\\"`).FindSubmatch(samconfig)
	if m == nil {
		t.Fatal("samconfig.toml's parameter_overrides lack CorsAllowedOrigins")
	}
	if _, err := config.ParseOrigins(string(m[1])); err != nil {
		t.Errorf("samconfig.toml's CorsAllowedOrigins: %v", err)
	}
}

// envSettings lists where the template sets a function's environment variable: in Globals or
// in one function's properties, each with its value (a literal or {"!Ref": parameter}).
func envSettings(tpl any, resources map[string]any) map[string][]any {
	out := map[string][]any{}
	add := func(vars any) {
		m, _ := vars.(map[string]any)
		for name, v := range m {
			out[name] = append(out[name], v)
		}
	}
	add(dig(tpl, "Globals", "Function", "Environment", "Variables"))
	for _, res := range resources {
		if dig(res, "Type") == "AWS::Serverless::Function" {
			add(dig(res, "Properties", "Environment", "Variables"))
		}
	}
	return out
}

// allowedPattern is CloudFormation's AllowedPattern test: the whole value must match.
func allowedPattern(t *testing.T, pattern string) *regexp.Regexp {
	t.Helper()
	re, err := regexp.Compile("^(?:" + pattern + ")$")
	if err != nil {
		t.Fatalf("AllowedPattern %q: %v", pattern, err)
	}
	return re
}

// A parameter that feeds a bounded setting of pkg/config refuses at deploy what the function
// would refuse at init: a Number carries config's floor and ceiling as MinValue/MaxValue; a
// duration string's AllowedPattern admits, for every whole count of each unit from zero to past
// the ceiling, exactly the values config accepts. Each parameter's default is config's default.
func TestTemplateParametersCarryConfigBounds(t *testing.T) {
	_, tpl, resources := loadTemplate(t)
	params, _ := dig(tpl, "Parameters").(map[string]any)
	settings := envSettings(tpl, resources)
	goDefaults, err := config.Load(func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	checked := map[string]bool{}
	for _, r := range config.Ranges() {
		for _, v := range settings[r.Name] {
			ref, isRef := dig(v, "!Ref").(string)
			param, isParam := params[ref]
			if !isRef || !isParam {
				// A literal, or a resource's name: a literal must load.
				if s, ok := v.(string); ok {
					if _, err := r.Parse(s); err != nil {
						t.Errorf("template sets %s: %v", r.Name, err)
					}
				}
				continue
			}
			checked[r.Name] = true
			switch typ := dig(param, "Type"); {
			case typ == "Number" && !r.Duration:
				want := map[string]string{"MinValue": strconv.FormatInt(r.Min, 10), "MaxValue": strconv.FormatInt(r.Max, 10)}
				for key, w := range want {
					if got, _ := dig(param, key).(string); got != w {
						t.Errorf("parameter %s (%s): %s %q, want %s as in pkg/config", ref, r.Name, key, got, w)
					}
				}
			case typ == "String" && r.Duration:
				pattern, _ := dig(param, "AllowedPattern").(string)
				if pattern == "" {
					t.Errorf("parameter %s (%s) has no AllowedPattern", ref, r.Name)
					continue
				}
				re := allowedPattern(t, pattern)
				for _, unit := range []time.Duration{time.Millisecond, time.Second, time.Minute, time.Hour} {
					suffix := strings.TrimPrefix(unit.String(), "1")
					for n := int64(0); n <= r.Max/int64(unit)+2; n++ {
						value := strconv.FormatInt(n, 10) + suffix
						_, err := r.Parse(value)
						if accepted := re.MatchString(value); accepted != (err == nil) {
							t.Errorf("parameter %s: AllowedPattern accepts %s: %v, pkg/config: %v", ref, value, accepted, err)
							break
						}
					}
				}
			default:
				t.Errorf("parameter %s of type %v feeds %s (duration %v): no rule to compare bounds", ref, typ, r.Name, r.Duration)
			}
		}
	}
	for _, name := range []string{"REQUEST_TIMEOUT", "AUDIT_RETENTION_DAYS"} {
		if !checked[name] {
			t.Errorf("no template parameter feeds %s", name)
		}
	}
	// Every parameter that feeds a setting defaults to the Go default: loading the template's
	// default gives the configuration that loading nothing gives.
	for name, values := range settings {
		for _, v := range values {
			ref, _ := dig(v, "!Ref").(string)
			def, ok := dig(params[ref], "Default").(string)
			if !ok {
				continue
			}
			got, err := config.Load(func(k string) string {
				if k == name {
					return def
				}
				return ""
			})
			if err != nil || !reflect.DeepEqual(got, goDefaults) {
				t.Errorf("parameter %s defaults to %s=%s, pkg/config's default differs (%v)", ref, name, def, err)
			}
		}
	}
}

// shellWords writes args as the Makefile does: a value with a space in single quotes.
func shellWords(args []string) string {
	words := make([]string, len(args))
	for i, arg := range args {
		if name, value, ok := strings.Cut(arg, "="); ok && strings.Contains(value, " ") {
			arg = name + "='" + value + "'"
		}
		words[i] = arg
	}
	return strings.Join(words, " ")
}

// Every KMS grant admits exactly the encryption context keys the sealers send (pkg/seal's
// ContextKeys: tenant and tokenId always, egress for a token with an egress policy) and requires
// tenant and tokenId, so a value is never sealed or opened outside its token's context, and a
// token with a policy is not refused by its own role.
func TestKMSConditionsAdmitTheSealersContext(t *testing.T) {
	_, doc := loadYAML(t, filepath.Join("..", "template.yaml"))
	resources := dig(doc, "Resources").(map[string]any)
	grants := 0
	for name, res := range resources {
		if dig(res, "Type") != "AWS::IAM::Role" {
			continue
		}
		policies, _ := dig(res, "Properties", "Policies").([]any)
		for _, policy := range policies {
			for _, st := range dig(policy, "PolicyDocument", "Statement").([]any) {
				if !slices.ContainsFunc(strs(dig(st, "Action")), func(a string) bool { return strings.HasPrefix(a, "kms:") }) {
					continue
				}
				grants++
				keys := slices.Sorted(slices.Values(strs(dig(st, "Condition", "ForAllValues:StringEquals", "kms:EncryptionContextKeys"))))
				if want := slices.Sorted(slices.Values(seal.ContextKeys)); !slices.Equal(keys, want) {
					t.Errorf("%s: KMS grant admits context keys %v, the sealers send %v", name, keys, want)
				}
				for _, k := range []string{"tenant", "tokenId"} {
					if dig(st, "Condition", "Null", "kms:EncryptionContext:"+k) != "false" {
						t.Errorf("%s: KMS grant does not require the context key %s", name, k)
					}
				}
			}
		}
	}
	if grants == 0 {
		t.Fatal("no KMS grant found in template.yaml")
	}
}

// The relay is its own function behind its own URL: AuthType AWS_IAM (only principals granted
// lambda:InvokeFunctionUrl may call it: the URL is no API route and has no JWT), InvokeMode
// RESPONSE_STREAM (lambdaurl streams), no CORS (no page may drive it), a timeout that outlasts
// the silence pkg/relay allows an upstream, KMS for opening values, and the URL as an output.
func TestTemplateRelayFunction(t *testing.T) {
	_, tpl, resources := loadTemplate(t)
	props := dig(resources, "RelayFunction", "Properties")
	url := dig(props, "FunctionUrlConfig")
	if dig(url, "AuthType") != "AWS_IAM" || dig(url, "InvokeMode") != "RESPONSE_STREAM" || dig(url, "Cors") != nil {
		t.Errorf("RelayFunction FunctionUrlConfig %v: want AuthType AWS_IAM, InvokeMode RESPONSE_STREAM, no Cors", url)
	}
	for id, res := range resources {
		if id != "RelayFunction" && dig(res, "Properties", "FunctionUrlConfig") != nil {
			t.Errorf("%s has a function URL: only the relay has one", id)
		}
		if dig(res, "Type") == "AWS::Lambda::Permission" && strings.Contains(fmt.Sprint(dig(res, "Properties", "Action")), "InvokeFunctionUrl") {
			t.Errorf("%s grants lambda:InvokeFunctionUrl in the stack: who may call the relay is the platform's choice, granted to its agents' roles", id)
		}
	}
	timeout, err := strconv.Atoi(fmt.Sprint(dig(props, "Timeout")))
	if err != nil || time.Duration(timeout)*time.Second <= relay.DefaultHeaderTimeout || timeout > 900 {
		t.Errorf("RelayFunction Timeout %v: want more than pkg/relay.DefaultHeaderTimeout (%v), at most Lambda's 900 s", dig(props, "Timeout"), relay.DefaultHeaderTimeout)
	}
	if !reflect.DeepEqual(dig(props, "Environment", "Variables", "KMS_KEY_ID"), map[string]any{"!GetAtt": "TokenKey.Arn"}) {
		t.Errorf("RelayFunction KMS_KEY_ID %v", dig(props, "Environment", "Variables", "KMS_KEY_ID"))
	}
	if got := dig(tpl, "Outputs", "RelayUrl", "Value"); !reflect.DeepEqual(got, map[string]any{"!GetAtt": "RelayFunctionUrl.FunctionUrl"}) {
		t.Errorf("Outputs RelayUrl %v: want !GetAtt RelayFunctionUrl.FunctionUrl (the URL SAM makes for RelayFunction)", got)
	}
	all, _ := actionsOf(t, resources, "relay")
	slices.Sort(all)
	want := []string{"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "kms:Decrypt", "logs:CreateLogStream", "logs:PutLogEvents"}
	if !slices.Equal(all, want) {
		t.Errorf("RelayRole may %v, want exactly %v (resolve's read and lastUsedAt, the refusal's event, Decrypt, its logs)", all, want)
	}
}

// samconfigSections reads samconfig.toml's flat layout: [section] headers and key = value lines
// (values as written, quotes and all).
func samconfigSections(t *testing.T) map[string]map[string]string {
	t.Helper()
	raw, err := os.ReadFile("../samconfig.toml")
	if err != nil {
		t.Fatal(err)
	}
	sections := map[string]map[string]string{}
	current := ""
	for _, line := range strings.Split(string(raw), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			current = strings.Trim(line, "[]")
			sections[current] = map[string]string{}
		default:
			key, value, ok := strings.Cut(line, "=")
			if ok && current != "" {
				sections[current][strings.TrimSpace(key)] = strings.TrimSpace(value)
			}
		}
	}
	return sections
}

// The README's deploy section says what a first deploy needs, and that agrees with
// samconfig.toml and the template: each placeholder it tells you to change is in samconfig's
// parameter_overrides as written and is a template parameter (JwtIssuer, JwtAudience and
// CorsAllowedOrigins among them); the capabilities it names are samconfig's, and they are the
// ones the template needs; the SAM CLI's local expansion of AWS::LanguageExtensions is switched
// on where the template declares it; the stack outputs its commands read exist.
func TestDeployDocsMatchSamconfig(t *testing.T) {
	_, tpl, resources := loadTemplate(t)
	params, _ := dig(tpl, "Parameters").(map[string]any)
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "\n### Deploy\n")
	if !ok {
		t.Fatal("README.md has no ### Deploy section")
	}
	section = section[:strings.Index(section+"\n### ", "\n### ")] // up to the next subsection
	sam := samconfigSections(t)
	deploy := sam["default.deploy.parameters"]

	overrides := deploy["parameter_overrides"]
	placeholders := regexp.MustCompile("(?m)^\\| `([A-Za-z]+)=\"([^\"]*)\"` \\|").FindAllStringSubmatch(section, -1)
	named := map[string]bool{}
	for _, m := range placeholders {
		name, value := m[1], m[2]
		named[name] = true
		if !strings.Contains(overrides, name+`=\"`+value+`\"`) {
			t.Errorf("README's placeholder %s=%q is not in samconfig.toml's parameter_overrides", name, value)
		}
		if _, ok := params[name]; !ok {
			t.Errorf("README's placeholder %s is no parameter of template.yaml", name)
		}
	}
	for _, name := range []string{"JwtIssuer", "JwtAudience", "CorsAllowedOrigins"} {
		if !named[name] {
			t.Errorf("README's deploy section does not say what to change %s to", name)
		}
	}

	// The capabilities the template needs: IAM for roles, NAMED_IAM when one has a name,
	// AUTO_EXPAND for its transforms (macros).
	want := map[string]bool{}
	for _, res := range resources {
		if typ, _ := dig(res, "Type").(string); strings.HasPrefix(typ, "AWS::IAM::") {
			want["CAPABILITY_IAM"] = true
			for _, key := range []string{"RoleName", "UserName", "GroupName", "ManagedPolicyName", "InstanceProfileName"} {
				if dig(res, "Properties", key) != nil {
					want["CAPABILITY_NAMED_IAM"] = true
				}
			}
		}
	}
	transforms := strs(dig(tpl, "Transform"))
	if len(transforms) > 0 {
		want["CAPABILITY_AUTO_EXPAND"] = true
	}
	capabilities := strings.Trim(deploy["capabilities"], `"`)
	got := map[string]bool{}
	for _, c := range strings.Fields(capabilities) {
		got[c] = true
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("samconfig.toml acknowledges %v; the template needs %v", slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want)))
	}
	if !strings.Contains(section, `capabilities = "`+capabilities+`"`) {
		t.Errorf("README's deploy section does not name samconfig.toml's capabilities %q", capabilities)
	}

	if slices.Contains(transforms, "AWS::LanguageExtensions") {
		for _, name := range []string{"build", "package", "deploy", "validate", "local_invoke"} {
			if sam["default."+name+".parameters"]["language_extensions"] != "true" {
				t.Errorf("samconfig.toml: sam %s does not expand AWS::LanguageExtensions (language_extensions = true)", name)
			}
		}
		if !strings.Contains(section, "SAM CLI 1.160.0 or newer") {
			t.Error("README's deploy section does not name the SAM CLI version that supports AWS::LanguageExtensions")
		}
	}

	outputs, _ := dig(tpl, "Outputs").(map[string]any)
	used := regexp.MustCompile(`\$\(out ([A-Za-z]+)\)`).FindAllStringSubmatch(section, -1)
	if len(used) == 0 {
		t.Error("README's deploy section reads no stack output")
	}
	for _, m := range used {
		if _, ok := outputs[m[1]]; !ok {
			t.Errorf("README's deploy check reads the output %s, which template.yaml does not declare", m[1])
		}
	}
}
