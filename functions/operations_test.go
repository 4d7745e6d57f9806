package functions_test

import (
	"encoding/json"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"aitokens/pkg/metrics"
)

// expandForEach replaces each Fn::ForEach::<name> of m by its fragment once per item of its
// collection, with ${identifier} replaced in keys and strings, as AWS::LanguageExtensions does
// (enough of it for this template: one identifier, a literal collection).
func expandForEach(t *testing.T, m map[string]any) map[string]any {
	t.Helper()
	out := map[string]any{}
	for k, v := range m {
		if !strings.HasPrefix(k, "Fn::ForEach::") {
			out[k] = v
			continue
		}
		loop := v.([]any)
		id, fragment := loop[0].(string), loop[2].(map[string]any)
		for _, item := range strs(loop[1]) {
			for fk, fv := range substitute(fragment, "${"+id+"}", item).(map[string]any) {
				if _, dup := out[fk]; dup {
					t.Fatalf("Fn::ForEach makes %s twice", fk)
				}
				out[fk] = fv
			}
		}
	}
	return out
}

func substitute(v any, from, to string) any {
	switch x := v.(type) {
	case map[string]any:
		m := map[string]any{}
		for k, e := range x {
			m[strings.ReplaceAll(k, from, to)] = substitute(e, from, to)
		}
		return m
	case []any:
		l := make([]any, len(x))
		for i, e := range x {
			l[i] = substitute(e, from, to)
		}
		return l
	case string:
		return strings.ReplaceAll(x, from, to)
	}
	return v
}

// alarms returns every alarm of the template, the per-function ones expanded.
func alarms(t *testing.T) (map[string]any, map[string]any) {
	t.Helper()
	_, tpl, resources := loadTemplate(t)
	all := map[string]any{}
	for id, res := range expandForEach(t, resources) {
		if dig(res, "Type") == "AWS::CloudWatch::Alarm" {
			all[id] = res
		}
	}
	return all, tpl.(map[string]any)
}

// Every function has its three alarms, on its own metrics: errors, throttles and a p99
// duration at 80 % of its timeout; every alarm notifies the AlarmTopicArn topic when one is
// given and nothing otherwise.
func TestEveryFunctionHasItsAlarms(t *testing.T) {
	all, tpl := alarms(t)
	globals := dig(tpl, "Globals", "Function")
	timeout, err := strconv.Atoi(dig(globals, "Timeout").(string))
	if err != nil {
		t.Fatal(err)
	}
	_, _, resources := loadTemplate(t)
	global := timeout
	for _, fn := range functionNames() {
		prefix := strings.TrimSuffix(logicalID(fn), "Function")
		timeout = global
		if own := dig(resources, logicalID(fn), "Properties", "Timeout"); own != nil {
			// Only the relay streams for minutes; its alarms are its own, at its own timeout.
			if timeout, err = strconv.Atoi(own.(string)); fn != "relay" || err != nil {
				t.Errorf("%s sets its own Timeout %v: its duration alarm assumes the global %d s", fn, own, global)
			}
		}
		for _, a := range []struct{ suffix, metric string }{{"ErrorsAlarm", "Errors"}, {"ThrottlesAlarm", "Throttles"}, {"DurationAlarm", "Duration"}} {
			alarm := all[prefix+a.suffix]
			props := dig(alarm, "Properties")
			if props == nil {
				t.Errorf("%s has no %s", fn, prefix+a.suffix)
				continue
			}
			dims, _ := dig(props, "Dimensions").([]any)
			var ref any
			if len(dims) == 1 {
				if ref = dig(dims[0], "Value", "!Ref"); dig(ref, "Fn::Sub") != nil { // made by Fn::ForEach
					ref = dig(ref, "Fn::Sub")
				}
			}
			if dig(props, "Namespace") != "AWS/Lambda" || dig(props, "MetricName") != a.metric || len(dims) != 1 ||
				dig(dims[0], "Name") != "FunctionName" || ref != logicalID(fn) {
				t.Errorf("%s%s does not watch %s of %s: %v", prefix, a.suffix, a.metric, logicalID(fn), props)
			}
			if a.metric == "Duration" {
				if th, _ := strconv.Atoi(dig(props, "Threshold").(string)); th != timeout*1000*8/10 || dig(props, "ExtendedStatistic") != "p99" {
					t.Errorf("%s duration alarm: p99 over %v ms, want p99 over %d ms (80 %% of %d s)", fn, dig(props, "Threshold"), timeout*800, timeout)
				}
			}
		}
	}
	for id, alarm := range all {
		for _, actions := range []string{"AlarmActions", "OKActions"} {
			got, _ := json.Marshal(dig(alarm, "Properties", actions))
			if string(got) != `{"!If":["HasAlarmTopic",[{"!Ref":"AlarmTopicArn"}],{"!Ref":"AWS::NoValue"}]}` {
				t.Errorf("%s %s = %s, want the AlarmTopicArn topic when one is given", id, actions, got)
			}
		}
		if dig(alarm, "Properties", "TreatMissingData") != "notBreaching" {
			t.Errorf("%s: a quiet minute must not raise it (TreatMissingData notBreaching)", id)
		}
		if !strings.Contains(string(must(json.Marshal(dig(alarm, "Properties", "AlarmDescription")))), "docs/operations.md") {
			t.Errorf("%s: its description does not point at the runbook", id)
		}
	}
	if dig(tpl, "Parameters", "AlarmTopicArn", "Default") != "" {
		t.Error("AlarmTopicArn must be optional (empty by default)")
	}
	if got, _ := json.Marshal(dig(tpl, "Conditions", "HasAlarmTopic")); string(got) != `{"!Not":[{"!Equals":[{"!Ref":"AlarmTopicArn"},""]}]}` {
		t.Errorf("HasAlarmTopic = %s", got)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// The stack's own alarms watch what they say: the API's 5xx, the table's throttles and
// system errors over every operation, and the functions' refused resolves.
func TestStackAlarms(t *testing.T) {
	all, _ := alarms(t)
	text := func(id string) string { return string(must(json.Marshal(all[id]))) }
	for id, want := range map[string][]string{
		"ApiServerErrorsAlarm":   {`"Namespace":"AWS/ApiGateway"`, `"MetricName":"5xx"`, `"MetricName":"Count"`, `"Name":"ApiId","Value":{"!Ref":"HttpApi"}`},
		"TableThrottlesAlarm":    {`SUM(ThrottledRequests)`, `SCHEMA(\"AWS/DynamoDB\", Operation, TableName)`, `TableName = '${TokensTable}'`},
		"TableSystemErrorsAlarm": {`SUM(SystemErrors)`, `SCHEMA(\"AWS/DynamoDB\", Operation, TableName)`, `TableName = '${TokensTable}'`},
		"RefusedResolvesAlarm": {`"Namespace":"` + metrics.Namespace + `"`, `"MetricName":"` + metrics.RefusedResolves.Name + `"`,
			`{"Name":"Service","Value":{"!Ref":"AWS::StackName"}}`, `{"Name":"Function","Value":"resolve-token"}`},
		"RelayServerErrorsAlarm": {`"Namespace":"` + metrics.Namespace + `"`, `"MetricName":"` + metrics.ServerErrors.Name + `"`,
			`{"Name":"Service","Value":{"!Ref":"AWS::StackName"}}`, `{"Name":"Function","Value":"relay"}`},
		"RelayClientErrorsAlarm": {`"Namespace":"` + metrics.Namespace + `"`, `"MetricName":"` + metrics.ClientErrors.Name + `"`,
			`{"Name":"Service","Value":{"!Ref":"AWS::StackName"}}`, `{"Name":"Function","Value":"relay"}`},
	} {
		for _, w := range want {
			if !strings.Contains(text(id), w) {
				t.Errorf("%s lacks %s: %s", id, w, text(id))
			}
		}
	}
}

// Every function is traced by X-Ray (and may write its segments), logs JSON at the levels the
// stack's parameters say, to its own log group, and names its stack in its metrics.
func TestTracingAndLogging(t *testing.T) {
	_, tpl, resources := loadTemplate(t)
	globals := dig(tpl, "Globals", "Function")
	if dig(globals, "Tracing") != "Active" {
		t.Error("Globals: Tracing is not Active")
	}
	logging := dig(globals, "LoggingConfig")
	if dig(logging, "LogFormat") != "JSON" || dig(logging, "ApplicationLogLevel", "!Ref") != "ApplicationLogLevel" || dig(logging, "SystemLogLevel", "!Ref") != "SystemLogLevel" {
		t.Errorf("Globals LoggingConfig %v", logging)
	}
	// The request and metrics lines are INFO: a higher application level would drop them.
	if levels := strs(dig(tpl, "Parameters", "ApplicationLogLevel", "AllowedValues")); slices.ContainsFunc(levels, func(l string) bool {
		return l == "WARN" || l == "ERROR" || l == "FATAL"
	}) || dig(tpl, "Parameters", "ApplicationLogLevel", "Default") != "INFO" {
		t.Errorf("ApplicationLogLevel may drop the metrics lines: %v", levels)
	}
	if dig(globals, "Environment", "Variables", "SERVICE_NAME", "!Ref") != "AWS::StackName" {
		t.Error("the functions' metrics do not name the stack (SERVICE_NAME)")
	}
	for _, fn := range functionNames() {
		fnRes := dig(resources, logicalID(fn))
		if group := dig(fnRes, "Properties", "LoggingConfig", "LogGroup", "!Ref"); group == nil || dig(resources, group.(string), "Type") != "AWS::Logs::LogGroup" {
			t.Errorf("%s logs to no log group of the stack: %v", fn, dig(fnRes, "Properties", "LoggingConfig"))
		}
		role, _, _ := strings.Cut(dig(fnRes, "Properties", "Role", "!GetAtt").(string), ".")
		var managed []string
		policies, _ := dig(resources, role, "Properties", "ManagedPolicyArns").([]any)
		for _, arn := range policies {
			managed = append(managed, strs(dig(arn, "!Sub"))...)
		}
		if !slices.Contains(managed, "arn:${AWS::Partition}:iam::aws:policy/AWSXRayDaemonWriteAccess") {
			t.Errorf("%s's role %s may not write X-Ray segments: %v", fn, role, managed)
		}
	}
}

// The dashboard shows every metric of the service and, per function, Lambda's errors,
// throttles and duration; every reference in it names something of the stack.
func TestDashboard(t *testing.T) {
	_, tpl, resources := loadTemplate(t)
	body, _ := dig(resources, "Dashboard", "Properties", "DashboardBody", "!Sub").(string)
	if dig(resources, "Dashboard", "Type") != "AWS::CloudWatch::Dashboard" || body == "" {
		t.Fatal("no AWS::CloudWatch::Dashboard with a !Sub body")
	}
	refs := regexp.MustCompile(`\$\{([A-Za-z0-9:]+)(\.Arn)?\}`)
	for _, m := range refs.FindAllStringSubmatch(body, -1) {
		if !strings.HasPrefix(m[1], "AWS::") && dig(resources, m[1]) == nil && dig(tpl, "Parameters", m[1]) == nil {
			t.Errorf("the dashboard names %s, which the stack does not have", m[0])
		}
	}
	var dash struct {
		Widgets []struct {
			Type       string
			Properties struct {
				Title   string
				Metrics [][]any
			}
		}
	}
	if err := json.Unmarshal([]byte(refs.ReplaceAllString(body, "X-$1")), &dash); err != nil {
		t.Fatalf("the dashboard body is not JSON: %v", err)
	}
	// What the widgets show: "namespace metric dimension value..." per line (the "." and "..."
	// shorthands filled in from the line above), and the search and query expressions.
	var lines, expressions []string
	shown := map[string]bool{} // "namespace metric"
	searched := regexp.MustCompile(`SEARCH\('\{([^,}]+)[^}]*\} MetricName="([^"]+)"`)
	for _, w := range dash.Widgets {
		var above []string
		for _, m := range w.Properties.Metrics {
			if e, ok := m[0].(map[string]any); ok {
				expressions = append(expressions, e["expression"].(string))
				if s := searched.FindStringSubmatch(e["expression"].(string)); s != nil {
					shown[s[1]+" "+s[2]] = true
				}
				continue
			}
			var parts []string
			for i, p := range m {
				if s, ok := p.(string); ok {
					if s == "." && i < len(above) {
						s = above[i]
					}
					parts = append(parts, s)
				}
			}
			if len(parts) == 1 && parts[0] == "..." { // the line above, other options
				parts = above
			}
			above = parts
			lines = append(lines, strings.Join(parts, " "))
			shown[parts[0]+" "+parts[1]] = true
		}
	}
	for _, m := range metrics.All {
		if !shown[metrics.Namespace+" "+m.Name] {
			t.Errorf("the dashboard does not show the metric %s", m.Name)
		}
	}
	for _, fn := range functionNames() {
		for _, metric := range []string{"Errors", "Throttles", "Duration"} {
			if !slices.Contains(lines, "AWS/Lambda "+metric+" FunctionName X-"+logicalID(fn)) {
				t.Errorf("the dashboard does not show %s of %s", metric, fn)
			}
		}
	}
	for _, what := range []string{"AWS/ApiGateway Count", "AWS/ApiGateway 5xx", "AWS/ApiGateway Latency"} {
		if !shown[what] {
			t.Errorf("the dashboard does not show %s", what)
		}
	}
	for _, what := range []string{"SUM(ThrottledRequests)", "SUM(SystemErrors)"} {
		if !slices.ContainsFunc(expressions, func(e string) bool { return strings.Contains(e, what) && strings.Contains(e, "X-TokensTable") }) {
			t.Errorf("the dashboard does not show the table's %s", what)
		}
	}
}

// cfn-lint (when installed, as `make test` runs it too) finds nothing in the template.
func TestTemplateLintsClean(t *testing.T) {
	t.Parallel() // waits on processes and a database, not on this machine's cores
	if _, err := exec.LookPath("cfn-lint"); err != nil {
		t.Skip("cfn-lint is not installed")
	}
	if out, err := exec.Command("cfn-lint", "../template.yaml").CombinedOutput(); err != nil {
		t.Fatalf("cfn-lint: %v\n%s", err, out)
	}
}
